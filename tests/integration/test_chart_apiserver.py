"""The chart against the real kube-apiserver of the rig.

- Every object that `helm template` renders, for the default values and every ci/ variant,
  passes a server-side dry run with strict field validation: the API server's own OpenAPI
  schemas, and the CRD schemas of prometheus-operator and VPA (vendored in tests/data/crds).
- In a namespace that enforces Pod Security "restricted", the DaemonSet and a Pod made from its
  template are admitted; the template of deliberately broken values is rejected.
- The agent runs as the chart's ServiceAccount, with a token from the TokenRequest API, on the
  config file the chart renders: it syncs, probes and serves metrics, and everything outside
  its grants answers 403.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.agent import AgentProcess
from tests.rig import (
    ClusterDNSFactory,
    ClusterPki,
    KubeApiError,
    KubeApiServer,
    KubeClient,
    Rig,
    api_path,
    wait_until,
)

pytestmark = pytest.mark.rig

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dns-staleness-exporter"
CRDS = ROOT / "tests" / "data" / "crds"
VARIANTS = [None, *sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))]
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest",
              "pod-security.kubernetes.io/warn": "restricted"}
Obj = dict[str, Any]

RESULTS: list[tuple[str, str]] = []
"""(check, result) lines, printed at the end of the module for the record."""


# -- helpers ------------------------------------------------------------------------------
def render(rig_bins: Rig, namespace: str, release: str, variant: str | None = None,
           args: Sequence[str] = ()) -> list[Obj]:
    cmd = [str(rig_bins.helm), "template", release, str(CHART), "--namespace", namespace, *args]
    if variant:
        cmd += ["-f", str(CHART / "ci" / variant)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


_resources: dict[str, dict[str, tuple[str, bool]]] = {}


def collection(kube: KubeClient, obj: Obj) -> str:
    """The API path to POST `obj` to, from the server's discovery (nothing hard-coded)."""
    gv = obj["apiVersion"]
    if gv not in _resources:
        listing = kube.get("/api/v1" if gv == "v1" else f"/apis/{gv}")
        _resources[gv] = {r["kind"]: (r["name"], r["namespaced"])
                          for r in listing["resources"] if "/" not in r["name"]}
    name, namespaced = _resources[gv][obj["kind"]]
    return api_path(gv, name, obj["metadata"]["namespace"] if namespaced else None)


def post(kube: KubeClient, obj: Obj, *, dry_run: bool = False) -> tuple[int, Obj, list[str]]:
    """POST with strict field validation; (status, body, Warning headers), errors included."""
    query = "?fieldValidation=Strict" + ("&dryRun=All" if dry_run else "")
    request = urllib.request.Request(
        kube.server + collection(kube, obj) + query, data=json.dumps(obj).encode(),
        method="POST", headers={"Authorization": f"Bearer {kube.token}",
                                "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=kube.ssl_context))
    try:
        with opener.open(request, timeout=15) as resp:
            return resp.status, json.loads(resp.read()), resp.headers.get_all("Warning") or []
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read()), err.headers.get_all("Warning") or []


def create(kube: KubeClient, obj: Obj, created: list[str]) -> Obj:
    status, body, _ = post(kube, obj)
    assert status == 201, body
    created.append(collection(kube, obj) + "/" + obj["metadata"]["name"])
    return body


def of_kind(objects: list[Obj], *kinds: str) -> list[Obj]:
    return [o for o in objects if o["kind"] in kinds]


def pod_from(daemonset: Obj, name: str) -> Obj:
    """A Pod with the DaemonSet's pod template, as the DaemonSet controller would make it."""
    template = daemonset["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": daemonset["metadata"]["namespace"]},
            "spec": template["spec"]}


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crds(kube: KubeClient) -> None:
    """prometheus-operator's and VPA's CRDs, from their published YAML (tests/data/crds)."""
    path = api_path("apiextensions.k8s.io/v1", "customresourcedefinitions")
    names = []
    for file in sorted(CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(file.read_text()):
            if crd and kube.get_or_none(f"{path}/{crd['metadata']['name']}") is None:
                kube.create(path, crd)
            names.append(crd["metadata"]["name"])
    for name in names:
        kube.wait_for(f"{path}/{name}", lambda c: any(
            cond["type"] == "Established" and cond["status"] == "True"
            for cond in (c.get("status") or {}).get("conditions") or []),
            what=f"CRD {name} established")


@pytest.fixture(scope="module")
def restricted_ns(kube: KubeClient) -> Iterator[str]:
    """A namespace enforcing Pod Security "restricted", and the namespaces the namespaced
    variant grants; all removed afterwards, pods first (no kubelet finishes them)."""
    name = f"dse-chart-{uuid.uuid4().hex[:6]}"
    kube.create(api_path("v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": name, "labels": RESTRICTED}})
    others = ["team-a", "team-b"]
    for ns in others:
        if kube.get_or_none(api_path("v1", "namespaces", name=ns)) is None:
            kube.create_namespace(ns, wait_for_default_sa=False)
    yield name
    for ns in [name, *others]:
        for pod in kube.list(api_path("v1", "pods", ns)):
            kube.delete_pod(ns, pod["metadata"]["name"], grace_seconds=0)
        kube.delete(api_path("v1", "namespaces", name=ns), missing_ok=True)
    print("\nchecks against the real kube-apiserver:")
    for check, result in RESULTS:
        print(f"  {check}: {result}")


@pytest.fixture
def created(kube: KubeClient) -> Iterator[list[str]]:
    """Paths of objects a test created for real; deleted when it ends."""
    paths: list[str] = []
    yield paths
    for path in reversed(paths):
        kube.delete(path, grace_seconds=0 if "/pods/" in path else None, missing_ok=True)


# -- schema: server-side dry run ----------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_passes_strict_server_side_validation(
        rig_bins: Rig, kube: KubeClient, crds: None, restricted_ns: str,
        created: list[str], variant: str | None) -> None:
    objects = render(rig_bins, restricted_ns, f"dry-{uuid.uuid4().hex[:4]}", variant)
    for obj in objects:
        status, body, warnings = post(kube, obj, dry_run=True)
        assert status == 201, (obj["kind"], body.get("message"))
        assert not warnings, (obj["kind"], warnings)
    # The Pod the DaemonSet would make, under "restricted": the variant's volumes, probes and
    # DNS settings included. Its ServiceAccount must exist for admission.
    (sa,) = of_kind(objects, "ServiceAccount")
    create(kube, sa, created)
    (ds,) = of_kind(objects, "DaemonSet")
    status, body, warnings = post(kube, pod_from(ds, f"{ds['metadata']['name']}-pod"),
                                  dry_run=True)
    assert status == 201 and not warnings, (body.get("message"), warnings)
    RESULTS.append((f"dry run, fieldValidation=Strict, {variant or 'default values'}",
                    f"{len(objects)} objects and the DaemonSet's Pod accepted, no warnings "
                    f"({', '.join(sorted({o['kind'] for o in objects}))})"))


# -- Pod Security "restricted" ------------------------------------------------------------
def test_daemonset_and_its_pod_are_admitted_under_restricted(
        rig_bins: Rig, kube: KubeClient, restricted_ns: str, created: list[str]) -> None:
    objects = render(rig_bins, restricted_ns, "pss")
    (sa,) = of_kind(objects, "ServiceAccount")
    create(kube, sa, created)
    (ds,) = of_kind(objects, "DaemonSet")
    status, body, warnings = post(kube, ds)
    assert status == 201, body
    created.append(collection(kube, ds) + "/" + ds["metadata"]["name"])
    assert not warnings, warnings  # PodSecurity warns on a template that would be denied
    pod = create(kube, pod_from(ds, "pss-pod"), created)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    RESULTS.append(("DaemonSet in a namespace enforcing restricted", "created, no warning"))
    RESULTS.append(("Pod from the DaemonSet's template", "admitted (201)"))


BROKEN = [
    (["--set", "hostNetwork=true"], "hostNetwork=true"),
    (["--set", "securityContext.allowPrivilegeEscalation=true"], "allowPrivilegeEscalation"),
    (["--set", "securityContext.capabilities=null"], "unrestricted capabilities"),
]


@pytest.mark.parametrize(("args", "reason"), BROKEN, ids=[r for _, r in BROKEN])
def test_broken_values_are_rejected_by_pod_security(
        rig_bins: Rig, kube: KubeClient, restricted_ns: str, created: list[str],
        args: list[str], reason: str) -> None:
    objects = render(rig_bins, restricted_ns, f"broken-{uuid.uuid4().hex[:4]}", args=args)
    (sa,) = of_kind(objects, "ServiceAccount")
    create(kube, sa, created)
    (ds,) = of_kind(objects, "DaemonSet")
    status, _, warnings = post(kube, ds, dry_run=True)
    assert status == 201  # workloads are warned; the Pods they would make are refused
    assert any(reason in w and "PodSecurity" in w for w in warnings), warnings
    status, body, _ = post(kube, pod_from(ds, "broken-pod"))
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    assert 'violates PodSecurity "restricted:latest"' in body["message"]
    assert reason in body["message"]
    RESULTS.append((f"Pod from the template with {' '.join(args)}",
                    f"rejected 403: {body['message']}"))


# -- helm install, upgrade, uninstall ------------------------------------------------------
def test_helm_install_upgrade_and_uninstall(rig_bins: Rig, apiserver: KubeApiServer,
                                           kube: KubeClient, restricted_ns: str,
                                           tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "KUBECONFIG": str(apiserver.kubeconfig_path)}

    def helm(*args: str) -> str:
        out = subprocess.run([str(rig_bins.helm), *args, "--namespace", restricted_ns],
                             capture_output=True, text=True, timeout=120, env=env, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "PodSecurity" not in out.stderr, out.stderr
        return out.stdout

    ds_path = api_path("apps/v1", "daemonsets", restricted_ns, "dse-dns-staleness-exporter")
    notes = helm("install", "dse", str(CHART), "--set", "rbac.checkCommand=true")
    assert "rollout status daemonset/dse-dns-staleness-exporter" in notes
    assert "dns-staleness-exporter check NAMESPACE/SERVICE" in notes
    before = kube.get(ds_path)["spec"]["template"]["metadata"]["annotations"]
    helm("upgrade", "dse", str(CHART), "--reuse-values", "--set", "config.max_targets=5")
    after = kube.get(ds_path)["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/config"] != after["checksum/config"]
    cm = kube.get(api_path("v1", "configmaps", restricted_ns, "dse-dns-staleness-exporter"))
    assert "max_targets: 5" in cm["data"]["config.yaml"]
    helm("uninstall", "dse", "--wait", "--timeout", "60s")
    assert kube.get_or_none(ds_path) is None
    rbac = "rbac.authorization.k8s.io/v1"
    assert kube.get_or_none(api_path(rbac, "clusterroles", name="dse-dns-staleness-exporter")) \
        is None
    RESULTS.append(("helm install, upgrade (config change), uninstall in the restricted "
                    "namespace", "succeeded, no Pod Security warning, the pods' config "
                    "checksum changed, every object removed"))


# -- the agent as the chart's ServiceAccount ----------------------------------------------
AGENT_CASES = {
    "cluster-wide": (None, []),
    # Its scrapes carry no token: Kubernetes authorization off (test_secure_values_... has it).
    "namespaced": ("namespaced-values.yaml", ["--set-json", 'config.namespaces=["team-a"]',
                                              "--set", "config.kubernetes_authorization=false"]),
}


@pytest.mark.parametrize("case", list(AGENT_CASES))
def test_agent_runs_with_only_the_charts_grants(
        case: str, rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient,
        restricted_ns: str, coredns_cluster: ClusterDNSFactory, created: list[str],
        tmp_path: Path) -> None:
    dns = coredns_cluster()
    variant, extra = AGENT_CASES[case]
    # The rig's only DNS server is on loopback: a static layer instead of discovered ones.
    # The label selector keeps other tests' headless Services out of this agent's count.
    selector = f"dse-chart-test={case}"
    objects = render(rig_bins, restricted_ns, f"agent-{case}", variant, [
        *extra, "--set-json", "config.layers=[]", "--set", f"config.label_selector={selector}",
        "--set-json", f'config.static_servers=["coredns={dns.hostport}"]',
        "--set", "config.sweep_interval=1", "--set", "config.watch_start_jitter=0"])
    for obj in of_kind(objects, "ServiceAccount", "ConfigMap", "ClusterRole",
                       "ClusterRoleBinding", "Role", "RoleBinding"):
        create(kube, obj, created)
    (ds,) = of_kind(objects, "DaemonSet")
    sa = ds["spec"]["template"]["spec"]["serviceAccountName"]
    token = kube.request_token(restricted_ns, sa)
    as_agent = kube.with_token(token)

    # A headless Service in a namespace the agent may watch.
    ns = "team-a"
    svc = f"web-{case}"
    kube.create_headless_service(ns, svc, {"app": svc})
    created.append(api_path("v1", "services", ns, svc))
    key, value = selector.split("=")
    kube.patch(created[-1], {"metadata": {"labels": {key: value}}})
    kube.create_pod(ns, f"{svc}-0", {"app": svc}, hostname=f"{svc}-0", subdomain=svc)
    created.append(api_path("v1", "pods", ns, f"{svc}-0"))
    kube.set_pod_ready(ns, f"{svc}-0", "10.244.9.10")
    kube.wait_for_endpointslice(ns, svc)

    # The pod's command line, with the ConfigMap's file where the volume would mount it.
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    (cm,) = [o for o in of_kind(objects, "ConfigMap")
             if o["metadata"]["name"] == ds["metadata"]["name"]]
    config = tmp_path / "config.yaml"
    config.write_text(cm["data"]["config.yaml"])
    args = [a.replace("/etc/dns-staleness-exporter/config.yaml", str(config))
            for a in container["args"]
            if a != "run" and not a.startswith("--web.listen-address=")]
    assert [a.split("=")[0] for a in args] == ["--config"]
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "agent.kubeconfig", token=token, user=sa)
    # The downward API's spec.nodeName, as the flag (the pod sets it through the environment).
    agent = AgentProcess(tmp_path, kubeconfig, [*args, "--node-name", "rig-node-0"])
    started = time.monotonic()
    agent.start(timeout=30)
    ready_after = time.monotonic() - started
    try:
        def serving() -> str | None:
            text = agent.metrics()
            probes = [line for line in text.splitlines() if line.startswith(
                'dns_staleness_probes_total{layer="coredns"')]
            return text if "dns_staleness_targets 1.0" in text and probes else None

        try:
            wait_until(serving, timeout=20, what="the agent to monitor the Service and probe")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nmetrics:\n{agent.metrics()}\nlog:\n{agent.tail()}") \
                from None
        assert agent.proc is not None
        rss = Path(f"/proc/{agent.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]
        assert as_agent.list(api_path("discovery.k8s.io/v1", "endpointslices", ns)) is not None

        denied: dict[str, Callable[[], object]] = {
            "create services": lambda: as_agent.create(
                api_path("v1", "services", ns),
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                 "spec": {"clusterIP": "None"}}),
            "delete endpointslices": lambda: as_agent.delete(
                api_path("discovery.k8s.io/v1", "endpointslices", ns, "x")),
            "list pods": lambda: as_agent.list(api_path("v1", "pods")),
            "list secrets": lambda: as_agent.list(api_path("v1", "secrets", ns)),
        }
        if case == "namespaced":
            denied["list services, all namespaces"] = lambda: as_agent.list(
                api_path("v1", "services"))
            denied["list services in team-b"] = lambda: as_agent.list(
                api_path("v1", "services", "team-b"))
        for what, call in denied.items():
            with pytest.raises(KubeApiError) as err:
                call()
            assert err.value.status == 403, (what, err.value)
    finally:
        stopping = time.monotonic()
        code = agent.stop()
        stopped_in = time.monotonic() - stopping
    assert code == 0, agent.tail()
    # SIGTERM to exit well inside the pod's grace period.
    assert stopped_in < ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    RESULTS.append((f"agent as the chart's ServiceAccount ({case}, TokenRequest token)",
                    f"ready in {ready_after:.1f} s, monitors 1 Service, probes, serves "
                    f"/metrics, RSS {int(rss) / 1024:.0f} MiB, exit 0 {stopped_in:.1f} s "
                    "after SIGTERM"))
    RESULTS.append((f"outside its grants ({case})", "403 for " + ", ".join(denied)))


def test_secure_values_let_in_only_the_bound_scraper(
        rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient, restricted_ns: str,
        coredns_cluster: ClusterDNSFactory, created: list[str], tmp_path: Path) -> None:
    """ci/secure-values.yaml for real: the agent serves TLS from the web config Secret the
    chart renders, and checks scrapers with no grant but the chart's own."""
    dns = coredns_cluster()
    scraper = {"kind": "ServiceAccount", "name": "scraper", "namespace": restricted_ns}
    objects = render(rig_bins, restricted_ns, "secure", "secure-values.yaml", [
        "--set-json", "config.layers=[]", "--set", "config.label_selector=dse-chart-test=secure",
        "--set-json", f'config.static_servers=["coredns={dns.hostport}"]',
        "--set", "config.watch_start_jitter=0", "--set-json",
        f"rbac.scraperSubjects=[{json.dumps(scraper)}]"])
    for obj in of_kind(objects, "ServiceAccount", "ConfigMap", "Secret", "ClusterRole",
                       "ClusterRoleBinding"):
        create(kube, obj, created)
    tokens = {}
    for account in ("scraper", "stranger"):
        created.append(api_path("v1", "serviceaccounts", restricted_ns, account))
        kube.create_service_account(restricted_ns, account)
        tokens[account] = kube.request_token(restricted_ns, account)
    (ds,) = of_kind(objects, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    agent_token = kube.request_token(restricted_ns, spec["serviceAccountName"])

    # The volumes where the pod would mount them: the ConfigMap, the rendered web config
    # Secret, and a serving pair standing in for cert-manager's Secret.
    pki = ClusterPki.generate(tmp_path / "tls", ip_sans=["127.0.0.1"])
    (pki.directory / "tls.crt").write_bytes(pki.serving_cert.read_bytes())
    (pki.directory / "tls.key").write_bytes(pki.serving_key.read_bytes())
    (secret,) = of_kind(objects, "Secret")
    web = tmp_path / "web-config.yml"
    web.write_text(secret["stringData"]["web-config.yml"].replace(
        "/etc/dns-staleness-exporter/tls", str(pki.directory)))
    (cm,) = of_kind(objects, "ConfigMap")
    config = tmp_path / "config.yaml"
    config.write_text(cm["data"]["config.yaml"])
    (container,) = spec["containers"]
    args = [a.replace("/etc/dns-staleness-exporter/config.yaml", str(config))
             .replace("/etc/dns-staleness-exporter/web/web-config.yml", str(web))
            for a in container["args"]
            if a != "run" and not a.startswith("--web.listen-address=")]
    assert [a.split("=")[0] for a in args] == ["--config", "--web.config.file"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "agent.kubeconfig", token=agent_token,
                                            user=spec["serviceAccountName"])
    tls = ssl.create_default_context(cafile=str(pki.ca_cert))
    agent = AgentProcess(tmp_path, kubeconfig, [*args, "--node-name", "rig-node-0"], tls=tls)
    agent.start(timeout=30)

    def fetch(path: str, token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(
                    agent.base + path, headers=headers), timeout=10, context=tls) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return err.code

    try:
        seen = {("/metrics", "bound scraper"): fetch("/metrics", tokens["scraper"]),
                ("/status", "bound scraper"): fetch("/status", tokens["scraper"]),
                ("/metrics", "other ServiceAccount"): fetch("/metrics", tokens["stranger"]),
                ("/metrics", "no token"): fetch("/metrics", None),
                ("/readyz", "no token"): fetch("/readyz", None)}
    finally:
        code = agent.stop()
    assert seen == {("/metrics", "bound scraper"): 200, ("/status", "bound scraper"): 200,
                    ("/metrics", "other ServiceAccount"): 403, ("/metrics", "no token"): 401,
                    ("/readyz", "no token"): 200}, agent.tail()
    assert code == 0, agent.tail()
    RESULTS.append(("secure-values.yaml: agent over TLS with the chart's grants",
                    ", ".join(f"{path} {who} {status}" for (path, who), status in
                              seen.items())))


def test_the_runbooks_check_works_with_the_default_rbac(
        rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient, restricted_ns: str,
        coredns_cluster: ClusterDNSFactory, created: list[str], tmp_path: Path) -> None:
    """docs/runbooks.md runs `check` in the agent's pod as its ServiceAccount, with the default
    grants (rbac.checkCommand off), one server alone: a diagnosis, with one warning for the
    pods it may not read."""
    dns = coredns_cluster()
    objects = render(rig_bins, restricted_ns, "runbook")
    for obj in of_kind(objects, "ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
        create(kube, obj, created)
    (ds,) = of_kind(objects, "DaemonSet")
    sa = ds["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "agent.kubeconfig",
                                            token=kube.request_token(restricted_ns, sa), user=sa)
    ns, svc = "team-a", "runbook-web"
    kube.create_headless_service(ns, svc, {"app": svc})
    created.append(api_path("v1", "services", ns, svc))
    kube.create_pod(ns, f"{svc}-0", {"app": svc}, hostname=f"{svc}-0", subdomain=svc)
    created.append(api_path("v1", "pods", ns, f"{svc}-0"))
    kube.set_pod_ready(ns, f"{svc}-0", "10.244.9.20")
    kube.wait_for_endpointslice(ns, svc)
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "check", f"{ns}/{svc}", "--kubeconfig",
         str(kubeconfig), "--layers", "", "--static-servers", f"replica={dns.hostport}",
         "--output", "json"], capture_output=True, text=True, timeout=120, check=False,
        cwd=ROOT)
    assert out.returncode in (0, 1), out.stderr
    report = json.loads(out.stdout)
    by_section = {c["section"]: c for c in report["checks"]}
    assert by_section["dns"]["status"] == "ok", report
    assert "replica" in by_section["dns"]["message"], report
    assert by_section["pods"]["status"] == "warn", report
    RESULTS.append(("the runbook's check as the agent's ServiceAccount, default RBAC",
                    f"exit {out.returncode}; dns: {by_section['dns']['message']}; pods: "
                    f"{by_section['pods']['message']}"))


def test_the_documented_sidecar_patch_passes_restricted(
        kube: KubeClient, crds: None, restricted_ns: str, created: list[str]) -> None:
    """docs/sidecar.md's patch, merged into a restricted Deployment as `kubectl patch` would,
    with its Role, RoleBinding and PodMonitor: strict dry runs, no Pod Security warning."""
    blocks = [yaml.safe_load_all(block) for block in re.findall(
        r"```yaml\n(.*?)```", (ROOT / "docs" / "sidecar.md").read_text(), re.DOTALL)]
    patch, rbac, monitor = ([doc for doc in block if doc] for block in blocks)
    (patch_spec,) = patch
    restricted = {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                  "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    pod = {"serviceAccountName": "checkout",
           "containers": [{"name": "checkout", "image": "checkout:1", "securityContext": {
               **restricted, "runAsUser": 1000}}]}
    sidecar = patch_spec["spec"]["template"]["spec"]
    pod["containers"] += sidecar["containers"]
    pod["volumes"] = sidecar["volumes"]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "checkout", "namespace": restricted_ns},
                  "spec": {"selector": {"matchLabels": {"app": "checkout"}},
                           "template": {"metadata": {"labels": {"app": "checkout"}},
                                        "spec": pod}}}
    create(kube, {"apiVersion": "v1", "kind": "ServiceAccount",
                  "metadata": {"name": "checkout", "namespace": restricted_ns}}, created)
    objects = [deployment, *rbac, *monitor]
    for obj in objects:
        obj["metadata"]["namespace"] = restricted_ns
        for subject in obj.get("subjects", []):
            subject["namespace"] = restricted_ns
        status, body, warnings = post(kube, obj, dry_run=True)
        assert status == 201, (obj["kind"], body.get("message"))
        assert not warnings, (obj["kind"], warnings)
    status, body, warnings = post(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "checkout-0",
                                                         "namespace": restricted_ns},
        "spec": pod}, dry_run=True)
    assert status == 201 and not warnings, (body.get("message"), warnings)
    RESULTS.append(("docs/sidecar.md's patch on a Deployment, its Role, RoleBinding and "
                    "PodMonitor, in the restricted namespace",
                    f"{len(objects)} objects and the Pod accepted, no warnings"))


def test_the_documented_wait_init_container_passes_restricted(
        kube: KubeClient, restricted_ns: str, created: list[str]) -> None:
    """docs/wait.md's ServiceAccount, Role and RoleBinding, and a launcher Pod with its init
    container: strict dry runs under restricted, no Pod Security warning."""
    (block,) = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "wait.md").read_text(),
                          re.DOTALL)
    *grants, fragment = [doc for doc in yaml.safe_load_all(block) if doc]
    for obj in grants:
        obj["metadata"]["namespace"] = restricted_ns
        for subject in obj.get("subjects", []):
            subject["namespace"] = restricted_ns
        if obj["kind"] == "ServiceAccount":
            create(kube, obj, created)
            continue
        status, body, warnings = post(kube, obj, dry_run=True)
        assert status == 201 and not warnings, (obj["kind"], body.get("message"), warnings)
    restricted = {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
                  "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "launcher", "namespace": restricted_ns},
           "spec": {**fragment, "containers": [{"name": "mpirun", "image": "launcher:1",
                                                "securityContext": restricted}]}}
    status, body, warnings = post(kube, pod, dry_run=True)
    assert status == 201 and not warnings, (body.get("message"), warnings)
    RESULTS.append(("docs/wait.md's Role, RoleBinding and a launcher Pod with its wait init "
                    "container, in the restricted namespace", "accepted, no warnings"))
