"""Layers: which DNS servers a node probes. Rendezvous sharding of the CoreDNS replicas,
resolv.conf parsing, the kube-dns Service and slices, and address forms with IPv6."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from exporter.core.layers import Discovery, first_nameserver, rendezvous, split_static
from exporter.core.objects import parse_dns_service, parse_dns_slice
from exporter.core.records import ServerRef, join_address, split_address, with_port

REPLICAS = [f"10.244.{i}.10:53" for i in range(5)]
NODES = [f"node-{i:04d}" for i in range(2000)]


# -- rendezvous -----------------------------------------------------------------------------

def test_rendezvous_is_deterministic_and_ignores_input_order() -> None:
    first = rendezvous("node-a", REPLICAS, 2)
    assert first == rendezvous("node-a", list(reversed(REPLICAS)), 2)
    assert first == rendezvous("node-a", set(REPLICAS), 2)
    assert len(first) == 2 and len(set(first)) == 2 and set(first) <= set(REPLICAS)
    assert first == sorted(first)


def test_rendezvous_count_bounds() -> None:
    assert rendezvous("node-a", REPLICAS, 99) == sorted(REPLICAS)
    assert rendezvous("node-a", [], 1) == []
    assert rendezvous("node-a", REPLICAS[:1], 1) == REPLICAS[:1]


def test_rendezvous_spreads_nodes_evenly_across_replicas() -> None:
    load = Counter(rendezvous(node, REPLICAS, 1)[0] for node in NODES)
    assert set(load) == set(REPLICAS)
    expected = len(NODES) / len(REPLICAS)  # 400; binomial sd ~18, so 25 % is ~5.5 sd
    for replica, count in load.items():
        assert abs(count - expected) < 0.25 * expected, (replica, load)
    # Two per node: every replica is picked by about 2/5 of the nodes.
    pairs = Counter(r for node in NODES for r in rendezvous(node, REPLICAS, 2))
    for replica, count in pairs.items():
        assert abs(count - 2 * expected) < 0.25 * 2 * expected, (replica, pairs)


def test_removing_a_replica_moves_only_the_nodes_that_had_picked_it() -> None:
    before = {node: rendezvous(node, REPLICAS, 1)[0] for node in NODES}
    gone = REPLICAS[2]
    after = {node: rendezvous(node, [r for r in REPLICAS if r != gone], 1)[0]
             for node in NODES}
    moved = {node for node in NODES if before[node] != after[node]}
    assert moved == {node for node in NODES if before[node] == gone}
    assert moved, "some node had picked the removed replica"
    # The orphans spread over the survivors rather than piling onto one.
    assert len(Counter(after[node] for node in moved)) == len(REPLICAS) - 1


def test_adding_a_replica_only_takes_nodes_over() -> None:
    new = "10.244.9.10:53"
    before = {node: rendezvous(node, REPLICAS, 2) for node in NODES}
    after = {node: rendezvous(node, [*REPLICAS, new], 2) for node in NODES}
    for node in NODES:
        if before[node] != after[node]:
            assert new in after[node]
            assert len(set(before[node]) & set(after[node])) == 1, (before[node], after[node])
    share = sum(new in picked for picked in after.values()) / len(NODES)
    assert 0.25 < share < 0.45  # 2 of 6 replicas per node: about 1/3


# -- resolv.conf ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("nameserver 10.96.0.10\n", "10.96.0.10"),
    ("search a.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
     "10.96.0.10"),
    ("# nameserver 1.1.1.1\nnameserver 10.0.0.2 # the cluster DNS\nnameserver 10.0.0.3\n",
     "10.0.0.2"),
    ("nameserver\tfd00::a\n", "fd00::a"),
    ("nameserver FD00:0:0::A\n", "fd00::a"),  # canonical form, as the slices are compared
    ("nameserver fe80::1%eth0\n", "fe80::1"),  # the zone is dropped (see the report)
    ("nameserver not-an-ip\nnameserver 10.0.0.4\n", "10.0.0.4"),  # garbage is skipped
    ("nameserver 10.0.0.300\n", None),
    ("nameserver\n", None),
    ("domain example.org\n", None),
    ("", None),
    ("\x00\xff garbage\n\n   \n", None),
    ("  nameserver   10.0.0.5  \n", "10.0.0.5"),
    ("nameservers 10.0.0.6\n", None),
])
def test_first_nameserver(text: str, expected: str | None) -> None:
    assert first_nameserver(text) == expected


# -- address forms --------------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "expected"), [
    ("upstream=10.0.0.10", ("upstream", "10.0.0.10:53")),
    ("upstream=10.0.0.10:5353", ("upstream", "10.0.0.10:5353")),
    ("v6=fd00::10", ("v6", "[fd00::10]:53")),
    ("v6=[fd00::10]:5353", ("v6", "[fd00::10]:5353")),
    ("v6=::1", ("v6", "[::1]:53")),
    # An IPv6 address ending in a port-like group is an address: ports need brackets.
    ("v6=fd00::1:53", ("v6", "[fd00::1:53]:53")),
    ("mapped=::ffff:10.0.0.1", ("mapped", "[::ffff:10.0.0.1]:53")),
])
def test_split_static(entry: str, expected: tuple[str, str]) -> None:
    assert split_static(entry) == expected


@pytest.mark.parametrize(("address", "expected"), [
    ("169.254.20.10", "169.254.20.10:53"),
    ("169.254.20.10:5353", "169.254.20.10:5353"),
    ("fd00::10", "[fd00::10]:53"),
    ("[fd00::10]:53", "[fd00::10]:53"),
    ("[fd00::10]:1053", "[fd00::10]:1053"),
])
def test_with_port(address: str, expected: str) -> None:
    assert with_port(address) == expected


def test_join_address() -> None:
    assert join_address("10.0.0.1", 53) == "10.0.0.1:53"
    assert join_address("10.0.0.1", 1053) == "10.0.0.1:1053"
    assert join_address("fd00::1", 1053) == "[fd00::1]:1053"


@pytest.mark.parametrize(("address", "default", "expected"), [
    ("0.0.0.0:9897", None, ("0.0.0.0", 9897)),
    (":9897", None, ("", 9897)),
    ("[::]:9897", None, ("::", 9897)),
    ("localhost:0", None, ("localhost", 0)),
    ("fd00::10", 53, ("fd00::10", 53)),
    ("[fd00::10]", 53, ("fd00::10", 53)),
])
def test_split_address(address: str, default: int | None, expected: tuple[str, int]) -> None:
    assert split_address(address, default) == expected


@pytest.mark.parametrize(("address", "default", "problem"), [
    ("0.0.0.0", None, "needs a port"),
    ("::1:9897", None, "brackets"),
    ("[::1", 53, "brackets"),
    ("[::1]x53", 53, "brackets"),
    ("10.0.0.1:http", 53, "'http' is not a port"),
    ("10.0.0.1:70000", 53, "0 to 65535"),
])
def test_split_address_says_what_is_wrong(address: str, default: int | None,
                                          problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        split_address(address, default)


# -- Discovery ------------------------------------------------------------------------------

def dns_service(ip: str | None = "10.96.0.10", ports: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": ports if ports is not None else [
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        {"name": "metrics", "port": 9153, "protocol": "TCP"},
    ]}
    if ip is not None:
        spec["clusterIP"] = ip
    return {"metadata": {"name": "kube-dns", "namespace": "kube-system"}, "spec": spec}


def dns_slice(endpoints: list[tuple[str, bool | None]], ports: Any = None) -> dict[str, Any]:
    eps = []
    for address, ready in endpoints:
        ep: dict[str, Any] = {"addresses": [address]}
        if ready is not None:
            ep["conditions"] = {"ready": ready}
        eps.append(ep)
    return {"metadata": {"name": "kube-dns-abcde"}, "addressType": "IPv4",
            "endpoints": eps, "ports": ports if ports is not None else [
                {"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
                {"name": "metrics", "port": 9153, "protocol": "TCP"},
                {"name": "dns", "port": 5353, "protocol": "UDP"}]}


def slice_event(d: Discovery, name: str, obj: dict[str, Any] | None) -> None:
    """What the agent does with a kube-dns slice event: read it, then apply it."""
    if obj is None:
        d.delete_slice(name)
    else:
        d.apply_slice(parse_dns_slice({**obj, "metadata": {"name": name,
                                                           "namespace": "kube-system"}}))


def service_event(d: Discovery, obj: dict[str, Any] | None) -> None:
    d.apply_service(None if obj is None else parse_dns_service(obj))


def discovery(*layers: str, node: str = "node-a", per_node: int = 1,
              static: tuple[ServerRef, ...] = ()) -> Discovery:
    return Discovery(node=node, replicas_per_node=per_node, enabled=frozenset(layers),
                     static=static)


def test_every_layer_enabled() -> None:
    d = discovery("kube-dns", "coredns", "node-local", per_node=2,
                  static=(ServerRef("upstream", "10.0.0.53:53"),))
    service_event(d, dns_service())
    slice_event(d, "kube-dns-abcde", dns_slice([("10.244.0.5", True), ("10.244.1.5", None)]))
    d.node_local = "169.254.20.10:53"
    assert d.servers() == (
        ServerRef("coredns", "10.244.0.5:5353"),
        ServerRef("coredns", "10.244.1.5:5353"),
        ServerRef("kube-dns", "10.96.0.10:53"),
        ServerRef("node-local", "169.254.20.10:53"),
        ServerRef("upstream", "10.0.0.53:53"),
    )


def test_disabled_layers_are_not_probed_even_when_known() -> None:
    d = discovery("coredns")
    service_event(d, dns_service())
    slice_event(d, "s", dns_slice([("10.244.0.5", True)]))
    d.node_local = "169.254.20.10:53"
    assert d.servers() == (ServerRef("coredns", "10.244.0.5:5353"),)
    d = discovery("kube-dns")
    service_event(d, dns_service())
    slice_event(d, "s", dns_slice([("10.244.0.5", True)]))
    assert d.servers() == (ServerRef("kube-dns", "10.96.0.10:53"),)
    assert discovery().servers() == ()


def test_node_local_only_while_it_answers() -> None:
    d = discovery("node-local")
    assert d.servers() == ()
    d.node_local = "169.254.20.10:53"
    assert d.servers() == (ServerRef("node-local", "169.254.20.10:53"),)


def test_not_ready_endpoints_and_bad_addresses_are_skipped() -> None:
    d = discovery("coredns", per_node=5)
    slice_event(d, "s", dns_slice([("10.244.0.5", True), ("10.244.0.6", False),
                                  ("10.244.0.7", None), ("not-an-ip", True)]))
    assert d.servers() == (ServerRef("coredns", "10.244.0.5:5353"),
                           ServerRef("coredns", "10.244.0.7:5353"))


def test_dns_port_is_the_udp_port_named_dns() -> None:
    d = discovery("coredns")
    slice_event(d, "s", dns_slice([("10.244.0.5", True)], ports=[
        {"name": "dns-tcp", "port": 1053, "protocol": "TCP"},
        {"name": "dns", "port": 1054, "protocol": "TCP"},
        {"name": "metrics", "port": 9153, "protocol": "UDP"},
        {"name": "dns", "port": 1055, "protocol": "UDP"}]))
    assert d.servers() == (ServerRef("coredns", "10.244.0.5:1055"),)
    # No port list at all: the DNS port.
    slice_event(d, "s", dns_slice([("10.244.0.5", True)], ports=[]))
    assert d.servers() == (ServerRef("coredns", "10.244.0.5:53"),)
    # A null port (a slice for all ports) is skipped; an unnamed port without a protocol
    # counts as the UDP `dns` port (single-port Services have unnamed ports).
    slice_event(d, "s", dns_slice([("10.244.0.5", True)], ports=[
        {"port": None, "protocol": "UDP"}, {"port": 2053}]))
    assert d.servers() == (ServerRef("coredns", "10.244.0.5:2053"),)


def test_kube_dns_service_port_and_ip_changes() -> None:
    d = discovery("kube-dns")
    service_event(d, dns_service(ports=[{"name": "dns", "port": 1053, "protocol": "UDP"}]))
    assert d.servers() == (ServerRef("kube-dns", "10.96.0.10:1053"),)
    service_event(d, dns_service("fd00:96::a"))
    assert d.servers() == (ServerRef("kube-dns", "[fd00:96::a]:53"),)
    for headless in (dns_service("None"), dns_service(""), dns_service(None)):
        service_event(d, headless)
        assert d.servers() == ()
    service_event(d, dns_service())
    service_event(d, None)  # deleted
    assert d.servers() == ()


def test_slices_add_up_and_deleting_one_removes_its_replicas() -> None:
    d = discovery("coredns", per_node=10)
    slice_event(d, "a", dns_slice([("10.244.0.5", True)]))
    slice_event(d, "b", dns_slice([("10.244.1.5", True), ("10.244.0.5", True)]))
    assert [s.address for s in d.servers()] == ["10.244.0.5:5353", "10.244.1.5:5353"]
    slice_event(d, "a", None)
    assert [s.address for s in d.servers()] == ["10.244.0.5:5353", "10.244.1.5:5353"]
    slice_event(d, "b", dns_slice([]))
    assert d.servers() == ()
    slice_event(d, "never-seen", None)  # deleting an unknown slice is harmless
    assert d.servers() == ()


def test_ipv6_replicas_get_brackets() -> None:
    d = discovery("coredns")
    slice_event(d, "s", {**dns_slice([("FD00:10:244::5", True)]), "addressType": "IPv6"})
    assert d.servers() == (ServerRef("coredns", "[fd00:10:244::5]:5353"),)


def test_coredns_probes_are_sharded_by_node() -> None:
    replicas = [f"10.244.{i}.5" for i in range(4)]
    picks = set()
    for node in NODES[:50]:
        d = discovery("coredns", node=node)
        slice_event(d, "s", dns_slice([(r, True) for r in replicas]))
        servers = d.servers()
        assert len(servers) == 1
        assert [s.address for s in servers] == rendezvous(
            node, [f"{r}:5353" for r in replicas], 1)
        picks.add(servers[0].address)
    assert len(picks) == len(replicas)


def test_odd_objects() -> None:
    d = discovery("kube-dns", "coredns")
    with pytest.raises(ValueError, match="spec must be an object"):
        service_event(d, {"metadata": {"name": "kube-dns", "namespace": "kube-system"},
                          "spec": ["x"]})
    slice_event(d, "s", {"endpoints": ["x", None, {"addresses": None}], "ports": "nope"})
    assert d.slices["s"] == ()
