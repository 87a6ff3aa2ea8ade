"""CoreDNS on a loopback address: a "cluster" server (kubernetes plugin against
the rig's API server) and a "node-local" caching forwarder in front of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from .kube_apiserver import KubeApiServer
from .net import dns_probe, free_port, http_request, next_loopback_address
from .process import ManagedProcess

CLUSTER_DOMAIN = "cluster.local"


def cluster_corefile(
    *,
    address: str,
    ready_port: int,
    apiserver_url: str,
    kubeconfig: Path,
    ttl: int = 5,
    cache: int | None = None,
    zone: str = CLUSTER_DOMAIN,
    log_queries: bool = False,
    kubernetes_options: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> str:
    """The Corefile of a cluster DNS server (one ``.`` server block; the port
    comes from ``-dns.port``), with ``extra`` plugin lines (e.g. ``prometheus``).

    CoreDNS's kubernetes plugin takes server URL and credentials from
    ``kubeconfig`` when both it and ``endpoint`` are given; both are written so
    the file reads like the usual cluster configuration.
    """
    lines = [
        ". {",
        f"    bind {address}",
        "    errors",
        *(["    log"] if log_queries else []),
        f"    ready {address}:{ready_port}",
        f"    kubernetes {zone} in-addr.arpa ip6.arpa {{",
        f"        endpoint {apiserver_url}",
        f"        kubeconfig {kubeconfig}",
        f"        ttl {ttl}",
        *(f"        {option}" for option in kubernetes_options),
        "        fallthrough in-addr.arpa ip6.arpa",
        "    }",
        *([f"    cache {cache}"] if cache is not None else []),
        "    loadbalance",
        *(f"    {line}" for line in extra),
        "}",
    ]
    return "\n".join(lines) + "\n"


def nodelocal_corefile(
    *,
    address: str,
    ready_port: int,
    upstream: str,
    success_ttl: int = 30,
    denial_ttl: int = 5,
    capacity: int = 9984,
    log_queries: bool = False,
    extra: Sequence[str] = (),
) -> str:
    """The Corefile of a node-local cache: ``cache`` + ``forward . <ip:port>``, with ``extra``
    plugin lines."""
    lines = [
        ". {",
        f"    bind {address}",
        "    errors",
        *(["    log"] if log_queries else []),
        f"    ready {address}:{ready_port}",
        "    cache {",
        f"        success {capacity} {success_ttl}",
        f"        denial {capacity} {denial_ttl}",
        "    }",
        f"    forward . {upstream}",
        *(f"    {line}" for line in extra),
        "}",
    ]
    return "\n".join(lines) + "\n"


class CoreDNS(ManagedProcess):
    """``coredns -conf FILE -dns.port PORT``; ready when its ``ready`` endpoint
    (if any) says 200 and it answers a DNS query for ``probe_name``."""

    start_timeout = 30.0

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        corefile: str,
        *,
        address: str,
        port: int | None = None,
        ready_port: int | None = None,
        probe_name: str = CLUSTER_DOMAIN,
        name: str = "coredns",
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(name, workdir)
        self.binary = binary
        self.corefile = corefile
        self.address = address
        self.port = port if port is not None else free_port(address, udp=True)
        self.ready_port = ready_port
        self.probe_name = probe_name
        self.extra_args = list(extra_args)
        self.corefile_path = workdir / f"{name}.Corefile"

    @classmethod
    def _on_fresh_address(
        cls, binary: Path, workdir: Path, name: str, corefile: Callable[[str, int], str]
    ) -> CoreDNS:
        """A server on a new loopback address; `corefile(address, ready_port)` writes its
        configuration."""
        address = next_loopback_address()
        ready_port = free_port(address)
        return cls(
            binary,
            workdir,
            corefile(address, ready_port),
            address=address,
            port=free_port(address, udp=True),
            ready_port=ready_port,
            probe_name=CLUSTER_DOMAIN,
            name=name,
        )

    @classmethod
    def cluster(
        cls,
        binary: Path,
        workdir: Path,
        *,
        apiserver: KubeApiServer,
        ttl: int = 5,
        cache: int | None = None,
        name: str = "coredns-cluster",
        log_queries: bool = False,
        kubernetes_options: Sequence[str] = (),
    ) -> CoreDNS:
        """A cluster DNS server for ``apiserver`` on a fresh loopback address; extra lines
        for its kubernetes block (e.g. ``endpoint_pod_names``) in ``kubernetes_options``."""
        return cls._on_fresh_address(
            binary,
            workdir,
            name,
            lambda address, ready_port: cluster_corefile(
                address=address,
                ready_port=ready_port,
                apiserver_url=apiserver.url,
                kubeconfig=apiserver.kubeconfig_path,
                ttl=ttl,
                cache=cache,
                log_queries=log_queries,
                kubernetes_options=kubernetes_options,
            ),
        )

    @classmethod
    def nodelocal(
        cls,
        binary: Path,
        workdir: Path,
        *,
        upstream: CoreDNS | str,
        success_ttl: int = 30,
        denial_ttl: int = 5,
        name: str = "coredns-nodelocal",
        log_queries: bool = False,
    ) -> CoreDNS:
        """A node-local cache forwarding everything to ``upstream`` (a CoreDNS or "ip:port")."""
        target = upstream.hostport if isinstance(upstream, CoreDNS) else upstream
        return cls._on_fresh_address(
            binary,
            workdir,
            name,
            lambda address, ready_port: nodelocal_corefile(
                address=address,
                ready_port=ready_port,
                upstream=target,
                success_ttl=success_ttl,
                denial_ttl=denial_ttl,
                log_queries=log_queries,
            ),
        )

    @property
    def hostport(self) -> str:
        """``ip:port``, the form CoreDNS's ``forward`` plugin takes."""
        return f"{self.address}:{self.port}"

    def prepare(self) -> None:
        self.corefile_path.write_text(self.corefile)

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "-conf",
            str(self.corefile_path),
            "-dns.port",
            str(self.port),
            *self.extra_args,
        ]

    def is_ready(self) -> bool:
        if self.ready_port is not None:
            status, _ = http_request(f"http://{self.address}:{self.ready_port}/ready", timeout=1)
            if status != 200:
                return False
        dns_probe(self.address, self.port, self.probe_name, "SOA", timeout=0.5)
        return True


class ClusterDNSFactory(Protocol):
    """Type of the ``coredns_cluster`` fixture: starts a cluster CoreDNS."""

    def __call__(
        self, *, ttl: int = 5, cache: int | None = None, log_queries: bool = False
    ) -> CoreDNS: ...


class NodeLocalDNSFactory(Protocol):
    """Type of the ``coredns_nodelocal`` fixture: starts a node-local cache."""

    def __call__(
        self,
        upstream: CoreDNS | str,
        *,
        success_ttl: int = 30,
        denial_ttl: int = 5,
        log_queries: bool = False,
    ) -> CoreDNS: ...
