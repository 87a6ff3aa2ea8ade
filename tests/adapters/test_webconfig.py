"""The HTTP server behind --web.config.file, over real sockets: TLS with a CA, basic auth,
mutual TLS, the configured headers, and certificates rotated on disk without a restart."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from prometheus_client import CollectorRegistry

from exporter.core.status import Inputs, document
from exporter.io.server import HttpServer
from exporter.io.webconfig import Served, load
from tests.adapters.test_demo import free_port
from tests.rig.pki import ClusterPki

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPki:
    pki = ClusterPki.generate(tmp_path_factory.mktemp("pki"), ip_sans=["127.0.0.1"])
    pki.issue("client", cn="prometheus", usage="clientAuth", ip_sans=())
    pki.issue("rotated", cn="rotated-serving")
    return pki


def web_config(tmp_path: Path, pki: ClusterPki, **extra: Any) -> Path:
    """The serving pair copied next to the config, so that a test can replace it."""
    shutil.copy(pki.serving_cert, tmp_path / "tls.crt")
    shutil.copy(pki.serving_key, tmp_path / "tls.key")
    path = tmp_path / "web.yml"
    tls = {"cert_file": "tls.crt", "key_file": "tls.key", **extra.pop("tls", {})}
    path.write_text(yaml.safe_dump({"tls_server_config": tls, **extra}))
    return path


EMPTY = Inputs(wall=0.0, node="n", synced=True, open_windows=[], closed=[], ttl={},
               servers=[], layer_up={}, sweep_period=None, budget_qps=20.0, budget_burst=4,
               budget_used=0, probes_deferred=0, monitored=[], monitored_total=0, dropped=[],
               dropped_now=0, dropped_total=0, limit=10)


async def serve(path: Path) -> AsyncIterator[str]:
    server = HttpServer(CollectorRegistry(), lambda: None, lambda: True,
                        lambda: document(EMPTY, "test"), web_config=Served(load(str(path))))
    await server.start("127.0.0.1:0")
    try:
        yield f"https://127.0.0.1:{server.port}"
    finally:
        await server.stop()


def client(pki: ClusterPki, cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert:
        ctx.load_cert_chain(pki.directory / "client.crt", pki.directory / "client.key")
    return ctx


async def get(url: str, ctx: ssl.SSLContext,
              auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": aiohttp.encode_basic_auth(*auth)} if auth else {}
    async with aiohttp.ClientSession() as session, \
            session.get(url, ssl=ctx, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def peer_cn(url: str, ctx: ssl.SSLContext) -> str:
    host, port = url.removeprefix("https://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    cert = writer.get_extra_info("peercert")
    writer.close()
    await writer.wait_closed()
    return str(dict(pair[0] for pair in cert["subject"])["commonName"])


async def test_tls_basic_auth_and_headers(tmp_path: Path, pki: ClusterPki) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    path = web_config(tmp_path, pki, basic_auth_users={"prometheus": hashed},
                      http_server_config={"headers": {"X-Frame-Options": "deny"}})
    async for base in serve(path):
        ctx = client(pki)
        status, headers, _ = await get(f"{base}/metrics", ctx)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert headers["X-Frame-Options"] == "deny"
        assert (await get(f"{base}/metrics", ctx, auth=("prometheus", "guess")))[0] == 401
        assert (await get(f"{base}/metrics", ctx, auth=("nobody", "s3cret")))[0] == 401
        good = ("prometheus", "s3cret")
        for _ in range(2):  # the second from the cache of good answers
            status, headers, body = await get(f"{base}/metrics", ctx, auth=good)
            assert status == 200 and headers["X-Frame-Options"] == "deny"
        for guarded in ("/status", "/api/v1/status", "/"):
            assert (await get(f"{base}{guarded}", ctx))[0] == 401, guarded
            assert (await get(f"{base}{guarded}", ctx, auth=good))[0] == 200, guarded
        # The kubelet's probes carry no credential.
        assert (await get(f"{base}/healthz", ctx))[0] == 200
        # Plain HTTP to the TLS port is no answer.
        with pytest.raises(aiohttp.ClientError):
            await get(base.replace("https", "http") + "/metrics", ctx)


async def test_mutual_tls(tmp_path: Path, pki: ClusterPki) -> None:
    path = web_config(tmp_path, pki, tls={"client_auth_type": "RequireAndVerifyClientCert",
                                          "client_ca_file": str(pki.ca_cert)})
    async for base in serve(path):
        with pytest.raises(aiohttp.ClientError):
            await get(f"{base}/metrics", client(pki))
        assert (await get(f"{base}/metrics", client(pki, cert=True)))[0] == 200


async def test_a_rotated_certificate_is_served_without_a_restart(
        tmp_path: Path, pki: ClusterPki, caplog: pytest.LogCaptureFixture) -> None:
    path = web_config(tmp_path, pki)
    async for base in serve(path):
        ctx = client(pki)
        assert await peer_cn(base, ctx) == "kube-apiserver"
        # A half-written rotation (a key that is not the certificate's) keeps the last good
        # pair and says why, once.
        shutil.copy(pki.directory / "rotated.crt", tmp_path / "tls.crt.new")
        os.replace(tmp_path / "tls.crt.new", tmp_path / "tls.crt")
        caplog.set_level(logging.ERROR, logger="exporter.io.webconfig")
        assert await peer_cn(base, ctx) == "kube-apiserver"
        assert await peer_cn(base, ctx) == "kube-apiserver"
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1 and "the last good one stays" in said[0], said
        # The key arrives: the next handshake serves the new pair, as cert-manager's renewal.
        shutil.copy(pki.directory / "rotated.key", tmp_path / "tls.key.new")
        os.replace(tmp_path / "tls.key.new", tmp_path / "tls.key")
        assert await peer_cn(base, ctx) == "rotated-serving"
        assert (await get(f"{base}/metrics", ctx))[0] == 200


def kubelet_secret_volume(directory: Path, version: str, files: dict[str, Path]) -> None:
    """The files of a Secret as the kubelet's atomic writer lays them out: a timestamped
    directory, a `..data` link to it swapped by rename, and one link per key through it."""
    directory.mkdir(exist_ok=True)
    (directory / version).mkdir()
    for key, source in files.items():
        shutil.copy(source, directory / version / key)
    (directory / "..data_tmp").symlink_to(version)
    os.replace(directory / "..data_tmp", directory / "..data")
    for key in files:
        if not (directory / key).is_symlink():
            (directory / key).symlink_to(f"..data/{key}")


async def test_a_secret_volume_update_is_served_without_a_restart(
        tmp_path: Path, pki: ClusterPki) -> None:
    """The chart mounts webConfig.tlsSecretName: cert-manager renews the Secret, the kubelet
    swaps the volume's `..data` link, and cert and key change at once."""
    tls = tmp_path / "tls"
    kubelet_secret_volume(tls, "..2026_12_04_18_00_00.1", {
        "tls.crt": pki.serving_cert, "tls.key": pki.serving_key})
    path = tmp_path / "web-config.yml"
    path.write_text(yaml.safe_dump({"tls_server_config": {
        "cert_file": str(tls / "tls.crt"), "key_file": str(tls / "tls.key")}}))
    async for base in serve(path):
        ctx = client(pki)
        assert await peer_cn(base, ctx) == "kube-apiserver"
        kubelet_secret_volume(tls, "..2026_12_04_19_00_00.2", {
            "tls.crt": pki.directory / "rotated.crt", "tls.key": pki.directory / "rotated.key"})
        assert await peer_cn(base, ctx) == "rotated-serving"
        assert (await get(f"{base}/metrics", ctx))[0] == 200


def test_a_bad_web_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  me: hunter2\n")
    proc = subprocess.run([sys.executable, "-m", "exporter", "demo", "--web.config.file",
                           str(path), "--web.listen-address", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"dns-staleness-exporter: error: {path}: "
                                  "`basic_auth_users.me` is not a bcrypt hash"), proc.stderr


async def test_the_agents_own_loop_serves_a_rotated_certificate(tmp_path: Path,
                                                                pki: ClusterPki) -> None:
    """The command line runs on uvloop, whose TLS is its own: the same rotation there."""
    path = web_config(tmp_path, pki)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "demo", "--duration", "30", "--web.config.file",
        str(path), "--web.listen-address", f"127.0.0.1:{port}", stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, cwd=ROOT)
    base, ctx = f"https://127.0.0.1:{port}", client(pki)
    try:
        for _ in range(100):
            try:
                assert await peer_cn(base, ctx) == "kube-apiserver"
                break
            except OSError:
                await asyncio.sleep(0.1)
        for name, stem in (("tls.crt", "rotated.crt"), ("tls.key", "rotated.key")):
            shutil.copy(pki.directory / stem, tmp_path / f"{name}.new")
            os.replace(tmp_path / f"{name}.new", tmp_path / name)
        assert await peer_cn(base, ctx) == "rotated-serving"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
