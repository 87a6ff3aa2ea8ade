"""`wait NAMESPACE/SERVICE` on the rig, as an init container would run it: a ServiceAccount with
a namespaced Role only, a scale from zero behind node-local's cached NXDOMAIN, and `wait`
returning only once node-local serves every name (an independent checker says when), a
timeout that names what is missing, and a watch the API server refuses."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.agent import Checker
from tests.rig import CoreDNS, KubeApiServer, KubeClient, Rig, api_path

pytestmark = pytest.mark.rig

ROOT = Path(__file__).resolve().parents[2]
NS = "waitns"
READ = [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
         "verbs": ["get", "list", "watch"]}]
"""The init container's Role (docs/wait.md), in the Service's namespace only."""


def fqdn(name: str) -> str:
    return f"{name}.{NS}.svc.cluster.local."


@dataclass
class Env:
    kube: KubeClient
    cluster: CoreDNS
    nodelocal: CoreDNS
    kubeconfig: Path
    stranger: Path
    next_ip: int = 30

    def wait(self, *args: str, kubeconfig: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "exporter", "wait", *args,
             "--kubeconfig", str(kubeconfig or self.kubeconfig), "--layers", "node-local",
             "--node-local-address", f"{self.nodelocal.address}:{self.nodelocal.port}",
             "--static-servers", f"coredns={self.cluster.address}:{self.cluster.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def pod(self, service: str, name: str) -> str:
        self.next_ip += 1
        ip = f"10.244.8.{self.next_ip}"
        self.kube.create_pod(NS, name, {"app": service}, hostname=name, subdomain=service)
        self.kube.set_pod_ready(NS, name, ip)
        return ip


@pytest.fixture(scope="module")
def env(rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("wait")
    cluster = CoreDNS.cluster(rig_bins.coredns, work / "cluster", apiserver=apiserver, ttl=5,
                              cache=5, name="wait-cluster")
    cluster.start()
    nodelocal = CoreDNS.nodelocal(rig_bins.coredns, work / "nodelocal", upstream=cluster,
                                  success_ttl=30, denial_ttl=5, name="wait-nodelocal")
    nodelocal.start()
    kube.create_namespace(NS)
    paths = {}
    for account in ("launcher", "stranger"):
        kube.create_service_account(NS, account)
        if account == "launcher":
            kube.grant_role(account, READ, namespace=NS, service_account=account)
        paths[account] = apiserver.write_kubeconfig(
            work / f"{account}.kubeconfig", token=kube.request_token(NS, account), user=account)
    try:
        yield Env(kube, cluster, nodelocal, Path(paths["launcher"]), Path(paths["stranger"]))
    finally:
        nodelocal.stop()
        cluster.stop()
        for pod in kube.list(api_path("v1", "pods", NS)):
            kube.delete_pod(NS, pod["metadata"]["name"], grace_seconds=0)


def test_scale_from_zero_returns_once_node_local_serves_every_name(env: Env) -> None:
    names = ["worker-0", "worker-1", "worker-2"]
    env.kube.create_headless_service(NS, "workers", {"app": "workers"})
    # Every name wait waits for: the Service's and each pod's A and SRV, the port's SRV.
    own = [fqdn("workers"), *(fqdn(f"{n}.workers") for n in names)]
    questions = [(name, rtype) for name in own for rtype in ("A", "SRV")]
    questions.append((fqdn("_http._tcp.workers"), "SRV"))
    # The launcher's peers ask node-local before the workers exist: NXDOMAIN, cached 5 s.
    checker = Checker({"node-local": (env.nodelocal.address, env.nodelocal.port)}, questions,
                      0.05).start()
    time.sleep(2)
    waiting = env.wait(f"{NS}/workers", "--replicas", "3", "--names", ",".join(names),
                       "--timeout", "60s")
    time.sleep(1.5)  # wait has listed the namespace and sees no worker
    assert waiting.poll() is None, waiting.communicate()
    t0 = time.monotonic()
    ips = {name: env.pod("workers", name) for name in names}
    try:
        out, err = waiting.communicate(timeout=60)
        returned = time.monotonic() - t0
    finally:
        checker.stop()
    assert waiting.returncode == 0, out + err

    def first_complete(name: str, rtype: str, want: set[str]) -> float:
        for when, values in checker.history[("node-local", name, rtype)]:
            if when >= t0 and want <= values:
                return when - t0
        raise AssertionError(f"node-local never served {name} {rtype} {want}")

    targets = {fqdn(f"{n}.workers").rstrip(".") + "." for n in names}
    seen = {}
    for name, rtype in questions:
        if rtype == "A":
            want = set(ips.values()) if name == fqdn("workers") else {
                ips[name.split(".")[0]]}
        else:
            want = targets if name.split(".")[0] in ("workers", "_http") else {name}
        seen[f"{name} {rtype}"] = first_complete(name, rtype, want)
    last = max(seen.values())
    print(f"\nwait {NS}/workers --replicas 3: returned {returned:.2f} s after the pods were "
          f"created; the checker saw node-local serve the last name at {last:.2f} s:")
    for name, when in sorted(seen.items(), key=lambda item: item[1]):
        print(f"  {when:6.2f} s  {name}")
    print(f"  wait said: {out.strip()}")
    # Never before node-local served everything (the checker polls every 50 ms, and started
    # its clock at the API call), and promptly after: wait re-asks when the NXDOMAIN expires.
    assert returned >= last - 0.1, (returned, seen)
    assert returned - last <= 2.0, (returned, seen, out, err)
    assert f"wait {NS}/workers: " in out and " names resolve as the API has them on " in out
    assert "node-local " in out and "coredns " in out, out


def test_a_timeout_names_what_is_missing(env: Env) -> None:
    env.kube.create_headless_service(NS, "shards", {"app": "shards"})
    env.pod("shards", "shard-0")
    started = time.monotonic()
    waiting = env.wait(f"{NS}/shards", "--replicas", "2", "--names", "shard-0,shard-1",
                       "--timeout", "3s")
    out, err = waiting.communicate(timeout=60)
    took = time.monotonic() - started
    print(f"\nwait {NS}/shards --replicas 2 with one pod, --timeout 3s: exit "
          f"{waiting.returncode} after {took:.1f} s:\n{out}")
    assert waiting.returncode == 1, out + err
    assert f"wait {NS}/shards: timed out after 3 s; still missing" in out
    assert f"{NS}/shards: 1 ready address in the truth, waiting for 2" in out
    assert f"{NS}/shards: no ready endpoint with hostname shard-1 in the truth" in out
    assert took < 15


def test_a_refused_watch_is_one_line_and_exit_2(env: Env) -> None:
    waiting = env.wait(f"{NS}/workers", "--timeout", "30s", kubeconfig=env.stranger)
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 2, out + err
    assert err.count("\n") == 1, err
    assert err.startswith(f"wait {NS}/workers: the API server answered 403 Forbidden to list "
                          f"/api/v1/namespaces/{NS}/services: grant get, list and watch"), err
