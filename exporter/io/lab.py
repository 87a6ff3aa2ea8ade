"""A DNS lab on loopback: a scripted cluster, a CoreDNS-like server and a NodeLocal-like cache.

The lab answers names from its own pod list, with its own code, so that the agent's truth model
is checked rather than echoed. Caches keep a ledger of every fill; from it the lab computes the
window its configuration implies for any change, to set beside what the agent measures.
Faults (TC, SERVFAIL, wrong IDs, delays, drops, garbage) can be switched on per server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from exporter.core.events import Kind
from exporter.core.records import Question, dashed_ip, rtype_of, srv_value

NOERROR, NXDOMAIN, SERVFAIL = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL
Emit = Callable[[Kind, str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class LabAnswer:
    rcode: dns.rcode.Rcode
    values: frozenset[str]
    ttl: int


@dataclass
class LabPod:
    name: str
    ip: str
    ready: bool = True
    hostname: str | None = None


@dataclass
class LabService:
    namespace: str
    name: str
    ports: tuple[tuple[str, int, str], ...]
    pods: dict[str, LabPod] = field(default_factory=dict)
    resource_version: int = 0
    trigger: float | None = None


@dataclass(frozen=True, slots=True)
class LabChange:
    """A record that entered (`added`) or left the lab's answers at `time`."""

    time: float
    question: Question
    value: str
    added: bool


class LabCluster:
    """Headless Services and their pods; every mutation emits the watch events a real API
    server would, and logs which records it changed."""

    def __init__(self, zone: str, emit: Emit, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.zone = zone.strip(".")
        self.emit, self.clock, self.wall = emit, clock, wall
        self.services: dict[tuple[str, str], LabService] = {}
        self.changes: list[LabChange] = []
        self._rv = 100

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def domain(self, service: LabService) -> str:
        return f"{service.name}.{service.namespace}.svc.{self.zone}."

    def answers(self, service: LabService) -> dict[Question, frozenset[str]]:
        """What the lab serves for the Service's names, worked out the way CoreDNS does."""
        domain = self.domain(service)
        out: dict[Question, set[str]] = {}
        for pod in service.pods.values():
            if not pod.ready:
                continue
            rtype = rtype_of(pod.ip)
            own = f"{pod.hostname or dashed_ip(pod.ip)}.{domain}"
            out.setdefault(Question(domain, rtype), set()).add(pod.ip)
            out.setdefault(Question(own, rtype), set()).add(pod.ip)
            for name, port, proto in service.ports:
                record = srv_value(port, own)
                for srv in (Question(f"_{name}._{proto.lower()}.{domain}", "SRV"),
                            Question(domain, "SRV"), Question(own, "SRV")):
                    out.setdefault(srv, set()).add(record)
        return {q: frozenset(v) for q, v in out.items()}

    def lookup(self, question: Question) -> frozenset[str] | None:
        """The values for a question; None when the name does not exist (NXDOMAIN)."""
        exists = False
        for service in self.services.values():
            answers = self.answers(service)
            if question in answers:
                return answers[question]
            exists = exists or any(q.name == question.name for q in answers)
        return frozenset() if exists else None

    def _slice(self, service: LabService) -> dict[str, Any]:
        annotations = {}
        if service.trigger is not None:
            stamp = datetime.fromtimestamp(int(service.trigger), UTC)
            annotations["endpoints.kubernetes.io/last-change-trigger-time"] = (
                stamp.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service.name}-lab", "namespace": service.namespace,
                "resourceVersion": self._next_rv(), "annotations": annotations,
                "labels": {"kubernetes.io/service-name": service.name,
                           "service.kubernetes.io/headless": ""},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [p.ip], "conditions": {"ready": p.ready},
                 **({"hostname": p.hostname} if p.hostname else {})}
                for p in service.pods.values()
            ],
            "ports": [{"name": n, "port": port, "protocol": proto}
                      for n, port, proto in service.ports],
        }

    def _mutate(self, service: LabService, change: Callable[[], object], trigger: bool) -> None:
        before = self.answers(service)
        change()
        if trigger:
            service.trigger = self.wall()
        after = self.answers(service)
        now = self.clock()
        for question in sorted(set(before) | set(after)):
            old, new = before.get(question, frozenset()), after.get(question, frozenset())
            self.changes += [LabChange(now, question, v, False) for v in sorted(old - new)]
            self.changes += [LabChange(now, question, v, True) for v in sorted(new - old)]
        self.emit(Kind.ENDPOINT_SLICE, "MODIFIED", self._slice(service))

    def add_service(self, namespace: str, name: str,
                    ports: tuple[tuple[str, int, str], ...] = (("http", 80, "TCP"),)) -> None:
        service = LabService(namespace, name, ports)
        self.services[(namespace, name)] = service
        self.emit(Kind.SERVICE, "ADDED", {
            "metadata": {"name": name, "namespace": namespace,
                         "resourceVersion": self._next_rv()},
            "spec": {"clusterIP": "None", "selector": {"app": name}, "ipFamilies": ["IPv4"],
                     "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]},
        })
        self.emit(Kind.ENDPOINT_SLICE, "ADDED", self._slice(service))

    def set_pod(self, namespace: str, service: str, pod: LabPod) -> None:
        """Add a ready pod, or replace one of the same name (a recreated StatefulSet pod)."""
        target = self.services[(namespace, service)]
        self._mutate(target, lambda: target.pods.__setitem__(pod.name, pod), trigger=True)

    def delete_pod(self, namespace: str, service: str, name: str) -> None:
        """A deletion carries no trigger time, as with the real EndpointSlice controller."""
        target = self.services[(namespace, service)]
        self._mutate(target, lambda: target.pods.pop(name), trigger=False)


class KubernetesBackend:
    """Answers like CoreDNS's kubernetes plugin: fixed TTL, NXDOMAIN for empty names."""

    def __init__(self, cluster: LabCluster, ttl: int = 5) -> None:
        self.cluster, self.ttl = cluster, ttl

    def resolve(self, question: Question) -> LabAnswer:
        values = self.cluster.lookup(question)
        if values is None:
            return LabAnswer(NXDOMAIN, frozenset(), self.ttl)
        return LabAnswer(NOERROR, values, self.ttl)


@dataclass(frozen=True, slots=True)
class Fill:
    """One cache insertion, for the ledger."""

    question: Question
    values: frozenset[str]
    inserted: float
    expires: float


class Resolver(Protocol):
    def resolve(self, question: Question) -> LabAnswer: ...


class CacheBackend:
    """Like CoreDNS's cache plugin: keeps an answer for its TTL capped by `success` or
    `denial`, never less than `min_ttl`, and serves the remaining TTL."""

    def __init__(self, upstream: Resolver, success: int, denial: int,
                 min_ttl: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self.upstream = upstream
        self.success, self.denial, self.min_ttl = success, denial, min_ttl
        self.clock = clock
        self.entries: dict[Question, tuple[LabAnswer, float, int]] = {}
        self.ledger: list[Fill] = []

    def resolve(self, question: Question) -> LabAnswer:
        now = self.clock()
        entry = self.entries.get(question)
        if entry is not None:
            answer, inserted, ttl = entry
            if now - inserted < ttl:
                return LabAnswer(answer.rcode, answer.values, ttl - int(now - inserted))
        answer = self.upstream.resolve(question)
        if answer.rcode == SERVFAIL:
            return answer
        cap = self.success if answer.values else self.denial
        ttl = max(self.min_ttl, min(answer.ttl, cap))
        self.entries[question] = (answer, now, ttl)
        self.ledger.append(Fill(question, answer.values, now, now + ttl))
        return LabAnswer(answer.rcode, answer.values, ttl)

    def implied_end(self, question: Question, value: str, served: bool, since: float,
                    until: float) -> float | None:
        """When this cache last stopped holding an answer that (served=True) contains `value`
        or (served=False) lacks it, among fills made before `until` that outlived `since`."""
        ends = [f.expires for f in self.ledger
                if f.question == question and (value in f.values) == served
                and f.expires > since and f.inserted < until]
        return max(ends, default=None)


@dataclass
class Faults:
    """Misbehaviour to switch on, for tests of the probe engine."""

    truncate: bool = False
    servfail: bool = False
    wrong_id: bool = False
    garbage: bool = False
    drop: bool = False
    delay: float = 0.0


def _rdata(rtype: str, value: str) -> dns.rdata.Rdata:
    if rtype == "SRV":
        port, target = value.split(" ", 1)
        value = f"0 100 {port} {target}"
    return dns.rdata.from_text(dns.rdataclass.IN, rtype, value)


class LabDnsServer:
    """UDP and TCP on one loopback address, answering from a backend."""

    def __init__(self, backend: Resolver, zone: str) -> None:
        self.backend, self.zone = backend, zone.strip(".")
        self.faults = Faults()
        self.queries = 0
        self.query_times: list[float] = []
        self.address = ""
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def respond(self, data: bytes, max_size: int | None) -> bytes | None:
        self.queries += 1
        self.query_times.append(time.monotonic())
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        if self.faults.drop:
            return None
        if self.faults.garbage:
            return data[:2] + b"\x81\x80\xff\xff"
        response = dns.message.make_response(query)
        if self.faults.servfail:
            response.set_rcode(SERVFAIL)
        else:
            self._fill(query, response)
        if self.faults.wrong_id:
            response.id = (query.id + 1) % 65536
        limit = max_size if max_size is not None else max(512, query.payload or 512)
        try:
            if self.faults.truncate and max_size is None:
                raise dns.exception.TooBig
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _fill(self, query: dns.message.Message, response: dns.message.Message) -> None:
        rrset = query.question[0]
        rtype = dns.rdatatype.to_text(rrset.rdtype)
        answer = self.backend.resolve(Question(rrset.name.to_text().lower(), rtype))
        response.set_rcode(answer.rcode)
        if answer.values:
            records = dns.rrset.from_rdata_list(
                rrset.name, answer.ttl, [_rdata(rtype, v) for v in sorted(answer.values)])
            response.answer.append(records)
        elif answer.rcode in (NOERROR, NXDOMAIN):
            soa = f"ns.dns.{self.zone}. hostmaster.{self.zone}. 1 7200 1800 86400 {answer.ttl}"
            response.authority.append(dns.rrset.from_text(
                f"{self.zone}.", answer.ttl, "IN", "SOA", soa))

    async def start(self, host: str = "127.0.0.1") -> str:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpHandler(self), local_addr=(host, 0))
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, port)
            except OSError:
                udp.close()
                continue
            self._udp = udp
            self.address = f"{host}:{port}"
            return self.address
        raise OSError(f"no free port for UDP and TCP together on {host}")

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(length)
                if self.faults.delay:
                    await asyncio.sleep(self.faults.delay)
                reply = self.respond(data, max_size=65535)
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        writer.close()

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()


class _UdpHandler(asyncio.DatagramProtocol):
    def __init__(self, server: LabDnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.server.faults.delay:
            asyncio.get_running_loop().call_later(self.server.faults.delay, self._reply, data,
                                                  addr)
        else:
            self._reply(data, addr)

    def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.respond(data, max_size=None)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


def closed_port(host: str = "127.0.0.1") -> str:
    """An address where nothing listens, for the refused-port fault."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return f"{host}:{sock.getsockname()[1]}"
