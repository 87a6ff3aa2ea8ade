"""Watch ingest: initial sync, memory, events per second and API cost of the agent's watches.

Starts its own etcd and kube-apiserver from the integration-test rig (docs/rig.md), creates N
headless Services with one EndpointSlice each (3 ready endpoints with hostnames, a named port)
through the API, and measures the agent's real path against them: KubeSource (raw JSON over
aiohttp) -> Agent.ingest -> parse_slice -> Truth -> Comparator. Peers measured in the same run:
the parsed JSON dicts of the same slices (memory), `json.loads` alone of the same watch lines
(the floor of ingest), and kubernetes_asyncio's generated models (in a venv of their own, when
pip can install the package). Method and results: docs/benchmarks.md, docs/scale.md.

    .venv/bin/python -m bench.watch_ingest [--slices N] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import ctypes
import gc
import hashlib
import ipaddress
import json
import multiprocessing
import os
import platform
import pstats
import ssl
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from types import BuiltinFunctionType, FunctionType, ModuleType, SimpleNamespace
from typing import Any, NoReturn

import aiohttp
import uvloop
from aiohttp.client_proto import ResponseHandler
from prometheus_client import CollectorRegistry

from bench.report import section, table
from exporter.agent import Agent
from exporter.core.events import Kind, ObjectEvent, SourceEvent, Synced
from exporter.core.objects import (
    HEADLESS_LABEL,
    SERVICE_NAME_LABEL,
    TRIGGER_ANNOTATION,
    parse_slice,
)
from exporter.core.records import ServerRef
from exporter.io.kubeconfig import ClusterAccess
from exporter.io.metrics import Metrics
from exporter.io.watch import KubeApi, KubeSource, resources
from exporter.settings import Settings
from tests.rig import (
    Etcd,
    KubeApiServer,
    ManagedProcess,
    Rig,
    RigNotInstalled,
    default_cache_dir,
)

# The rig lives in tests/ at the repository root, which `python bench/...` does not import from.
ROOT = Path(__file__).resolve().parents[1]


Obj = dict[str, Any]

NAMESPACE = "bench"
ENDPOINTS = 3
"""Endpoints per slice: a 3-replica StatefulSet behind each headless Service."""
PORT_NAME, PORT = "http", 8080
AGENT_CPU, SERVER_CPU = 0, 1
SERVICES_PATH = f"/api/v1/namespaces/{NAMESPACE}/services"
SLICES_PATH = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
DNS_NAMESPACE, DNS_SERVICE = "kube-system", "kube-dns"
SERVERS = (
    ServerRef("node-local", "127.0.0.1:1053"),
    ServerRef("kube-dns", "127.0.0.1:2053"),
    ServerRef("coredns", "127.0.0.1:3053"),
)
"""Three layers, as a node has: only keys for the comparator's cells and the scheduler's plan.
Nothing is ever sent to them (the probe loop does not run)."""
MODELS_PACKAGE, MODELS_VERSION = "kubernetes_asyncio", "36.1.0"
MB = 1024 * 1024
LAYERED_SAMPLE = 1000
"""Watch lines per measured pass where a pass over all of them would take minutes."""
_TICK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """Something that makes the numbers meaningless: stop rather than print them."""


def exit_with(main: Callable[[], int], name: str) -> NoReturn:
    """Runs a benchmark's main: a BenchError ends it with one line on stderr, and exit 1."""
    try:
        code = main()
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


def note(message: str) -> None:
    """A progress line, on stderr: the tables go to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the objects -------------------------------------------------------------------------


def service_name(i: int) -> str:
    return f"svc-{i:05d}"


def slice_name(i: int) -> str:
    """Like the controller's generateName: the Service name and five characters."""
    return f"{service_name(i)}-{hashlib.sha1(str(i).encode()).hexdigest()[:5]}"


def pod_ip(i: int, k: int, generation: int) -> str:
    """Distinct per endpoint; generation 1 is every pod recreated with a new IP."""
    return str(ipaddress.IPv4Address((10 << 24) + (generation << 20) + 1 + i * ENDPOINTS + k))


def rfc3339_nano() -> str:
    """The controller's format for last-change-trigger-time (time.RFC3339Nano)."""
    now = time.time_ns()
    stamp = datetime.fromtimestamp(now // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{now % 10**9:09d}Z"


def service_body(i: int) -> Obj:
    name = service_name(i)
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
        "spec": {"clusterIP": "None", "selector": {"app": name},
                 "ports": [{"name": PORT_NAME, "port": PORT, "protocol": "TCP",
                            "targetPort": PORT}]},
    }


def endpoints(i: int, generation: int) -> list[Obj]:
    """What the EndpointSlice controller writes for ready StatefulSet pods."""
    out = []
    for k in range(ENDPOINTS):
        pod = f"{service_name(i)}-{k}"
        out.append({
            "addresses": [pod_ip(i, k, generation)],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "hostname": pod,
            "nodeName": f"node-{(i * ENDPOINTS + k) % 500:03d}",
            "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": pod,
                          "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{pod}/{generation}"))},
        })
    return out


def slice_body(i: int, service_uid: str) -> Obj:
    name = service_name(i)
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(i), "namespace": NAMESPACE, "generateName": f"{name}-",
            "labels": {SERVICE_NAME_LABEL: name, HEADLESS_LABEL: "", "app": name,
                       "endpointslice.kubernetes.io/managed-by": "bench-watch-ingest"},
            "annotations": {TRIGGER_ANNOTATION: rfc3339_nano()},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                 "uid": service_uid, "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "addressType": "IPv4",
        "endpoints": endpoints(i, 0),
        "ports": [{"name": PORT_NAME, "port": PORT, "protocol": "TCP"}],
    }


# --- measuring helpers -------------------------------------------------------------------


@dataclass
class Wire:
    """Bytes that aiohttp's client protocol receives in this process: after TLS, before HTTP
    parsing and gzip, so headers, chunk framing and compressed bodies count as sent."""

    received: int = 0


WIRE = Wire()


def count_wire() -> None:
    original = ResponseHandler.data_received

    def counting(self: ResponseHandler, data: bytes) -> None:
        WIRE.received += len(data)
        original(self, data)

    # Patched on the class, so every session of this process counts, the agent's included.
    setattr(ResponseHandler, "data_received", counting)  # noqa: B010


def status_kib(field_name: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field_name} in /proc/{pid}/status")


def rss() -> int:
    return status_kib("VmRSS") * 1024


def peak_rss() -> int:
    return status_kib("VmHWM") * 1024


def reset_peak_rss(pid: int | str = "self") -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def pin_process(pid: int, cpu: int) -> None:
    """Every existing thread (Go starts many); threads started later inherit it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), {cpu})


def deep_size(root: object, seen: set[int]) -> int:
    """sys.getsizeof over everything reachable from root that `seen` does not hold yet;
    types, modules and functions are shared code, not state."""
    total, stack = 0, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | ModuleType | FunctionType
                                         | BuiltinFunctionType):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def traced(build: Callable[[], object]) -> tuple[int, object]:
    """Python heap that `build`'s result keeps alive after a collection (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = build()
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return size, result


# --- the rig -----------------------------------------------------------------------------


@contextlib.contextmanager
def control_plane(workdir: Path) -> Iterator[tuple[Etcd, KubeApiServer]]:
    rig = Rig.load()
    started: list[ManagedProcess] = []
    try:
        etcd = Etcd(rig.etcd, workdir / "etcd")
        started.append(etcd)
        etcd.start()
        api = KubeApiServer(rig.kube_apiserver, workdir / "kube-apiserver",
                            etcd_url=etcd.client_url, openssl=rig.openssl)
        started.append(api)
        api.start()
        yield etcd, api
    finally:
        for proc in reversed(started):
            proc.stop()


def access_of(api: KubeApiServer) -> ClusterAccess:
    return ClusterAccess(server=api.url, ca_file=str(api.ca_file), insecure=False,
                         token=api.token, token_file=None, cert_file=None, key_file=None,
                         source="bench")


def admin_session(access: ClusterAccess, limit: int, **kwargs: Any) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=access.ca_file)
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {access.token}", "Accept": "application/json"},
        connector=aiohttp.TCPConnector(limit=limit, ssl=context), **kwargs)


async def send(session: aiohttp.ClientSession, method: str, url: str, body: Obj | None = None,
               content_type: str = "application/json") -> Obj:
    data = None if body is None else json.dumps(body)
    headers = {} if body is None else {"Content-Type": content_type}
    async with session.request(method, url, data=data, headers=headers) as resp:
        raw = await resp.read()
        if resp.status >= 300:
            raise BenchError(f"{method} {url}: HTTP {resp.status}: {raw[:300]!r}")
    decoded = json.loads(raw)
    if not isinstance(decoded, dict):
        raise BenchError(f"{method} {url}: not a JSON object")
    return decoded


async def bounded(concurrency: int, jobs: Iterable[Callable[[], Awaitable[None]]]) -> None:
    """Runs the jobs with at most `concurrency` in flight."""
    queue = iter(jobs)

    async def worker() -> None:
        for job in queue:
            await job()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@dataclass(frozen=True)
class Created:
    objects: int
    seconds: float
    concurrency: int


async def create_objects(access: ClusterAccess, n: int, concurrency: int) -> Created:
    """One headless Service and one EndpointSlice per index, `concurrency` requests in flight."""
    done = 0
    start = last_note = time.perf_counter()
    async with admin_session(access, concurrency) as session:
        await send(session, "POST", f"{access.server}/api/v1/namespaces",
                   {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})

        async def one(i: int) -> None:
            nonlocal done, last_note
            service = await send(session, "POST", access.server + SERVICES_PATH, service_body(i))
            await send(session, "POST", access.server + SLICES_PATH,
                       slice_body(i, str(service["metadata"]["uid"])))
            done += 2
            now = time.perf_counter()
            if now - last_note >= 10 or done == 2 * n:
                last_note = now
                note(f"created {done:,}/{2 * n:,} objects, {done / (now - start):,.0f}/s")

        await bounded(concurrency, (lambda i=i: one(i) for i in range(n)))  # type: ignore[misc]
    return Created(2 * n, time.perf_counter() - start, concurrency)


# --- the agent on the real watch -----------------------------------------------------------


class Consumer:
    """Agent._consume with clocks: every source event into agent.ingest."""

    def __init__(self, agent: Agent, events: AsyncIterator[SourceEvent]) -> None:
        self.agent, self.events = agent, events
        self.synced = asyncio.Event()
        self.synced_at = 0.0
        self.count = 0
        self.ingest_seconds = 0.0
        self.modified = 0
        self.modified_ingest = 0.0
        self.first_modified = self.last_modified = 0.0
        self.modified_goal = 0
        self.modified_done = asyncio.Event()

    async def run(self) -> None:
        async for event in self.events:
            start = time.perf_counter()
            self.agent.ingest(event)
            end = time.perf_counter()
            self.ingest_seconds += end - start
            self.count += 1
            if isinstance(event, Synced):
                self.synced_at = end
                self.synced.set()
            elif (isinstance(event, ObjectEvent) and event.kind == "EndpointSlice"
                  and event.type == "MODIFIED"):
                if not self.first_modified:
                    self.first_modified = start
                self.modified += 1
                self.modified_ingest += end - start
                self.last_modified = end
                if self.modified_goal and self.modified >= self.modified_goal:
                    self.modified_done.set()


class LiveAgent:
    """The agent as `run` wires it: KubeSource over one aiohttp session, no start jitter."""

    def __init__(self, access: ClusterAccess, settings: Settings,
                 servers: Sequence[ServerRef]) -> None:
        self.access = access
        self.agent = Agent(settings, servers, Metrics(CollectorRegistry()), discovery=None)
        self.restarts: list[str] = []
        self.requests: list[tuple[str, bool]] = []
        """(path, is a watch) of every request the session sent."""
        self.session: aiohttp.ClientSession | None = None
        self.consumer: Consumer | None = None
        self.task: asyncio.Task[None] | None = None

    async def _on_request(self, session: aiohttp.ClientSession, context: SimpleNamespace,
                          params: aiohttp.TraceRequestStartParams) -> None:
        self.requests.append((params.url.path, "watch" in params.url.query))

    def start(self) -> None:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._on_request)
        self.session = aiohttp.ClientSession(trace_configs=[trace])
        source = KubeSource(KubeApi(self.access, self.session),
                            resources((), DNS_NAMESPACE, DNS_SERVICE),
                            on_restart=self.restarts.append, start_jitter=0)
        self.consumer = Consumer(self.agent, source.events())
        self.task = asyncio.create_task(self.consumer.run(), name="consume")

    async def until(self, event: asyncio.Event, seconds: float, what: str) -> None:
        assert self.task is not None
        waiter = asyncio.create_task(event.wait())
        done, _ = await asyncio.wait([waiter, self.task], timeout=seconds,
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            return
        waiter.cancel()
        if self.task in done:
            self.task.result()
            raise BenchError(f"the watch source ended before {what}")
        raise BenchError(f"timed out after {seconds:.0f} s waiting for {what}")

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.session is not None:
            await self.session.close()


@dataclass(frozen=True)
class SyncResult:
    wall: float
    cpu: float
    ingest: float
    events: int
    rss_before: int
    rss_after: int
    rss_trimmed: int
    rss_peak: int | None
    server_cpu: float
    wire: int
    lists: int
    watches: int
    targets: int
    restarts: tuple[str, ...]
    gc_pause: float
    """A full collection with the synced agent alive: how long it blocks the event loop."""
    objects: int
    """Objects the collector tracks after the sync."""


async def initial_sync(live: LiveAgent, api_pid: int, seconds: float) -> SyncResult:
    gc.collect()
    malloc_trim()
    before = rss()
    peak_ok = reset_peak_rss()
    wire0, server0 = WIRE.received, cpu_seconds(api_pid)
    cpu0, start = time.process_time(), time.perf_counter()
    live.start()
    assert live.consumer is not None
    await live.until(live.consumer.synced, seconds, "the initial sync")
    cpu = time.process_time() - cpu0
    wall = live.consumer.synced_at - start
    server_cpu = cpu_seconds(api_pid) - server0
    peak = peak_rss() if peak_ok else None
    pause = time.perf_counter()
    gc.collect()
    pause = time.perf_counter() - pause
    after = rss()
    malloc_trim()
    return SyncResult(
        wall, cpu, live.consumer.ingest_seconds, live.consumer.count, before, after, rss(),
        peak, server_cpu, WIRE.received - wire0,
        sum(not w for _, w in live.requests), sum(w for _, w in live.requests),
        len(live.agent.truth.monitored), tuple(live.restarts), pause, len(gc.get_objects()))


# --- end to end: a writer process changes slices, the agent watches -----------------------


@dataclass(frozen=True)
class WriterJob:
    server: str
    token: str
    ca_file: str
    indices: tuple[int, ...]
    concurrency: int
    capture: str
    timeout: float


@dataclass(frozen=True)
class WriterResult:
    writes: int = 0
    write_seconds: float = 0.0
    captured: int = 0
    capture_bytes: int = 0
    error: str = ""


def writer_main(conn: Connection, job: WriterJob) -> None:
    """In its own process: watch the slices (to capture the lines), then move every pod of
    each listed slice to a new IP and back, `concurrency` patches in flight."""
    try:
        result, lines = asyncio.run(_writer(job))
        Path(job.capture).write_bytes(b"\n".join(lines) + b"\n")
    except Exception as exc:  # reported to the parent, which must not wait forever
        result = WriterResult(error=f"{type(exc).__name__}: {exc}")
    conn.send(result)
    conn.close()


async def _writer(job: WriterJob) -> tuple[WriterResult, list[bytes]]:
    access = ClusterAccess(job.server, job.ca_file, False, job.token, None, None, None, "bench")
    deadline = time.monotonic() + job.timeout
    async with admin_session(access, job.concurrency + 1) as session:
        url = job.server + SLICES_PATH
        listed = await send(session, "GET", f"{url}?labelSelector={HEADLESS_LABEL}&limit=1")
        version_ = str(listed["metadata"]["resourceVersion"])
        goal = 2 * len(job.indices)
        capture = asyncio.create_task(_capture(session, url, version_, goal, deadline))

        async def patch(i: int, generation: int) -> None:
            body = {"metadata": {"annotations": {TRIGGER_ANNOTATION: rfc3339_nano()}},
                    "endpoints": endpoints(i, generation)}
            await send(session, "PATCH", f"{url}/{slice_name(i)}", body,
                       "application/merge-patch+json")

        start = time.perf_counter()
        for generation in (1, 0):
            await bounded(job.concurrency,
                          (lambda i=i, g=generation: patch(i, g)  # type: ignore[misc]
                           for i in job.indices))
        written = time.perf_counter() - start
        lines = await asyncio.wait_for(capture, max(1.0, deadline - time.monotonic()))
    return WriterResult(goal, written, len(lines), sum(len(line) for line in lines)), lines


async def _capture(session: aiohttp.ClientSession, url: str, resource_version: str, goal: int,
                   deadline: float) -> list[bytes]:
    params = {"labelSelector": HEADLESS_LABEL, "watch": "1", "allowWatchBookmarks": "true",
              "resourceVersion": resource_version,
              "timeoutSeconds": str(max(1, int(deadline - time.monotonic())))}
    lines: list[bytes] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with session.get(url, params=params, timeout=timeout) as resp:
        if resp.status != 200:
            raise BenchError(f"capture watch: HTTP {resp.status}")
        buffer = b""
        async for chunk in resp.content.iter_any():
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += (line for line in complete if b'"MODIFIED"' in line[:32])
            if len(lines) >= goal:
                return lines
    raise BenchError(f"the capture watch ended after {len(lines)} of {goal} events")


@dataclass(frozen=True)
class EndToEnd:
    writer: WriterResult
    events: int
    seconds: float
    """First to last MODIFIED event ingested by the agent."""
    cpu: float
    ingest: float
    wire: int
    restarts: tuple[str, ...]


async def end_to_end(live: LiveAgent, access: ClusterAccess, indices: tuple[int, ...],
                     capture: Path, concurrency: int, seconds: float) -> EndToEnd:
    assert live.consumer is not None and access.token and access.ca_file
    consumer = live.consumer
    base_events, base_ingest = consumer.modified, consumer.modified_ingest
    consumer.first_modified = 0.0
    consumer.modified_goal = base_events + 2 * len(indices)
    consumer.modified_done.clear()
    job = WriterJob(access.server, access.token, access.ca_file, indices, concurrency,
                    str(capture), seconds)
    parent, child = multiprocessing.get_context("spawn").Pipe(duplex=False)
    proc = multiprocessing.get_context("spawn").Process(target=writer_main, args=(child, job))
    wire0, cpu0 = WIRE.received, time.process_time()
    proc.start()
    child.close()
    waiter: asyncio.Task[None] | None = None
    try:
        if proc.pid is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(proc.pid, {SERVER_CPU})
        loop = asyncio.get_running_loop()
        waiter = asyncio.create_task(live.until(consumer.modified_done, seconds,
                                                "the agent to see every change"))
        ready = await loop.run_in_executor(None, parent.poll, seconds)
        if not ready:
            raise BenchError("the writer process did not report back")
        result: WriterResult = parent.recv()
        if result.error:
            raise BenchError(f"writer: {result.error}")
        await waiter
    finally:
        if waiter is not None and not waiter.done():
            waiter.cancel()
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
    return EndToEnd(result, consumer.modified - base_events,
                    consumer.last_modified - consumer.first_modified,
                    time.process_time() - cpu0, consumer.modified_ingest - base_ingest,
                    WIRE.received - wire0, tuple(live.restarts))


# --- list sizes: what one agent's initial lists cost the API server ------------------------


@dataclass(frozen=True)
class ListCost:
    what: str
    items: int
    identity: int
    compressed: int
    encoding: str
    seconds: float


async def list_cost(access: ClusterAccess, path: str, selector: str,
                    what: str) -> tuple[ListCost, bytes]:
    """The agent's first list (resourceVersion=0, the watch cache), as plain and gzip bytes."""
    url = f"{access.server}{path}?resourceVersion=0"
    if selector:
        url += f"&labelSelector={selector}"
    sizes: dict[str, tuple[bytes, str, float]] = {}
    async with admin_session(access, 2, auto_decompress=False) as session:
        for encoding in ("identity", "gzip"):
            start = time.perf_counter()
            async with session.get(url, headers={"Accept-Encoding": encoding}) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise BenchError(f"GET {url}: HTTP {resp.status}")
                sizes[encoding] = (body, resp.headers.get("Content-Encoding", "none"),
                                   time.perf_counter() - start)
    plain = sizes["identity"][0]
    items = len(json.loads(plain)["items"])
    return ListCost(what, items, len(plain), len(sizes["gzip"][0]), sizes["gzip"][1],
                    sizes["identity"][2]), plain


# --- in-process ingest --------------------------------------------------------------------


def synced_agent(settings: Settings, servers: Sequence[ServerRef], services: Sequence[Obj],
                 slices: Sequence[Obj]) -> Agent:
    """An agent after the initial sync of these objects, without IO."""
    agent = Agent(settings, servers, Metrics(CollectorRegistry()), discovery=None)
    for obj in services:
        agent.ingest(ObjectEvent(Kind.SERVICE, "ADDED", obj))
    for obj in slices:
        agent.ingest(ObjectEvent(Kind.ENDPOINT_SLICE, "ADDED", obj))
    agent.ingest(Synced())
    return agent


Step = Callable[[bytes], object]


def agent_step(agent: Agent) -> Step:
    """What Watcher._watch and Agent.ingest do with one watch line."""
    def step(line: bytes) -> None:
        event = json.loads(line)
        agent.ingest(ObjectEvent(Kind.ENDPOINT_SLICE, str(event["type"]), event["object"]))
    return step


def core_step(agent: Agent) -> Step:
    """parse_slice -> Truth -> Comparator only: no scheduler, no metrics."""
    truth, comparator = agent.truth, agent.comparator

    def step(line: bytes) -> None:
        now = time.monotonic()
        state = parse_slice(json.loads(line)["object"])
        for update in truth.apply_slice(state, now, time.time() - now):
            comparator.update(update)
    return step


def parse_step(line: bytes) -> object:
    return parse_slice(json.loads(line)["object"])


def one_pass(step: Step, lines: Sequence[bytes]) -> float:
    start = time.process_time()
    for line in lines:
        step(line)
    return time.process_time() - start


def paced_pass(step: Step, lines: Sequence[bytes], gap: float) -> float:
    """CPU of the steps alone, one line every `gap` seconds: events as a watch delivers them
    at a modest rate, each one arriving on an idle CPU."""
    spent = 0.0
    for line in lines:
        start = time.process_time()
        step(line)
        spent += time.process_time() - start
        time.sleep(gap)
    return spent


def interleaved(steps: dict[str, Step], lines: Sequence[bytes], rounds: int) -> dict[str, float]:
    """CPU seconds per case: a warm-up pass each, then A, B, C, A, B, C, ...; a shared
    virtual CPU drifts by tens of percent over minutes, and this lets every case see it."""
    for step in steps.values():
        one_pass(step, lines)
    totals = dict.fromkeys(steps, 0.0)
    for _ in range(rounds):
        for name, step in steps.items():
            totals[name] += one_pass(step, lines)
    return totals


@dataclass(frozen=True)
class Hot:
    function: str
    calls: str
    own: float
    cumulative: float


def hot_rows(profiler: cProfile.Profile, top: int) -> tuple[float, list[Hot]]:
    report = pstats.Stats(profiler).get_stats_profile()
    rows = [Hot(f"{Path(p.file_name).name}:{p.line_number}({name})"
                if p.file_name else name, p.ncalls, p.tottime, p.cumtime)
            for name, p in report.func_profiles.items()]
    rows.sort(key=lambda h: h.own, reverse=True)
    return report.total_tt, rows[:top]


def profile(run: Callable[[], object], top: int) -> tuple[float, list[Hot]]:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    return hot_rows(profiler, top)


def stats_table(profiler: cProfile.Profile, top: int) -> str:
    return hot_table(*hot_rows(profiler, top))


# --- kubernetes_asyncio, in a venv of its own ---------------------------------------------

MODELS_PEER = """
import asyncio, gc, json, sys, time, tracemalloc
from importlib.metadata import version
from types import SimpleNamespace

async def main():
    from kubernetes_asyncio.client import ApiClient
    from kubernetes_asyncio.watch import Watch
    lines = open(sys.argv[1], "rb").read().splitlines()
    body = open(sys.argv[2], "rb").read()
    rounds = int(sys.argv[3])
    watch, client = Watch(), ApiClient()
    models = lambda line: watch.unmarshal_event(line, "V1EndpointSlice")
    def run(step):
        start = time.process_time()
        for line in lines:
            step(line)
        return time.process_time() - start
    run(json.loads)
    run(models)
    floor = spent = 0.0
    for _ in range(rounds):
        floor += run(json.loads)
        spent += run(models)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    items = client.deserialize(SimpleNamespace(data=body), "V1EndpointSliceList").items
    gc.collect()
    memory = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(json.dumps({"events": len(lines) * rounds, "floor": floor, "models": spent,
                      "memory": memory, "items": len(items),
                      "version": version("kubernetes_asyncio")}))
    await client.close()
    await watch._api_client.close()

asyncio.run(main())
"""


@dataclass(frozen=True)
class ModelsResult:
    version: str
    events: int
    floor: float
    models: float
    memory: int
    items: int


def models_python(venv: Path) -> Path | str:
    """The venv's python with kubernetes_asyncio, installed with pip if missing; or why not."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", f"import {MODELS_PACKAGE}"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    note(f"installing {MODELS_PACKAGE}=={MODELS_VERSION} into {venv} with pip")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-"
                        "check", f"{MODELS_PACKAGE}=={MODELS_VERSION}"], check=True,
                       capture_output=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        return f"pip could not install {MODELS_PACKAGE}: {' '.join(tail) or exc}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"pip could not install {MODELS_PACKAGE}: {exc}"
    return python


def models_peer(venv: Path, lines: Path, body: Path, rounds: int) -> ModelsResult | str:
    python = models_python(venv)
    if isinstance(python, str):
        return python
    proc = subprocess.run(
        [str(python), "-c", MODELS_PEER, str(lines), str(body), str(rounds)],
        capture_output=True, timeout=1800,
        preexec_fn=lambda: os.sched_setaffinity(0, {AGENT_CPU}))
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return f"the {MODELS_PACKAGE} peer failed: {' | '.join(tail)}"
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return ModelsResult(str(out["version"]), int(out["events"]), float(out["floor"]),
                        float(out["models"]), int(out["memory"]), int(out["items"]))


# --- output ------------------------------------------------------------------------------


def mb(size: float) -> str:
    return f"{size / MB:,.1f}"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# --- the run -----------------------------------------------------------------------------


@dataclass
class Report:
    """Everything measured, for the summary tables."""

    n: int
    created: Created | None = None
    sync: SyncResult | None = None
    sync_replay: tuple[float, float] = (0.0, 0.0)
    e2e: EndToEnd | None = None
    lists: list[ListCost] = field(default_factory=list)
    memory: list[tuple[str, int, str]] = field(default_factory=list)
    components: list[tuple[str, int, int]] = field(default_factory=list)
    replay: dict[str, float] = field(default_factory=dict)
    replay_events: int = 0
    paced: tuple[int, float, float] | None = None
    """Events, CPU seconds, seconds between events."""
    layered: tuple[int, float, int, int, float] | None = None
    """With servers: events, CPU seconds, fast-mode pairs; the filling pass's events and CPU."""
    models: ModelsResult | str = "not run"
    line_bytes: float = 0.0


async def measure_live(args: argparse.Namespace, api: KubeApiServer, etcd: Etcd,
                       workdir: Path, report: Report) -> None:
    access = access_of(api)
    n = report.n
    note(f"creating {n:,} headless Services and {n:,} EndpointSlices, "
         f"{args.concurrency} requests in flight")
    report.created = await create_objects(access, n, args.concurrency)

    if args.pin:
        os.sched_setaffinity(0, {AGENT_CPU})
        for proc in (etcd, api):
            if proc.pid is not None:
                pin_process(proc.pid, SERVER_CPU)
    settings = Settings(max_targets=max(Settings().max_targets, n))
    assert api.pid is not None

    note("initial sync: KubeSource -> Agent.ingest, 0 servers")
    live = LiveAgent(access, settings, ())
    try:
        report.sync = await initial_sync(live, api.pid, args.timeout)
        note(f"synced in {report.sync.wall:.2f} s; changing {args.modify:,} slices twice")
        indices = tuple(range(0, n, max(1, n // args.modify)))[:args.modify]
        report.e2e = await end_to_end(live, access, indices, workdir / "lines.jsonl",
                                      args.concurrency, args.timeout)
        note(f"the agent saw {report.e2e.events:,} changes in {report.e2e.seconds:.1f} s")
        if args.profile:
            note("cProfile of the end-to-end phase, once more")
            profiler = cProfile.Profile()
            profiler.enable()
            again = await end_to_end(live, access, indices, workdir / "lines-profiled.jsonl",
                                     args.concurrency, args.timeout)
            profiler.disable()
            section(f"cProfile: the agent process during the end-to-end phase ({again.events:,}"
                    " MODIFIED events over the real watch), top 15 by own time",
                    stats_table(profiler, 15))
    finally:
        await live.close()

    note("list sizes, plain and gzip")
    slices_cost, slices_body = await list_cost(access, SLICES_PATH, HEADLESS_LABEL,
                                               "EndpointSlices (headless)")
    services_cost, services_body = await list_cost(access, SERVICES_PATH, "", "Services")
    [unlabelled] = [r for r in resources((), DNS_NAMESPACE, DNS_SERVICE)
                    if r.kind == Kind.UNLABELLED_ENDPOINT_SLICE]
    unlabelled_cost, _ = await list_cost(access, unlabelled.path, unlabelled.label_selector,
                                         "EndpointSlices (unlabelled; none exist here)")
    report.lists = [slices_cost, services_cost, unlabelled_cost]
    (workdir / "slices.json").write_bytes(slices_body)
    (workdir / "services.json").write_bytes(services_body)

    note("initial sync again under tracemalloc: the heap the agent keeps")
    gc.collect()
    tracemalloc.start()
    # What the sync allocated and still holds with the agent alive: the difference after
    # dropping the agent instead read about 0 (-0.0 MB) once something kept it referenced.
    baseline = tracemalloc.get_traced_memory()[0]
    traced_live = LiveAgent(access, settings, ())
    traced_live.start()
    assert traced_live.consumer is not None
    try:
        await traced_live.until(traced_live.consumer.synced, args.timeout, "the traced sync")
    finally:
        await traced_live.close()
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - baseline
    del traced_live
    tracemalloc.stop()
    if retained <= 0:
        raise BenchError(f"the traced sync kept {retained} bytes: the measurement is broken")
    report.memory.append(("agent after a real sync (KubeSource), 0 servers", retained,
                          "tracemalloc"))

    if args.profile:
        note("cProfile of a real sync")
        profiler = cProfile.Profile()
        profiled = LiveAgent(access, settings, ())
        profiler.enable()
        profiled.start()
        assert profiled.consumer is not None
        try:
            await profiled.until(profiled.consumer.synced, args.timeout, "the profiled sync")
        finally:
            profiler.disable()
            await profiled.close()
        section("cProfile: a real initial sync (KubeSource + Agent.ingest), top 15 by own time",
                stats_table(profiler, 15))


def hot_table(total: float, rows: Sequence[Hot]) -> str:
    return table(["function", "calls", "own s", "own %", "cumulative s"], [
        [h.function, h.calls, f"{h.own:.3f}", f"{h.own / total:.0%}", f"{h.cumulative:.3f}"]
        for h in rows])


def measure_offline(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    n = report.n
    slices_body = (workdir / "slices.json").read_bytes()
    services_body = (workdir / "services.json").read_bytes()
    lines = (workdir / "lines.jsonl").read_bytes().splitlines()
    report.line_bytes = sum(map(len, lines)) / max(1, len(lines))
    settings = Settings(max_targets=max(Settings().max_targets, n))

    note("memory of the peers: parsed dicts, reduced states, whole agents")
    size, _ = traced(lambda: json.loads(slices_body)["items"])
    report.memory.append(("parsed JSON dicts of the slices (peer)", size, "tracemalloc"))
    size, _ = traced(lambda: (json.loads(slices_body)["items"],
                              json.loads(services_body)["items"]))
    report.memory.append(("parsed JSON dicts of slices + Services", size, "tracemalloc"))
    size, _ = traced(lambda: [parse_slice(o) for o in json.loads(slices_body)["items"]])
    report.memory.append(("reduced slices alone (parse_slice)", size, "tracemalloc"))
    for servers in ((), SERVERS):
        size, agent = traced(lambda s=servers: synced_agent(  # type: ignore[misc]
            settings, s, json.loads(services_body)["items"], json.loads(slices_body)["items"]))
        report.memory.append((f"agent after an in-process sync, {len(servers)} servers",
                              size, "tracemalloc"))
        if servers:
            assert isinstance(agent, Agent)
            seen: set[int] = set()
            parts: list[tuple[str, object]] = [
                ("truth: slices", agent.truth.slices), ("truth: Services", agent.truth.services),
                ("truth: the rest", agent.truth), ("comparator", agent.comparator),
                ("scheduler", agent.scheduler), ("rest of the agent", agent)]
            report.components = [(name, deep_size(obj, seen), len(seen)) for name, obj in parts]
        del agent

    services = json.loads(services_body)["items"]
    slices = json.loads(slices_body)["items"]
    # The inputs are the bench's, not the agent's: keep them out of the collector's way, or
    # every full collection walks a million objects that a real agent never holds.
    gc.collect()
    gc.freeze()
    try:
        replay(args, settings, services, slices, lines, report)
    finally:
        gc.unfreeze()
    del services, slices
    gc.collect()

    if args.no_models:
        report.models = "skipped: --no-models"
    else:
        note(f"{MODELS_PACKAGE} peer")
        report.models = models_peer(args.models_venv, workdir / "lines.jsonl",
                                    workdir / "slices.json", args.rounds)


def replay(args: argparse.Namespace, settings: Settings, services: list[Obj], slices: list[Obj],
           lines: list[bytes], report: Report) -> None:
    note("in-process initial sync (no IO)")
    best = (float("inf"), 0.0)
    for _ in range(2):
        gc.collect()
        cpu0, start = time.process_time(), time.perf_counter()
        synced_agent(settings, (), services, slices)
        best = min(best, (time.perf_counter() - start, time.process_time() - cpu0))
    report.sync_replay = best
    total, hot = profile(lambda: synced_agent(settings, (), services, slices), 12)
    section("cProfile: in-process initial sync (Service and EndpointSlice ADDED, then Synced), "
            "top 12 by own time", hot_table(total, hot))

    note(f"replaying {len(lines):,} watch lines, {args.rounds} rounds")
    quiet = synced_agent(settings, (), services, slices)
    core = synced_agent(settings, (), services, slices)
    steps: dict[str, Step] = {
        "json.loads alone (floor, peer)": json.loads,
        "json.loads + parse_slice": parse_step,
        "+ Truth + Comparator": core_step(core),
        "Agent.ingest, 0 servers": agent_step(quiet),
    }
    report.replay = interleaved(steps, lines, args.rounds)
    report.replay_events = len(lines) * args.rounds
    if report.e2e and report.e2e.events > 1 and report.e2e.seconds > 0:
        gap = report.e2e.seconds / (report.e2e.events - 1)
        paced = lines[:LAYERED_SAMPLE]
        note(f"replaying {len(paced):,} lines paced at one per {gap * 1e3:.1f} ms")
        report.paced = (len(paced), paced_pass(agent_step(quiet), paced, gap), gap)
    total, hot = profile(lambda: one_pass(agent_step(quiet), lines), 12)
    section(f"cProfile: Agent.ingest of {len(lines):,} watch lines, 0 servers, "
            "top 12 by own time", hot_table(total, hot))

    # With servers, every change puts the changed names in fast mode on each of them, and the
    # cost per event grows with the number of names in fast mode: fill it with one whole pass,
    # then measure a sample.
    layered = synced_agent(settings, SERVERS, services, slices)
    step = agent_step(layered)
    note(f"{len(SERVERS)} servers: one pass of {len(lines):,} lines to fill fast mode")
    first = one_pass(step, lines)
    sample = lines[:LAYERED_SAMPLE]
    note(f"{len(SERVERS)} servers: {args.rounds} passes of {len(sample):,} lines")
    spent = sum(one_pass(step, sample) for _ in range(args.rounds))
    report.layered = (len(sample) * args.rounds, spent, len(layered.scheduler._fast),
                      len(lines), first)
    total, hot = profile(lambda: one_pass(step, sample), 12)
    section(f"cProfile: Agent.ingest of {len(sample):,} watch lines, {len(SERVERS)} servers, "
            f"{report.layered[2]:,} (name, server) pairs in fast mode, top 12 by own time",
            hot_table(total, hot))


def print_report(report: Report, settings: Settings) -> None:
    n, endpoints_total = report.n, report.n * ENDPOINTS
    per_k = endpoints_total / 1000
    if report.created:
        c = report.created
        section("Creating the objects through the API", table(
            ["objects", "concurrency", "seconds", "objects/s"],
            [[f"{c.objects:,}", str(c.concurrency), f"{c.seconds:.1f}",
              f"{c.objects / c.seconds:,.0f}"]]))
    if report.sync:
        s = report.sync
        replay_wall, replay_cpu = report.sync_replay
        rows = [
            ["real: KubeSource -> Agent.ingest", f"{s.events:,}", f"{s.wall:.2f}",
             f"{s.cpu:.2f}", f"{s.ingest:.2f}", f"{s.events / s.wall:,.0f}",
             f"{s.server_cpu:.2f}", f"{s.wall / replay_wall:.2f}x" if replay_wall else ""],
            ["same objects, in process, no IO (peer)", f"{2 * n + 1:,}", f"{replay_wall:.2f}",
             f"{replay_cpu:.2f}", f"{replay_wall:.2f}",
             f"{(2 * n + 1) / replay_wall:,.0f}" if replay_wall else "", "", "1.00x"],
        ]
        section(f"Initial sync, {n:,} headless slices ({endpoints_total:,} endpoints) + "
                f"{n:,} Services", table(
                    ["path", "events", "wall s", "CPU s", "in Agent.ingest s", "events/s",
                     "API server CPU s", "wall vs peer"], rows))
        peak = mb(s.rss_peak) if s.rss_peak is not None else "n/a"
        section("RSS of the agent process around the real sync", table(
            ["RSS before", "peak during sync", "after sync + GC", "after malloc_trim",
             "retained (trimmed - before)", "per 1,000 endpoints", "objects tracked by GC",
             "full gc.collect() pause"],
            [[f"{mb(s.rss_before)} MB", f"{peak} MB", f"{mb(s.rss_after)} MB",
              f"{mb(s.rss_trimmed)} MB", f"{mb(s.rss_trimmed - s.rss_before)} MB",
              f"{mb((s.rss_trimmed - s.rss_before) / per_k)} MB", f"{s.objects:,}",
              f"{s.gc_pause * 1e3:.0f} ms"]]))
    if report.memory:
        agent_state = next((size for name, size, _ in report.memory
                            if name.startswith("agent after a real sync")), 0)
        rows = []
        for name, size, how in report.memory:
            rows.append([name, how, mb(size), f"{size / n:,.0f}", f"{size / per_k / 1024:,.0f}",
                         f"{size / agent_state:.2f}x" if agent_state > 0 else ""])
        section(f"Python heap kept, {n:,} slices, {endpoints_total:,} endpoints", table(
            ["what", "measured by", "MB", "bytes per slice", "KiB per 1,000 endpoints",
             "vs agent (real sync)"], rows))
        by_name = {name: size for name, size, _ in report.memory}
        dicts = by_name.get("parsed JSON dicts of the slices (peer)", 0)
        reduced = by_name.get("reduced slices alone (parse_slice)", 0)
        if dicts and reduced:
            print(f"\nparsed slice dict / reduced slice state: {dicts / reduced:.1f}x "
                  "(the product brief expected about 15x)")
    if report.components:
        rows = [[name, f"{objects:,}", mb(size), f"{size / n:,.0f}"]
                for name, size, objects in report.components]
        section(f"Agent state by component ({len(SERVERS)} servers, deep sys.getsizeof, each "
                "object counted once, in this order)", table(
                    ["component", "objects reached so far", "MB", "bytes per slice"], rows))
    if report.replay:
        floor = report.replay["json.loads alone (floor, peer)"]
        events = report.replay_events
        rows = [[name, f"{events:,}", f"{cpu:.2f}", f"{cpu / events * 1e6:,.1f}",
                 f"{events / cpu:,.0f}", "peer" if cpu == floor else f"{cpu / floor:.1f}x"]
                for name, cpu in report.replay.items()]
        if report.layered:
            count, cpu, pairs, filled, first = report.layered
            rows.append([f"Agent.ingest, {len(SERVERS)} servers, first pass ({filled:,} "
                         "targets enter fast mode)", f"{filled:,}", f"{first:.2f}",
                         f"{first / filled * 1e6:,.1f}", f"{filled / first:,.0f}",
                         f"{first / filled / (floor / events):.1f}x"])
            rows.append([f"Agent.ingest, {len(SERVERS)} servers, {pairs:,} pairs in fast mode",
                         f"{count:,}", f"{cpu:.2f}", f"{cpu / count * 1e6:,.1f}",
                         f"{count / cpu:,.0f}", f"{cpu / count / (floor / events):.1f}x"])
        if report.paced:
            count, cpu, gap = report.paced
            rows.append([f"Agent.ingest, 0 servers, one event per {gap * 1e3:.1f} ms "
                         "(end-to-end pace)", f"{count:,}", f"{cpu:.2f}",
                         f"{cpu / count * 1e6:,.1f}", f"{count / cpu:,.0f}",
                         f"{cpu / count / (floor / events):.1f}x"])
        models = report.models
        if isinstance(models, ModelsResult):
            rows.append([f"{MODELS_PACKAGE} {models.version} Watch.unmarshal_event "
                         "(own process)", f"{models.events:,}", f"{models.models:.2f}",
                         f"{models.models / models.events * 1e6:,.1f}",
                         f"{models.events / models.models:,.0f}",
                         f"{models.models / models.floor:.1f}x"])
            rows.append(["  json.loads in that process (its floor)", f"{models.events:,}",
                         f"{models.floor:.2f}", f"{models.floor / models.events * 1e6:,.1f}",
                         f"{models.events / models.floor:,.0f}", "1.0x"])
        section(f"Watch ingest in process: captured MODIFIED lines replayed, CPU {AGENT_CPU}, "
                f"mean line {report.line_bytes:,.0f} bytes", table(
                    ["case", "events", "CPU s", "CPU us/event", "events/s",
                     "CPU vs json.loads"], rows))
        if isinstance(models, ModelsResult):
            ingest = report.replay["Agent.ingest, 0 servers"] / events
            ours_floor = floor / events
            theirs = models.models / models.events
            estimate = theirs + (ingest - ours_floor)
            print(f"\nAn agent on {MODELS_PACKAGE} would pay unmarshal_event "
                  f"({theirs * 1e6:,.0f} us) instead of json.loads "
                  f"({ours_floor * 1e6:,.0f} us), plus the same reduction and state work "
                  f"({(ingest - ours_floor) * 1e6:,.0f} us): about {estimate * 1e6:,.0f} us "
                  f"per event against {ingest * 1e6:,.0f} us, {estimate / ingest:.1f}x the CPU.")
        else:
            print(f"\n{MODELS_PACKAGE} peer: {models}")
    if report.e2e:
        e = report.e2e
        w = e.writer
        rows = [[f"{w.writes:,}", f"{w.writes / w.write_seconds:,.0f}", f"{e.events:,}",
                 f"{e.events / e.seconds:,.0f}" if e.seconds else "", f"{e.cpu:.2f}",
                 f"{e.cpu / e.events * 1e6:,.0f}", f"{e.events / e.cpu:,.0f}",
                 f"{e.ingest / e.cpu:.0%}", f"{e.wire / e.events:,.0f}",
                 str(len(e.restarts))]]
        section("Watch ingest end to end: a writer process (CPU 1, with the API server) patches "
                "each slice to new pod IPs and back; the agent (CPU 0) watches", table(
                    ["patches", "patches/s", "events ingested", "events/s (agent)",
                     "agent CPU s", "agent CPU us/event", "events per agent CPU-second",
                     "share in Agent.ingest", "wire bytes/event", "watch restarts"], rows))
    if report.lists and report.sync and report.e2e:
        watches = resources((), DNS_NAMESPACE, DNS_SERVICE)
        renewals = len(watches) * 3600 / settings.watch_timeout
        rows = [[r.kind, r.path, r.label_selector or r.field_selector or "(none)"]
                for r in watches]
        section("Watches per agent (resources(), all namespaces)", table(
            ["kind", "path", "selector"], rows))
        s, e = report.sync, report.e2e
        rows = [
            ["concurrent watches per agent", f"{len(watches)}", ""],
            ["requests to sync (observed)", f"{s.lists} LIST + {s.watches} WATCH", ""],
        ]
        for cost in report.lists:
            rows.append([f"initial LIST {cost.what}, {cost.items:,} items, plain",
                         f"{mb(cost.identity)} MB", f"{cost.identity / max(1, cost.items):,.0f}"
                         " bytes per item"])
            rows.append([f"initial LIST {cost.what}, Accept-Encoding gzip "
                         f"(server sent {cost.encoding})", f"{mb(cost.compressed)} MB",
                         f"{cost.compressed / max(1, cost.items):,.0f} bytes per item"])
        rows += [
            ["bytes the agent received during its sync (HTTP, after TLS)", f"{mb(s.wire)} MB",
             ""],
            ["API server CPU for one agent's sync", f"{s.server_cpu:.2f} s", ""],
            ["watch event per slice change, JSON line", f"{report.line_bytes:,.0f} bytes", ""],
            ["watch bytes received per change (HTTP chunk framing included)",
             f"{e.wire / max(1, e.events):,.0f} bytes", ""],
            ["watch renewals per hour (timeout 300 s, +/-20 %)", f"{renewals:.0f}",
             "resume from the last resourceVersion; no relist"],
        ]
        section("API cost per agent (per node)", table(["what", "amount", "note"], rows))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--slices", type=int, help="headless Services, one slice each "
                        "(default 10000; 1000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="1,000 slices, 2 rounds")
    parser.add_argument("--modify", type=int,
                        help="slices to change twice in the end-to-end phase "
                             "(default: all, at most 5000)")
    parser.add_argument("--concurrency", type=int, default=32, help="API requests in flight")
    parser.add_argument("--rounds", type=int, help="replay rounds per case (default 3)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for any one phase")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one real initial sync (KubeSource + Agent)")
    parser.add_argument("--no-models", action="store_true",
                        help=f"skip the {MODELS_PACKAGE} peer")
    parser.add_argument("--models-venv", type=Path,
                        default=default_cache_dir().parent / "bench"
                        / f"{MODELS_PACKAGE}-{MODELS_VERSION}",
                        help=f"venv for the {MODELS_PACKAGE} peer (made with pip if missing)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help=f"do not pin the agent to CPU {AGENT_CPU} and the API server, "
                             f"etcd and the writer to CPU {SERVER_CPU}")
    args = parser.parse_args(argv)
    args.slices = args.slices or (1000 if args.quick else 10000)
    args.modify = min(args.modify or min(args.slices, 5000), args.slices)
    args.rounds = args.rounds or (2 if args.quick else 3)
    if args.pin and not {AGENT_CPU, SERVER_CPU} <= os.sched_getaffinity(0):
        print(f"needs CPUs {AGENT_CPU} and {SERVER_CPU}, or --no-pin", file=sys.stderr)
        return 2
    try:
        Rig.load()
    except RigNotInstalled as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 2

    count_wire()
    report = Report(args.slices)
    print(f"# {cpu_model()}, {os.cpu_count()} CPUs; Python {platform.python_version()}, "
          f"uvloop {version('uvloop')}, aiohttp {version('aiohttp')}; "
          f"{args.slices:,} headless slices x {ENDPOINTS} endpoints; "
          f"{'agent on CPU 0, API server + etcd + writer on CPU 1' if args.pin else 'no pinning'}"
          f"; load average {os.getloadavg()[0]:.2f} at start", flush=True)
    settings = Settings(max_targets=max(Settings().max_targets, args.slices))
    with tempfile.TemporaryDirectory(prefix="dse-bench-watch-") as tmp:
        workdir = Path(tmp)
        try:
            with control_plane(workdir) as (etcd, api), \
                    asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                note(f"etcd and kube-apiserver up at {api.url}")
                try:
                    runner.run(measure_live(args, api, etcd, workdir, report))
                except BenchError:
                    print(api.log_tail(20), file=sys.stderr)
                    raise
            measure_offline(args, workdir, report)
        finally:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            print_report(report, settings)
            print(f"\n# load average {os.getloadavg()[0]:.2f} at the end", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
