"""A hostile DNS server of the test's own against the real agent: the fault harness of issue 16.

The server runs in a process of its own, on real UDP and TCP sockets on loopback. It knows
the right answer to every name the agent asks (the truth, which does not change), and for
each query draws what to send instead: the right answer, or garbage (random bytes, an answer
cut short, a record whose length lies, a compression loop, the query echoed back), a spoof
(a wrong ID; the right ID for another question, carrying that question's records), an
oversized answer, a late or a missing one, a duplicate, or TC to move it to TCP, where it
misbehaves again. It counts what it sent by kind.

The agent is the real one (scheduler, budget, prober, comparator, metrics) at a budget high
enough for thousands of answers a second. With the truth fixed and every right answer
matching it, any window, open or closed, was made by garbage.

    .venv/bin/python -m tests.adapters.hostile --answers 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import select
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import dns.flags
import dns.message
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from prometheus_client import CollectorRegistry

from exporter.agent import Agent
from exporter.core.dnsmsg import QueryWire
from exporter.core.events import Synced
from exporter.core.records import Question, ServerRef
from exporter.io.lab import LabPod
from exporter.io.metrics import Metrics
from exporter.settings import load
from tests.adapters.test_agent import Cluster

TIMEOUT = 0.5
"""The agent's probe_timeout here."""
LATE = TIMEOUT + 0.3
"""When a slow answer leaves after its query came: late enough for a loaded machine."""
UDP_KINDS = {
    "ok": 16, "oversized": 6, "duplicate": 4, "spoof_id_then_ok": 5,
    "spoof_question_then_ok": 5, "garbage_then_ok": 5, "spoof_id": 4, "spoof_question": 4,
    "drop": 3, "slow": 4, "echo": 4, "cut": 6, "bad_rdlength": 5, "pointer_loop": 4,
    "garbage_with_id": 5, "tc": 10,
}
"""What the server sends for a UDP query, drawn with these weights."""
SO_RCVBUFFORCE = 33
"""Linux's; Python's socket module does not name it. Root may pass net.core.rmem_max."""
TCP_KINDS = {"ok": 5, "garbage": 2, "close": 1, "short": 1, "slow": 1}
EXPECTED = {
    "ok": "answer", "oversized": "answer", "duplicate": "answer", "spoof_id_then_ok": "answer",
    "spoof_question_then_ok": "answer", "garbage_then_ok": "answer", "spoof_id": "timeout",
    "spoof_question": "timeout", "drop": "timeout", "slow": "timeout", "echo": "malformed",
    "cut": "malformed", "bad_rdlength": "malformed", "pointer_loop": "malformed",
    "garbage_with_id": "malformed", "tcp ok": "answer", "tcp garbage": "malformed",
    "tcp close": "malformed", "tcp short": "malformed", "tcp slow": "timeout",
}
"""The probe result each kind must give."""
UNMATCHED = ("duplicate", "spoof_id_then_ok", "spoof_question_then_ok", "garbage_then_ok",
             "spoof_id", "spoof_question", "slow")
"""Kinds that send one datagram that answers nothing in flight."""


def templates(expected: dict[Question, frozenset[str]]) -> dict[tuple[str, int], bytes]:
    """The right answer to each question, ID 0, as the agent's own query wire asks it."""
    wire = QueryWire()
    out: dict[tuple[str, int], bytes] = {}
    for question, values in expected.items():
        query = dns.message.from_wire(wire.build(question, 0))
        response = dns.message.make_response(query)
        name = query.question[0].name
        rtype = dns.rdatatype.from_text(question.rtype)
        if values:
            rdatas = [dns.rdata.from_text(dns.rdataclass.IN, rtype, _rdata_text(question, v))
                      for v in sorted(values)]
            response.answer.append(dns.rrset.from_rdata_list(name, 30, rdatas))
        else:
            soa = "ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
            response.authority.append(dns.rrset.from_text("cluster.local.", 5, "IN", "SOA", soa))
        out[(question.name, rtype)] = response.to_wire()
    return out


def _rdata_text(question: Question, value: str) -> str:
    if question.rtype == "SRV":
        port, target = value.split(" ", 1)
        return f"0 100 {port} {target}"
    return value


def _first_record(wire: bytes) -> int:
    """Offset of the first answer or authority record: after the header and the question."""
    offset = 12
    while wire[offset]:
        offset += wire[offset] + 1
    return offset + 5


def _with_id(wire: bytes, qid: int) -> bytes:
    return struct.pack("!H", qid) + wire[2:]


def _padded(wire: bytes, rng: random.Random) -> bytes:
    """The answer with an additional section of filler records: 2 to 16 KB in all."""
    message = dns.message.from_wire(wire)
    size = rng.randrange(2_000, 16_000)
    rdatas = [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, f"192.0.2.{i % 250 + 1}")
              for i in range(size // 16)]
    message.additional.append(dns.rrset.from_rdata_list("filler.invalid.", 30, rdatas))
    return message.to_wire()


@dataclass
class Server:
    """The hostile server's state, in its own process."""

    right: dict[tuple[str, int], bytes]
    rng: random.Random
    udp_kinds: dict[str, int]
    tcp_kinds: dict[str, int]
    sent: Counter[str] = field(default_factory=Counter)
    """Queries answered, by the kind of answer drawn."""
    answers: int = 0
    """Datagrams and TCP replies sent."""
    queries: int = 0
    later: list[tuple[float, bytes, tuple[str, int] | socket.socket]] = field(
        default_factory=list)
    """Slow answers: when, what, and to which UDP peer or TCP connection."""
    tcp: dict[socket.socket, bytearray] = field(default_factory=dict)
    padded: dict[bytes, bytes] = field(default_factory=dict)
    """Each right answer's oversized form, made once."""

    def __post_init__(self) -> None:
        self.keys = sorted(self.right)

    def _right(self, query: bytes) -> tuple[bytes, bytes] | None:
        """The right answer to the query with its ID, and another question's with it too."""
        offset = 12
        while offset < len(query) and query[offset]:
            offset += query[offset] + 1
        name = query[12:offset + 1]
        labels, at = [], 0
        while name[at]:
            labels.append(name[at + 1:at + 1 + name[at]].decode().lower())
            at += name[at] + 1
        rtype = struct.unpack_from("!H", query, offset + 1)[0]
        key = (".".join(labels) + ".", rtype)
        right = self.right.get(key)
        if right is None:
            return None
        other = right
        while other == right:
            other = self.right[self.rng.choice(self.keys)]
        qid = query[0] << 8 | query[1]
        return _with_id(right, qid), _with_id(other, qid)

    def udp(self, sock: socket.socket, query: bytes, peer: tuple[str, int]) -> None:
        self.queries += 1
        pair = self._right(query)
        if pair is None:
            return
        right, other = pair
        qid = struct.unpack_from("!H", query)[0]
        kind = self.rng.choices(list(self.udp_kinds), list(self.udp_kinds.values()))[0]
        self.sent[kind] += 1
        send: list[bytes] = []
        if kind in ("ok", "duplicate", "spoof_id_then_ok", "spoof_question_then_ok",
                    "garbage_then_ok"):
            send = [{"spoof_id_then_ok": _with_id(right, qid ^ 0x5A5A),
                     "spoof_question_then_ok": other,
                     "garbage_then_ok": self.rng.randbytes(self.rng.randrange(0, 600)),
                     "duplicate": right}.get(kind, right)]
            send.append(right)
            if kind == "ok":
                send.pop()
        elif kind == "oversized":
            template = self.padded.get(right[2:])
            if template is None:
                template = self.padded[right[2:]] = _padded(right, self.rng)
            send = [_with_id(template, qid)]
        elif kind == "spoof_id":
            send = [_with_id(right, qid ^ 0x5A5A)]
        elif kind == "spoof_question":
            send = [other]
        elif kind == "slow":
            self.later.append((time.monotonic() + LATE, right, peer))
        elif kind == "echo":
            send = [query]
        elif kind == "cut":
            body = _first_record(right)
            send = [right[:self.rng.randrange(2, body + 12)]]
        elif kind == "bad_rdlength":
            send = [self._bad_rdlength(right)]
        elif kind == "pointer_loop":
            at = _first_record(right)
            send = [right[:at] + struct.pack("!H", 0xC000 | at) + right[at + 2:]]
        elif kind == "garbage_with_id":
            send = [right[:2] + self.rng.randbytes(10)]
        elif kind == "tc":
            flags = struct.unpack_from("!H", right, 2)[0] | 0x0200
            send = [right[:2] + struct.pack("!H", flags) + query[4:]]
        for datagram in send:
            sock.sendto(datagram, peer)
        self.answers += len(send)

    def _bad_rdlength(self, right: bytes) -> bytes:
        """The first record's data one byte longer than its type allows."""
        at = _first_record(right)
        while right[at] and right[at] < 0xC0:
            at += right[at] + 1
        at += 2 if right[at] >= 0xC0 else 1
        length = struct.unpack_from("!H", right, at + 8)[0]
        end = at + 10 + length
        return (right[:at + 8] + struct.pack("!H", length + 1) + right[at + 10:end] + b"\0"
                + right[end:])

    def tcp_query(self, conn: socket.socket, query: bytes) -> bool:
        """Answers one query; False when the connection is to be closed."""
        pair = self._right(query)
        if pair is None:
            return False
        right = pair[0]
        kind = self.rng.choices(list(self.tcp_kinds), list(self.tcp_kinds.values()))[0]
        self.sent[f"tcp {kind}"] += 1
        self.answers += kind != "close"
        if kind == "ok":
            conn.sendall(struct.pack("!H", len(right)) + right)
        elif kind == "garbage":
            junk = right[:2] + self.rng.randbytes(self.rng.randrange(0, 300))
            conn.sendall(struct.pack("!H", len(junk)) + junk)
        elif kind == "short":
            conn.sendall(struct.pack("!H", len(right)) + right[:len(right) // 2])
            return False
        elif kind == "slow":
            self.later.append((time.monotonic() + LATE, struct.pack("!H", len(right)) + right,
                               conn))
            return True
        return kind != "close"


def serve(conn: Connection, answers: dict[tuple[str, int], bytes], seed: int,
          udp_kinds: dict[str, int], tcp_kinds: dict[str, int]) -> None:
    """The server process: reports its port, then serves until told to stop, then reports
    what it sent."""
    state = Server(answers, random.Random(seed), udp_kinds, tcp_kinds)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # The agent's bursts must not overflow the buffer: a query lost there is a timeout that
    # no answer kind caused, and the count would no longer add up.
    try:
        udp.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    except PermissionError:
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    conn.send(port)
    while True:
        now = time.monotonic()
        due = [item for item in state.later if item[0] <= now]
        state.later = [item for item in state.later if item[0] > now]
        for _, wire, peer in due:
            if isinstance(peer, tuple):
                udp.sendto(wire, peer)
            elif peer in state.tcp:  # else the agent gave up and closed it
                with contextlib.suppress(OSError):
                    peer.sendall(wire)
            state.answers += 1
        wait = min((t for t, _, _ in state.later), default=now + 0.05) - now
        watched: list[socket.socket | Connection] = [udp, listener, conn, *state.tcp]
        ready, _, _ = select.select(watched, [], [], max(0.0, wait))
        if conn in ready:
            conn.recv()
            conn.send((dict(state.sent), state.answers, state.queries))
            return
        if udp in ready:
            for _ in range(64):
                try:
                    query, peer = udp.recvfrom(4096, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                state.udp(udp, query, peer)
        if listener in ready:
            accepted, _ = listener.accept()
            state.tcp[accepted] = bytearray()
        for sock in [s for s in ready if s in state.tcp]:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            buffer = state.tcp[sock]
            buffer += data
            keep = bool(data)
            while keep and len(buffer) >= 2 and len(buffer) >= 2 + (buffer[0] << 8 | buffer[1]):
                length = buffer[0] << 8 | buffer[1]
                try:
                    keep = state.tcp_query(sock, bytes(buffer[2:2 + length]))
                except OSError:
                    keep = False
                del buffer[:2 + length]
            if not keep:
                del state.tcp[sock]
                sock.close()


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Report:
    sent: dict[str, int]
    """Queries the server answered, by the kind of answer it drew."""
    answers: int
    """Datagrams and TCP replies it sent."""
    queries: int
    """UDP queries it received."""
    probes: dict[str, int]
    """The agent's dns_staleness_probes_total, by result."""
    unmatched: int
    """The agent's dns_staleness_answers_unmatched_total."""
    windows: int
    """Closed windows of either kind, and races: garbage made them."""
    open_windows: int
    crashed: str
    rss: list[tuple[int, int]]
    """(answers sent so far, the agent process's RSS) along the run."""
    seconds: float

    def expected(self) -> Counter[str]:
        """The probe results the kinds sent must have given."""
        out: Counter[str] = Counter()
        for kind, count in self.sent.items():
            if kind != "tc":
                out[EXPECTED[kind]] += count
        return out

    def got(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for result, count in self.probes.items():
            out["answer" if result in ("noerror", "nxdomain") else result] += count
        return out

    def in_flight(self) -> int:
        """Queries the server got whose probes the agent's stop cut short: never counted."""
        return self.queries - sum(self.probes.values())

    def expected_unmatched(self) -> int:
        return sum(self.sent.get(kind, 0) for kind in UNMATCHED)

    def lines(self) -> Iterator[str]:
        yield (f"{self.answers:,} answers sent to the agent in {self.seconds:.1f} s, for "
               f"{self.queries:,} UDP queries ({self.in_flight()} in flight at the stop)")
        for kind, count in sorted(self.sent.items(), key=lambda kv: -kv[1]):
            yield f"  {kind:24} {count:8,}  -> {EXPECTED.get(kind, 'TCP retry')}"
        yield f"probe results: {dict(sorted(self.got().items()))}"
        yield f"expected:      {dict(sorted(self.expected().items()))}"
        yield (f"unmatched answers counted: {self.unmatched:,} (spoofed, duplicate, late and "
               f"random ones sent: {self.expected_unmatched():,})")
        yield (f"crashes: {1 if self.crashed else 0}; windows and races made: {self.windows}; "
               f"open windows at the end: {self.open_windows}")
        yield "RSS (MB) by answers sent: " + ", ".join(
            f"{n:,}: {size / 1e6:.1f}" for n, size in self.rss)


def expected_answers(agent: Agent) -> dict[Question, frozenset[str]]:
    out = {}
    for target in sorted(agent.truth.monitored):
        for question in agent.comparator.questions(target):
            out[question] = agent.comparator.expected(question) or frozenset()
    return out


def probes_of(metrics: Metrics) -> tuple[dict[str, int], int, int]:
    probes: dict[str, int] = {}
    unmatched = windows = 0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "dns_staleness_probes_total":
                probes[sample.labels["result"]] = int(sample.value)
            elif sample.name == "dns_staleness_answers_unmatched_total":
                unmatched += int(sample.value)
            elif sample.name in ("dns_staleness_window_seconds_count",
                                 "dns_staleness_propagation_seconds_count",
                                 "dns_staleness_window_races_total"):
                windows += int(sample.value)
    return probes, unmatched, windows


async def attack(answers: int, services: int = 100, seed: int = 16,
                 udp_kinds: dict[str, int] | None = None,
                 tcp_kinds: dict[str, int] | None = None) -> Report:
    """`answers` probes at least, answered by the hostile server with the kinds' weights."""
    cluster = Cluster()
    for s in range(services):
        cluster.lab.add_service("hostile", f"svc{s}")
        for i in range(3):
            cluster.lab.set_pod("hostile", f"svc{s}",
                                LabPod(f"p{i}", f"10.{s // 200}.{s % 200}.{i + 1}",
                                       hostname=f"p{i}"))
    cluster.queue.put_nowait(Synced())
    settings = load("run", {"probe_budget_qps": "4000", "probe_burst": "50",
                            "sweep_interval": "1", "probe_timeout": str(TIMEOUT)}, {}, None)
    metrics = Metrics(CollectorRegistry())
    agent = Agent(settings, (), metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(cluster.events(), stop))
    await asyncio.wait_for(agent.synced.wait(), 10)
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(theirs, templates(expected_answers(agent)), seed,
                            udp_kinds or UDP_KINDS, tcp_kinds or TCP_KINDS), daemon=True)
    server.start()
    port = await asyncio.to_thread(ours.recv)
    agent.set_servers((ServerRef("hostile", f"127.0.0.1:{port}"),))
    started = time.monotonic()
    samples: list[tuple[int, int]] = []
    crashed = ""
    try:
        while True:
            await asyncio.sleep(0.5)
            if task.done():
                crashed = repr(task.exception())
                break
            probes, _, _ = probes_of(metrics)
            sent = sum(probes.values())
            samples.append((sent, rss()))
            if sent >= answers:
                break
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(TIMEOUT + 0.1)  # late answers still in flight land now
        ours.send("stop")
        sent_by_kind, answered, queries = await asyncio.to_thread(ours.recv)
        server.join(5)
    probes, unmatched, windows = probes_of(metrics)
    open_now = sum(1 for _ in agent.comparator.open_detail(agent.clock()))
    step = max(1, len(samples) // 10)
    return Report(sent_by_kind, answered, queries, probes, unmatched, windows, open_now, crashed,
                  samples[::step], time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=100_000,
                        help="probes to answer, at least (default %(default)s)")
    args = parser.parse_args()
    report = asyncio.run(attack(args.answers))
    for line in report.lines():
        print(line)
    return 1 if report.crashed or report.windows or report.open_windows else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
