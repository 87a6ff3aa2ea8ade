"""This node's own DNS facts, read at the edge: static and resolv.conf layers, and whether the
NodeLocal DNSCache serves the cluster zone. `run` and `check` both start from them."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from exporter.core.dnsmsg import QueryWire
from exporter.core.layers import first_nameserver, split_static
from exporter.core.records import (
    DNS_PORT,
    Question,
    ServerRef,
    join_address,
)
from exporter.io.probe import Prober

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class ZoneCheck:
    answered: bool
    problem: str | None
    """Why the server is no layer of this cluster, in one line; None when it serves the zone."""


async def check_zone(server: ServerRef, zone: str, probe_timeout: float) -> ZoneCheck:
    """Whether `server` serves the cluster zone, by its SOA. A resolver that answers, but not
    for the cluster zone (a node's upstream, a typo in the address), would otherwise fail
    every name as missing."""
    prober = Prober(server, probe_timeout, QueryWire())
    try:
        result = await prober.probe(Question(f"{zone.strip('.')}.", "SOA"))
    finally:
        prober.close()
    where = f"{server.layer} at {server.address}"
    if result.answer is None:
        return ZoneCheck(False, f"{where} does not answer ({result.result})")
    if result.answer.rcode != "NOERROR" or not result.answer.values:
        return ZoneCheck(True, f"{where} answers {result.answer.rcode} with no SOA for {zone}: "
                               "it does not serve the cluster zone")
    return ZoneCheck(True, None)
