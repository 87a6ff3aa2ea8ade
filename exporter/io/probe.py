"""The probe engine: one connected UDP socket per DNS server, many queries in flight.

Queries in flight are keyed by (id, name, type). A connected socket hears ICMP port-unreachable
at once, and one source port keeps conntrack quiet. A truncated answer is asked again over TCP.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from exporter.core.budget import Budget
from exporter.core.dnsmsg import Answer, Malformed, QueryWire, read_header, reduce
from exporter.core.records import Question, ServerRef, split_address
from exporter.core.resolvconf import ResolvConf, candidates

log = logging.getLogger(__name__)

_ANSWERED = {"NOERROR": "noerror", "NXDOMAIN": "nxdomain"}
_FAILED = {"SERVFAIL": "servfail", "REFUSED": "refused"}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    question: Question
    server: ServerRef
    sent: float
    received: float
    result: str
    """An answer (noerror, nxdomain) or an error class (servfail, refused, other_rcode,
    timeout, network_error, malformed): the `result` label of the probes counter."""
    answer: Answer | None = None
    tcp: bool = False


class _Failure(Exception):
    def __init__(self, result: str) -> None:
        super().__init__(result)
        self.result = result


Key = tuple[int, str, str]
_Reply = tuple[Answer | None, float]
"""The answer and its receipt time; no answer means truncated: ask again over TCP."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, prober: Prober) -> None:
        self.prober = prober

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.prober.datagram(data)

    def error_received(self, exc: Exception) -> None:
        self.prober.fail_all("refused" if isinstance(exc, ConnectionRefusedError)
                             else "network_error")

    def connection_lost(self, exc: Exception | None) -> None:
        self.prober.lost()


class Prober:
    """Probes one server. `probe` never raises for DNS trouble: it returns the error class."""

    def __init__(
        self, server: ServerRef, timeout: float, wire: QueryWire,
        clock: Callable[[], float] = time.monotonic,
        on_unmatched: Callable[[ServerRef], None] = lambda server: None,
    ) -> None:
        self.server = server
        self.host, self.port = split_address(server.address)
        self.timeout = timeout
        self.wire = wire
        self.clock = clock
        self._transport: asyncio.DatagramTransport | None = None
        self._opening: asyncio.Lock = asyncio.Lock()
        self._inflight: dict[Key, asyncio.Future[_Reply]] = {}
        self._ids: dict[int, Key] = {}
        self.unmatched = 0
        """Datagrams that answered nothing in flight: wrong ID or question, or late."""
        self.on_unmatched = on_unmatched

    async def _socket(self) -> asyncio.DatagramTransport:
        async with self._opening:
            if self._transport is None or self._transport.is_closing():
                loop = asyncio.get_running_loop()
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self), remote_addr=(self.host, self.port)
                )
                self._transport = transport
            return self._transport

    def _new_id(self) -> int:
        while True:
            qid = random.getrandbits(16)
            if qid not in self._ids:
                return qid

    def datagram(self, data: bytes) -> None:
        received = self.clock()
        try:
            header = read_header(data)
        except Malformed:
            # An unreadable answer to a query in flight fails that query now, not by timeout.
            key = self._ids.get(struct.unpack_from("!H", data)[0]) if len(data) >= 2 else None
            if key is None:
                self._unmatched()
            else:
                self._settle(key, exc=_Failure("malformed"))
            return
        key = self._ids.get(header.id)
        question = header.question
        if key is None or question is None or (question.name, question.rtype) != key[1:]:
            self._unmatched()
            return
        if header.truncated:
            self._settle(key, result=(None, received))
            return
        try:
            answer = reduce(data, header, question)
        except Malformed:
            self._settle(key, exc=_Failure("malformed"))
            return
        self._settle(key, result=(answer, received))

    def _unmatched(self) -> None:
        self.unmatched += 1
        self.on_unmatched(self.server)

    def _settle(
        self, key: Key, result: _Reply | None = None,
        exc: BaseException | None = None,
    ) -> None:
        future = self._inflight.get(key)
        if future is None or future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        elif result is not None:
            future.set_result(result)

    def fail_all(self, result: str) -> None:
        for key in list(self._inflight):
            self._settle(key, exc=_Failure(result))

    def lost(self) -> None:
        self._transport = None
        self.fail_all("network_error")

    async def probe(self, question: Question) -> ProbeResult:
        sent = self.clock()
        try:
            # One deadline for both, in this task: wait_for would add a task per probe, and
            # on 3.11 it can swallow the cancel of a shutdown.
            async with asyncio.timeout(self.timeout):
                answer, received = await self._udp(question)
                tcp = answer is None
                if answer is None:
                    answer = await self._tcp(question)
                    received = self.clock()
        except TimeoutError:
            return ProbeResult(question, self.server, sent, self.clock(), "timeout")
        except _Failure as failure:
            return ProbeResult(question, self.server, sent, self.clock(), failure.result)
        except Malformed as exc:
            log.debug("malformed answer from %s for %s: %s", self.server.address, question, exc)
            return ProbeResult(question, self.server, sent, self.clock(), "malformed")
        except OSError as exc:
            result = "refused" if isinstance(exc, ConnectionRefusedError) else "network_error"
            return ProbeResult(question, self.server, sent, self.clock(), result)
        result = _ANSWERED.get(answer.rcode) or _FAILED.get(answer.rcode, "other_rcode")
        return ProbeResult(question, self.server, sent, received, result,
                           answer if answer.rcode in _ANSWERED else None, tcp)

    async def _udp(self, question: Question) -> _Reply:
        transport = await self._socket()
        qid = self._new_id()
        key = (qid, question.name, question.rtype)
        future: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        self._inflight[key], self._ids[qid] = future, key
        try:
            transport.sendto(self.wire.build(question, qid))
            return await future
        finally:
            del self._inflight[key], self._ids[qid]

    async def _tcp(self, question: Question) -> Answer:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            qid = self._new_id()
            wire = self.wire.build(question, qid)
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
            length = struct.unpack("!H", await reader.readexactly(2))[0]
            data = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise _Failure("malformed") from None
        finally:
            writer.close()
        header = read_header(data)
        if header.id != qid or header.question != question:
            raise _Failure("malformed")
        answer = reduce(data, header, question)
        return replace(answer, complete=False) if header.truncated else answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class SearchProber:
    """Asks a relative name as an application's resolver does: each name of resolv.conf's
    search list and ndots in turn (core/resolvconf.py `candidates`), until one answers with
    records or fails; an absolute name goes straight through. Each name tried after the first
    takes its own query from the budget, waiting for it, so a search never exceeds it."""

    def __init__(self, prober: Prober, conf: ResolvConf, budget: Budget) -> None:
        self.prober, self.conf, self.budget = prober, conf, budget
        self.server = prober.server

    async def _query(self) -> None:
        # The budget refills with time; no event says when, so wait for the time it names.
        while not self.budget.try_take(now := self.prober.clock()):  # noqa: ASYNC110
            await asyncio.sleep(max(0.0, self.budget.next_free(now) - now))

    async def probe(self, question: Question) -> ProbeResult:
        if question.name.endswith("."):
            return await self.prober.probe(question)
        names = candidates(question.name, self.conf)
        first = result = await self.prober.probe(Question(names[0], question.rtype))
        for name in names[1:]:
            # An error ends the search as it ends the application's lookup; NXDOMAIN and an
            # empty answer send it to the next name.
            if result.answer is None or result.answer.values:
                break
            await self._query()
            result = await self.prober.probe(Question(name, question.rtype))
        return replace(result, question=question, sent=first.sent)

    def close(self) -> None:
        self.prober.close()
