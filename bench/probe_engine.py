"""CPU cost of the probe engine (`exporter.io.probe.Prober`) beside dnspython's own async IO.

The DNS server runs in another process pinned to CPU 1 and replays answers that the lab built
once, patching only the ID, so the numbers are the client's: it runs on CPU 0 under uvloop.
Method and results: docs/benchmarks.md.

    .venv/bin/python -m bench.probe_engine [--duration SECONDS] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import platform
import pstats
import random
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import cast

import dns.asyncquery
import dns.exception
import dns.message
import dns.query
import uvloop

from bench.report import table
from exporter.core.dnsmsg import EDNS_PAYLOAD, Answer, QueryWire, read_header, reduce
from exporter.core.records import Question, ServerRef
from exporter.io.lab import KubernetesBackend, LabCluster, LabDnsServer, LabPod
from exporter.io.probe import Prober
from tests.dnsref import reference_reduce

CLIENT_CPU, SERVER_CPU = 0, 1
HOST = "127.0.0.1"
ZONE = "cluster.local"
NAMESPACE = "bench"
TIMEOUT = 2.0
CONCURRENCY = (1, 64)
EXPORTER, PEER, DNSPERF = "exporter Prober", "dnspython asyncquery", "dnsperf"
_TICK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A probe that did not get the full answer: the numbers would measure the wrong thing."""


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    records: int
    tcp: bool
    """The UDP answer is truncated, so every probe is asked again over TCP."""
    question: Question


def service_case(label: str, records: int, tcp: bool) -> Case:
    return Case(label, records, tcp, Question(f"svc-{records}.{NAMESPACE}.svc.{ZONE}.", "A"))


# 60 A records (16 bytes each behind a compression pointer) fit the 1232-byte EDNS payload
# the engine offers; 100 do not, so the lab sets TC and the engine retries over TCP.
CASES = (
    service_case("1 record", 1, False),
    service_case("60 records, UDP", 60, False),
    service_case("100 records, TC+TCP", 100, True),
)
COREDNS_CASE = Case("CoreDNS hosts, 1 record", 1, False, Question("one.bench.test.", "A"))


@dataclass(frozen=True, slots=True)
class Sample:
    probes: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    """Client CPU seconds."""
    server_cpu: float = 0.0

    def __add__(self, other: Sample) -> Sample:
        return Sample(self.probes + other.probes, self.wall + other.wall,
                      self.cpu + other.cpu, self.server_cpu + other.server_cpu)

    @property
    def per_cpu_second(self) -> float:
        return self.probes / self.cpu if self.cpu > 0 else float("inf")


Slice = Callable[[float], Sample]
"""Measures one client for that many seconds."""


def interleave(slices: dict[str, Slice], duration: float, rounds: int) -> dict[str, Sample]:
    """A, B, A, B, ...: the speed of a shared virtual CPU drifts by tens of percent from
    minute to minute, and alternating short slices lets both clients see the same drift."""
    totals = dict.fromkeys(slices, Sample())
    for _ in range(rounds):
        for client, measure_slice in slices.items():
            totals[client] += measure_slice(duration / rounds)
    return totals


@dataclass(frozen=True, slots=True)
class Run:
    case: str
    client: str
    concurrency: int
    sample: Sample
    unmatched: int = 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all threads, from /proc (10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def pin(cpu: int) -> Callable[[], None]:
    """A preexec_fn: pinned before exec, so every thread the program starts inherits it."""
    return lambda: os.sched_setaffinity(0, {cpu})


# --- the server process ------------------------------------------------------------------


def bench_lab() -> LabDnsServer:
    """The lab's CoreDNS-like server with one headless Service per case, all pods ready."""
    cluster = LabCluster(ZONE, emit=lambda kind, event, obj: None)
    for case in CASES:
        service = f"svc-{case.records}"
        cluster.add_service(NAMESPACE, service)
        for i in range(case.records):
            pod = LabPod(f"{service}-{i}", f"10.244.{case.records}.{i + 1}")
            cluster.set_pod(NAMESPACE, service, pod)
    return LabDnsServer(KubernetesBackend(cluster), ZONE)


class Replay:
    """Asks the lab once per query wire and transport, then only patches the ID: the lab
    builds every answer with dnspython and would be slower than the client under test."""

    def __init__(self, lab: LabDnsServer) -> None:
        self.lab = lab
        self.wires: dict[tuple[bytes, bool], bytes] = {}

    def answer(self, query: bytes, tcp: bool) -> bytes | None:
        key = (query[2:], tcp)
        wire = self.wires.get(key)
        if wire is None:
            reply = self.lab.respond(query, max_size=65535 if tcp else None)
            if reply is None:
                return None
            wire = self.wires[key] = reply
        return query[:2] + wire[2:]


class _ReplayUdp(asyncio.DatagramProtocol):
    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.replay.answer(data, tcp=False)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class _ReplayTcp(asyncio.Protocol):
    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 2:
            end = 2 + int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < end:
                return
            query, self.buffer = self.buffer[2:end], self.buffer[end:]
            reply = self.replay.answer(query, tcp=True)
            if reply is not None and self.transport is not None:
                self.transport.write(len(reply).to_bytes(2, "big") + reply)


def serve(conn: Connection) -> None:
    """The server process: sends its address, then serves until it is terminated."""
    os.sched_setaffinity(0, {SERVER_CPU})
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    replay = Replay(bench_lab())
    loop = asyncio.get_running_loop()
    for _ in range(20):
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _ReplayUdp(replay), local_addr=(HOST, 0))
        port = udp.get_extra_info("sockname")[1]
        try:
            await loop.create_server(lambda: _ReplayTcp(replay), HOST, port)
        except OSError:
            udp.close()
            continue
        conn.send(f"{HOST}:{port}")
        await loop.create_future()
    raise OSError(f"no free port for UDP and TCP together on {HOST}")


@contextmanager
def replay_server() -> Iterator[tuple[str, int]]:
    """(address, pid) of the replaying server process."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=serve, args=(theirs,), daemon=True)
    process.start()
    try:
        # The sentinel wakes us at once if the server process dies before it answers.
        if ours not in wait([ours, process.sentinel], timeout=30):
            raise BenchError(f"the replay server did not start (exit code {process.exitcode})")
        yield ours.recv(), cast(int, process.pid)
    finally:
        process.terminate()
        process.join(5)


# --- the clients -------------------------------------------------------------------------

Probe = Callable[[], Awaitable[None]]
NewProbe = Callable[[], Probe]
"""Gives each worker its probe function (the peer needs a query message per worker)."""


def expect(client: str, case: Case, result: str, answer: Answer | None, tcp: bool) -> None:
    values = len(answer.values) if answer is not None else 0
    if result != "noerror" or values != case.records or tcp != case.tcp:
        raise BenchError(f"{client}, {case.label}: {result}, {values} values, tcp={tcp}")


def exporter_probe(prober: Prober, case: Case) -> NewProbe:
    async def probe() -> None:
        result = await prober.probe(case.question)
        expect(EXPORTER, case, result.result, result.answer, result.tcp)

    return lambda: probe


def peer_probe(address: str, case: Case) -> NewProbe:
    """dnspython as its users write it: one socket per query, udp_with_fallback where TC
    is expected. Its answer is reduced like the exporter's, so both do the same work."""
    host, port = address.rsplit(":", 1)
    question = case.question

    def new_probe() -> Probe:
        # Built once per worker, as the exporter builds its query wire once.
        query = dns.message.make_query(
            question.name, question.rtype, use_edns=0, payload=EDNS_PAYLOAD)

        async def probe() -> None:
            query.id = random.getrandbits(16)
            if case.tcp:
                response, tcp = await dns.asyncquery.udp_with_fallback(
                    query, host, TIMEOUT, port=int(port))
            else:
                response = await dns.asyncquery.udp(query, host, TIMEOUT, port=int(port))
                tcp = False
            answer = reference_reduce(response, question)
            expect(PEER, case, answer.rcode.lower(), answer, tcp)

        return probe

    return new_probe


async def drive(new_probe: NewProbe, concurrency: int, seconds: float) -> int:
    """Closed loop: each of `concurrency` workers probes again as soon as its probe is done."""
    deadline = time.monotonic() + seconds

    async def worker() -> int:
        probe, done = new_probe(), 0
        while time.monotonic() < deadline:
            await probe()
            done += 1
        return done

    return sum(await asyncio.gather(*(worker() for _ in range(concurrency))))


async def measure(new_probe: NewProbe, concurrency: int, seconds: float,
                  server_pid: int) -> Sample:
    wall, cpu, server = time.perf_counter(), time.process_time(), cpu_seconds(server_pid)
    probes = await drive(new_probe, concurrency, seconds)
    return Sample(probes, time.perf_counter() - wall, time.process_time() - cpu,
                  cpu_seconds(server_pid) - server)


def python_client(runner: asyncio.Runner, new_probe: NewProbe, concurrency: int,
                  warmup: float, server_pid: int) -> Slice:
    """Warms up (opens sockets, fills caches), then measures in the runner's loop."""
    runner.run(drive(new_probe, concurrency, warmup))
    return lambda seconds: runner.run(measure(new_probe, concurrency, seconds, server_pid))


def progress(run: Run) -> None:
    sample = run.sample
    print(f"  {run.case} | {run.client} | c={run.concurrency}: "
          f"{sample.probes / sample.wall:,.0f}/s, {sample.cpu / sample.probes * 1e6:.1f} "
          "CPU us/probe", file=sys.stderr, flush=True)


def engine_runs(runner: asyncio.Runner, duration: float, warmup: float,
                rounds: int) -> list[Run]:
    runs: list[Run] = []
    with replay_server() as (address, pid):
        print(f"replay server {address} (pid {pid}) on CPU {SERVER_CPU}", file=sys.stderr)
        for case in CASES:
            for concurrency in CONCURRENCY:
                prober = Prober(ServerRef("bench", address), TIMEOUT, QueryWire())
                try:
                    samples = interleave({
                        EXPORTER: python_client(runner, exporter_probe(prober, case),
                                                concurrency, warmup, pid),
                        PEER: python_client(runner, peer_probe(address, case), concurrency,
                                            warmup, pid),
                    }, duration, rounds)
                finally:
                    prober.close()
                runs += [Run(case.label, EXPORTER, concurrency, samples[EXPORTER],
                             prober.unmatched),
                         Run(case.label, PEER, concurrency, samples[PEER])]
                progress(runs[-2])
                progress(runs[-1])
    return runs


def profile_runs(runner: asyncio.Runner, duration: float, warmup: float) -> None:
    """cProfile of the exporter at the highest concurrency: where its CPU goes per case."""
    concurrency = CONCURRENCY[-1]
    with replay_server() as (address, _):
        for case in CASES:
            prober = Prober(ServerRef("bench", address), TIMEOUT, QueryWire())
            new_probe = exporter_probe(prober, case)
            runner.run(drive(new_probe, concurrency, warmup))
            profiler = cProfile.Profile()
            profiler.enable()
            runner.run(drive(new_probe, concurrency, duration))
            profiler.disable()
            prober.close()
            stats = pstats.Stats(profiler, stream=sys.stdout)
            # Inclusive times of the event loop's own frames say nothing: show the exporter's
            # and dnspython's.
            for order, where in (("tottime", ""), ("cumulative", r"exporter/|/dns/")):
                print(f"\n== cProfile: {EXPORTER}, {case.label}, concurrency {concurrency},"
                      f" top 10 by {order} ==")
                stats.sort_stats(order).print_stats(where, 10)


# --- CoreDNS and dnsperf from the integration-test rig -----------------------------------


def rig_binaries() -> tuple[str, str] | str:
    """(coredns, dnsperf) from the rig that scripts/rig-install builds, or why not."""
    cache = os.environ.get("DSE_RIG_CACHE") or str(
        Path.home() / ".cache" / "dns-staleness-exporter" / "rig")
    env_file = Path(cache) / "rig.env"
    if not env_file.is_file():
        return f"{env_file} is missing (scripts/rig-install builds it)"
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    coredns, dnsperf = env.get("COREDNS", ""), env.get("DNSPERF", "")
    if not (os.access(coredns, os.X_OK) and os.access(dnsperf, os.X_OK)):
        return f"{env_file} names no runnable COREDNS= and DNSPERF="
    return coredns, dnsperf


def free_port() -> int:
    """A port free for both UDP and TCP on HOST, as a DNS server needs."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port for UDP and TCP together on {HOST}")


@contextmanager
def coredns_server(coredns: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """(address, pid) of CoreDNS answering COREDNS_CASE from its hosts plugin, on CPU 1."""
    port = free_port()
    corefile = workdir / "Corefile"
    corefile.write_text(
        f".:{port} {{\n    bind {HOST}\n    hosts {{\n"
        f"        10.244.250.1 {COREDNS_CASE.question.name}\n    }}\n}}\n")
    log = workdir / "coredns.log"
    with log.open("wb") as out:
        process = subprocess.Popen([coredns, "-conf", str(corefile)], stdout=out,
                                   stderr=subprocess.STDOUT, preexec_fn=pin(SERVER_CPU))
    try:
        query = dns.message.make_query(COREDNS_CASE.question.name, COREDNS_CASE.question.rtype)
        for _ in range(100):
            if process.poll() is not None:
                raise BenchError(f"CoreDNS exited: {log.read_text()[-2000:]}")
            try:
                dns.query.udp(query, HOST, timeout=0.1, port=port)
                break
            except (TimeoutError, dns.exception.Timeout, OSError):
                time.sleep(0.1)
        else:
            raise BenchError("CoreDNS did not answer within 10 s")
        yield f"{HOST}:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)


def run_dnsperf(dnsperf: str, address: str, server_pid: int, concurrency: int,
                seconds: float, workdir: Path) -> Sample:
    """dnsperf on CPU 0, one thread, `concurrency` queries outstanding; its CPU time is the
    rusage of the reaped child."""
    host, port = address.rsplit(":", 1)
    data = workdir / "queries.txt"
    data.write_text(f"{COREDNS_CASE.question.name} {COREDNS_CASE.question.rtype}\n")
    args = [dnsperf, "-s", host, "-p", port, "-d", str(data), "-l", f"{seconds:g}",
            "-c", "1", "-T", "1", "-q", str(concurrency), "-e", "-t", f"{TIMEOUT:g}"]
    before, server = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_seconds(server_pid)
    done = subprocess.run(args, capture_output=True, text=True, check=True,
                          preexec_fn=pin(CLIENT_CPU))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = cpu_seconds(server_pid) - server

    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([\d.]+)", done.stdout)
        if match is None:
            raise BenchError(f"dnsperf printed no '{label}':\n{done.stdout}")
        return float(match.group(1))

    all_noerror = re.search(r"Response codes:\s+NOERROR \d+ \(100\.00%\)$", done.stdout, re.M)
    if number("Queries lost") or not all_noerror:
        raise BenchError(f"dnsperf got lost or failed queries:\n{done.stdout}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(int(number("Queries completed")), number(r"Run time \(s\)"), cpu, server)


def coredns_runs(runner: asyncio.Runner, duration: float, warmup: float,
                 rounds: int) -> list[Run] | str:
    binaries = rig_binaries()
    if isinstance(binaries, str):
        return binaries
    coredns, dnsperf = binaries
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-coredns-") as tmp, \
            coredns_server(coredns, Path(tmp)) as (address, pid):
        print(f"CoreDNS {address} (pid {pid}) on CPU {SERVER_CPU}", file=sys.stderr)
        for concurrency in CONCURRENCY:
            prober = Prober(ServerRef("bench", address), TIMEOUT, QueryWire())
            try:
                samples = interleave({
                    EXPORTER: python_client(runner, exporter_probe(prober, COREDNS_CASE),
                                            concurrency, warmup, pid),
                    DNSPERF: partial(run_dnsperf, dnsperf, address, pid, concurrency,
                                     workdir=Path(tmp)),
                }, duration, rounds)
            finally:
                prober.close()
            runs += [Run(COREDNS_CASE.label, EXPORTER, concurrency, samples[EXPORTER],
                         prober.unmatched),
                     Run(COREDNS_CASE.label, DNSPERF, concurrency, samples[DNSPERF])]
            progress(runs[-2])
            progress(runs[-1])
    return runs


# --- parsing alone -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParseCost:
    case: Case
    wire_bytes: int
    udp_truncated: bool
    dnspython_us: float
    exporter_us: float


def best_us(stmt: Callable[[], object], repeat: int) -> float:
    timer = timeit.Timer(stmt)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat, number)) / number * 1e6


def parse_costs(repeat: int) -> list[ParseCost]:
    """Reading one full answer (as TCP delivers it) down to the comparable value set: the
    exporter's wire reader against dnspython's `from_wire` plus the same reduction."""
    lab = bench_lab()
    costs = []
    for case in CASES:
        query = QueryWire().build(case.question, 0)
        wire, udp = lab.respond(query, max_size=65535), lab.respond(query, max_size=None)
        if wire is None or udp is None:
            raise BenchError(f"the lab did not answer {case.question}")
        ours = reduce(wire, read_header(wire), case.question)
        theirs = reference_reduce(dns.message.from_wire(wire), case.question)
        if ours != theirs:
            raise BenchError(f"the readers disagree on {case.question}: {ours} != {theirs}")
        costs.append(ParseCost(
            case, len(wire), read_header(udp).truncated,
            best_us(lambda w=wire, q=case.question: reference_reduce(  # type: ignore[misc]
                dns.message.from_wire(w), q), repeat),
            best_us(lambda w=wire, q=case.question: reduce(  # type: ignore[misc]
                w, read_header(w), q), repeat),
        ))
    return costs


# --- output ------------------------------------------------------------------------------


def runs_table(runs: Sequence[Run], peer: str) -> str:
    peers = {(r.case, r.concurrency): r for r in runs if r.client == peer}
    rows = []
    for run in runs:
        sample, other = run.sample, peers.get((run.case, run.concurrency))
        ratio = ("peer" if run.client == peer else
                 f"{sample.per_cpu_second / other.sample.per_cpu_second:.2f}" if other else "")
        rows.append([
            run.case, run.client, str(run.concurrency), f"{sample.probes:,}",
            f"{sample.probes / sample.wall:,.0f}", f"{sample.cpu / sample.probes * 1e6:.1f}",
            f"{sample.per_cpu_second:,.0f}", f"{sample.cpu / sample.wall:.0%}",
            f"{sample.server_cpu / sample.wall:.0%}", ratio,
        ])
    return table(["case", "client", "concurrency", "probes", "probes/s (wall)",
                  "CPU us/probe", "probes per CPU-second", "client CPU", "server CPU",
                  f"ratio vs {peer}"], rows)


def parse_table(costs: Sequence[ParseCost]) -> str:
    rows = [[
        str(c.case.records), f"{c.wire_bytes:,}", "truncated" if c.udp_truncated else "fits",
        f"{c.dnspython_us:.1f}", f"{c.exporter_us:.1f}",
        f"{c.exporter_us / c.case.records:.2f}", f"{c.dnspython_us / c.exporter_us:.1f}",
    ] for c in costs]
    return table(["A records", "answer bytes", f"in {EDNS_PAYLOAD}-byte UDP",
                  "dnspython us (peer)", "exporter us", "exporter us per record",
                  "ratio (speed-up)"], rows)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="1 s runs and fewer timing repeats, for a smoke test")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile the exporter per case and print its top 10")
    args = parser.parse_args(argv)
    duration = args.duration or (1.0 if args.quick else 5.0)
    warmup = min(0.5, duration / 5)
    rounds = max(2, round(duration))
    if not {CLIENT_CPU, SERVER_CPU} <= os.sched_getaffinity(0):
        print(f"needs CPUs {CLIENT_CPU} and {SERVER_CPU}", file=sys.stderr)
        return 2

    print(f"# {cpu_model()}; Python {platform.python_version()}, uvloop {version('uvloop')},"
          f" dnspython {version('dnspython')}; {duration:g} s per run in {rounds} slices"
          f" alternating with the peer, after {warmup:g} s warm-up; client on CPU"
          f" {CLIENT_CPU}, server on CPU {SERVER_CPU}; load average"
          f" {os.getloadavg()[0]:.2f} at start")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        os.sched_setaffinity(0, {CLIENT_CPU})
        runs = engine_runs(runner, duration, warmup, rounds)
        print("\n## Probe engine vs dnspython, lab replay server\n")
        print(runs_table(runs, PEER))
        coredns = coredns_runs(runner, duration, warmup, rounds)
        print("\n## Probe engine vs dnsperf, CoreDNS\n")
        if isinstance(coredns, str):
            print(f"skipped: {coredns}")
        else:
            print(runs_table(coredns, DNSPERF))
            runs += coredns
        for run in runs:
            if run.unmatched:
                print(f"WARNING: {run.case}, concurrency {run.concurrency}: {run.unmatched} "
                      "datagrams matched no query in flight at the Prober")
        costs = parse_costs(3 if args.quick else 7)
        print("\n## Reading one answer down to its value set, best of repeats\n")
        print(parse_table(costs))
        if args.profile:
            profile_runs(runner, duration, warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
