"""Fixtures for integration tests on the real rig (docs/rig.md).

Session-scoped: ``rig_bins`` -> ``etcd`` -> ``apiserver`` -> ``controller_manager``
-> ``kube``. Function-scoped: ``namespace`` and the CoreDNS factories
``coredns_cluster`` / ``coredns_nodelocal`` (each test gets its own servers, all
stopped when it ends). Every process runs in its own process group, killed at
teardown.

When the rig is not installed, tests using these fixtures are skipped with a
message naming ``scripts/rig-install``; set ``DSE_RIG_REQUIRED=1`` to make that
an error instead (CI).
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# `tests.rig` lives at the repository root; make it importable however pytest
# was started (plain `pytest` does not put the root on sys.path by itself).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.rig import (  # noqa: E402
    ClusterDNSFactory,
    CoreDNS,
    Etcd,
    KubeApiServer,
    KubeClient,
    KubeControllerManager,
    NodeLocalDNSFactory,
    Rig,
    api_path,
    rig_or_skip,
)
from tests.rig.kube import DEFAULT_NODE  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "rig: needs the real etcd/kube-apiserver/kube-controller-manager/CoreDNS rig "
        "(install it with scripts/rig-install)",
    )


@pytest.fixture(scope="session")
def rig_bins() -> Rig:
    """The rig's binaries (from <cache>/rig.env); skips, or fails with DSE_RIG_REQUIRED=1."""
    return rig_or_skip()


@pytest.fixture(scope="session")
def rig_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rig")


@pytest.fixture(scope="session")
def etcd(rig_bins: Rig, rig_dir: Path) -> Iterator[Etcd]:
    proc = Etcd(rig_bins.etcd, rig_dir / "etcd").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def apiserver(rig_bins: Rig, rig_dir: Path, etcd: Etcd) -> Iterator[KubeApiServer]:
    proc = KubeApiServer(
        rig_bins.kube_apiserver,
        rig_dir / "kube-apiserver",
        etcd_url=etcd.client_url,
        openssl=rig_bins.openssl,
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def controller_manager(
    rig_bins: Rig, rig_dir: Path, apiserver: KubeApiServer
) -> Iterator[KubeControllerManager]:
    proc = KubeControllerManager(
        rig_bins.kube_controller_manager, rig_dir / "kube-controller-manager", apiserver=apiserver
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def kube(apiserver: KubeApiServer, controller_manager: KubeControllerManager) -> KubeClient:
    """Admin client of a cluster whose controllers run; the Node ``rig-node-0`` exists."""
    client = apiserver.client()
    client.create_node(DEFAULT_NODE)
    return client


@pytest.fixture
def namespace(
    kube: KubeClient, apiserver: KubeApiServer, controller_manager: KubeControllerManager
) -> Iterator[str]:
    """A fresh namespace (its default ServiceAccount exists); removed afterwards."""
    apiserver.ensure_running()
    controller_manager.ensure_running()
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(name)
    yield name
    # Pods would stay Terminating without a kubelet: force-delete them first.
    for pod in kube.list(api_path("v1", "pods", name)):
        kube.delete_pod(name, pod["metadata"]["name"], grace_seconds=0)
    kube.delete(api_path("v1", "namespaces", name=name), missing_ok=True)


@contextlib.contextmanager
def _stopped_at_exit() -> Iterator[list[CoreDNS]]:
    """A list to put started servers in; they are stopped, newest first, on exit."""
    started: list[CoreDNS] = []
    try:
        yield started
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def coredns_cluster(
    rig_bins: Rig, apiserver: KubeApiServer, tmp_path: Path
) -> Iterator[ClusterDNSFactory]:
    """Factory: ``coredns_cluster(ttl=5, cache=None)`` starts a cluster CoreDNS."""
    with _stopped_at_exit() as started:

        def make(*, ttl: int = 5, cache: int | None = None, log_queries: bool = False) -> CoreDNS:
            name = f"coredns-cluster-{len(started)}"
            server = CoreDNS.cluster(rig_bins.coredns, tmp_path / name, apiserver=apiserver,
                                     ttl=ttl, cache=cache, name=name, log_queries=log_queries)
            started.append(server)
            return server.start()

        yield make


@pytest.fixture
def coredns_nodelocal(rig_bins: Rig, tmp_path: Path) -> Iterator[NodeLocalDNSFactory]:
    """Factory: ``coredns_nodelocal(upstream, success_ttl=30, denial_ttl=5)``."""
    with _stopped_at_exit() as started:

        def make(upstream: CoreDNS | str, *, success_ttl: int = 30, denial_ttl: int = 5,
                 log_queries: bool = False) -> CoreDNS:
            name = f"coredns-nodelocal-{len(started)}"
            server = CoreDNS.nodelocal(rig_bins.coredns, tmp_path / name, upstream=upstream,
                                       success_ttl=success_ttl, denial_ttl=denial_ttl,
                                       name=name, log_queries=log_queries)
            started.append(server)
            return server.start()

        yield make


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The end-to-end scenario table: what the agent measured beside the checker and bound."""
    from tests.integration.agent import SCENARIOS

    if not SCENARIOS:
        return
    header = ("scenario", "layer", "bound", "checker", "agent")
    widths = [max(len(str(r[i])) for r in [header, *SCENARIOS]) for i in range(5)]
    terminalreporter.section("incident scenarios (seconds)")
    for row in [header, *SCENARIOS]:
        terminalreporter.write_line("  ".join(str(c).ljust(w) for c, w in zip(row, widths,
                                                                               strict=True)))


# A second implementation of the same hook (pytest only collects names starting with pytest_).
@pytest.hookimpl(specname="pytest_terminal_summary")
def pytest_terminal_summary_alerting(terminalreporter: pytest.TerminalReporter) -> None:
    """The alerting end-to-end: its alert timeline and the dashboard queries it checked."""
    from tests.integration.alerting import write_summary

    write_summary(terminalreporter)
