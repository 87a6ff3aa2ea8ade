"""Alerts and dashboards end to end: two agents (`run`) scraped by the rig's Prometheus, which
loads the rules of alerts/ and sends to the rig's Alertmanager, which routes to a webhook here.

The rules are rendered from alerts/generate.py with TEST_KNOBS: every `for:` shortened to
seconds and every range to a minute or less (but the client-window alert's), thresholds
unchanged. Prometheus scrapes and
evaluates every second and adds `node` and `cluster` by relabelling, as the chart's monitors do.

Two nodes, one agent each, both probing the cluster CoreDNS (TTL 5, cache 5) as `coredns`:
- rig-node-0: a standard node-local cache (success 30, denial 5); its agent watches the
  namespaces `alerting-shop` and `alerting-batch`;
- rig-node-1: a node-local cache that keeps records past their TTL (`serve_stale` and
  `serve_stale_policy prefer_positive`); its agent watches only `alerting-batch`, so the
  healthy churn in `alerting-shop` never goes through that cache.

In order: healthy churn in shop/web fires nothing; batch/web scaled to zero makes rig-node-1's cache
serve the removed IPs past their TTL, so the stale-beyond-TTL alert fires while it happens,
reaches the webhook with its labels and annotations, and resolves once the stale entry expires;
a misconfigured Service (info) and a cut API connection (watch restarts); then every dashboard
query, with its variables substituted, must parse and return data from this Prometheus."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
import yaml

from alerts.generate import KNOBS, render
from dashboards.generate import ROOT as DASHBOARDS
from dashboards.generate import panel_queries, variable_queries
from tests.integration.agent import AgentProcess, samples, total
from tests.integration.alerting import (
    DASHBOARD_CHECKS,
    TIMELINE,
    Alertmanager,
    ApiProxy,
    Prometheus,
    PrometheusError,
    Webhook,
    has_data,
    substitute,
)
from tests.integration.fleet import AGENTS, Membership
from tests.rig import (
    CoreDNS,
    KubeApiServer,
    KubeClient,
    ManagedProcess,
    Rig,
    api_path,
    free_port,
    next_loopback_address,
    wait_until,
)

pytestmark = pytest.mark.rig

ROOT = Path(__file__).resolve().parents[2]
STALE = "DNSStalenessRecordStaleBeyondTTL"
MISCONFIGURED = "DNSStalenessServiceMisconfigured"
CLUSTER = "rig"
NODES = ("rig-node-0", "rig-node-1")
SHOP, BATCH = "alerting-shop", "alerting-batch"
CLUSTER_TTL = 5
SERVE_STALE = 20
SLACK = float(KNOBS["stale_slack_seconds"].default)
TEST_KNOBS = {
    "stale_for": "2s",
    "staleness_p99_window": "1m", "staleness_p99_for": "2s",
    "propagation_window": "1m", "propagation_for": "2s",
    "layer_error_window": "30s", "layer_error_for": "2s",
    "layer_down_for": "2s",
    "watch_restarts_window": "1m", "watch_restarts_for": "2s",
    "deferred_window": "30s", "deferred_for": "2s",
    "targets_dropped_window": "1m", "targets_dropped_for": "2s",
    # Prometheus hands its targets to the scrape loop about 5 s after it starts: `up` is absent
    # until then.
    "agent_down_for": "5s", "agent_absent_for": "20s",
    "misconfiguration_for": "2s",
}
"""Short enough for a two-minute test; the thresholds themselves stay the production ones.
The client-window alert keeps its hour: promtool's alerts/tests/clients.yaml fires it, and here
the serve_stale incident would fire it beside the alert this test follows."""


def fqdn(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.cluster.local."


def serve_stale_corefile(address: str, ready_port: int, upstream: str) -> str:
    """A node-local cache that serves an expired positive answer for SERVE_STALE more seconds,
    and prefers it to a newer NXDOMAIN: a scale-to-zero stays hidden until it expires."""
    return "\n".join([
        ". {", f"    bind {address}", "    errors", f"    ready {address}:{ready_port}",
        "    cache {", "        success 9984 30", "        denial 9984 5",
        f"        serve_stale {SERVE_STALE}s", "        serve_stale_policy prefer_positive",
        "    }", f"    forward . {upstream}", "}", ""])


class Pods:
    """Pods that a kubelet would have made Ready, with made-up IPs."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.ips: dict[str, str] = {}

    def create(self, namespace: str, name: str) -> str:
        ip = f"10.244.9.{len(self.ips) + 10}"
        self.kube.create_pod(namespace, name, {"app": "web"}, hostname=name, subdomain="web")
        self.kube.set_pod_ready(namespace, name, ip)
        self.ips[f"{namespace}/{name}"] = ip
        return ip


@dataclass
class Stack:
    kube: KubeClient
    pods: Pods
    nodelocal: tuple[CoreDNS, CoreDNS]
    agents: tuple[AgentProcess, AgentProcess]
    proxy: ApiProxy
    webhook: Webhook
    prometheus: Prometheus
    started: float
    """Wall-clock time Prometheus started: the range every dashboard query is checked over."""

    def alert_state(self, labels: dict[str, str]) -> str | None:
        for alert in self.prometheus.alerts():
            if all(alert["labels"].get(k) == v for k, v in labels.items()):
                return str(alert["state"])
        return None

    def timeline(self, step: str, t0: float, start: float) -> list[str]:
        """Adds a row per alert that started firing since the step's action (`t0` on the
        monotonic clock, `start` on the wall clock); returns their names."""
        now_firing = [a["labels"] for a in self.prometheus.alerts() if a["state"] == "firing"]
        # The raw samples: one per evaluation (1 s) while the alert fires.
        now = time.time()
        fired = self.prometheus.api("query", {
            "query": f'ALERTS{{alertstate="firing"}}[{math.ceil(now - start) + 2}s]',
            "time": now})
        names = []
        for series in fired["result"]:
            first, last = float(series["values"][0][0]), float(series["values"][-1][0])
            if first < start:
                continue  # it fired in an earlier step
            labels = {k: v for k, v in series["metric"].items()
                      if k not in ("__name__", "alertstate")}
            name = labels["alertname"]
            hooked = self.webhook.first(name, "firing", t0, labels)
            done = self.webhook.first(name, "resolved", t0, labels)
            where = ", ".join(f"{k}={labels[k]}" for k in ("node", "layer", "namespace",
                                                           "service") if k in labels)
            TIMELINE.append((
                step, f"{name} ({labels.get('severity')}; {where})", f"{first - start:.1f}",
                f"{hooked.received - t0:.1f}" if hooked else "-",
                "still firing" if labels in now_firing else f"{last + 1 - start:.1f}",
                f"{done.received - t0:.1f}" if done else "-"))
            names.append(name)
        if not names:
            TIMELINE.append((step, "none fired", "-", "-", "-", "-"))
        return names


def agent_kubeconfig(kube: KubeClient, apiserver: KubeApiServer, proxy: ApiProxy,
                     work: Path) -> Path:
    """A ServiceAccount bound to the chart's RBAC; its kubeconfig points at the proxy."""
    kube.create_namespace("dse-alerting")
    kube.create_service_account("dse-alerting", "agent")
    rbac = yaml.safe_load((ROOT / "deploy" / "rbac.yaml").read_text())
    kube.grant_cluster_role("dse-alerting-agent", rbac["rules"], namespace="dse-alerting",
                            service_account="agent")
    token = kube.request_token("dse-alerting", "agent")
    path = apiserver.write_kubeconfig(work / "agent.kubeconfig", token=token, user="agent")
    config = json.loads(path.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://{apiserver.address}:{proxy.port}"
    path.write_text(json.dumps(config))
    return path


def endpoints_are(count: int, slices: list[dict[str, Any]]) -> bool:
    return sum(len(s.get("endpoints") or []) for s in slices) == count


def converged(agent: AgentProcess, timeout: float = 40.0) -> None:
    """No open window on any layer of that agent."""
    def quiet() -> bool:
        text = agent.metrics()
        return bool(text) and not [line for line in text.splitlines() if line.startswith(
            ("dns_staleness_stale_records{", "dns_staleness_missing_records{"))]
    wait_until(quiet, timeout=timeout, interval=0.25, what="the agent to converge")


@pytest.fixture(scope="module")
def stack(rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("alerting")
    started: list[ManagedProcess | AgentProcess] = []
    proxy = ApiProxy(apiserver.address, apiserver.port).start()
    webhook = Webhook().start()
    pods = Pods(kube)
    ready = False
    try:
        cluster = CoreDNS.cluster(rig_bins.coredns, work / "cluster", apiserver=apiserver,
                                  ttl=CLUSTER_TTL, cache=CLUSTER_TTL, name="alerting-cluster")
        started.append(cluster.start())
        standard = CoreDNS.nodelocal(rig_bins.coredns, work / "nodelocal-0", upstream=cluster,
                                     name="alerting-nodelocal-0")
        started.append(standard.start())
        address = next_loopback_address()
        ready_port = free_port(address)
        keeping = CoreDNS(rig_bins.coredns, work / "nodelocal-1",
                          serve_stale_corefile(address, ready_port, cluster.hostport),
                          address=address, port=free_port(address, udp=True),
                          ready_port=ready_port, name="alerting-nodelocal-1")
        started.append(keeping.start())

        for namespace, count in ((SHOP, 3), (BATCH, 2)):
            kube.create_namespace(namespace)
            kube.create_headless_service(namespace, "web", {"app": "web"})
            for index in range(count):
                pods.create(namespace, f"web-{index}")
        for namespace, count in ((SHOP, 3), (BATCH, 2)):
            kube.wait_for_endpointslice(namespace, "web", partial(endpoints_are, count))

        kubeconfig = agent_kubeconfig(kube, apiserver, proxy, work)
        # Sharded as the chart runs them: two agents and 3 owners share nothing out, so every
        # agent measures every target, and the sharding panels have their series.
        Membership(kube, SHOP).create().set(list(NODES))
        agents = []
        for node, namespaces, nodelocal in ((NODES[0], f"{SHOP},{BATCH}", standard),
                                            (NODES[1], BATCH, keeping)):
            (work / node).mkdir()
            agent = AgentProcess(work / node, kubeconfig, [
                "--namespaces", namespaces, "--layers", "node-local",
                "--static-servers", f"coredns={cluster.hostport}",
                "--node-local-address", nodelocal.hostport,
                "--probe-budget-qps", "400", "--probe-burst", "20", "--fast-interval", "0.1",
                "--sweep-interval", "5", "--node-name", node,
                "--shard-service", f"{SHOP}/{AGENTS}",
                # The profile that never lets go feeds the panel of windows without an end.
                "--client-profiles", "jvm,grpc,jvm-security-manager"])
            started.append(agent.start())
            agents.append(agent)
        for agent in agents:
            converged(agent)

        alertmanager = Alertmanager(rig_bins.alertmanager, work / "alertmanager",
                                    webhook=webhook.url)
        started.append(alertmanager.start())
        begin = time.time()
        prometheus = Prometheus(
            rig_bins.prometheus, work / "prometheus",
            targets={node: f"127.0.0.1:{agent.port}"
                     for node, agent in zip(NODES, agents, strict=True)},
            rules=render(TEST_KNOBS), alertmanager=alertmanager.address,
            job=KNOBS["job"].default, cluster=CLUSTER)
        started.append(prometheus.start())

        def scraped() -> bool:
            return len(prometheus.api("query", {"query": "up == 1"})["result"]) == 2

        wait_until(scraped, timeout=20, what="Prometheus to scrape both agents")
        ready = True
        yield Stack(kube, pods, (standard, keeping), (agents[0], agents[1]), proxy, webhook,
                    prometheus, begin)
    finally:
        codes = {proc: proc.stop() for proc in reversed(started)}
        webhook.stop()
        proxy.close()
        for namespace in (SHOP, BATCH):
            for pod in kube.list(api_path("v1", "pods", namespace)):
                kube.delete_pod(namespace, pod["metadata"]["name"], grace_seconds=0)
    if ready:
        assert [codes[a] for a in started if isinstance(a, AgentProcess)] == [0, 0], (
            "an agent did not exit cleanly")


def test_healthy_churn_fires_no_alert(stack: Stack) -> None:
    t0 = time.monotonic()
    since = len(stack.agents[0].windows())
    # Scale down and up at once: stale and missing windows on rig-node-0, all within TTL + 5 s.
    stack.kube.delete_pod(SHOP, "web-2", grace_seconds=0)
    stack.pods.create(SHOP, "web-3")
    converged(stack.agents[0])
    # Room for every alert to react: the p99 over the closed windows plus `for: 2s`.
    time.sleep(5)
    windows = stack.agents[0].windows()[since:]
    stale = [w.seconds for w in windows if w.kind == "stale" and w.reference == "watch"]
    assert stale, windows
    assert [w for w in windows if w.kind == "propagation"], windows
    assert max(stale) <= CLUSTER_TTL + SLACK + 1.0, windows
    assert stack.timeline(f"healthy: {SHOP}/web 3 -> 2 -> 3 pods (rig-node-0)", t0,
                          stack.started) == []
    assert stack.webhook.since(0) == []


def fresh_ttl(server: CoreDNS, name: str) -> int | None:
    """The TTL the cache serves for `name` (0 while it serves an expired entry)."""
    query = dns.message.make_query(name, "A")
    answer = dns.query.udp(query, server.address, port=server.port, timeout=1)
    return answer.answer[0].ttl if answer.answer else None


def test_scale_to_zero_behind_serve_stale_fires_during_the_incident(stack: Stack) -> None:
    keeping, agent = stack.nodelocal[1], stack.agents[1]
    name = fqdn("web", BATCH)
    # Act while rig-node-1's cache holds a fresh entry: it then keeps the removed IPs for at
    # least SERVE_STALE more seconds, well past TTL + slack + `for:`.
    wait_until(lambda: (fresh_ttl(keeping, name) or 0) >= 2, timeout=SERVE_STALE + 15,
               interval=0.05, what="a fresh entry in rig-node-1's cache")
    since = len(agent.windows())
    t0, start = time.monotonic(), time.time()
    removed = {stack.pods.ips[f"{BATCH}/web-0"], stack.pods.ips[f"{BATCH}/web-1"]}
    for pod in ("web-0", "web-1"):
        stack.kube.delete_pod(BATCH, pod, grace_seconds=0)
    labels = {"alertname": STALE, "node": NODES[1], "layer": "node-local",
              "namespace": BATCH, "service": "web"}

    wait_until(lambda: stack.alert_state(labels) == "firing", timeout=40, interval=0.1,
               what=f"{STALE} to fire")
    fired = time.monotonic() - t0
    # It fires during the incident: the record is still served, long after its TTL.
    served = dns.query.udp(dns.message.make_query(name, "A"), keeping.address,
                           port=keeping.port, timeout=1)
    # (A refresh between the two deletions may have cached the answer with one pod left.)
    assert set() < {r.to_text() for rr in served.answer for r in rr} <= removed, served
    assert total(samples(agent.metrics()), "dns_staleness_stale_records", layer="node-local",
                 server=keeping.hostport, namespace=BATCH, service="web") > 0
    assert fired > CLUSTER_TTL + SLACK

    note = wait_until(lambda: stack.webhook.first(STALE, "firing", t0, labels), timeout=15,
                      what="the webhook to get the alert")
    assert note.labels == {**labels, "severity": "critical", "cluster": CLUSTER}
    assert note.annotations["runbook_url"] == (
        f"{KNOBS['runbook_url_base'].default}#{STALE.lower()}")
    assert note.annotations["summary"] == (
        f"node-local on rig-node-1 serves a removed record of {BATCH}/web past its TTL.")
    assert re.fullmatch(r"The node-local layer on node rig-node-1 has served a record that left "
                        rf"{BATCH}/web [\d.]+s ago, longer than the TTL it serves plus 5s\. .+",
                        note.annotations["description"]), note.annotations

    wait_until(lambda: stack.alert_state(labels) is None, timeout=SERVE_STALE + 20,
               interval=0.1, what=f"{STALE} to resolve")
    resolved = time.monotonic() - t0
    # Resolved because the stale entry expired: the cache now says the Service has no pods.
    gone = dns.query.udp(dns.message.make_query(name, "A"), keeping.address,
                         port=keeping.port, timeout=1)
    assert gone.rcode() == dns.rcode.NXDOMAIN, gone
    # Every name of the Service (its A record, the pods' names, the SRV record) had its own
    # cache entry; the alert resolves with the last of them.
    closed = [w for w in agent.windows()[since:] if (w.kind, w.layer, w.reference) == (
        "stale", "node-local", "watch") and w.name.endswith(f".{BATCH}.svc.cluster.local.")]
    assert max(w.seconds for w in closed if w.name == name) >= SERVE_STALE, closed
    closed_at = max(w.seconds for w in closed)
    assert resolved >= closed_at
    wait_until(lambda: stack.webhook.first(STALE, "resolved", t0, labels), timeout=15,
               what="the webhook to get the resolution")
    # Now that the window closed, its sample puts the layer's p99 over TTL + 15 s as well.
    p99 = {"alertname": "DNSStalenessWindowP99OverTTL", "layer": "node-local"}
    wait_until(lambda: stack.webhook.first(p99["alertname"], "firing", t0, p99), timeout=15,
               what="the p99 alert after the window closed")

    names = stack.timeline(f"incident: {BATCH}/web 2 -> 0 pods, rig-node-1's serve_stale "
                           f"{SERVE_STALE}s entries expired by {closed_at:.1f}", t0, start)
    assert set(names) == {STALE, p99["alertname"]}, names
    # rig-node-0's standard cache dropped the same records within TTL + 5 s: no alert there.
    assert stack.webhook.first(STALE, "firing", t0, {"node": NODES[0]}) is None


def test_misconfiguration_is_info_and_cut_watches_restart(stack: Stack) -> None:
    t0, start = time.monotonic(), time.time()
    # An unnamed port: the Service has no SRV records any more.
    stack.kube.patch(api_path("v1", "services", SHOP, "web"),
                     {"spec": {"ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}})
    labels = {"namespace": SHOP, "service": "web", "reason": "no_named_ports"}
    note = wait_until(lambda: stack.webhook.first(MISCONFIGURED, "firing", t0, labels),
                      timeout=20, what="the misconfiguration to reach the webhook")
    assert note.labels["severity"] == "info"

    stack.proxy.reset()

    def restarted() -> bool:
        return all(re.search(r'^dns_staleness_watch_restarts_total\{reason="error"\} [1-9]',
                             agent.metrics(), re.M) for agent in stack.agents)

    wait_until(restarted, timeout=20, what="both agents to restart their watches")
    for agent in stack.agents:
        assert agent.get("/readyz")[0] == 200
    time.sleep(3)  # Prometheus scrapes the restarts; rules evaluate them
    names = stack.timeline(f"misconfigured {SHOP}/web, then the API connection cut", t0, start)
    assert MISCONFIGURED in names


def test_a_relist_keeps_the_other_namespaces(stack: Stack) -> None:
    text = stack.agents[0].metrics()
    assert "dns_staleness_targets 2.0" in text
    assert (f'dns_staleness_misconfigurations{{namespace="{SHOP}",reason="no_named_ports",'
            'service="web"}') in text


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    """Grafana cannot run here: each panel's PromQL, variables substituted as Grafana would
    (All is `.*`, `$__rate_interval` is 4 scrape intervals), must parse and return data over
    the whole test; each variable's label_values() must list values."""
    end = time.time()
    common = {"cluster": CLUSTER, "node": ".*", "layer": ".*", "reference": "watch",
              "__rate_interval": "4s"}
    cases = {"dns-staleness-overview.json": {**common, "namespace": ".*"},
             "dns-staleness-service.json": {**common, "namespace": SHOP, "service": "web"}}
    failures = []
    for file, variables in cases.items():
        data = json.loads((DASHBOARDS / file).read_text())
        queries = panel_queries(data)
        for title, expr in queries:
            promql = substitute(expr, variables)
            try:
                if not has_data(stack.prometheus.query_range(promql, stack.started, end)):
                    failures.append(f"{file} / {title}: no data: {promql}")
            except PrometheusError as exc:
                failures.append(f"{file} / {title}: {exc}")
        labelled = variable_queries(data)
        for var, query in labelled.items():
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
            assert match, query
            selector, label = substitute(match[1], variables), match[2]
            series = stack.prometheus.api("series", {"match[]": selector,
                                                     "start": stack.started, "end": end})
            if not {s[label] for s in series if label in s}:
                failures.append(f"{file} / ${var}: no values for {query}")
        DASHBOARD_CHECKS.append((file, len(queries), len(labelled)))
    assert not failures, "\n".join(failures)
