"""The chart's monitors and its rules, through the real Prometheus: the job label that the
ServiceMonitor gives the agent's target is the job that the PrometheusRule selects.

No prometheus-operator runs here, so the test writes the scrape configuration the operator
generates for the rendered ServiceMonitor (keep the Service's labels and port, the job from
`jobLabel` or else the Service name), and loads the rendered PrometheusRule's groups as the
rule file. The chart's Service is created on the API server with a slice that points at a
running agent. The rig's Prometheus (Debian's build) has no Kubernetes discovery: an HTTP
discovery endpoint of the test's own reads the Services and EndpointSlices from the real API
server and hands Prometheus the targets with the meta labels its Kubernetes discovery sets for
`role: endpointslice`; the relabelling that makes the job is Prometheus's own."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.agent import AgentProcess
from tests.integration.alerting import Prometheus
from tests.rig import KubeApiServer, KubeClient, Rig, api_path, wait_until

pytestmark = pytest.mark.rig

CHART = Path(__file__).resolve().parents[2] / "charts" / "dns-staleness-exporter"
RELEASE = "dse"
"""The release name that docs/deployment.md installs with."""
Obj = dict[str, Any]
POD_IP = "10.250.0.7"


def render(rig_bins: Rig, namespace: str, args: list[str]) -> list[Obj]:
    out = subprocess.run([str(rig_bins.helm), "template", RELEASE, str(CHART), "--namespace",
                          namespace, "--set", "serviceMonitor.enabled=true", "--set",
                          "prometheusRule.enabled=true", *args],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def sanitized(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def operator_scrape_config(monitor: Obj, discovery: str) -> Obj:
    """What prometheus-operator generates for a ServiceMonitor's first endpoint, for
    EndpointSlice discovery (the parts that decide the target and its job)."""
    spec = monitor["spec"]
    (endpoint,) = spec["endpoints"]
    relabel: list[Obj] = [
        {"source_labels": [f"__meta_kubernetes_service_label_{sanitized(k)}",
                           f"__meta_kubernetes_service_labelpresent_{sanitized(k)}"],
         "regex": f"({re.escape(v)});true", "action": "keep"}
        for k, v in spec["selector"]["matchLabels"].items()]
    relabel.append({"source_labels": ["__meta_kubernetes_endpointslice_port_name"],
                    "regex": endpoint["port"], "action": "keep"})
    relabel.append({"source_labels": ["__meta_kubernetes_service_name"],
                    "target_label": "job"})
    if spec.get("jobLabel"):
        relabel.append({"source_labels": [
            f"__meta_kubernetes_service_label_{sanitized(spec['jobLabel'])}"],
            "regex": "(.+)", "target_label": "job", "replacement": "${1}"})
    return {"job_name": f"serviceMonitor/{monitor['metadata']['namespace']}/"
                        f"{monitor['metadata']['name']}/0",
            "metrics_path": endpoint["path"], "scheme": endpoint["scheme"],
            "http_sd_configs": [{"url": discovery, "refresh_interval": "1s"}],
            "relabel_configs": relabel}


class EndpointSliceDiscovery:
    """Targets of every ready endpoint and port of the EndpointSlices in `namespace`, with the
    meta labels of Prometheus's Kubernetes discovery (`role: endpointslice`), read from the
    API server on every request."""

    def __init__(self, kube: KubeClient, namespace: str) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                body = json.dumps(outer.targets()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.kube, self.namespace = kube, namespace
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def targets(self) -> list[Obj]:
        out = []
        for one in self.kube.list(api_path("discovery.k8s.io/v1", "endpointslices",
                                           self.namespace)):
            name = one["metadata"]["labels"].get("kubernetes.io/service-name")
            service = self.kube.get_or_none(api_path("v1", "services", self.namespace, name))
            if service is None:
                continue
            labels = {"__meta_kubernetes_namespace": self.namespace,
                      "__meta_kubernetes_service_name": name,
                      "__meta_kubernetes_endpointslice_name": one["metadata"]["name"]}
            for key, value in (service["metadata"].get("labels") or {}).items():
                labels[f"__meta_kubernetes_service_label_{sanitized(key)}"] = value
                labels[f"__meta_kubernetes_service_labelpresent_{sanitized(key)}"] = "true"
            for port in one.get("ports") or []:
                for endpoint in one.get("endpoints") or []:
                    if (endpoint.get("conditions") or {}).get("ready") is False:
                        continue
                    out += [{"targets": [f"{address}:{port['port']}"], "labels": {
                        **labels, "__meta_kubernetes_endpointslice_port_name": port["name"]}}
                        for address in endpoint["addresses"]]
        return out

    def stop(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize("job_label", ["default", "empty"])
def test_the_rules_select_the_job_the_service_monitor_gives(
        job_label: str, rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient,
        namespace: str, tmp_path: Path) -> None:
    """With the chart's default jobLabel, `up{job=...}` of the rules finds the agent, so
    DNSStalenessAgentAbsent stays quiet. With jobLabel empty, the job is the Service's name,
    `dse-dns-staleness-exporter`, and the rule's expression fires: the defect of old."""
    args = ["--set", "serviceMonitor.jobLabel="] if job_label == "empty" else []
    objects = render(rig_bins, namespace, args)
    (service,) = [o for o in objects if o["kind"] == "Service"]
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    kube.create(api_path("v1", "services", namespace), service)

    agent = AgentProcess(tmp_path, apiserver.kubeconfig_path, [
        "--namespaces", namespace, "--layers", "", "--static-servers",
        "coredns=127.0.0.1:9"]).start()  # only the scrape matters here: a dead DNS port
    try:
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == "http-metrics"]
        kube.create(api_path("discovery.k8s.io/v1", "endpointslices", namespace), {
            "metadata": {"name": f"{service['metadata']['name']}-agent", "labels": {
                "kubernetes.io/service-name": service["metadata"]["name"]}},
            "addressType": "IPv4",
            "ports": [{"name": port["name"], "port": agent.port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [POD_IP], "conditions": {"ready": True}}]})
        prometheus = Prometheus(rig_bins.prometheus, tmp_path / "prometheus", targets={},
                                rules=rule["spec"], alertmanager="127.0.0.1:9",
                                job="unused", cluster="rig")
        discovery = EndpointSliceDiscovery(kube, namespace)
        scrape = operator_scrape_config(monitor, discovery.url)
        # No pod network here: the pod IP of the slice (the API server refuses loopback
        # there) leads to the agent on loopback.
        scrape["relabel_configs"].append({
            "source_labels": ["__address__"], "regex": re.escape(POD_IP) + r":(\d+)",
            "target_label": "__address__", "replacement": "127.0.0.1:${1}"})
        prometheus.config["scrape_configs"] = [scrape]
        prometheus.start()
        try:
            jobs = wait_until(lambda: [r["metric"]["job"] for r in prometheus.api(
                "query", {"query": "up == 1"})["result"]] or None, timeout=30,
                what="Prometheus to scrape the agent through service discovery")
            (absent,) = [r for g in rule["spec"]["groups"] for r in g["rules"]
                         if r.get("alert") == "DNSStalenessAgentAbsent"]
            time.sleep(1.0)
            fires = prometheus.api("query", {"query": absent["expr"]})["result"]
        finally:
            prometheus.stop()
            discovery.stop()
    finally:
        agent.stop()
    if job_label == "default":
        assert jobs == ["dns-staleness-exporter"]
        assert fires == [], "DNSStalenessAgentAbsent would fire with the agent scraped"
    else:
        assert jobs == [f"{RELEASE}-dns-staleness-exporter"]
        assert fires, "the rules should miss a job named after the Service"
