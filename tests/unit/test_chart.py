"""The Helm chart, rendered by the real helm: lint, every CI variant, the values schema, the
generated copies, and the properties of the DaemonSet a platform team installs.

The objects are checked against the real API server in tests/integration/test_chart_apiserver.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import __version__
from exporter.io.webconfig import load as load_web_config
from exporter.settings import load, settings_for
from scripts import gen_chart
from tests.rig import ClusterPki, rig_or_skip

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dns-staleness-exporter"
VARIANTS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
NAMESPACE = "monitoring"
Obj = dict[str, Any]


@cache
def helm() -> Path:
    return rig_or_skip().helm


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm()), *args], capture_output=True, text=True, timeout=60,
                          check=False)


@cache
def render(variant: str | None = None, extra: Sequence[str] = ()) -> list[Obj]:
    """`helm template` of the chart with ci/<variant> and extra flags, as objects."""
    args = ["template", "rel", str(CHART), "--namespace", NAMESPACE, *extra]
    if variant:
        args += ["-f", str(CHART / "ci" / variant)]
    result = run_helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(objects: list[Obj], kind: str, namespace: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and (
        namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def kinds(objects: list[Obj]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def agent_config(objects: list[Obj]) -> str:
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"
             and o["metadata"]["name"] == "rel-dns-staleness-exporter"]
    return str(cm["data"]["config.yaml"])


def pod_spec(objects: list[Obj]) -> Obj:
    spec: Obj = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    return spec


# -- generated files ----------------------------------------------------------------------
def test_generated_files_match_their_sources() -> None:
    """files/alerts, files/dashboards, the config block, the rules map, the schema and the
    README values table are all what scripts/gen_chart.py makes from their sources now."""
    assert gen_chart.drift() == [], "run scripts/gen_chart.py"


def test_every_run_setting_is_a_value_or_owned_by_the_chart() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["config"]) | set(gen_chart.CHART_OWNED) == set(settings_for("run"))
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["config"]["properties"]) == set(values["config"])


def test_every_alert_and_record_can_be_switched_off() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert list(values["prometheusRule"]["rules"]) == gen_chart.rule_names()
    assert all(values["prometheusRule"]["rules"].values())


def test_versions_agree() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


# -- lint and render ----------------------------------------------------------------------
@pytest.mark.parametrize("variant", [None, *VARIANTS])
def test_lint_and_render(variant: str | None) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if variant:
        args += ["-f", str(CHART / "ci" / variant)]
    result = run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    # extraManifests are the user's own objects, with the user's labels.
    objects = render(variant, ("--set-json", "extraManifests=[]"))
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "dns-staleness-exporter", obj["kind"]
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_default_objects() -> None:
    assert kinds(render()) == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet",
                               "Service", "ServiceAccount"]


def test_ci_variants_cover_every_optional_object() -> None:
    seen = {kind for variant in VARIANTS for kind in kinds(render(variant))}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy",
            "VerticalPodAutoscaler", "FlowSchema", "PriorityLevelConfiguration", "Role",
            "RoleBinding", "Secret"} <= seen


# -- the values schema --------------------------------------------------------------------
BAD_VALUES = [
    (["--set", "config.probe_budget_qps=-1"],
     "at '/config/probe_budget_qps': minimum: got -1, want 1"),
    (["--set", "config.probe_budget_qps=abc"],
     "at '/config/probe_budget_qps': got string, want number"),
    (["--set", "config.max_targets=0"], "at '/config/max_targets': minimum: got 0, want 1"),
    (["--set", "config.no_such_setting=1"],
     "at '/config': additional properties 'no_such_setting' not allowed"),
    (["--set", "config.listen=0.0.0.0:1"],
     "at '/config': additional properties 'listen' not allowed"),
    (["--set", "config.log_level=loud"],
     "at '/config/log_level': value must be one of 'debug', 'info', 'warning', 'error'"),
    (["--set-json", 'config.layers=["node-local","bogus"]'],
     "at '/config/layers/1': value must be one of 'node-local', 'kube-dns', 'coredns', "
     "'resolv-conf'"),
    (["--set-json", 'config.namespaces=["Team_A"]'], "at '/config/namespaces/0'"),
    (["--set", "config.zone=.."], "at '/config/zone'"),
    (["--set", "prometheusRule.rules.NoSuchAlert=false"],
     "at '/prometheusRule/rules': additional properties 'NoSuchAlert' not allowed"),
    (["--set", "containerPort=70000"], "at '/containerPort': maximum: got 70,000, want 65,535"),
    (["--set", "imagePullPolicy=Always"],
     "at '': additional properties 'imagePullPolicy' not allowed"),
    (["--set", "updateStrategy.rollingUpdate.maxUnavailable=0"],
     "at '/updateStrategy/rollingUpdate/maxUnavailable'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES,
                         ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_schema_rejects_bad_values_with_a_clear_message(args: list[str], message: str) -> None:
    for command in (["template", "rel"], ["lint"]):
        result = run_helm(*command, str(CHART), *args)
        assert result.returncode != 0, f"helm {command[0]} accepted {args}"
        assert message in result.stdout + result.stderr, result.stdout + result.stderr


def test_what_the_schema_cannot_say_fails_the_render() -> None:
    # helm lint only logs a template's `fail`; install, upgrade and template stop on it.
    result = run_helm("template", "rel", str(CHART), "--set", "config.probe_burst=30")
    assert result.returncode != 0
    assert "config.probe_burst (30) must not exceed config.probe_budget_qps (20)" in result.stderr


def test_values_file_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("config:\n  probe_timeout: 0\n  namespaces: team-a\n")
    result = run_helm("template", "rel", str(CHART), "-f", str(bad))
    assert result.returncode != 0
    assert "at '/config/probe_timeout': minimum: got 0, want 0.01" in result.stderr
    assert "at '/config/namespaces': got string, want array" in result.stderr


# -- the agent's config -------------------------------------------------------------------
@pytest.mark.parametrize("variant", [None, *VARIANTS])
def test_rendered_config_is_accepted_by_the_agent(variant: str | None, tmp_path: Path) -> None:
    """The ConfigMap's file goes through the agent's own loader and validation."""
    config = agent_config(render(variant))
    path = tmp_path / "config.yaml"
    path.write_text(config)
    settings = load("run", {}, {}, str(path))
    values = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    if variant:
        values |= yaml.safe_load((CHART / "ci" / variant).read_text()).get("config", {})
    for name, value in values.items():
        got = getattr(settings, name)
        assert (list(got) if isinstance(got, tuple) else got) == value, name


# -- the DaemonSet ------------------------------------------------------------------------
def test_daemonset_security_context_is_restricted() -> None:
    spec = pod_spec(render())
    assert spec["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"}}
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}}
    assert "hostNetwork" not in spec
    assert not any(k in spec for k in ("hostPID", "hostIPC"))
    # The root is read-only: /tmp is the one writable path, an emptyDir.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/etc/dns-staleness-exporter"}
    assert mounts["/etc/dns-staleness-exporter"]["readOnly"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert not any("hostPath" in v for v in spec["volumes"])


def test_daemonset_runs_the_agent_with_probes_and_node_name() -> None:
    ds = one(render(), "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["run", "--config=/etc/dns-staleness-exporter/config.yaml",
                                 "--web.listen-address=0.0.0.0:9897"]
    assert container["image"] == f"dns-staleness-exporter:{__version__}"
    assert container["env"] == [{"name": "DNS_STALENESS_NODE_NAME", "valueFrom": {
        "fieldRef": {"fieldPath": "spec.nodeName"}}}]
    assert container["ports"] == [{"name": "http-metrics", "containerPort": 9897,
                                   "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert container["resources"]["requests"] == {"cpu": "20m", "memory": "80Mi"}
    assert set(container["resources"]["limits"]) == {"memory"}  # no CPU throttling
    # SIGTERM: unready, then exit within 2 s; the grace period covers that with room.
    assert 2 < spec["terminationGracePeriodSeconds"] <= 10
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["serviceAccountName"] == "rel-dns-staleness-exporter"
    assert spec["automountServiceAccountToken"] is True
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": "10%"}}
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels["app.kubernetes.io/version"] == __version__
    assert "checksum/config" in ds["spec"]["template"]["metadata"]["annotations"]


def test_config_change_rolls_the_pods() -> None:
    def checksum(objects: list[Obj]) -> str:
        annotations = one(objects, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    assert checksum(render()) != checksum(render(None, ("--set", "config.max_targets=5")))


def test_host_network_is_opt_in() -> None:
    spec = pod_spec(render(None, ("--set", "hostNetwork=true")))
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"


# -- RBAC ---------------------------------------------------------------------------------
def test_cluster_role_is_exactly_deploy_rbac() -> None:
    objects = render()
    shipped = yaml.safe_load((ROOT / "deploy" / "rbac.yaml").read_text())
    assert one(objects, "ClusterRole")["rules"] == shipped["rules"]
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-dns-staleness-exporter",
                                    "namespace": NAMESPACE}]


def test_restricted_namespaces_get_roles_not_a_cluster_role() -> None:
    objects = render("namespaced-values.yaml")
    # Cluster-wide only what is cluster-scoped: the reviews of kubernetes_authorization.
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"} == {
        "rel-dns-staleness-exporter-authorization", "rel-dns-staleness-exporter-scraper"}
    assert not [o for o in objects if o["kind"] == "ClusterRole" and any(
        "watch" in rule.get("verbs", []) for rule in o["rules"])]
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["rules"]
             for o in objects if o["kind"] == "Role"}
    shipped = yaml.safe_load((ROOT / "deploy" / "rbac.yaml").read_text())["rules"]
    pods = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    # The watched namespaces, kube-system for the kube-dns Service and its slices, and the
    # release's own for the agents' Service, whose slices are the fleet that shards.
    for ns in ("team-a", "team-b", "kube-system", NAMESPACE):
        assert roles[(ns, "rel-dns-staleness-exporter")] == [*shipped, pods]
    assert roles[("kube-system", "rel-dns-staleness-exporter-check")] == [{
        "apiGroups": [""], "resources": ["configmaps"],
        "resourceNames": ["coredns", "node-local-dns"], "verbs": ["get"]}]
    assert len(roles) == 5
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert len(bindings) == 5


def test_namespace_labels_grant_namespaces_and_nothing_else() -> None:
    assert not [o for o in render() if "namespaces" in str(o.get("rules"))]
    objects = render("namespaced-values.yaml",
                     ("--set", "config.coredns_namespace_labels=dns=exposed",
                      "--set", "config.kubernetes_authorization=false"))
    role = one(objects, "ClusterRole")
    assert role["metadata"]["name"] == "rel-dns-staleness-exporter-namespaces"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"],
                              "verbs": ["get", "list", "watch"]}]
    assert one(objects, "ClusterRoleBinding")["roleRef"]["name"] == role["metadata"]["name"]


# -- monitoring objects -------------------------------------------------------------------
def test_monitors_set_node_from_the_scrape() -> None:
    node = {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "action": "replace",
            "targetLabel": "node"}
    objects = render("monitoring-values.yaml")
    monitor = one(objects, "ServiceMonitor")["spec"]
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] == "http-metrics" and endpoint["relabelings"][0] == node
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    assert (endpoint["scheme"], endpoint["path"], endpoint["honorLabels"]) == \
        ("https", "/metrics", True)
    assert endpoint["basicAuth"]["password"] == {"name": "dse-scrape-auth", "key": "password"}
    assert monitor["selector"] == {"matchLabels": {"app.kubernetes.io/name":
                                                   "dns-staleness-exporter"}}
    assert monitor["sampleLimit"] == 20000
    assert monitor["jobLabel"] == "app.kubernetes.io/name"
    assert "PodMonitor" not in kinds(objects)
    assert one(objects, "Service")["spec"]["ports"][0]["targetPort"] == "http-metrics"
    pod_monitor = one(render("podmonitor-values.yaml"), "PodMonitor")["spec"]
    (pod_endpoint,) = pod_monitor["podMetricsEndpoints"]
    assert pod_endpoint["relabelings"] == [node]
    assert pod_endpoint["interval"] == "15s"
    assert pod_monitor["selector"] == {"matchLabels": {"dns-staleness-exporter.io/scrape": "true"}}


def test_both_monitors_at_once_are_refused() -> None:
    result = run_helm("template", "rel", str(CHART), "--set", "serviceMonitor.enabled=true",
                      "--set", "podMonitor.enabled=true")
    assert result.returncode != 0
    assert "would both scrape every pod, so every series twice: enable one" in result.stderr


def test_sharding_reads_the_fleet_from_the_charts_own_service() -> None:
    config = yaml.safe_load(agent_config(render()))
    assert config["shard_service"] == f"{NAMESPACE}/rel-dns-staleness-exporter"
    assert one(render(), "Service")["metadata"]["name"] == "rel-dns-staleness-exporter"
    off = yaml.safe_load(agent_config(render(None, ("--set", "sharding.enabled=false"))))
    assert "shard_service" not in off
    result = run_helm("template", "rel", str(CHART), "--set", "service.enabled=false")
    assert result.returncode != 0
    assert "sharding.enabled reads the fleet from the chart's Service" in result.stderr
    result = run_helm("template", "rel", str(CHART), "--set", "config.shard_service=a/b")
    assert result.returncode != 0, "the chart sets it"


def test_null_values_render() -> None:
    """`--set KEY=null` deletes a default; the templates must do without it."""
    for key in ("nodeSelector", "tolerations", "affinity", "podAnnotations", "extraArgs",
                "env", "dnsConfig", "imagePullSecrets", "global.imagePullSecrets"):
        result = run_helm("template", "rel", str(CHART), "--set", f"{key}=null")
        assert result.returncode == 0, (key, result.stderr)
    spec = pod_spec(render(None, ("--set", "nodeSelector=null")))
    assert "nodeSelector" not in spec
    spec = pod_spec(render(None, ("--set", "nodeSelector=null", "--set",
                                  "nodeSampling.enabled=true")))
    assert spec["nodeSelector"] == {"dns-staleness-exporter.io/sample": "true"}


ISSUE_13_VALUES = [
    "extraArgs", "env", "extraEnv", "extraVolumes", "extraVolumeMounts", "dnsPolicy",
    "dnsConfig", "revisionHistoryLimit", "global.imageRegistry", "global.imagePullSecrets",
    "extraManifests", "podAnnotations", "scrapeAnnotations", "webConfig.config",
    "webConfig.tlsSecretName", "rbac.scraperSubjects", "config.kubernetes_authorization",
    "config.telemetry_path", "serviceMonitor.bearerTokenFile",
    *(f"{monitor}.{key}" for monitor in ("serviceMonitor", "podMonitor")
      for key in ("scheme", "tlsConfig", "basicAuth", "authorization", "sampleLimit",
                  "honorLabels", "jobLabel", "selectorOverride")),
]
"""The values that the prometheus-node-exporter chart's users reach for, and secure serving."""


def test_every_new_value_is_documented_and_set_by_a_ci_file() -> None:
    """So the server-side dry run of every ci/ file covers each (test_chart_apiserver.py)."""
    documented = {key for key, _, _ in gen_chart.values_rows((CHART / "values.yaml").read_text())}
    readme = (CHART / "README.md").read_text()

    def has(data: Any, path: list[str]) -> bool:
        return not path or (isinstance(data, dict) and path[0] in data
                            and has(data[path[0]], path[1:]))

    ci = [yaml.safe_load((CHART / "ci" / v).read_text()) for v in VARIANTS]
    for key in ISSUE_13_VALUES:
        assert key in documented or key.startswith("config."), key
        assert f"`{key}`" in readme, key
        assert any(has(values, key.split(".")) for values in ci), f"no ci/ file sets {key}"


# -- secure serving -----------------------------------------------------------------------
def test_kubernetes_authorization_grants_the_reviews_and_ships_the_scraper_role() -> None:
    objects = render("secure-values.yaml")
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    assert roles["rel-dns-staleness-exporter-authorization"]["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
         "verbs": ["create"]}]
    assert roles["rel-dns-staleness-exporter-scraper"]["rules"] == [
        {"nonResourceURLs": ["/metrics", "/status"], "verbs": ["get"]}]
    bindings = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRoleBinding"}
    assert bindings["rel-dns-staleness-exporter-scraper"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}]
    assert bindings["rel-dns-staleness-exporter-authorization"]["subjects"][0]["name"] == \
        "rel-dns-staleness-exporter"
    (endpoint,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["serverName"] == "dns-staleness-exporter"
    # Prometheus's own token by default; a token Secret (`authorization`) instead when given.
    for extra, want in (((), "/var/run/secrets/kubernetes.io/serviceaccount/token"),
                        (("--set", "serviceMonitor.bearerTokenFile=/t"), "/t")):
        (endpoint,) = one(render("secure-values.yaml", ("--set", "serviceMonitor.bearerTokenFile=",
                                                        *extra)), "ServiceMonitor")["spec"][
            "endpoints"]
        assert endpoint["bearerTokenFile"] == want
    (endpoint,) = one(render("extras-values.yaml"), "ServiceMonitor")["spec"]["endpoints"]
    assert "bearerTokenFile" not in endpoint
    assert endpoint["authorization"]["credentials"]["name"] == "prometheus-scrape-token"
    assert endpoint["path"] == "/dns/metrics"
    # Reviews are cluster-scoped: a ClusterRole even when the watches are namespaced.
    namespaced = render("secure-values.yaml", ("--set-json", 'config.namespaces=["team-a"]'))
    assert "rel-dns-staleness-exporter-authorization" in {
        o["metadata"]["name"] for o in namespaced if o["kind"] == "ClusterRole"}
    # Off by default: no review grant, no scraper role.
    assert not [o for o in render() if o["metadata"]["name"].endswith(
        ("-authorization", "-scraper"))]


def test_tls_from_a_secret_switches_the_probes_and_mounts_the_files() -> None:
    objects = render("secure-values.yaml")
    spec = pod_spec(objects)
    (container,) = spec["containers"]
    assert "--web.config.file=/etc/dns-staleness-exporter/web/web-config.yml" in container["args"]
    secret = one(objects, "Secret")
    assert yaml.safe_load(secret["stringData"]["web-config.yml"]) == {"tls_server_config": {
        "cert_file": "/etc/dns-staleness-exporter/tls/tls.crt",
        "key_file": "/etc/dns-staleness-exporter/tls/tls.key"}}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "dse-serving-tls"
    assert volumes["web-config"]["secret"]["secretName"] == secret["metadata"]["name"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/dns-staleness-exporter/tls"]["readOnly"] is True
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    annotations = one(objects, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9897",
        "prometheus.io/path": "/metrics", "prometheus.io/scheme": "https"}


def test_required_client_certificates_leave_the_kubelet_a_tcp_check() -> None:
    objects = render("podmonitor-values.yaml")
    (container,) = pod_spec(objects)["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["tcpSocket"] == {"port": "http-metrics"}
        assert "httpGet" not in container[probe]
    web = yaml.safe_load(one(objects, "Secret")["stringData"]["web-config.yml"])
    assert web["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"
    (endpoint,) = one(objects, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["keySecret"] == {"name": "dse-scrape-tls", "key": "tls.key"}
    assert endpoint["basicAuth"]["username"] == {"name": "dse-scrape-auth", "key": "username"}
    assert container["image"] == f"mirror.example.invalid/dns-staleness-exporter:{__version__}"
    assert pod_spec(objects)["imagePullSecrets"] == [{"name": "mirror-pull"}]


def test_basic_auth_and_kubernetes_authorization_are_refused_together() -> None:
    result = run_helm("template", "rel", str(CHART), "-f",
                      str(CHART / "ci" / "podmonitor-values.yaml"),
                      "--set", "config.kubernetes_authorization=true")
    assert result.returncode != 0
    assert "both read the Authorization header: use one" in result.stderr


def test_the_web_config_the_chart_renders_is_accepted_by_the_agent(tmp_path: Path) -> None:
    """Through the agent's own loader, with the mounted paths moved to files of the test."""
    pki = ClusterPki.generate(tmp_path / "pki", ip_sans=["127.0.0.1"])
    for name, source in (("tls.crt", pki.serving_cert), ("tls.key", pki.serving_key),
                         ("ca.crt", pki.ca_cert)):
        (pki.directory / name).write_bytes(source.read_bytes())
    for variant in ("secure-values.yaml", "podmonitor-values.yaml"):
        text = one(render(variant), "Secret")["stringData"]["web-config.yml"]
        path = tmp_path / f"{variant}.yml"
        path.write_text(text.replace("/etc/dns-staleness-exporter/tls", str(pki.directory)))
        assert load_web_config(str(path)).context is not None, variant


def _rules(objects: list[Obj]) -> list[Obj]:
    return [r for g in one(objects, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]


def _source_rules() -> list[Obj]:
    return [r for path in gen_chart.rule_files()
            for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def test_prometheus_rule_is_built_from_alerts() -> None:
    rules = _rules(render("monitoring-values.yaml"))
    source = _source_rules()
    assert [r.get("alert") or r["record"] for r in rules] == \
        [r.get("alert") or r["record"] for r in source]
    for got, want in zip(rules, source, strict=True):
        assert got["expr"] == want["expr"]
        if "alert" in want:
            # Extra labels are added; the alert's own labels win.
            assert got["labels"] == {"team": "platform", **want.get("labels", {})}
            assert got.get("annotations") == want.get("annotations")
        else:
            assert got.get("labels") == want.get("labels")


def test_each_rule_can_be_switched_off() -> None:
    alerts = [r["alert"] for r in _source_rules() if "alert" in r]
    if not alerts:
        pytest.skip("alerts/ holds no alert yet")
    off = alerts[0]
    rules = _rules(render("monitoring-values.yaml", ("--set", f"prometheusRule.rules.{off}=false")))
    kept = [r.get("alert") or r["record"] for r in rules]
    assert kept == [r.get("alert") or r["record"] for r in _source_rules() if r.get("alert") != off]


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    dashboards = [o for o in render("monitoring-values.yaml")
                  if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]]
    sources = gen_chart.dashboard_files()
    assert len(dashboards) == len(sources)
    for cm, path in zip(sorted(dashboards, key=lambda o: o["metadata"]["name"]),
                        sorted(sources, key=lambda p: p.stem.lower().replace("_", "-")),
                        strict=True):
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "DNS"}
        assert json.loads(cm["data"][path.name]) == json.loads(path.read_text())


# -- extras -------------------------------------------------------------------------------
def test_extras() -> None:
    objects = render("extras-values.yaml")
    spec = pod_spec(objects)
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux",
                                    "dns-staleness-exporter.io/sample": "true"}
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["containers"][0]["image"].startswith(
        "registry.example.invalid/dns-staleness-exporter@sha256:")
    assert "--web.listen-address=[::]:9897" in spec["containers"][0]["args"]
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert {(p["port"], p["protocol"]) for p in policy["egress"][0]["ports"]} == {
        (53, "UDP"), (53, "TCP")}
    vpa = one(objects, "VerticalPodAutoscaler")["spec"]
    assert vpa["targetRef"] == {"apiVersion": "apps/v1", "kind": "DaemonSet",
                                "name": "rel-dns-staleness-exporter"}
    assert vpa["updatePolicy"] == {"updateMode": "Off"}
    flow = one(objects, "FlowSchema")
    assert flow["apiVersion"] == "flowcontrol.apiserver.k8s.io/v1"
    assert flow["spec"]["priorityLevelConfiguration"]["name"] == \
        one(objects, "PriorityLevelConfiguration")["metadata"]["name"]
    (rule,) = flow["spec"]["rules"]
    assert rule["subjects"][0]["serviceAccount"] == {"name": "rel-dns-staleness-exporter",
                                                     "namespace": NAMESPACE}
    # The pod-level values of prometheus-node-exporter's chart.
    (container,) = spec["containers"]
    assert container["args"][-1] == "--log.format=json"
    env = {e["name"]: e for e in container["env"]}
    assert env["DNS_STALENESS_LOG_LEVEL"] == {"name": "DNS_STALENESS_LOG_LEVEL",
                                              "value": "debug"}
    assert env["DNS_STALENESS_PROBE_BUDGET_QPS"]["valueFrom"]["configMapKeyRef"]["optional"]
    assert {"name": "extra-ca", "mountPath": "/etc/extra-ca", "readOnly": True} in \
        container["volumeMounts"]
    assert {"name": "extra-ca", "configMap": {"name": "extra-ca"}} in spec["volumes"]
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"]["options"] == [{"name": "ndots", "value": "2"}]
    ds = one(objects, "DaemonSet")
    assert ds["spec"]["revisionHistoryLimit"] == 3
    assert ds["spec"]["template"]["metadata"]["annotations"][
        "cluster-autoscaler.kubernetes.io/safe-to-evict"] == "true"
    extra = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    assert extra["extra-ca"]["metadata"]["namespace"] == NAMESPACE  # templated
    assert extra["rel-notes"]["data"] == {"owner": "platform"}


def test_host_network_keeps_cluster_dns_unless_told_otherwise() -> None:
    assert pod_spec(render(None, ("--set", "hostNetwork=true")))["dnsPolicy"] == \
        "ClusterFirstWithHostNet"
    assert pod_spec(render(None, ("--set", "hostNetwork=true", "--set",
                                  "dnsPolicy=Default")))["dnsPolicy"] == "Default"
    assert "dnsPolicy" not in pod_spec(render())
