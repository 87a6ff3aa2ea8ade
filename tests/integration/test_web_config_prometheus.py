"""The real Prometheus scraping the agent behind --web.config.file: TLS with a CA, basic
auth, mutual TLS, and what it gets without each."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from tests.integration.alerting import Prometheus
from tests.rig import Rig, free_port
from tests.rig.pki import ClusterPki

pytestmark = pytest.mark.rig
ROOT = Path(__file__).resolve().parents[2]


def agent(tmp_path: Path, name: str, web: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    config = tmp_path / f"{name}.yml"
    config.write_text(yaml.safe_dump(web))
    port = free_port("127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--duration", "120",
         "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    return proc, f"127.0.0.1:{port}"


def job(name: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"job_name": name, "scheme": "https", "static_configs": [{"targets": [target]}],
            **extra}


def test_prometheus_scrapes_over_tls_basic_auth_and_mtls(rig_bins: Rig, tmp_path: Path) -> None:
    pki = ClusterPki.generate(tmp_path / "pki", ip_sans=["127.0.0.1"])
    client_cert, client_key = pki.issue("client", cn="prometheus", usage="clientAuth",
                                        ip_sans=())
    tls = {"cert_file": str(pki.serving_cert), "key_file": str(pki.serving_key)}
    users = {"prometheus": bcrypt.hashpw(b"scrape", bcrypt.gensalt(10)).decode()}
    basic_proc, basic = agent(tmp_path, "basic", {"tls_server_config": tls,
                                                  "basic_auth_users": users})
    mtls_proc, mtls = agent(tmp_path, "mtls", {"tls_server_config": {
        **tls, "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": str(pki.ca_cert)}})
    ca = {"ca_file": str(pki.ca_cert)}
    auth = {"username": "prometheus", "password": "scrape"}
    jobs = {
        "tls+basic": job("tls+basic", basic, tls_config=ca, basic_auth=auth),
        "tls, no password": job("tls, no password", basic, tls_config=ca),
        "tls, wrong password": job("tls, wrong password", basic, tls_config=ca,
                                   basic_auth={**auth, "password": "guess"}),
        "no CA": job("no CA", basic, basic_auth=auth),
        "mtls": job("mtls", mtls, tls_config={**ca, "cert_file": str(client_cert),
                                              "key_file": str(client_key)}),
        "mtls, no client cert": job("mtls, no client cert", mtls, tls_config=ca),
    }
    prometheus = Prometheus(rig_bins.prometheus, tmp_path / "prometheus", targets={},
                            rules={"groups": []}, alertmanager="127.0.0.1:9", job="unused",
                            cluster="lab")
    prometheus.config["scrape_configs"] = list(jobs.values())
    prometheus.start()
    try:
        deadline = time.monotonic() + 40
        health: dict[str, tuple[str, str]] = {}
        while time.monotonic() < deadline:
            time.sleep(1)
            health = {t["scrapePool"]: (t["health"], t["lastError"]) for t in
                      prometheus.api("targets", {})["activeTargets"]}
            if len(health) == len(jobs) and "unknown" not in {h for h, _ in health.values()}:
                break
        up = {r["metric"]["job"]: r["value"][1] for r in
              prometheus.api("query", {"query": "up"})["result"]}
    finally:
        prometheus.stop()
        for proc in (basic_proc, mtls_proc):
            proc.terminate()
            proc.wait(10)
    print("\nscrapes by the real Prometheus:")
    for name in jobs:
        print(f"  {name:22} up={up.get(name)} health={health[name][0]} "
              f"error={health[name][1] or '-'}")
    assert health["tls+basic"] == ("up", "") and up["tls+basic"] == "1"
    assert health["mtls"] == ("up", "") and up["mtls"] == "1"
    for name in ("tls, no password", "tls, wrong password"):
        assert health[name][0] == "down" and "401" in health[name][1], health[name]
    assert health["no CA"][0] == "down" and "certificate" in health["no CA"][1]
    # Refused in the handshake, never an HTTP answer. Under TLS 1.3 the server's alert comes
    # after Go's client thinks the handshake done, so Go words it as a closed connection:
    # "EOF" or "server closed idle connection", from run to run.
    status, error = health["mtls, no client cert"]
    assert status == "down" and up["mtls, no client cert"] == "0"
    assert "HTTP status" not in error and error, error
