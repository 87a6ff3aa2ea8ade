"""Endurance: the agent on the rig through hours of churn and faults, sampled every minute.

Nothing may grow once the working set is reached, and no window may be a phantom.

The rig: etcd, a kube-apiserver (its watch cache off, so that a watch from a compacted
resourceVersion gets 410 Gone), the kube-controller-manager's endpoint slice controller,
two CoreDNS replicas behind a cluster DNS Service and a node-local cache in front of both
(tests/integration/fleet.py). The agent is `dns-staleness-exporter run` as a pod runs it,
probing the coredns and node-local layers within its budget.

The churn (tests/integration/churn.py) changes real Pods and Services of `--services`
headless Services: scale up and down, pod recreation with a new IP, readiness flaps, an IP
moved to another Service, Service deletion and recreation. A share of it goes to a hot set
of Services whose names an independent checker polls on every server every 50 ms.

The faults, one every `--fault-every` minutes in turn:
- kill -9 of a CoreDNS replica right after a change to a hot Service, restarted 5 s later;
- SIGSTOP of the node-local cache for 3 s, past the probe timeout;
- kill -9 of the API server in the middle of a rollout of a hot Service, restarted 5 s later;
- the agent frozen past its watches' end, changes made then (a gap: only a relist can
  bring them), etcd compacted, the agent resumed: 410 Gone and a relist.

Every sample: RSS and open file descriptors from /proc, and the counts of the agent's own
/api/v1/status `internals` (asyncio tasks, names, cells, fast-mode entries) with its open
windows. At the end every window of the agent's log is held to the evidence:
- on a hot name, the checker must have seen that value leave (stale) or arrive
  (propagation) on that server within the window's resolution plus 0.3 s of its end,
  unless the window is shorter than the checker's period (a change undone between two of
  its asks can go unseen): those are counted apart, as too short to check;
- on any name, the churn must have made that change in the 60 s before the agent learned of
  it; a change made in a gap may cause no window (docs/design.md: a relist's changes are
  never samples).
A window that fails either is a phantom. The growth check fits a line to each series after
the warm-up (a fifth of the run): a series grows when its slope, less twice the slope's
standard error (the noise), is above its limit; all three are printed.

    .venv/bin/python -m bench.endurance                          # 120 minutes
    .venv/bin/python -m bench.endurance --minutes 10 --sample 30  # what CI runs
    .venv/bin/python -m bench.endurance --out docs/endurance      # also CSV and PNG
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import section, table
from bench.watch_ingest import BenchError, exit_with, note, status_kib
from tests.integration.agent import AgentProcess, AgentWindow, Checker, samples, total
from tests.integration.churn import Churn
from tests.integration.fleet import DNS_SERVICE, Dns, dns_side, publish_dns
from tests.rig import (
    DEFAULT_NODE,
    CoreDNS,
    Etcd,
    KubeClient,
    KubeControllerManager,
    RestartableApiServer,
    Rig,
    wait_until,
)

NAMESPACE = "soak"
DNS_NAMESPACE = "soak-dns"
HOT = 4
"""Services whose names the checker polls on every server."""
HOT_SHARE = 0.3
"""Of the churn's changes, the share that goes to the hot Services."""
CHECK_EVERY = 0.05
TOLERANCE = 0.3
"""Seconds past a window's resolution within which the checker must have seen its change:
the checker's own interval and a scheduling slip."""
LAG = 60.0
"""Seconds between a change's API call and the agent learning of it, at most, for the churn
to count as its cause (the controller, the watch, an API server restart)."""
WATCH_TIMEOUT = 10
ERRORS = ("servfail", "refused", "other_rcode", "timeout", "network_error", "malformed")
"""The results of dns_staleness_probes_total that are errors (docs/metrics.md)."""
PROBE_TIMEOUT = 0.5
SERIES = ("rss_mb", "fds", "tasks", "names", "cells", "fast_mode", "fast_queued",
          "recent_answers", "removed_values", "open_windows")
"""What each sample holds beside its time, in the CSV's order."""


@dataclass
class Sample:
    minute: float
    values: dict[str, float]
    changes: int
    windows: int


@dataclass
class Fault:
    kind: str
    started: float
    ended: float = 0.0
    reported: str = ""
    """What the agent's metrics said while the fault lasted."""


@dataclass
class Soak:
    """The run's processes and what it has seen."""

    etcd: Etcd
    api: RestartableApiServer
    dns: Dns
    churn: Churn
    hot: tuple[str, ...]
    agent: AgentProcess
    checkers: dict[str, Checker]
    """Per server (host:port), a checker of its own: one stuck server stalls no other."""
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)
    """From when to when the agent could learn of a change only by a relist."""
    windows: list[AgentWindow] = field(default_factory=list)
    """Every window of the agent's log, read once it has stopped."""

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        return samples(self.agent.metrics())

    def sample(self) -> Sample:
        pid = self.agent.proc.pid if self.agent.proc else 0
        code, body = self.agent.get("/api/v1/status")
        if code != 200:
            raise BenchError(f"/api/v1/status answered {code}:\n{self.agent.tail()}")
        status = json.loads(body)
        held: dict[str, Any] = status["internals"]
        values = {"rss_mb": status_kib("VmRSS", pid) / 1024,
                  "fds": float(len(os.listdir(f"/proc/{pid}/fd"))),
                  **{k: float(held[k]) for k in SERIES[2:-1]},
                  "open_windows": float(status["open_windows_total"])}
        found = self.metrics()
        windows = int(total(found, "dns_staleness_window_seconds_count") + total(
            found, "dns_staleness_propagation_seconds_count"))
        sample = Sample((time.monotonic() - self.started) / 60, values, self.churn.changes,
                        windows)
        self.samples.append(sample)
        return sample

    def watch(self, fault: Fault, seconds: float, what: Callable[[list[Any]], str]) -> None:
        """Let the fault last `seconds`, reading the agent's metrics every 0.5 s; `what`
        turns the last reading into the row's report."""
        deadline = time.monotonic() + seconds
        found = self.metrics()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            found = self.metrics() or found
        fault.reported = what(found)

    def fault(self, kind: str) -> Fault:
        fault = Fault(kind, time.monotonic())
        self.faults.append(fault)
        before = self.metrics()

        def grew(found: list[Any], name: str, **labels: str) -> int:
            return int(total(found, name, **labels) - total(before, name, **labels))

        def errors(found: list[Any], layer: str) -> int:
            return sum(grew(found, "dns_staleness_probes_total", layer=layer, result=result)
                       for result in ERRORS)

        if kind == "replica":
            replica = self.dns.replicas[0]
            self.churn.step(self.hot)
            time.sleep(0.3)  # windows open on every layer
            kill(replica)
            self.watch(fault, 5.0, lambda f: (
                f"layer_up {total(f, 'dns_staleness_layer_up', server=replica.hostport):.0f}, "
                f"{errors(f, 'coredns')} probe errors"))
            replica.start()
        elif kind == "node-local":
            local = self.dns.nodelocal
            assert local.pid is not None
            os.kill(local.pid, signal.SIGSTOP)
            try:
                self.watch(fault, 3.0, lambda f: (
                    f"layer_up {total(f, 'dns_staleness_layer_up', layer='node-local'):.0f}, "
                    f"{errors(f, 'node-local')} probe errors"))
            finally:
                os.kill(local.pid, signal.SIGCONT)
        elif kind == "api-server":
            service = self.churn.rng.choice(self.hot)
            rollout = sorted(self.churn.model.get(service, {}))
            if rollout:
                self.churn.recreate(service, rollout[0])
            kill(self.api)
            self.watch(fault, 5.0, lambda f: (
                f"{grew(f, 'dns_staleness_watch_restarts_total', reason='error')} watch errors"))
            self.api.start()
            for pod in rollout[1:]:
                self.churn.recreate(service, pod)
            wait_until(lambda: grew(self.metrics(), "dns_staleness_watch_events_total",
                                    type="RELIST") > 0 or None, timeout=60,
                       what="the agent to relist after the API server's restart")
            fault.reported += f", then a relist; pods rolled: {len(rollout)}"
        elif kind == "410":
            assert self.agent.proc is not None
            pid = self.agent.proc.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                # Changes made while the watches are still open reach the agent as events
                # once it resumes; only those made after every watch has ended come by the
                # relist, as a gap: the gap starts then.
                time.sleep(1.2 * WATCH_TIMEOUT + 1.0)
                gap_started = time.monotonic()
                for _ in range(10):
                    self.churn.step(self.hot if self.churn.rng.random() < HOT_SHARE else ())
                    time.sleep(0.3)
                self.etcd.compact()
            finally:
                os.kill(pid, signal.SIGCONT)
            self.gaps.append((gap_started, time.monotonic()))
            wait_until(lambda: grew(self.metrics(), "dns_staleness_watch_restarts_total",
                                    reason="gone") > 0 or None, timeout=60,
                       what="a 410 Gone after the compaction")
            found = self.metrics()
            fault.reported = (
                f"{grew(found, 'dns_staleness_watch_restarts_total', reason='gone')} gone, "
                f"{grew(found, 'dns_staleness_watch_events_total', type='RELIST')} relists")
        fault.ended = time.monotonic()
        return fault


def kill(process: RestartableApiServer | CoreDNS) -> None:
    """kill -9, as a crash: no graceful end of its connections."""
    assert process.pid is not None
    os.killpg(process.pid, signal.SIGKILL)
    process.stop()


FAULT_NAMES = {"replica": "kill -9 of a CoreDNS replica mid-window",
               "node-local": "SIGSTOP of node-local for 3 s (probe timeout 0.5 s)",
               "api-server": "kill -9 of the API server mid-rollout",
               "410": "agent frozen 13 s, etcd compacted: 410 Gone"}
FAULTS = tuple(FAULT_NAMES)
"""The faults in the order the run takes them."""


@dataclass(frozen=True)
class Judged:
    window: AgentWindow
    checked: bool
    """On a hot name: held to the checker too."""
    problem: str | None
    """Why it is a phantom; None when the evidence shows it."""
    miss: float = 0.0
    """Seconds between its end and the checker's change, when checked."""
    short: bool = False
    """Checked, unseen by the checker, and shorter than its period: it may have come and
    gone between two of its asks, so it is neither confirmed nor a phantom."""


GAP = "caused by a change in a watch gap"


def judge(soak: Soak) -> list[Judged]:
    """Every closed window against the churn's log and, on the hot names, the checker."""
    hot_names = {name for name, _ in soak.churn.names(soak.hot)}
    out = []
    for w in soak.windows:
        start = w.end - w.seconds
        cause = soak.churn.cause(w.kind, w.name, w.type, w.value, start, LAG)
        checked = w.type == "A" and w.name in hot_names and w.server in soak.checkers
        if cause is None:
            out.append(Judged(w, checked, "no such change by the churn"))
        elif any(a <= cause <= b for a, b in soak.gaps):
            out.append(Judged(w, checked, GAP))
        elif not checked:
            out.append(Judged(w, False, None))
        else:
            checker = soak.checkers[w.server]
            seen = checker.change_near(w.kind, w.server, w.name, "A", w.value, w.end)
            if seen is not None and abs(seen - w.end) <= w.resolution + TOLERANCE:
                out.append(Judged(w, True, None, abs(seen - w.end)))
            elif w.seconds < checker.period:
                out.append(Judged(w, True, None, short=True))
            else:
                out.append(Judged(w, True, "the checker saw no such change"))
    return out


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of (minute, value) points, per hour, and twice its standard error:
    a slope within that of the limit is noise, not growth."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0 or n < 3:
        return 0.0, 0.0
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    residual = sum((y - my - slope * (x - mx)) ** 2 for x, y in points) / (n - 2)
    return 60 * slope, 120 * (residual / sxx) ** 0.5


@dataclass(frozen=True)
class Growth:
    series: str
    first: float
    last: float
    peak: float
    slope: float
    """Per hour, after the warm-up."""
    noise: float
    """Twice the slope's standard error, per hour."""
    limit: float
    """Per hour: the most the slope may be, beyond its noise."""

    @property
    def ok(self) -> bool:
        return self.slope - self.noise <= self.limit


def growth(samples_: list[Sample], max_rss_slope: float, max_share: float) -> list[Growth]:
    """Each series after the warm-up (a fifth of the run): its slope against its limit. RSS
    may grow at most `max_rss_slope` MB an hour; a count, at most `max_share` of its peak an
    hour (plus 2, so that a count of 3 tasks may go to 5)."""
    warm = [s for s in samples_ if s.minute >= samples_[-1].minute / 5]
    out = []
    for name in SERIES:
        points = [(s.minute, s.values[name]) for s in warm]
        peak = max(v for _, v in points)
        limit = max_rss_slope if name == "rss_mb" else max_share * peak + 2
        if name == "open_windows":
            limit = float("inf")  # follows the churn, not the agent: shown, not judged
        out.append(Growth(name, points[0][1], points[-1][1], peak, *fit(points), limit))
    return out


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files; checked before the run, not after hours."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("--out draws its plot with matplotlib: pip install -c "
                         "constraints.txt -e '.[bench]'") from None
    return plt


def plot(soak: Soak, path: Path) -> None:
    plt = pyplot()
    panels = [("rss_mb", "RSS (MB)"), ("fds", "open file descriptors"),
              ("tasks", "asyncio tasks"), ("cells", "comparator cells"),
              ("fast_mode", "fast-mode entries"), ("open_windows", "open windows")]
    figure, axes = plt.subplots(3, 2, figsize=(12, 9), sharex=True)
    minutes = [s.minute for s in soak.samples]
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        ax.plot(minutes, [s.values[key] for s in soak.samples], color="tab:blue", lw=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        for f in soak.faults:
            ax.axvline((f.started - soak.started) / 60, color="tab:red", lw=0.6, alpha=0.5)
    for ax in axes[-1]:
        ax.set_xlabel("minutes")
    changes = soak.churn.changes
    figure.suptitle(f"bench/endurance.py: {minutes[-1]:.0f} min, {len(soak.churn.services)} "
                    f"headless Services, {changes:,} changes, {len(soak.faults)} faults "
                    "(red lines)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def write_csv(soak: Soak, path: Path) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["minute", *SERIES, "changes", "windows"])
        for s in soak.samples:
            writer.writerow([f"{s.minute:.2f}", *(f"{s.values[k]:g}" for k in SERIES),
                             s.changes, s.windows])


def report(soak: Soak, judged: list[Judged], grown: list[Growth], minutes: float) -> None:
    rows = [[f"{s.minute:.0f}", f"{s.values['rss_mb']:.1f}", *(
        f"{s.values[k]:.0f}" for k in SERIES[1:]), f"{s.changes:,}", f"{s.windows:,}"]
        for s in soak.samples]
    section("samples", table(["min", "RSS MB", *SERIES[1:], "changes", "windows"], rows))
    fault_rows = []
    for f in soak.faults:
        after = [j for j in judged if f.ended <= j.window.end <= f.ended + 60]
        fault_rows.append([f"{(f.started - soak.started) / 60:.1f}", FAULT_NAMES[f.kind],
                           f.reported, str(len(after)),
                           str(sum(j.checked and not j.short for j in after)),
                           str(sum(j.problem is not None for j in after))])
    section("faults", table(["min", "fault", "the agent reported meanwhile",
                             "windows in the next 60 s", "checked", "phantoms"], fault_rows))
    section("growth after the warm-up (per hour)", table(
        ["series", "first", "last", "peak", "slope/h", "noise/h", "limit/h", "verdict"],
        [[g.series, f"{g.first:.1f}", f"{g.last:.1f}", f"{g.peak:.1f}", f"{g.slope:+.2f}",
          f"{g.noise:.2f}", "-" if g.limit == float("inf") else f"{g.limit:.1f}",
          "ok" if g.ok else "GROWS"] for g in grown]))
    changes = soak.churn.changes
    checked = [j for j in judged if j.checked and j.problem is None and not j.short]
    short = [j for j in judged if j.short]
    phantoms = [j for j in judged if j.problem is not None]
    section("verdict", table(["minutes", "services", "changes", "changes/h", "faults",
                              "windows", "checked", "worst s", "too short", "from gaps",
                              "phantoms"], [[
        f"{minutes:.0f}", str(len(soak.churn.services)), f"{changes:,}",
        f"{changes * 60 / minutes:,.0f}", str(len(soak.faults)), f"{len(judged):,}",
        f"{len(checked):,}", f"{max((j.miss for j in checked), default=0.0):.2f}",
        str(len(short)), str(sum(j.problem == GAP for j in judged)), str(len(phantoms))]]))
    periods = ", ".join(f"{c.period:.3f}" for c in soak.checkers.values())
    for j in short[:20]:
        print(f"too short to check (the checker's periods: {periods} s): {describe(j, soak)}")
    for j in phantoms[:20]:
        print(f"phantom ({j.problem}): {describe(j, soak)}")


def describe(j: Judged, soak: Soak) -> str:
    w = j.window
    return (f"{w.kind} {w.layer} {w.server} {w.name} {w.type} {w.value}, {w.seconds:.2f} s, "
            f"ended at {(w.end - soak.started) / 60:.2f} min")


def positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value
    return parse


def start_rig(stack: ExitStack, work: Path) -> tuple[Rig, Etcd, RestartableApiServer,
                                                     KubeClient]:
    rig = Rig.load()
    etcd = Etcd(rig.etcd, work / "etcd").start()
    stack.callback(etcd.stop)
    api = RestartableApiServer(
        rig.kube_apiserver, work / "apiserver", etcd_url=etcd.client_url, openssl=rig.openssl,
        extra_args=["--watch-cache=false", "--etcd-compaction-interval=0"]).start()
    stack.callback(api.stop)
    manager = KubeControllerManager(rig.kube_controller_manager, work / "kcm",
                                    apiserver=api).start()
    stack.callback(manager.stop)
    kube = api.client()
    kube.create_node(DEFAULT_NODE)
    for namespace in (NAMESPACE, DNS_NAMESPACE):
        kube.create_namespace(namespace)
    return rig, etcd, api, kube


def agent_args(dns: Dns, services: int, minutes: float) -> list[str]:
    # Removed records are kept `history` seconds: a fifth of the run at most, so that the
    # warm-up reaches the working set (15 minutes, the default, in the 2-hour run).
    history = min(900.0, 60 * minutes / 5)
    return ["--namespaces", NAMESPACE, "--history", f"{history:g}",
            "--layers", "coredns,node-local", "--node-local-address", dns.nodelocal.hostport,
            "--kube-dns-namespace", DNS_NAMESPACE, "--kube-dns-service", DNS_SERVICE,
            "--coredns-replicas-per-node", "2", "--watch-timeout", str(WATCH_TIMEOUT),
            "--probe-timeout", str(PROBE_TIMEOUT), "--probe-budget-qps", "150",
            "--probe-burst", "20", "--sweep-interval", "30",
            "--max-targets", str(2 * services)]


def soak(args: argparse.Namespace, stack: ExitStack, work: Path) -> Soak:
    rig, etcd, api, kube = start_rig(stack, work)
    dns = stack.enter_context(dns_side(rig, work, api))
    publish_dns(kube, DNS_NAMESPACE, dns)
    services = tuple(f"svc-{i:03d}" for i in range(args.services))
    churn = Churn(kube, NAMESPACE, random.Random(args.seed), services)
    note(f"creating {len(services)} headless Services of 2 pods each")
    for i, service in enumerate(services):
        churn.create_service(service)
        if (i + 1) % 50 == 0:
            note(f"  {i + 1} Services")
    hot = services[:HOT]
    servers = [*dns.replicas, dns.nodelocal]
    checkers = {s.hostport: Checker({s.hostport: (s.address, s.port)}, churn.names(hot),
                                    interval=CHECK_EVERY).start() for s in servers}
    for checker in checkers.values():
        stack.callback(checker.stop)
    agent = AgentProcess(work, api.kubeconfig_path,
                         agent_args(dns, len(services), args.minutes)).start()
    stack.callback(agent.stop)
    return Soak(etcd, api, dns, churn, hot, agent, checkers)


def drive(s: Soak, args: argparse.Namespace) -> None:
    """The churn, the samples and the faults until the run's end."""
    end = s.started + 60 * args.minutes
    next_sample = s.started
    next_fault = s.started + 60 * args.fault_every
    faults = iter(FAULTS * int(args.minutes // args.fault_every + 1))
    mean_gap = 60 / args.rate
    while (now := time.monotonic()) < end:
        if now >= next_sample:
            sample = s.sample()
            note(f"{sample.minute:6.1f} min: RSS {sample.values['rss_mb']:.1f} MB, "
                 f"{sample.values['fds']:.0f} fds, {sample.values['tasks']:.0f} tasks, "
                 f"{sample.values['cells']:.0f} cells, {sample.values['fast_mode']:.0f} fast, "
                 f"{sample.values['open_windows']:.0f} open; {sample.changes:,} changes, "
                 f"{sample.windows:,} windows")
            next_sample += args.sample
        if now >= next_fault and now < end - 60:
            kind = next(faults)
            note(f"fault: {FAULT_NAMES[kind]}")
            fault = s.fault(kind)
            note(f"  reported: {fault.reported}")
            next_fault += 60 * args.fault_every
        s.churn.step(s.hot if s.churn.rng.random() < HOT_SHARE else ())
        time.sleep(min(s.churn.rng.expovariate(1 / mean_gap), 4 * mean_gap))
    s.sample()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=positive(float), default=120.0,
                        help="length of the churn (default %(default)s)")
    parser.add_argument("--services", type=positive(int), default=200,
                        help="headless Services, 3 pod names each (default %(default)s)")
    parser.add_argument("--rate", type=positive(float), default=60.0,
                        help="changes per minute, on average (default %(default)s)")
    parser.add_argument("--sample", type=positive(float), default=60.0,
                        help="seconds between samples (default %(default)s)")
    parser.add_argument("--fault-every", type=positive(float), default=10.0,
                        help="minutes between faults (default %(default)s)")
    parser.add_argument("--max-rss-slope", type=positive(float), default=5.0,
                        help="MB per hour that RSS may grow after the warm-up "
                             "(default %(default)s)")
    parser.add_argument("--max-share", type=positive(float), default=0.25,
                        help="share of its peak that a count may grow per hour after the "
                             "warm-up (default %(default)s)")
    parser.add_argument("--seed", default="endurance", help="of the churn's randomness")
    parser.add_argument("--out", type=Path,
                        help="a directory for endurance.csv and endurance.png (needs "
                             "matplotlib: the project's [bench] extra)")
    args = parser.parse_args(argv)
    if args.sample > 30 * args.minutes:
        parser.error("--sample must leave at least two samples in --minutes")
    if args.out is not None:
        pyplot()
        args.out.mkdir(parents=True, exist_ok=True)
    print(f"# {args.minutes:g} min, {args.services} Services, {args.rate:g} changes/min, a "
          f"fault every {args.fault_every:g} min; Python {sys.version.split()[0]}; load "
          f"average {os.getloadavg()[0]:.2f} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="dse-endurance-") as tmp, ExitStack() as stack:
        s = soak(args, stack, Path(tmp))
        drive(s, args)
        time.sleep(15.0)  # every cache expires, every window closes
        minutes = (time.monotonic() - s.started) / 60
        code = s.agent.stop()
        for checker in s.checkers.values():
            checker.stop()
        if code != 0:
            raise BenchError(f"the agent exited {code}:\n{s.agent.tail()}")
        s.windows = s.agent.timed_windows()
        judged = judge(s)
        grown = growth(s.samples, args.max_rss_slope, args.max_share)
        report(s, judged, grown, minutes)
        if args.out is not None:
            write_csv(s, args.out / "endurance.csv")
            plot(s, args.out / "endurance.png")
    failed = [g.series for g in grown if not g.ok]
    phantoms = sum(j.problem is not None for j in judged)
    if phantoms or failed:
        print(f"bench.endurance: {phantoms} phantom windows; growing: "
              f"{', '.join(failed) or 'nothing'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_with(main, "bench.endurance")
