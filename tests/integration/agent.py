"""Helpers for end-to-end tests: the agent as a subprocess, and an independent DNS checker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.events import ObjectEvent, SourceEvent
from exporter.core.records import Question
from exporter.io.kubeconfig import from_kubeconfig
from exporter.io.watch import KubeApi, Resource, Watcher
from tests.dnsref import reference_reduce
from tests.rig import CoreDNS, KubeApiServer, free_port

WINDOW = re.compile(
    r"window kind=(?P<kind>\S+) layer=(?P<layer>\S+) server=(?P<server>\S+) name=(?P<name>\S+) "
    r"type=(?P<type>\S+) value=(?P<value>\S+) reference=(?P<reference>\S+) "
    r"seconds=(?P<seconds>[\d.]+) resolution=(?P<resolution>[\d.]+)")

LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


@dataclass(frozen=True)
class LogLine:
    """One logfmt line of the agent: its wall time, level, logger, message and fields."""

    wall: float
    level: str
    logger: str
    msg: str
    fields: dict[str, str]


def log_lines(text: str) -> list[LogLine]:
    out = []
    for line in text.splitlines():
        pairs = {k: json.loads(v) if v.startswith('"') else v
                 for k, v in LOGFMT_PAIR.findall(line)}
        if "ts" not in pairs or "msg" not in pairs:
            continue  # another process's output
        out.append(LogLine(datetime.fromisoformat(pairs.pop("ts")).timestamp(),
                           pairs.pop("level", ""), pairs.pop("logger", ""), pairs.pop("msg"),
                           pairs))
    return out


SCENARIOS: list[tuple[str, str, str, str, str]] = []
"""Rows for the terminal summary: scenario, layer, configured bound, checker, agent."""


Samples = list[tuple[str, dict[str, str], float]]
"""Every sample of a /metrics page: name, labels, value."""


def samples(text: str) -> Samples:
    return [(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include these."""
    return sum(v for n, lab, v in found
               if n == name and all(lab.get(k) == want for k, want in labels.items()))


async def listed(apiserver: KubeApiServer, resource: Resource) -> tuple[list[Any], Watcher]:
    """What the agent's own watcher lists for `resource`, and the watcher after its list."""
    seen: list[SourceEvent] = []
    async with aiohttp.ClientSession() as session:
        api = KubeApi(from_kubeconfig(str(apiserver.kubeconfig_path)), session)
        watcher = Watcher(api, resource, seen.append, lambda _: None, watch_timeout=30)
        task = asyncio.create_task(watcher.run())
        await asyncio.wait_for(watcher.listed.wait(), 20)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return [e.obj for e in seen if isinstance(e, ObjectEvent)], watcher


def ask(server: CoreDNS, question: Question) -> tuple[str, frozenset[str]]:
    query = dns.message.make_query(question.name, question.rtype, use_edns=0, payload=1232)
    reply, _ = dns.query.udp_with_fallback(query, server.address, timeout=2.0,
                                           port=server.port)
    answer = reference_reduce(reply, question)
    return answer.rcode, answer.values


@dataclass(frozen=True)
class AgentWindow:
    kind: str
    layer: str
    name: str
    type: str
    value: str
    reference: str
    seconds: float
    resolution: float
    server: str = ""
    end: float = 0.0
    """When it was logged, on this process's monotonic clock; 0 from `windows()`."""

    @classmethod
    def of(cls, match: re.Match[str], end: float = 0.0) -> AgentWindow:
        d = match.groupdict()
        return cls(d["kind"], d["layer"], d["name"], d["type"], d["value"].replace("_", " "),
                   d["reference"], float(d["seconds"]), float(d["resolution"]), d["server"],
                   end)


class AgentProcess:
    """`dns-staleness-exporter run` with a kubeconfig, logging at debug level to a file."""

    def __init__(self, workdir: Path, kubeconfig: Path, args: Sequence[str],
                 tls: ssl.SSLContext | None = None) -> None:
        self.port = free_port("127.0.0.1")
        self.tls = tls
        """The client side when the agent serves HTTPS (a web config with TLS)."""
        self.log_path = workdir / "agent.log"
        self.args = [sys.executable, "-m", "exporter", "run", "--kubeconfig", str(kubeconfig),
                     "--listen", f"127.0.0.1:{self.port}", "--log-level", "debug",
                     "--watch-start-jitter", "0", *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> AgentProcess:
        self.log = self.log_path.open("ab")
        # A fatal signal then dumps every thread's stack into the log: see stop().
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONFAULTHANDLER": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}:\n{self.tail()}")
            if self.get("/readyz")[0] == 200:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"agent not ready after {timeout}s:\n{self.tail()}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.base}{path}", timeout=2,
                                        context=self.tls) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        return self.get("/metrics")[1]

    def status(self) -> dict[str, Any]:
        """The /api/v1/status document."""
        code, body = self.get("/api/v1/status")
        assert code == 200, (code, self.tail())
        document: dict[str, Any] = json.loads(body)
        return document

    def log_lines(self) -> list[LogLine]:
        return log_lines(self.log_path.read_text(errors="replace"))

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def windows(self) -> list[AgentWindow]:
        return [AgentWindow.of(m)
                for m in WINDOW.finditer(self.log_path.read_text(errors="replace"))]

    def timed_windows(self) -> list[AgentWindow]:
        """Every window of the debug log on the watch reference, with when it closed."""
        offset = time.time() - time.monotonic()
        return [AgentWindow.of(m, line.wall - offset) for line in self.log_lines()
                if line.level == "debug" and (m := WINDOW.match(line.msg)) is not None
                and m["reference"] == "watch"]

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGABRT)  # where it hangs, into the log
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.log.close()
        return self.proc.returncode


class Checker:
    """A plain polling loop, separate from the agent's code: asks each server every `interval`
    and records when each answer changed. It keeps the caches warm, as clients do."""

    def __init__(self, servers: dict[str, tuple[str, int]], names: list[tuple[str, str]],
                 interval: float = 0.05) -> None:
        self.servers, self.names, self.interval = servers, names, interval
        self.history: dict[tuple[str, str, str], list[tuple[float, frozenset[str]]]] = {}
        self.rounds = 0
        self.running = 0.0
        """Seconds from start to stop (or now): with `rounds`, the period of one round."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _ask(self, host: str, port: int, name: str, rtype: str) -> frozenset[str] | None:
        query = dns.message.make_query(name, rtype)
        try:
            answer = dns.query.udp(query, host, port=port, timeout=0.5)
        except (dns.exception.Timeout, OSError):
            return None
        if answer.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return None
        values = set()
        for rrset in answer.answer:
            if rrset.rdtype == dns.rdatatype.from_text(rtype):
                values |= {r.to_text().split()[-1] if rtype == "SRV" else r.to_text()
                           for r in rrset}
        return frozenset(values)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            for layer, (host, port) in self.servers.items():
                for name, rtype in self.names:
                    values = self._ask(host, port, name, rtype)
                    if values is None:
                        continue
                    series = self.history.setdefault((layer, name, rtype), [])
                    if not series or series[-1][1] != values:
                        series.append((time.monotonic(), values))
            self._stop.wait(self.interval)
            self.rounds += 1
            self.running = time.monotonic() - started

    @property
    def period(self) -> float:
        """Seconds between two asks of one name: a change undone within it may go unseen."""
        return self.running / self.rounds if self.rounds else self.interval

    def start(self) -> Checker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def change_near(self, kind: str, layer: str, name: str, rtype: str, value: str,
                    end: float) -> float | None:
        """The nearest time to `end` at which the checker saw `value` leave (stale) or arrive
        (propagation) on this layer and name; None if it never did."""
        history = self.history.get((layer, name, rtype), [])
        times = [t for (t, now), (_, before) in zip(history[1:], history, strict=False)
                 if (value in before and value not in now) == (kind == "stale")
                 and (value in before) != (value in now)]
        return min(times, key=lambda t: abs(t - end)) if times else None

    def first(self, layer: str, name: str, rtype: str, since: float, *,
              has: str | None = None, lacks: str | None = None,
              timeout: float = 30.0) -> float:
        """Seconds from `since` until the layer first answered with (or without) a value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, values in self.history.get((layer, name, rtype), []):
                if when >= since and (has is None or has in values) and (
                        lacks is None or lacks not in values):
                    return when - since
            time.sleep(0.05)
        raise AssertionError(f"{layer} never changed {name} {rtype} within {timeout}s")


class ClientFleet:
    """Clients of the test's own that cache as a profile says: `count` of them, their first
    lookups spread over `spread` seconds, each asking the server again only when its copy has
    expired (`hold` of the TTL it got), and dialling whatever its copy holds meanwhile."""

    def __init__(self, server: tuple[str, int], name: str, hold: Callable[[int], float],
                 count: int, spread: float, tick: float = 0.01) -> None:
        self.server, self.name, self.hold, self.tick = server, name, hold, tick
        self.count, self.spread = count, spread
        self.copies: list[tuple[float, float, frozenset[str]]] = []
        """(asked, held until, addresses) of every lookup."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _ask(self) -> tuple[frozenset[str], int] | None:
        try:
            answer = dns.query.udp(dns.message.make_query(self.name, "A"), self.server[0],
                                   port=self.server[1], timeout=0.5)
        except (dns.exception.Timeout, OSError):
            return None
        rrsets = [r for r in answer.answer if r.rdtype == dns.rdatatype.A]
        if not rrsets:
            return None
        return frozenset(r.to_text() for r in rrsets[0]), rrsets[0].ttl

    def _run(self) -> None:
        start = time.monotonic()
        expires = [start + i * self.spread / self.count for i in range(self.count)]
        while not self._stop.is_set():
            now = time.monotonic()
            for i, expiry in enumerate(expires):
                if now >= expiry and (got := self._ask()) is not None:
                    values, ttl = got
                    expires[i] = time.monotonic() + self.hold(ttl)
                    self.copies.append((now, expires[i], values))
            self._stop.wait(self.tick)

    def start(self) -> ClientFleet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def dialled_until(self, value: str) -> float:
        """The last moment any client still held `value`."""
        return max(until for _, until, values in self.copies if value in values)
