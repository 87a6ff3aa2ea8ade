"""A network namespace joined to this one by a veth pair, or addresses on this one's `lo`, for
servers that must have a non-loopback address: EndpointSlice validation refuses loopback and
link-local addresses.

The addresses come from a /29 picked at random in 198.18.0.0/15 (the benchmarking range) among
those no local address or route overlaps, so two runs on one machine do not collide. Traffic to
them never leaves the machine: the only route to the /29 is the veth pair. Needs root and
iproute2. Everything is removed on exit, the namespace and the pair included.
"""

from __future__ import annotations

import ipaddress
import random
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

RANGE = ipaddress.ip_network("198.18.0.0/15")
PREFIX = 29


def ip(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class VethNamespace:
    name: str
    host_interface: str
    host_address: str
    """The address on this side of the pair: the source of packets into the namespace."""
    addresses: tuple[str, ...]
    """Addresses inside the namespace."""

    def argv(self, command: Sequence[str]) -> list[str]:
        """`command` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]


def _in_use() -> list[ipaddress.IPv4Network]:
    used = []
    for line in (ip("-4", "-o", "addr", "show") + ip("-4", "route", "show", "table", "all")
                 ).splitlines():
        for word in line.split():
            with suppress(ValueError):
                if "/" in word or word[:1].isdigit():
                    used.append(ipaddress.ip_network(word, strict=False))
    return [n for n in used if isinstance(n, ipaddress.IPv4Network)]


def _free_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    used = _in_use()
    for _ in range(200):
        offset = rng.randrange(RANGE.num_addresses // 2 ** (32 - PREFIX)) * 2 ** (32 - PREFIX)
        net = ipaddress.ip_network(f"{RANGE.network_address + offset}/{PREFIX}")
        if not any(net.overlaps(u) for u in used):
            assert isinstance(net, ipaddress.IPv4Network)
            return net
    raise RuntimeError(f"no free /{PREFIX} in {RANGE}")


@contextmanager
def veth_namespace(count: int = 1) -> Iterator[VethNamespace]:
    """A fresh namespace with `count` addresses (at most 5), reachable from here."""
    assert 1 <= count <= 5
    tag = uuid.uuid4().hex[:8]
    name, host_if, ns_if = f"dse-{tag}", f"dse{tag}h", f"dse{tag}n"
    net = _free_subnet(random.Random())
    hosts = [str(a) for a in net.hosts()]
    ns = VethNamespace(name, host_if, hosts[0], tuple(hosts[1:1 + count]))
    try:
        ip("netns", "add", name)
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        ip("addr", "add", f"{ns.host_address}/{PREFIX}", "dev", host_if)
        ip("link", "set", host_if, "up")
        for address in ns.addresses:
            ip("-n", name, "addr", "add", f"{address}/{PREFIX}", "dev", ns_if)
        ip("-n", name, "link", "set", ns_if, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield ns
    finally:
        # Deleting one end removes the pair; the namespace goes once no process is left in it.
        ip("link", "del", host_if, check=False)
        ip("netns", "del", name, check=False)


@contextmanager
def local_addresses(count: int = 1) -> Iterator[tuple[str, ...]]:
    """`count` addresses (at most 6) of a /29 as above, added to this namespace's `lo`: servers
    here can bind them, every process here reaches them, and they are no loopback addresses
    to the API server's validation. Removed on exit."""
    assert 1 <= count <= 6
    hosts = [str(a) for a in _free_subnet(random.Random()).hosts()][:count]
    added = []
    try:
        for address in hosts:
            ip("addr", "add", f"{address}/32", "dev", "lo")
            added.append(address)
        yield tuple(hosts)
    finally:
        for address in added:
            ip("addr", "del", f"{address}/32", "dev", "lo", check=False)
