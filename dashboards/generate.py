"""The Grafana dashboards of dns-staleness-exporter, built with grafana-foundation-sdk.

`python -m dashboards.generate` writes `dashboards/dns-staleness-overview.json` and
`dashboards/dns-staleness-service.json`; tests/unit/test_dashboards.py fails when the committed
JSON differs from what this module renders (regenerate and commit both).

Why grafana-foundation-sdk: Grafana Labs maintains it and generates its typed builders
(`py.typed`, so mypy --strict checks every panel option) from Grafana's own schemas, for the
current panel types (heatmap, state, table transformations); grafanalib is community-kept,
untyped, and models the older panel JSON by hand. The SDK build pinned here targets the
Grafana 10.1 schema (`schemaVersion` 36), which later Grafana versions migrate on load.

Conventions: stable uids, a `datasource` variable plus `cluster`, `node` and `namespace`
(every query filters on them; the multi-value ones default to `.*`, so series without the
label still match), a unit and a how-to-read description on every panel, and
`$__rate_interval` in every rate() and increase().
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    common,
    dashboard,
    heatmap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from alerts.generate import KNOBS

ROOT = Path(__file__).resolve().parent
OVERVIEW_UID = "dns-staleness-overview"
SERVICE_UID = "dns-staleness-service"
TAGS = ["dns", "dns-staleness-exporter", "kubernetes"]
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SLACK = KNOBS["stale_slack_seconds"].default
"""The stale-beyond-TTL alert's slack, drawn on the per-service age panel."""
SERIES = '{__name__=~"dns_staleness_(stale_records|missing_records|misconfigurations)"'
"""Per-service series (they exist only while non-zero) for the namespace and service lists."""
ANSWERS = 'result=~"noerror|nxdomain"'

AGENT = 'cluster=~"$cluster", node=~"$node"'
LAYER = f'{AGENT}, layer=~"$layer"'
OPEN = f'{LAYER}, namespace=~"$namespace"'
ONE = f'{LAYER}, namespace="$namespace", service="$service"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    heatmap: bool = False
    exemplars: bool = False
    """Show the exemplars Prometheus stored (--enable-feature=exemplar-storage): each names
    the namespace, service and record of a window in that bucket."""


def _targets(queries: Sequence[Query]) -> list[Builder[Dataquery]]:
    out: list[Builder[Dataquery]] = []
    for index, q in enumerate(queries):
        target = prometheus.Dataquery().expr(q.expr).ref_id(chr(ord("A") + index))
        if q.legend:
            target = target.legend_format(q.legend)
        if q.instant:
            target = target.instant().format(PromQueryFormat.TABLE)
        elif q.heatmap:
            target = target.format(PromQueryFormat.HEATMAP)
        if q.exemplars:
            target = target.exemplar(True)
        out.append(target)
    return out


def series(title: str, description: str, unit: str, *queries: Query,
           width: int = 12) -> timeseries.Panel:
    return (timeseries.Panel().title(title).description(description).unit(unit)
            .datasource(DATASOURCE).targets(_targets(queries)).height(8).span(width)
            .fill_opacity(10).span_nulls(False)
            .legend(common.VizLegendOptions().display_mode(LegendDisplayMode.LIST)
                    .placement(LegendPlacement.BOTTOM).show_legend(True)))


def single(title: str, description: str, unit: str, query: Query, width: int = 4) -> stat.Panel:
    return (stat.Panel().title(title).description(description).unit(unit)
            .datasource(DATASOURCE).targets(_targets([query])).height(4).span(width)
            .graph_mode(BigValueGraphMode.AREA)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"])))


def buckets(title: str, description: str, metric: str) -> heatmap.Panel:
    """One heatmap per selected layer, from the histogram's buckets."""
    expr = (f'sum by (le) (rate({metric}_bucket{{{LAYER}, reference="$reference"}}'
            "[$__rate_interval]))")
    return (heatmap.Panel().title(title).description(description).unit("s")
            .datasource(DATASOURCE)
            .targets(_targets([Query(expr, "{{le}}", heatmap=True, exemplars=True)]))
            .calculate(False).y_axis(heatmap.YAxisConfig().unit("s"))
            .cell_values(heatmap.CellValues().unit("short"))
            .repeat("layer").repeat_direction("h").height(8).span(12))


def grid(title: str, description: str, unit: str, queries: Sequence[Query],
         columns: dict[str, tuple[str, str]], width: int = 24) -> table.Panel:
    """Instant queries merged into one table; `columns` renames `Value #X` and sets its unit."""
    panel = (table.Panel().title(title).description(description).unit(unit)
             .datasource(DATASOURCE).targets(_targets(queries)).height(8).span(width)
             .show_header(True)
             .with_transformation(DataTransformerConfig(id_val="merge", options={}))
             .with_transformation(DataTransformerConfig(
                 id_val="organize", options={"excludeByName": {"Time": True}})))
    for field_name, (display, field_unit) in columns.items():
        panel = panel.override_by_name(field_name, [
            DynamicConfigValue(id_val="displayName", value=display),
            DynamicConfigValue(id_val="unit", value=field_unit)])
    return panel


def quantiles(metric: str, what: str, selector: str = LAYER) -> list[Query]:
    return [Query(f"histogram_quantile({q}, sum by (layer, le) (rate({metric}_bucket"
                  f'{{{selector}, reference="$reference"}}[$__rate_interval])))',
                  f"p{int(q * 100)} {{{{layer}}}} {what}", exemplars=True)
            for q in (0.5, 0.99)]


def _variable(name: str, label: str, query: str, *, multi: bool) -> dashboard.QueryVariable:
    var = (dashboard.QueryVariable(name).id(name).label(label).datasource(DATASOURCE).query(query)
           .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC))
    if multi:
        var = (var.multi(True).include_all(True).all_value(".*")
               .current(VariableOption(selected=True, text="All", value="$__all")))
    return var


def _common(title: str, uid: str, description: str) -> dashboard.Dashboard:
    return (dashboard.Dashboard(title).uid(uid).description(description).tags(TAGS)
            .time("now-1h", "now").refresh("30s").timezone("browser")
            .tooltip(DashboardCursorSync.CROSSHAIR)
            .with_variable(dashboard.DatasourceVariable("datasource").id("datasource")
                           .label("Data source").type("prometheus"))
            .with_variable(_variable("cluster", "Cluster",
                                     "label_values(dns_staleness_build_info, cluster)",
                                     multi=True))
            .with_variable(_variable("node", "Node", 'label_values(dns_staleness_build_info'
                                     '{cluster=~"$cluster"}, node)', multi=True)))


def _reference() -> dashboard.CustomVariable:
    return (dashboard.CustomVariable("reference").id("reference").label("Reference clock")
            .values("watch,trigger")
            .current(VariableOption(selected=True, text="watch", value="watch")))


def _layer() -> dashboard.QueryVariable:
    return _variable("layer", "Layer", 'label_values(dns_staleness_record_ttl_seconds'
                     '{cluster=~"$cluster", node=~"$node"}, layer)', multi=True)


def _link(title: str, uid: str) -> dashboard.DashboardLink:
    return (dashboard.DashboardLink(title).url(f"/d/{uid}").include_vars(True).keep_time(True))


def overview() -> dashboard.Dashboard:
    to_service = [{
        "title": "Open this Service's drill-down",
        "url": f"/d/{SERVICE_UID}?${{__url_time_range}}&var-datasource=${{datasource}}"
               "&var-cluster=${cluster}&var-namespace=${__data.fields.namespace}"
               "&var-service=${__value.raw}",
    }]
    open_now = grid(
        "Stale and missing records now",
        "One row per Service and layer with an open window at the end of the time range. "
        "'Nodes' counts the nodes where the layer serves a removed record (stale) or lacks a "
        "current one (missing); the record counts are the highest on any one node; the ages "
        "are those of the oldest open windows, since the record left (stale) or entered "
        "(missing) the truth. Click a Service to drill down. An empty table is the healthy "
        "state.",
        "short",
        [Query(f"count by (namespace, service, layer) (dns_staleness_stale_records{{{OPEN}}})",
               instant=True),
         Query(f"max by (namespace, service, layer) (dns_staleness_stale_records{{{OPEN}}})",
               instant=True),
         Query("max by (namespace, service, layer) "
               f"(dns_staleness_stale_record_age_seconds{{{OPEN}}})", instant=True),
         Query(f"count by (namespace, service, layer) (dns_staleness_missing_records{{{OPEN}}})",
               instant=True),
         Query(f"max by (namespace, service, layer) (dns_staleness_missing_records{{{OPEN}}})",
               instant=True),
         Query("max by (namespace, service, layer) "
               f"(dns_staleness_missing_record_age_seconds{{{OPEN}}})", instant=True)],
        {"Value #A": ("nodes stale", "short"), "Value #B": ("stale records", "short"),
         "Value #C": ("oldest stale age", "s"), "Value #D": ("nodes missing", "short"),
         "Value #E": ("missing records", "short"), "Value #F": ("oldest missing age", "s")},
    ).override_by_name("service", [DynamicConfigValue(id_val="links", value=to_service)])
    return (
        _common("DNS staleness / Overview", OVERVIEW_UID,
                "How long each DNS layer keeps serving removed records of headless Services "
                "(staleness), and how long new ones take to appear (propagation).")
        .with_variable(_variable("namespace", "Namespace",
                                 f'label_values({SERIES}, cluster=~"$cluster"}}, namespace)',
                                 multi=True))
        .with_variable(_layer())
        .with_variable(_reference())
        .link(_link("Per-Service drill-down", SERVICE_UID))
        .with_row(dashboard.Row("Open windows now"))
        .with_panel(single(
            "Stale records", "Records served now that are no longer in the truth, summed "
            "over the selected nodes and layers (a record stale on 3 nodes counts 3). 0 is "
            "healthy; a count that stays up longer than the layer's TTL is a problem.", "short",
            Query(f"sum(dns_staleness_stale_records{{{OPEN}}})")))
        .with_panel(single(
            "Missing records", "Records in the truth that a layer does not serve yet (a new "
            "pod, or a cached NXDOMAIN after a scale-up from zero), summed over nodes and "
            "layers. 0 is healthy.", "short",
            Query(f"sum(dns_staleness_missing_records{{{OPEN}}})")))
        .with_panel(single(
            "Oldest stale record", "Age of the oldest record served after it left the "
            "truth, on any selected node and layer. Compare it with the layer's TTL below: "
            f"past TTL + {SLACK} s it is the stale-beyond-TTL alert.", "s",
            Query(f"max(dns_staleness_stale_record_age_seconds{{{OPEN}}})")))
        .with_panel(single(
            "Headless Services monitored", "The most headless Services any one agent "
            "monitors (each agent sees all of them). If it stops growing at max_targets, "
            "Services are being turned away: see the agent row.", "short",
            Query(f"max(dns_staleness_targets{{{AGENT}}})")))
        .with_panel(single(
            "Agents reporting", "Agents whose metrics are in the selected range: one per "
            "node that runs the DaemonSet. Fewer than nodes means some are not measured.",
            "short", Query(f"count(dns_staleness_build_info{{{AGENT}}})"), width=8))
        .with_panel(open_now)
        .with_row(dashboard.Row("Stale windows (closed)"))
        .with_panel(series(
            "Stale window p50 and p99 by layer",
            "Median and 99th percentile of the stale windows that closed in each interval. "
            "Gaps mean no window closed (nothing was removed). Read the p99 against the "
            "layer's TTL: above TTL + 5 s a cache keeps records too long. The `trigger` "
            "reference starts at the pod's Ready change and reads up to 1 s longer.", "s",
            *quantiles("dns_staleness_window_seconds", "stale"), width=24))
        .with_panel(buckets(
            "Stale windows: $layer",
            "Closed stale windows on this layer: removal from the truth until the first probe "
            "without the record. Each column is a time slice; darker cells hold more windows "
            "of that duration. A band near the TTL (plus 5 s behind a second cache) is "
            "normal; cells far above it are records kept past their TTL.",
            "dns_staleness_window_seconds"))
        .with_row(dashboard.Row("Propagation (closed)"))
        .with_panel(series(
            "Propagation p50 and p99 by layer",
            "Median and 99th percentile of DNS programming latency per layer, the "
            "sig-scalability DNS programming latency SLI measured at each layer. Gaps mean "
            "nothing was added.", "s",
            *quantiles("dns_staleness_propagation_seconds", "propagation"), width=24))
        .with_panel(buckets(
            "Propagation: $layer",
            "Closed missing windows on this layer: a record added to the truth until the "
            "first probe that serves it. Cells above the negative-cache TTL point to cached "
            "NXDOMAINs or a slow informer.", "dns_staleness_propagation_seconds"))
        .with_panel(series(
            "Window resolution p50 and p99 by layer",
            "The gap between the last probe in the old state and the one that closed each "
            "window: every window's own error bound. Cache expiries are bracketed to about "
            "50 ms; more means a layer without a cache, a balanced address, or a budget too "
            "small for the changes.", "s",
            *[Query(f"histogram_quantile({q}, sum by (layer, le) (rate("
                    f"dns_staleness_window_resolution_seconds_bucket{{{LAYER}}}"
                    "[$__rate_interval])))", f"p{int(q * 100)} {{{{layer}}}}")
              for q in (0.5, 0.99)], width=24))
        .with_row(dashboard.Row("What clients see (client profiles)"))
        .with_panel(series(
            "Stale windows p99 as clients see them",
            "The 99th percentile of the closed stale windows as a client of each profile of "
            "client_profiles sees them at worst: the layer's window, or its last old answer "
            "plus the client's own hold (the JVM's 30 s, gRPC's re-resolution floor, nscd's "
            "TTL). This is how long such a client can dial a removed pod's IP. Formulas in "
            "docs/metrics.md, \"Client profiles\".", "s",
            Query("histogram_quantile(0.99, sum by (client, layer, le) (rate("
                  f"dns_staleness_client_window_seconds_bucket{{{LAYER}, "
                  'reference="watch"}[$__rate_interval])))', "{{client}} via {{layer}}"),
            width=12))
        .with_panel(series(
            "Propagation p99 as clients see it",
            "The 99th percentile of closed missing windows as a client of each profile sees "
            "them: until it can see a new pod, its cached failure (the JVM's 10 s) or an "
            "answer without the pod included.", "s",
            Query("histogram_quantile(0.99, sum by (client, layer, le) (rate("
                  f"dns_staleness_client_propagation_seconds_bucket{{{LAYER}, "
                  'reference="watch"}[$__rate_interval])))', "{{client}} via {{layer}}"),
            width=8))
        .with_panel(series(
            "Windows clients never see end",
            "Closed windows per interval that a client holding answers for ever "
            "(jvm-security-manager) never lets go of: it dials the removed IP until it "
            "restarts.", "short",
            Query("sum by (client, layer) (increase(dns_staleness_client_windows_unbounded_total"
                  f"{{{LAYER}}}[$__rate_interval]))", "{{client}} via {{layer}}"), width=4))
        .with_row(dashboard.Row("Layers"))
        .with_panel(series(
            "Record TTL by layer",
            "The highest TTL each layer served for the monitored names in the last 10 "
            "minutes. Caches serve the remaining TTL, so this approaches the configured TTL "
            "from below. A layer's stale windows should end within this plus 5 s.", "s",
            Query(f"max by (layer) (dns_staleness_record_ttl_seconds{{{LAYER}}})",
                  "{{layer}}")))
        .with_panel(series(
            "Probe results by layer",
            "Probes per second by layer and result. noerror and nxdomain are answers (an "
            "NXDOMAIN for a Service without ready endpoints is correct); servfail, refused, "
            "timeout, network_error, malformed and other_rcode are errors.", "reqps",
            Query(f"sum by (layer, result) (rate(dns_staleness_probes_total{{{LAYER}}}"
                  "[$__rate_interval]))", "{{layer}} {{result}}")))
        .with_panel(series(
            "Probe error ratio by layer",
            "Share of probes that got no answer or an error rcode. Errors never count as "
            "staleness, so a layer with errors is partly blind; above 5 % for 10 minutes is "
            "the layer-errors alert.", "percentunit",
            Query(f"1 - sum by (layer) (rate(dns_staleness_probes_total{{{LAYER}, {ANSWERS}}}"
                  "[$__rate_interval]))\n  / sum by (layer) (rate(dns_staleness_probes_total"
                  f"{{{LAYER}}}[$__rate_interval]))", "{{layer}}")))
        .with_panel(series(
            "Probe round trip p99 by layer",
            "99th percentile of the answered probes' round trip, including a TCP retry after "
            "truncation. A window is only as sharp as its probes: a slow layer blurs it.",
            "s",
            Query("histogram_quantile(0.99, sum by (layer, le) (rate("
                  f"dns_staleness_probe_duration_seconds_bucket{{{LAYER}}}[$__rate_interval])))",
                  "{{layer}}")))
        .with_panel(series(
            "Servers answering by layer",
            "Share of (node, server) pairs whose last probe was answered. 100 % is healthy; "
            "0 % on a node for 5 minutes is the layer-down alert.", "percentunit",
            Query(f"avg by (layer) (dns_staleness_layer_up{{{LAYER}}})", "{{layer}}"),
            width=24))
        .with_row(dashboard.Row("Watch and agent"))
        .with_panel(series(
            "Watch delay p50 and p99",
            "From an EndpointSlice's last-change-trigger-time (the pod's Ready change, on its "
            "node's clock, in whole seconds) to the agent's receipt of the event. Read it as "
            "how far behind the watch runs, not as a precise latency.", "s",
            *[Query(f"histogram_quantile({q}, sum by (le) (rate("
                    f"dns_staleness_watch_delay_seconds_bucket{{{AGENT}}}[$__rate_interval])))",
                    f"p{int(q * 100)}") for q in (0.5, 0.99)]))
        .with_panel(series(
            "Trigger clock skew by node",
            "The lowest recent watch delay per agent. Below zero, the nodes that wrote the "
            "trigger times run at least that far ahead of the agent's clock, and trigger-"
            "referenced windows read short; 0 to 1 s is the whole-second truncation.", "s",
            Query(f"min by (node) (dns_staleness_trigger_clock_skew_seconds{{{AGENT}}})",
                  "{{node}}")))
        .with_panel(series(
            "Watch events",
            "Service and EndpointSlice events processed per second. INVALID counts objects "
            "that could not be read (each is logged). Flat zero while pods change means the "
            "watch is stuck.", "ops",
            Query(f"sum by (kind, type) (rate(dns_staleness_watch_events_total{{{AGENT}}}"
                  "[$__rate_interval]))", "{{kind}} {{type}}")))
        .with_panel(series(
            "Watch restarts",
            "Relists and reconnects per node and reason (gone: 410, error: a dropped "
            "connection, forbidden: RBAC). Occasional ones are normal; a steady stream is the "
            "watch-restarts alert. No window is invented from the gap.", "short",
            Query(f"sum by (node, reason) (increase(dns_staleness_watch_restarts_total"
                  f"{{{AGENT}}}[$__rate_interval]))", "{{node}} {{reason}}")))
        .with_panel(series(
            "Probe budget use",
            "Probes sent and probes deferred per second by each agent, beside its budget. Sent "
            "stays under the budget; deferred above zero means the budget is spent and fast "
            "probes wait (their windows lose precision).", "reqps",
            Query(f"max by (node) (dns_staleness_probe_budget_qps{{{AGENT}}})",
                  "budget {{node}}"),
            Query(f"sum by (node) (rate(dns_staleness_probes_total{{{AGENT}}}[$__rate_interval]))",
                  "sent {{node}}"),
            Query(f"sum by (node) (rate(dns_staleness_probes_deferred_total{{{AGENT}}}"
                  "[$__rate_interval]))", "deferred {{node}}")))
        .with_panel(series(
            "Sweep period",
            "How long each agent's last steady sweep of every name and server took. Above "
            "sweep_interval (30 s by default) the budget is too small for the targets: steady "
            "sweeps get half of it, and the agent logs the qps it would need.", "s",
            Query(f"max by (node) (dns_staleness_sweep_period_seconds{{{AGENT}}})",
                  "{{node}}")))
        .with_panel(series(
            "Targets and drops",
            "Headless Services each agent monitors, and Services turned away by max_targets "
            "in each interval (each drop is also logged). Any drop means unmeasured "
            "Services.", "short",
            Query(f"max by (node) (dns_staleness_targets{{{AGENT}}})", "monitored {{node}}"),
            Query(f"sum by (node) (increase(dns_staleness_targets_dropped_total{{{AGENT}}}"
                  "[$__rate_interval]))", "dropped {{node}}")))
        .with_panel(grid(
            "Misconfigured headless Services",
            "Services with a known cause of missing records at the end of the range: "
            "no_named_ports (no SRV records), selectorless_without_endpoints (no records at "
            "all), invalid_endpoint_address, endpoint_without_hostname, and outside_* or "
            "noendpoints when CoreDNS's kubernetes plugin does not serve the Service at all "
            "(docs/metrics.md). These are configuration, not staleness.",
            "short",
            [Query("max by (namespace, service, reason) (dns_staleness_misconfigurations{"
                   f'{AGENT}, namespace=~"$namespace"}})', instant=True)],
            {"Value": ("present", "short")}))
        .with_row(dashboard.Row("Sharding"))
        .with_panel(series(
            "Fleet size as each agent sees it",
            "Members of the fleet that shares the targets out (the ready agents of the chart's "
            "Service), lowest and highest over the agents. The two lines meet: an agent whose "
            "view stays apart has a watch that is behind, and its share is measured twice or "
            "not at all until it catches up.", "short",
            Query(f"min(dns_staleness_fleet_members{{{AGENT}}})", "lowest"),
            Query(f"max(dns_staleness_fleet_members{{{AGENT}}})", "highest"), width=8))
        .with_panel(series(
            "Owners per target",
            "Targets measured on the kube-dns and coredns layers, summed over the fleet, per "
            "target monitored: shard_owners (3) once the fleet is larger than that, the fleet "
            "size below it.", "short",
            Query(f'sum(dns_staleness_shard_targets{{{AGENT}, scope="cluster"}}) / '
                  f"max(dns_staleness_targets{{{AGENT}}})", "owners"), width=8))
        .with_panel(series(
            "Handovers and their races",
            "Targets that membership changes moved off and onto the agents' shards, and the "
            "windows open on them that ended as handed_over races instead of samples. A "
            "rollout moves about shard_owners x targets per agent replaced.", "short",
            Query(f"sum by (direction) (increase(dns_staleness_shard_handovers_total{{{AGENT}}}"
                  "[$__rate_interval]))", "{{direction}}"),
            # The races counter has a series once a race happened: 0 until then.
            Query(f'sum(increase(dns_staleness_window_races_total{{{AGENT}, '
                  'reason="handed_over"}[$__rate_interval])) or vector(0)',
                  "handed_over races"), width=8))
    )


def service() -> dashboard.Dashboard:
    service_var = _variable(
        "service", "Service",
        f'label_values({SERIES}, cluster=~"$cluster", namespace="$namespace"}}, service)',
        multi=False)
    return (
        _common("DNS staleness / Service", SERVICE_UID,
                "One headless Service: its open stale and missing records per layer and node, "
                "against the layer's TTL. Services appear in the list only while they have "
                "an open window or a misconfiguration in the time range.")
        .with_variable(_variable("namespace", "Namespace",
                                 f'label_values({SERIES}, cluster=~"$cluster"}}, namespace)',
                                 multi=False))
        .with_variable(service_var)
        .with_variable(_layer())
        .with_variable(_reference())
        .link(_link("Overview", OVERVIEW_UID))
        .with_row(dashboard.Row("$namespace/$service now"))
        .with_panel(single(
            "Stale records", "Records of this Service served now after they left the truth, "
            "summed over nodes and layers. 0 is healthy.", "short",
            Query(f"sum(dns_staleness_stale_records{{{ONE}}})"), width=6))
        .with_panel(single(
            "Missing records", "Records of this Service in the truth that a layer does not "
            "serve yet, summed over nodes and layers. 0 is healthy.", "short",
            Query(f"sum(dns_staleness_missing_records{{{ONE}}})"), width=6))
        .with_panel(single(
            "Oldest stale record", "Age of this Service's oldest record still served after it "
            "left the truth, on any node and layer.", "s",
            Query(f"max(dns_staleness_stale_record_age_seconds{{{ONE}}})"), width=6))
        .with_panel(single(
            "Nodes affected", "Nodes where some layer has an open stale or missing window "
            "for this Service.", "short",
            Query("count(count by (node) ({__name__=~"
                  f'"dns_staleness_(stale_records|missing_records)", {ONE}}}))'), width=6))
        .with_row(dashboard.Row("Over time"))
        .with_panel(series(
            "Stale age against the alert threshold",
            "The oldest stale record's age per layer (solid) and the layer's TTL plus the "
            f"{SLACK} s cache floor (threshold). While an age line is above its threshold the "
            "stale-beyond-TTL alert is pending, and it fires after its `for:` duration. An age "
            "line that ends below its threshold is a record that expired in time.", "s",
            Query(f"max by (layer) (dns_staleness_stale_record_age_seconds{{{ONE}}})",
                  "age {{layer}}"),
            Query(f"max by (layer) (dns_staleness_record_ttl_seconds{{{LAYER}}}) + {SLACK}",
                  f"TTL + {SLACK} s {{{{layer}}}}")))
        .with_panel(series(
            "Stale and missing records by layer",
            "How many of this Service's records each layer serves stale, or lacks, summed "
            "over nodes. Spikes after each scale-down (stale) or scale-up (missing) that fall "
            "back within the TTL are normal.", "short",
            Query(f"sum by (layer) (dns_staleness_stale_records{{{ONE}}})", "stale {{layer}}"),
            Query(f"sum by (layer) (dns_staleness_missing_records{{{ONE}}})",
                  "missing {{layer}}")))
        .with_panel(grid(
            "Nodes with open windows now",
            "Per node, layer and server at the end of the range: stale records, the oldest "
            "stale age, and missing records. One node alone points at its node-local cache; "
            "every node at once points at the cluster DNS; one CoreDNS server of several "
            "points at that replica.", "short",
            [Query(f"max by (node, layer, server) (dns_staleness_stale_records{{{ONE}}})",
                   instant=True),
             Query("max by (node, layer, server) "
                   f"(dns_staleness_stale_record_age_seconds{{{ONE}}})", instant=True),
             Query(f"max by (node, layer, server) (dns_staleness_missing_records{{{ONE}}})",
                   instant=True)],
            {"Value #A": ("stale records", "short"), "Value #B": ("oldest stale age", "s"),
             "Value #C": ("missing records", "short")}, width=12))
        .with_panel(grid(
            "Misconfigurations",
            "Known causes of missing records for this Service at the end of the range "
            "(no_named_ports, selectorless_without_endpoints, invalid_endpoint_address, "
            "endpoint_without_hostname, outside_* and noendpoints for a Service CoreDNS does "
            "not serve); see the runbook of the misconfigured-Service alert.", "short",
            [Query("max by (reason) (dns_staleness_misconfigurations{"
                   f'{AGENT}, namespace="$namespace", service="$service"}})', instant=True)],
            {"Value": ("present", "short")}, width=12))
        .with_row(dashboard.Row("Layer context (all Services)"))
        .with_panel(series(
            "Stale window p50 and p99 by layer, all Services",
            "Closed windows are histograms per layer only (no per-Service labels, to keep "
            "series counts flat). Use this to tell a layer-wide problem from this Service's.",
            "s", *quantiles("dns_staleness_window_seconds", "stale")))
        .with_panel(series(
            "Propagation p50 and p99 by layer, all Services",
            "DNS programming latency per layer, across all Services (see the overview).", "s",
            *quantiles("dns_staleness_propagation_seconds", "propagation")))
    )


DASHBOARDS = {"dns-staleness-overview.json": overview, "dns-staleness-service.json": service}


def render(build: dashboard.Dashboard) -> dict[str, Any]:
    """The dashboard as JSON data, with panel ids numbered in layout order."""
    data: dict[str, Any] = json.loads(json.dumps(build.build(), cls=JSONEncoder))
    for number, panel in enumerate(data["panels"], start=1):
        panel["id"] = number
    return data


def panel_queries(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, in layout order."""
    return [(panel["title"], target["expr"]) for panel in data["panels"]
            for target in panel.get("targets", [])]


def variable_queries(data: dict[str, Any]) -> dict[str, str]:
    """Query variables' `label_values(...)` calls, by variable name."""
    return {var["name"]: var["query"] for var in data["templating"]["list"]
            if var["type"] == "query"}


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a committed dashboard differs from the generated one")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = ROOT / name, dump(render(build()))
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m dashboards.generate",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
