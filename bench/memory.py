"""Memory of the agent process: the initial sync and a relist at N headless slices.

Starts etcd and a kube-apiserver from the rig (the watch cache off, so that a watch from a
compacted resourceVersion gets 410 Gone from etcd), creates N headless Services with one
EndpointSlice of 3 ready endpoints each, and runs `dns-staleness-exporter run` as a pod would:
a real process, its real watches, `max_targets` N and 3 DNS servers. From the kernel
(/proc/PID/status) it reads:

- peak RSS (VmHWM) during the initial sync, and RSS once synced;
- retained: RSS once synced less an idle agent's, the same command watching an empty
  namespace;
- the peak during a relist: the agent is frozen past its watch's end, etcd compacted, then
  it resumes, gets 410 Gone and lists everything again (VmHWM reset just before);
- SIGTERM under that load, probes in flight (the 3 servers never answer) and a scrape under
  way: how soon /readyz stops answering 200, and how soon the process has exited.

The peer, measured in the same run: the same agent from another commit (`--baseline`,
default the commit before the streaming list and lazy comparator cells), run from a copy
of that tree made with `git archive`.

    .venv/bin/python -m bench.memory                    # 10,000 slices, about 2 minutes
    .venv/bin/python -m bench.memory --slices 50000     # about 10 minutes
    .venv/bin/python -m bench.memory --quick --baseline none   # 1,000 slices, what CI runs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from bench.report import section, table
from bench.watch_ingest import (
    ENDPOINTS,
    NAMESPACE,
    BenchError,
    access_of,
    create_objects,
    exit_with,
    note,
    reset_peak_rss,
    status_kib,
)
from tests.rig import Etcd, KubeApiServer, Rig, free_port

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "2335d11"
"""The last commit before issue 16's memory work."""
WATCH_TIMEOUT = 10


@dataclass(frozen=True)
class Usage:
    peak: int
    """VmHWM over the phase, bytes."""
    rss: int
    """VmRSS at its end, bytes."""


@dataclass(frozen=True)
class Measured:
    label: str
    idle: Usage
    sync: Usage
    relist: Usage
    unready: float
    """Seconds from SIGTERM until /readyz stopped answering 200."""
    exited: float
    """Seconds from SIGTERM until the process was gone."""


class AgentRun:
    """`dns-staleness-exporter run` from a source tree, against the bench's API server."""

    def __init__(self, tree: Path, kubeconfig: Path, slices: int, namespace: str | None,
                 log: Path, servers: str) -> None:
        self.port = free_port("127.0.0.1")
        args = [sys.executable, "-m", "exporter", "run", "--kubeconfig", str(kubeconfig),
                "--listen", f"127.0.0.1:{self.port}", "--watch-start-jitter", "0",
                "--watch-timeout", str(WATCH_TIMEOUT), "--max-targets", str(max(slices, 1)),
                "--layers", "", "--static-servers", servers, "--log-level", "warn"]
        if namespace:
            args += ["--namespaces", namespace]
        self.log = log.open("wb")
        # The tree's own package first: the bench's checkout is installed in the venv too.
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(args, cwd=tree, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def get(self, path: str) -> str | None:
        """The body of a 200, else None."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return None

    def wait(self, path: str, check: str, seconds: float, what: str) -> None:
        """Until a 200 from `path` holds `check`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the agent exited {self.proc.returncode} before {what}")
            if check in (self.get(path) or ""):
                return
            time.sleep(0.2)
        raise BenchError(f"no {what} within {seconds:.0f} s")

    def usage(self) -> Usage:
        return Usage(status_kib("VmHWM", self.proc.pid) * 1024,
                     status_kib("VmRSS", self.proc.pid) * 1024)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


SYNCED = ("/readyz", "ready")
RELISTED = ("/metrics", 'dns_staleness_watch_events_total{kind="EndpointSlice",type="RELIST"} 1.0')


def black_holes(stack: ExitStack) -> str:
    """Three DNS servers that never answer: every probe is in flight until its timeout."""
    refs = []
    for name in "abc":
        sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        sock.bind(("127.0.0.1", 0))
        refs.append(f"{name}=127.0.0.1:{sock.getsockname()[1]}")
    return ",".join(refs)


def sigterm(run: AgentRun) -> tuple[float, float]:
    """SIGTERM with a scrape under way: seconds until unready, and until gone."""
    scrape = threading.Thread(target=run.get, args=("/metrics",))
    scrape.start()
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    unready = None
    while run.proc.poll() is None:
        if unready is None and run.get("/readyz") is None:
            unready = time.monotonic() - sent
        time.sleep(0.005)
    exited = time.monotonic() - sent
    scrape.join()
    return exited if unready is None else unready, exited


def measure(label: str, tree: Path, kubeconfig: Path, etcd: Etcd, slices: int,
            work: Path, timeout: float, servers: str) -> Measured:
    note(f"{label}: an idle agent (an empty namespace)")
    idle_run = AgentRun(tree, kubeconfig, slices, "empty", work / f"{label}-idle.log", servers)
    try:
        idle_run.wait(*SYNCED, timeout, "the idle agent's sync")
        time.sleep(2.0)
        idle = idle_run.usage()
    finally:
        idle_run.stop()
    note(f"{label}: the initial sync of {slices:,} slices")
    run = AgentRun(tree, kubeconfig, slices, None, work / f"{label}.log", servers)
    try:
        run.wait(*SYNCED, timeout, "the initial sync")
        time.sleep(3.0)  # the agent collects and freezes its state after the sync
        sync = run.usage()
        note(f"{label}: a relist after 410 Gone")
        os.kill(run.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(1.2 * WATCH_TIMEOUT + 1.0)  # every watch has ended meanwhile
            etcd.compact()
            if not reset_peak_rss(run.proc.pid):
                raise BenchError("cannot reset the agent's peak RSS (/proc/PID/clear_refs)")
        finally:
            os.kill(run.proc.pid, signal.SIGCONT)
        run.wait(*RELISTED, timeout, "the relist")
        time.sleep(3.0)
        relist = run.usage()
        note(f"{label}: SIGTERM, probes in flight and a scrape under way")
        unready, exited = sigterm(run)
    finally:
        run.stop()
    return Measured(label, idle, sync, relist, unready, exited)


def tree_of(revision: str, into: Path) -> Path:
    """The package at `revision`, unpacked from git."""
    archive = subprocess.run(["git", "archive", "--format=tar", revision, "exporter"],
                             cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        raise BenchError(f"git archive {revision}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def mb(size: float) -> str:
    return f"{size / 1e6:,.1f}"


def report(slices: int, rows: list[Measured]) -> None:
    per_k = slices * ENDPOINTS / 1000
    body = []
    for m in rows:
        retained = m.sync.rss - m.idle.rss
        body.append([m.label, mb(m.idle.rss), mb(m.sync.peak), mb(m.sync.rss), mb(retained),
                     f"{retained / per_k / 1e6:.2f}", mb(m.relist.peak), mb(m.relist.rss)])
    section(f"RSS of the agent process in MB, {slices:,} headless slices x {ENDPOINTS} "
            f"endpoints, 3 DNS servers", table(
                ["agent", "idle", "peak during sync", "after sync", "retained",
                 "retained per 1,000 endpoints", "peak during a relist", "after the relist"],
                body))
    section("SIGTERM with probes in flight and a scrape under way", table(
        ["agent", "unready after", "exited after"],
        [[m.label, f"{m.unready * 1e3:,.0f} ms", f"{m.exited * 1e3:,.0f} ms"] for m in rows]))
    if len(rows) == 2:
        new, old = rows
        print(f"\npeak during sync {new.sync.peak / old.sync.peak:.2f}x the baseline's, "
              f"retained {(new.sync.rss - new.idle.rss) / (old.sync.rss - old.idle.rss):.2f}x, "
              f"relist peak {new.relist.peak / old.relist.peak:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, help="headless Services, one slice each "
                        "(default 10000; 1000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="1,000 slices")
    parser.add_argument("--baseline", default=BASELINE,
                        help="the peer's commit (default: %(default)s); 'none' for no peer")
    parser.add_argument("--concurrency", type=int, default=32, help="API requests in flight")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for any one phase")
    args = parser.parse_args(argv)
    slices = args.slices if args.slices is not None else (1000 if args.quick else 10000)
    if slices < 1:
        parser.error("--slices must be at least 1")
    rig = Rig.load()
    rows: list[Measured] = []
    print(f"# {slices:,} headless slices x {ENDPOINTS} endpoints; Python "
          f"{sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f} at start",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="dse-bench-memory-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        etcd = Etcd(rig.etcd, work / "etcd").start()
        stack.callback(etcd.stop)
        api = KubeApiServer(rig.kube_apiserver, work / "apiserver", etcd_url=etcd.client_url,
                            openssl=rig.openssl,
                            extra_args=["--watch-cache=false", "--etcd-compaction-interval=0"])
        api.start()
        stack.callback(api.stop)
        note(f"creating {slices:,} headless Services and EndpointSlices in {NAMESPACE}")
        asyncio.run(create_objects(access_of(api), slices, args.concurrency))
        kubeconfig = api.write_kubeconfig(work / "kubeconfig")
        trees = [("this tree", ROOT)]
        if args.baseline != "none":
            trees.append((f"baseline {args.baseline}", tree_of(args.baseline,
                                                                work / "baseline")))
        servers = black_holes(stack)
        for label, tree in trees:
            rows.append(measure(label, tree, kubeconfig, etcd, slices, work, args.timeout,
                                servers))
    report(slices, rows)
    return 0


if __name__ == "__main__":
    exit_with(main, "bench.memory")
