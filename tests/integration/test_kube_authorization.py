"""--web.kubernetes-authorization on the rig's API server: the scraper's token goes through a
real TokenReview, its right to get the path through a real SubjectAccessReview."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.integration.agent import AgentProcess
from tests.rig import KubeApiServer, KubeClient

pytestmark = pytest.mark.rig
ROOT = Path(__file__).resolve().parents[2]
DELEGATE = [{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
             "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
             "verbs": ["create"]}]
"""What the agent needs for the check (the built-in system:auth-delegator's rules)."""
SCRAPE = [{"nonResourceURLs": ["/metrics", "/status"], "verbs": ["get"]}]
"""What a scraper needs (docs/operations.md); /api/v1/status is checked as /status."""


def fetch(url: str, token: str | None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_scrapers_are_checked_by_the_api_server(kube: KubeClient, apiserver: KubeApiServer,
                                                namespace: str, tmp_path: Path) -> None:
    read = yaml.safe_load((ROOT / "deploy" / "rbac.yaml").read_text())["rules"]
    tokens = {}
    for account, rules in (("agent", read + DELEGATE), ("scraper", SCRAPE), ("stranger", [])):
        kube.create_service_account(namespace, account)
        if rules:
            kube.grant_cluster_role(f"{namespace}-{account}", rules, namespace=namespace,
                                    service_account=account)
        tokens[account] = kube.request_token(namespace, account)
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "agent.kubeconfig",
                                            token=tokens["agent"], user="agent")
    agent = AgentProcess(tmp_path, Path(kubeconfig), [
        "--namespaces", namespace, "--layers", "coredns", "--web.kubernetes-authorization",
        "true"])
    # The readiness probe is not guarded: start() waits on /readyz as the kubelet does.
    agent.start()
    base = f"http://127.0.0.1:{agent.port}"
    try:
        seen = {}
        for path in ("/metrics", "/status", "/api/v1/status"):
            for who in ("scraper", "stranger"):
                seen[(path, who)] = fetch(base + path, tokens[who])
        seen[("/metrics", "bad token")] = fetch(base + "/metrics", "not-a-token")
        seen[("/metrics", "no token")] = fetch(base + "/metrics", None)
        seen[("/healthz", "no token")] = fetch(base + "/healthz", None)
        started = time.monotonic()
        for _ in range(20):  # answers are remembered: these cost the API server nothing
            assert fetch(base + "/metrics", tokens["scraper"]) == 200
        cached = (time.monotonic() - started) / 20
    finally:
        code = agent.stop()
    print("\nKubernetes authorization on the rig's API server:")
    for (path, who), status in seen.items():
        print(f"  {path:16} {who:10} {status}")
    print(f"  a remembered answer: {cached * 1000:.1f} ms per request")
    assert seen == {
        ("/metrics", "scraper"): 200, ("/metrics", "stranger"): 403,
        ("/status", "scraper"): 200, ("/status", "stranger"): 403,
        ("/api/v1/status", "scraper"): 200, ("/api/v1/status", "stranger"): 403,
        ("/metrics", "bad token"): 401, ("/metrics", "no token"): 401,
        ("/healthz", "no token"): 200}
    assert code == 0, agent.tail()
