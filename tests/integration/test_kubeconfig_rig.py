"""Kubeconfigs as people have them, against the rig's API server: an exec credential plugin
whose token expires and is renewed while the watch goes on, and a merged list of files with
--context."""

from __future__ import annotations

import base64
import json
import re
import select
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.agent import AgentProcess, samples, total
from tests.rig import KubeApiServer, KubeClient
from tests.rig.kube import KubeApiError

pytestmark = pytest.mark.rig
ROOT = Path(__file__).resolve().parents[2]

READ = [{"apiGroups": ["", "discovery.k8s.io"],
         "resources": ["services", "endpoints", "endpointslices", "namespaces"],
         "verbs": ["get", "list", "watch"]}]

# Prints an ExecCredential whose token the client must renew 4 s after issue (client-go and
# the kubernetes package renew 5 min before expiry), the next token of the list each call.
PLUGIN = """
import datetime, json, pathlib, sys, time
here = pathlib.Path(sys.argv[1])
calls = here / "calls"
n = len(calls.read_text().splitlines()) if calls.exists() else 0
tokens = (here / "tokens").read_text().split()
with calls.open("a") as f:
    f.write(f"{time.time()}\\n")
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=304)
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
    "status": {"token": tokens[min(n, len(tokens) - 1)],
               "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}))
"""


def cluster_entry(apiserver: KubeApiServer, name: str = "rig") -> dict[str, Any]:
    ca = base64.b64encode(Path(apiserver.ca_file).read_bytes()).decode()
    return {"name": name, "cluster": {"server": apiserver.url,
                                      "certificate-authority-data": ca}}


def status_of(client: KubeClient, path: str) -> int:
    try:
        client.get(path)
    except KubeApiError as exc:
        return exc.status
    return 200


def wait(condition: Any, timeout: float, what: str, agent: AgentProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s:\n{agent.tail()}")


def test_exec_plugin_token_is_renewed_and_the_watch_goes_on(
        kube: KubeClient, apiserver: KubeApiServer, namespace: str, tmp_path: Path) -> None:
    for account in ("first", "second"):
        kube.create_service_account(namespace, account)
        kube.grant_cluster_role(f"{namespace}-{account}", READ, namespace=namespace,
                                service_account=account)
    first, second = (kube.request_token(namespace, a) for a in ("first", "second"))
    (tmp_path / "tokens").write_text(f"{first}\n{second}\n")
    (tmp_path / "plugin.py").write_text(PLUGIN)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "rig",
        "clusters": [cluster_entry(apiserver)],
        "contexts": [{"name": "rig", "context": {"cluster": "rig", "user": "plugin"}}],
        "users": [{"name": "plugin", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
            "args": [str(tmp_path / "plugin.py"), str(tmp_path)],
            "interactiveMode": "Never"}}}],
    }))
    calls = tmp_path / "calls"

    def called() -> list[float]:
        return [float(t) for t in calls.read_text().split()] if calls.exists() else []

    agent = AgentProcess(tmp_path, kubeconfig, [
        "--namespaces", namespace, "--layers", "coredns", "--watch-timeout", "10"]).start()
    try:
        kube.create_headless_service(namespace, "before", {"app": "before"})
        wait(lambda: total(samples(agent.metrics()), "dns_staleness_targets") == 1, 20,
             "the first Service", agent)
        assert len(called()) >= 1
        # The token is due for renewal 4 s after issue: a watch renewed after that asks the
        # plugin again, which now gives the second account's token.
        wait(lambda: len(called()) >= 2, 40, "a second plugin call", agent)
        kube.delete(f"/api/v1/namespaces/{namespace}/serviceaccounts/first")
        revoked = kube.with_token(first)
        wait(lambda: status_of(revoked, f"/api/v1/namespaces/{namespace}/services") == 401,
             20, "the first token revoked", agent)
        renewed_at = time.time()
        wait(lambda: any(t > renewed_at for t in called()), 40,
             "a plugin call after the revocation", agent)
        kube.create_headless_service(namespace, "after", {"app": "after"})
        wait(lambda: total(samples(agent.metrics()), "dns_staleness_targets") == 2, 30,
             "the Service created after the renewal", agent)
        found = samples(agent.metrics())
        assert total(found, "dns_staleness_watch_restarts_total", reason="unauthorized") == 0
        # As a status, not inside a port number (the API server's may be 401xx).
        assert not re.search(r"\b401\b", agent.log_path.read_text())
    finally:
        agent.stop()


def test_a_merged_kubeconfig_list_and_context(kube: KubeClient, apiserver: KubeApiServer,
                                              namespace: str, tmp_path: Path) -> None:
    """The first file's current-context points at a dead server; --context picks the rig's,
    whose user is in the second file."""
    kube.create_service_account(namespace, "reader")
    kube.grant_cluster_role(f"{namespace}-reader", READ, namespace=namespace,
                            service_account="reader")
    token = kube.request_token(namespace, "reader")
    dead = {"name": "dead", "cluster": {"server": "https://127.0.0.1:9",
                                        "insecure-skip-tls-verify": True}}
    one = tmp_path / "one"
    one.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [dead, cluster_entry(apiserver)],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "reader"}},
                     {"name": "rig", "context": {"cluster": "rig", "user": "reader"}}]}))
    two = tmp_path / "two"
    two.write_text(json.dumps({"apiVersion": "v1", "kind": "Config",
                               "users": [{"name": "reader", "user": {"token": token}}]}))
    kube.create_headless_service(namespace, "web", {"app": "web"})
    agent = AgentProcess(tmp_path, Path(f"{one}:{two}"), [
        "--namespaces", namespace, "--layers", "coredns", "--context", "rig"]).start()
    try:
        wait(lambda: total(samples(agent.metrics()), "dns_staleness_targets") == 1, 20,
             "the Service through the merged kubeconfig", agent)
    finally:
        agent.stop()


def test_check_without_a_credential_says_how_to_get_one(apiserver: KubeApiServer,
                                                       tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "anonymous",
        "clusters": [cluster_entry(apiserver)],
        "contexts": [{"name": "anonymous", "context": {"cluster": "rig"}}]}))
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "check", "default/web", "--kubeconfig",
         str(kubeconfig), "--layers", "node-local"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and not proc.stdout, proc.stderr
    assert "refused an anonymous request" in proc.stderr
    assert f"{kubeconfig} gives context 'anonymous' no credential" in proc.stderr
    assert "aws eks update-kubeconfig" in proc.stderr


class ConnectProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy of the test's own that only tunnels (CONNECT), as corporate proxies in
    front of managed API servers do; it records each tunnel's target."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.tunnels: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Tunnel(socketserver.StreamRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        method, target, _ = self.rfile.readline().decode().split()
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        if method != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host.strip("[]"), int(port))) as upstream:
            self.server.tunnels.append(target)
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            ends = [self.connection, upstream]
            while True:
                ready, _, _ = select.select(ends, [], [], 30)
                if not ready:
                    return
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)


def test_the_watch_goes_through_the_kubeconfigs_proxy(
        kube: KubeClient, apiserver: KubeApiServer, namespace: str, tmp_path: Path) -> None:
    proxy = ConnectProxy()
    entry = cluster_entry(apiserver)
    entry["cluster"]["proxy-url"] = proxy.url
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "rig", "clusters": [entry],
        "contexts": [{"name": "rig", "context": {"cluster": "rig", "user": "admin"}}],
        "users": [{"name": "admin", "user": {"token": apiserver.token}}]}))
    kube.create_headless_service(namespace, "web", {"app": "web"})
    agent = AgentProcess(tmp_path, kubeconfig, ["--namespaces", namespace, "--layers",
                                                "coredns"]).start()
    try:
        wait(lambda: total(samples(agent.metrics()), "dns_staleness_targets") == 1, 20,
             "the Service through the proxy", agent)
    finally:
        agent.stop()
        proxy.shutdown()
    api = apiserver.url.removeprefix("https://")
    assert proxy.tunnels and set(proxy.tunnels) == {api}, proxy.tunnels
