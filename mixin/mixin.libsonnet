// The dns-staleness-exporter mixin; set its knobs in _config+:: {}.
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
(import 'rules.libsonnet') +
(import 'dashboards.libsonnet')
