"""This node's own DNS facts, read at the edge: static and resolv.conf layers, and whether the
NodeLocal DNSCache answers. `run` and `check` both start from them."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from exporter.core.dnsmsg import QueryWire
from exporter.core.layers import first_nameserver, split_static
from exporter.core.records import (
    DNS_PORT,
    Question,
    ServerRef,
    Target,
    join_address,
    service_domain,
)
from exporter.io.probe import Prober

log = logging.getLogger(__name__)

API_SERVICE = Target("default", "kubernetes")
"""Every cluster has it, so every cluster DNS server answers its name."""


def static_layers(static_servers: Collection[str], layers: Collection[str],
                  resolv_conf: str) -> tuple[ServerRef, ...]:
    """The configured `NAME=IP[:PORT]` servers, and resolv.conf's first nameserver when the
    resolv-conf layer is on."""
    servers = [ServerRef(*split_static(entry)) for entry in static_servers]
    if "resolv-conf" in layers:
        try:
            nameserver = first_nameserver(Path(resolv_conf).read_text())
        except OSError as exc:
            log.warning("resolv-conf layer off: cannot read %s (%s)", resolv_conf, exc.strerror)
            nameserver = None
        if nameserver:
            servers.append(ServerRef("resolv-conf", join_address(nameserver, DNS_PORT)))
    return tuple(servers)


async def node_local_answers(address: str, zone: str, probe_timeout: float) -> bool:
    """Whether the NodeLocal DNSCache at `address` (`host:port`) answers a probe now."""
    prober = Prober(ServerRef("node-local", address), probe_timeout, QueryWire())
    try:
        result = await prober.probe(Question(service_domain(API_SERVICE, zone), "A"))
    finally:
        prober.close()
    return result.answer is not None
