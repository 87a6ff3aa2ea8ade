"""The metrics contract of docs/design.md and docs/metrics.md, on a prometheus_client registry.

Counters and histograms are updated as events happen. Gauges are rebuilt at scrape time from a
snapshot that the agent takes on the event loop, so per-service series exist only while they
are non-zero and vanish without bookkeeping.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import REVISION, __version__
from exporter.core.clients import FOREVER, ClientProfile
from exporter.core.comparator import STALE, OpenSummary, Race, Window
from exporter.core.events import RestartReason
from exporter.core.records import ServerRef, Target
from exporter.io.probe import ProbeResult

BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 300,
           600)
"""From 25 ms (watch and informer lag) to 10 min (misconfigured caches); 50 ms and 60 s are
bucket bounds, and the steps near the usual TTLs (5 s, 30 s) are fine enough to tell them apart."""
CLIENT_BUCKETS = (0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600, 7200)
"""Client windows add a runtime's hold, of seconds to hours (nscd and systemd-resolved cap
theirs at 1 h and 2 h), to a layer's window: no need for the layers' 25 ms steps, and each
bucket is a series per layer and profile on every node."""
RESOLUTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""From the bracketing probes' few milliseconds to the sweep interval."""
PROBE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
LABEL_MAX = 63
"""Kubernetes names are at most 63 characters; anything longer is cut, never trusted."""
OTHER = "_other"


EXEMPLAR_MAX = 128
"""OpenMetrics: the names and values of an exemplar's labels, together, in characters."""


def bounded(value: str) -> str:
    return value[:LABEL_MAX]


def exemplar_of(window: Window) -> dict[str, str]:
    """The record behind a histogram sample: namespace, service, record and type, each cut
    to the same length when together they would pass the OpenMetrics limit; then as much of
    the name as still fits (a pod's name tells the most, and is the longest)."""
    keys = ("namespace", "service", "record")
    values = (window.target.namespace, window.target.service, window.value)
    room = EXEMPLAR_MAX - sum(map(len, keys)) - len("type") - len(window.question.rtype)
    cap = max(map(len, values))
    while sum(min(len(v), cap) for v in values) > room:
        cap -= 1
    labels = {k: v[:cap] for k, v in zip(keys, values, strict=True)}
    labels["type"] = window.question.rtype
    left = EXEMPLAR_MAX - sum(len(k) + len(v) for k, v in labels.items()) - len("name")
    if left > 0:
        labels["name"] = window.question.name[:left]
    return labels


@dataclass
class Snapshot:
    """Everything the gauges show, taken on the event loop right before a render."""

    open_windows: Mapping[tuple[Target, ServerRef], OpenSummary] = field(default_factory=dict)
    misconfigurations: Mapping[Target, frozenset[str]] = field(default_factory=dict)
    ttl: Mapping[str, int] = field(default_factory=dict)
    layer_up: Mapping[ServerRef, bool] = field(default_factory=dict)
    targets: int = 0
    targets_dropped: int = 0
    probes_deferred: int = 0
    budget_qps: float = 0.0
    sweep_period: float | None = None
    """How long the last whole sweep took; None before the first one ends."""
    skew: float | None = None
    dns_service: tuple[str, str, bool] | None = None
    """The cluster DNS Service's namespace and name, and whether it exists; None when no
    layer needs it."""
    shard: ShardView | None = None
    """The fleet as this agent sees it; None without sharding."""


@dataclass(frozen=True)
class ShardView:
    members: int
    """Agents in the fleet, this one included."""
    owned: int
    """Targets this agent measures on the kube-dns and coredns layers."""
    node_local: int
    """Targets it measures at its node-local."""
    handed_out: int
    taken_in: int
    budget_qps: float | None
    """Its share of the fleet's budget; None without one."""


class Metrics(Collector):
    def __init__(self, registry: CollectorRegistry, max_service_series: int = 500) -> None:
        self.registry = registry
        self.max_service_series = max_service_series
        self.snapshot = Snapshot()
        self.window = Histogram(
            "dns_staleness_window_seconds",
            "Closed stale windows: removal from the truth to the first probe without the record.",
            ["layer", "reference"], buckets=BUCKETS, registry=registry)
        self.propagation = Histogram(
            "dns_staleness_propagation_seconds",
            "Closed missing windows: addition to the truth to the first probe that serves it.",
            ["layer", "reference"], buckets=BUCKETS, registry=registry)
        self.client_window = Histogram(
            "dns_staleness_client_window_seconds",
            "Closed stale windows as a client of the profile can see them at worst: the "
            "layer's window, or its last old answer plus the client's hold, if later.",
            ["layer", "client", "reference"], buckets=CLIENT_BUCKETS, registry=registry)
        self.client_propagation = Histogram(
            "dns_staleness_client_propagation_seconds",
            "Closed missing windows as a client of the profile can see them at worst.",
            ["layer", "client", "reference"], buckets=CLIENT_BUCKETS, registry=registry)
        self.client_unbounded = Counter(
            "dns_staleness_client_windows_unbounded",
            "Closed windows that a client of the profile never sees end: it holds the old "
            "answer until it restarts (jvm-security-manager).",
            ["layer", "client", "kind"], registry=registry)
        self.resolution = Histogram(
            "dns_staleness_window_resolution_seconds",
            "Closed windows of either kind: the gap between the last probe in the old state "
            "and the first in the new one, the window's own error bound.",
            ["layer", "kind"], buckets=RESOLUTION_BUCKETS, registry=registry)
        self.probes = Counter(
            "dns_staleness_probes", "DNS probes by layer and result.", ["layer", "result"],
            registry=registry)
        self.unmatched = Counter(
            "dns_staleness_answers_unmatched",
            "DNS answers that matched no query in flight: a wrong ID or question (spoofed or "
            "misrouted), a duplicate, or one that came after its query timed out.", ["layer"],
            registry=registry)
        self.truncated = Counter(
            "dns_staleness_answers_truncated",
            "DNS answers cut to 64 KB even over TCP (TC set): the records they lack cannot be "
            "measured as missing.", ["layer"], registry=registry)
        self.probe_duration = Histogram(
            "dns_staleness_probe_duration_seconds", "DNS probe round-trip time.", ["layer"],
            buckets=PROBE_BUCKETS, registry=registry)
        self.races = Counter(
            "dns_staleness_window_races",
            "Windows that ended because the truth moved again or a layer was ahead of the watch.",
            ["layer", "reason"], registry=registry)
        self.clamped = Counter(
            "dns_staleness_reference_clamped",
            "Windows whose value was negative on a reference clock and was clamped to zero.",
            ["reference"], registry=registry)
        self.watch_events = Counter(
            "dns_staleness_watch_events", "Watch events processed.", ["kind", "type"],
            registry=registry)
        self.watch_delay = Histogram(
            "dns_staleness_watch_delay_seconds",
            "From the slice's last-change-trigger-time to the agent's receipt of the event.",
            buckets=BUCKETS, registry=registry)
        self.watch_restarts = Counter(
            "dns_staleness_watch_restarts", "Relists and reconnects of the watch.", ["reason"],
            registry=registry)
        # Every reason exists from the start, so increase() sees the first restart too.
        for reason in RestartReason:
            self.watch_restarts.labels(reason)
        registry.register(self)
        for default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(default)

    def record_probe(self, result: ProbeResult) -> None:
        layer = result.server.layer
        self.probes.labels(layer, result.result).inc()
        if result.answer is not None:
            self.probe_duration.labels(layer).observe(result.received - result.sent)
            if not result.answer.complete:
                self.truncated.labels(layer).inc()

    def record_unmatched(self, server: ServerRef) -> None:
        self.unmatched.labels(server.layer).inc()

    def record_windows(self, windows: Iterable[Window], races: Iterable[Race]) -> None:
        for window in windows:
            histogram = self.window if window.kind == STALE else self.propagation
            histogram.labels(window.server.layer, window.reference).observe(
                window.seconds, exemplar_of(window))
            if window.reference == "watch":  # one per window: both references share it
                self.resolution.labels(window.server.layer, window.kind).observe(
                    window.resolution)
            if window.clamped:
                self.clamped.labels(window.reference).inc()
        for race in races:
            self.races.labels(race.server.layer, race.reason).inc()

    def record_clients(self, windows: Iterable[Window],
                       profiles: Iterable[ClientProfile]) -> None:
        """On the watch reference only: the trigger adds under a second to holds of tens of
        seconds, and would double the series of every profile."""
        for window in windows:
            if window.reference != "watch":
                continue
            histogram = self.client_window if window.kind == STALE else self.client_propagation
            for profile in profiles:
                seconds = profile.seconds(window)
                if seconds == FOREVER:
                    self.client_unbounded.labels(window.server.layer, profile.name,
                                                 window.kind).inc()
                else:
                    histogram.labels(window.server.layer, profile.name,
                                     window.reference).observe(seconds)

    def describe(self) -> Iterable[Metric]:
        return []

    def _per_service(self) -> Iterator[tuple[tuple[str, str, str, str], OpenSummary]]:
        """Series per (layer, server, namespace, service), the oldest first, capped; the rest
        summed per server."""
        ranked = sorted(self.snapshot.open_windows.items(),
                        key=lambda item: -max(item[1].stale_age, item[1].missing_age))
        overflow: dict[ServerRef, list[OpenSummary]] = {}
        for index, ((target, server), summary) in enumerate(ranked):
            if index < self.max_service_series:
                yield (server.layer, server.address, bounded(target.namespace),
                       bounded(target.service)), summary
            else:
                overflow.setdefault(server, []).append(summary)
        for server, rest in sorted(overflow.items()):
            yield (server.layer, server.address, OTHER, OTHER), OpenSummary(
                sum(s.stale for s in rest), max(s.stale_age for s in rest),
                sum(s.missing for s in rest), max(s.missing_age for s in rest))

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        labels = ["layer", "server", "namespace", "service"]
        stale = GaugeMetricFamily("dns_staleness_stale_records",
                                  "Records served now that are not in the truth.", labels=labels)
        age = GaugeMetricFamily("dns_staleness_stale_record_age_seconds",
                                "Age of the oldest open stale window.", labels=labels)
        missing = GaugeMetricFamily("dns_staleness_missing_records",
                                    "Records in the truth that are not served yet.", labels=labels)
        missing_age = GaugeMetricFamily("dns_staleness_missing_record_age_seconds",
                                        "Age of the oldest open missing window.", labels=labels)
        for key, summary in self._per_service():
            if summary.stale:
                stale.add_metric(key, summary.stale)
                age.add_metric(key, summary.stale_age)
            if summary.missing:
                missing.add_metric(key, summary.missing)
                missing_age.add_metric(key, summary.missing_age)
        yield from (stale, age, missing, missing_age)
        ttl = GaugeMetricFamily("dns_staleness_record_ttl_seconds",
                                "Highest TTL the layer served for monitored names lately.",
                                labels=["layer"])
        for layer, value in sorted(snap.ttl.items()):
            ttl.add_metric([layer], value)
        yield ttl
        up = GaugeMetricFamily("dns_staleness_layer_up",
                               "1 if the server answered its last probe, else 0.",
                               labels=["layer", "server"])
        for server, ok in sorted(snap.layer_up.items()):
            up.add_metric([server.layer, server.address], 1 if ok else 0)
        yield up
        yield GaugeMetricFamily("dns_staleness_probe_budget_qps",
                                "The query budget: most probes per second over any second.",
                                value=snap.budget_qps)
        if snap.sweep_period is not None:
            yield GaugeMetricFamily(
                "dns_staleness_sweep_period_seconds",
                "How long the last steady sweep of every (name, server) pair took.",
                value=snap.sweep_period)
        yield CounterMetricFamily("dns_staleness_probes_deferred",
                                  "Probes deferred because the query budget was spent.",
                                  value=snap.probes_deferred)
        yield GaugeMetricFamily("dns_staleness_targets", "Headless Services monitored.",
                                value=snap.targets)
        yield CounterMetricFamily("dns_staleness_targets_dropped",
                                  "Headless Services turned away by the target cap.",
                                  value=snap.targets_dropped)
        misconf = GaugeMetricFamily(
            "dns_staleness_misconfigurations",
            "Known causes of missing records, per Service (1 while present).",
            labels=["namespace", "service", "reason"])
        for target, reasons in sorted(snap.misconfigurations.items())[: self.max_service_series]:
            for reason in sorted(reasons):
                misconf.add_metric([bounded(target.namespace), bounded(target.service), reason], 1)
        yield misconf
        if snap.skew is not None:
            yield GaugeMetricFamily(
                "dns_staleness_trigger_clock_skew_seconds",
                "Lowest recent watch delay on the trigger reference; below zero means the "
                "pods' node clocks run ahead of the agent's.", value=snap.skew)
        if snap.dns_service is not None:
            namespace, name, found = snap.dns_service
            service = GaugeMetricFamily(
                "dns_staleness_dns_service_found",
                "1 if the cluster DNS Service exists; 0 loses the kube-dns and coredns layers.",
                labels=["namespace", "service"])
            service.add_metric([namespace, name], 1 if found else 0)
            yield service
        if snap.shard is not None:
            yield from shard_families(snap.shard)
        info = GaugeMetricFamily(
            "dns_staleness_build_info",
            "Always 1; the agent's version, its source revision and the Python it runs on.",
            labels=["version", "revision", "pythonversion"])
        info.add_metric([__version__, REVISION, platform.python_version()], 1)
        yield info



def shard_families(view: ShardView) -> Iterator[Metric]:
    yield GaugeMetricFamily("dns_staleness_fleet_members",
                            "Agents in the fleet that shares the targets out, this one included.",
                            value=view.members)
    owned = GaugeMetricFamily("dns_staleness_shard_targets",
                              "Targets this agent measures, by where: its shard of the kube-dns "
                              "and coredns layers, and its node-local.", labels=["scope"])
    owned.add_metric(["cluster"], view.owned)
    owned.add_metric(["node-local"], view.node_local)
    yield owned
    moved = CounterMetricFamily("dns_staleness_shard_handovers",
                                "Targets that membership changes moved off (out) or onto (in) "
                                "this agent's shard.", labels=["direction"])
    moved.add_metric(["out"], view.handed_out)
    moved.add_metric(["in"], view.taken_in)
    yield moved
    if view.budget_qps is not None:
        yield GaugeMetricFamily("dns_staleness_fleet_budget_share_qps",
                                "This agent's share of fleet_budget_qps: the most queries per "
                                "second it sends to the kube-dns and coredns layers.",
                                value=view.budget_qps)
