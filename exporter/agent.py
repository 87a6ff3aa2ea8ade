"""The agent pipeline, shared by `run`, `demo` and `check --follow`: the IO edge around the core.

source events -> truth -> comparator -> metrics, and scheduler -> probers -> comparator.
Only this module and the adapters it drives read clocks or touch sockets.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.core import clients
from exporter.core.budget import Budget
from exporter.core.comparator import Comparator, Observation, Outcome, Window
from exporter.core.dnsmsg import QueryWire
from exporter.core.events import LISTED, Kind, ObjectEvent, Relisted, Relisting, SourceEvent, Synced
from exporter.core.layers import Discovery
from exporter.core.objects import (
    ObjectError,
    SliceState,
    namespace_name,
    object_name,
    parse_dns_service,
    parse_dns_slice,
    parse_member_slice,
    parse_service,
    parse_slice,
)
from exporter.core.records import Question, ServerRef, Target, measure_all
from exporter.core.resolvconf import ResolvConf
from exporter.core.resolvconf import parse as parse_resolv_conf
from exporter.core.schedule import ProbeKey, Scheduler
from exporter.core.selection import Selection
from exporter.core.shard import Shard
from exporter.core.status import ClosedLog, Inputs, bound_of, document, identity
from exporter.core.truth import Truth, Update
from exporter.io.logs import Throttle
from exporter.io.metrics import Metrics, ShardView, Snapshot
from exporter.io.probe import Prober, ProbeResult, SearchProber
from exporter.io.server import HttpServer
from exporter.io.tasks import Background, wait_set
from exporter.io.webconfig import Served, WebConfigError
from exporter.io.webconfig import load as load_web_config
from exporter.settings import Settings

log = logging.getLogger(__name__)

TTL_HORIZON = 600.0
"""The TTL gauge shows the highest TTL seen in the last ten minutes."""
NOTICE_EVERY = 1.0
"""Seconds between looks for what the log should tell: windows past their bound, dropped
targets, misconfigurations."""
DRAIN = 0.1
"""At a stop, how long probes in flight may take to land and be counted: an answer on a
healthy path takes milliseconds, and the whole exit must stay within 2 s."""


class Agent:
    def __init__(
        self, settings: Settings, servers: Sequence[ServerRef], metrics: Metrics, *,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
        rng: random.Random | None = None, discovery: Discovery | None = None, node: str = "",
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock, self.wall = clock, wall
        selection = Selection(frozenset(settings.watched_namespaces()), settings.label_selector,
                              settings.opt_out_annotation, settings.targets())
        self.search = self._search_conf(settings)
        """The pod's resolv.conf when its names are probed as applications write them."""
        self.truth = Truth(settings.zone, selection.matcher(), settings.max_targets,
                           scope=settings.plugin_scope(), written=self.search is not None)
        self.shard = Shard(node, settings.shard_owners, settings.shard_node_local_extra) \
            if settings.shard_service else None
        """The fleet's share-out of the targets; None: this agent measures them all."""
        measures = measure_all if self.shard is None else self._measures
        self.comparator = Comparator(settings.history, settings.balanced_confirm_probes,
                                     measures)
        self.scheduler = Scheduler(
            Budget(settings.probe_budget_qps, settings.probe_burst), rng or random.Random(),
            fast_interval=settings.fast_interval, fast_cap=settings.fast_cap,
            sweep_interval=settings.sweep_interval, fast_backoff_max=settings.fast_backoff_max,
            measures=measures)
        self._annotations = (settings.opt_out_annotation,)
        """The only Service annotation the agent reads."""
        self._member_slices: dict[str, tuple[str, ...]] = {}
        self._relisting: dict[Kind, list[object]] = {}
        """Per kind, the records of a relist under way."""
        self.wire = QueryWire()
        self.discovery = discovery
        self.probers: dict[ServerRef, Prober | SearchProber] = {}
        self._layer_up: dict[ServerRef, bool] = {}
        self._kick = asyncio.Event()
        self._sweep_short = False
        self.ready = False
        self._running = False
        """Set by run(): the servers the constructor sets are logged only then, so that a
        command that fails before it (a busy port) says one line."""
        self.set_servers(tuple(servers) if discovery is None else discovery.servers())
        self.synced = asyncio.Event()
        """Set once the first full sync is in."""
        self.outcome_listeners: list[Callable[[Outcome], None]] = []
        self._ttl: dict[str, deque[tuple[float, int]]] = {}
        self._delays: deque[float] = deque(maxlen=256)
        self._tasks = Background()
        self._dns_service_found: bool | None = None
        self.node = node
        """The node's name, for /status."""
        self.closed = ClosedLog(settings.status_limit)
        self.clients = settings.client_models()
        self.started = clock()
        self._listed = 0
        self._past: set[tuple[str, ServerRef, Question, str]] = set()
        self._dropped: set[Target] = set()
        self._misconfigured: dict[Target, frozenset[str]] = {}
        # Closed windows come six to a deleted pod (A and SRV, Service and pod names, two
        # layers): a minute's worth of small scale-downs passes, a rollout does not.
        self._say = {"windows closed": Throttle(log, "windows closed", clock, burst=60)} | {
            what: Throttle(log, what, clock) for what in (
                "windows past their layer's bound", "windows closed past their layer's bound",
                "targets dropped by the cap", "misconfigurations")}

    def ingest(self, event: SourceEvent) -> None:
        now = self.clock()
        if isinstance(event, Synced):
            if self.shard is not None and not self.shard.known:
                self._set_members(now)  # the agents' slices were listed, and were none
            if not self.comparator.synced:
                self.comparator.mark_synced()
                took = now - self.started
                log.info("initial sync done", extra={"kv": {
                    "objects": self._listed, "seconds": round(took, 3),
                    "targets": len(self.truth.monitored), "dropped": len(self.truth.dropped)}})
                self._say_dns_service()
            self.ready = True
            self._check_sweep()
            self.synced.set()
            return
        if isinstance(event, Relisting):
            self._relisting[event.kind] = []
            return
        change: ObjectEvent | Relisted = event
        if isinstance(event, Relisted):
            change = replace(event, objects=tuple(self._relisting.pop(event.kind, ())))
            self.metrics.watch_events.labels(event.kind, "RELIST").inc()
            if not self.comparator.synced:
                self._listed += len(change.objects)
        elif event.type == LISTED:
            self._take_listed(event)
            return
        else:
            self.metrics.watch_events.labels(event.kind, event.type).inc()
            if event.type == "BOOKMARK":
                return
            if not self.comparator.synced:
                self._listed += 1
        try:
            updates = self._apply(change, now)
        except ObjectError as exc:
            self._invalid(event.kind, "event", exc)
            return
        for update in updates:
            self._absorb(update, now)

    def _take_listed(self, event: ObjectEvent) -> None:
        """An item of a relist, read now: the relist holds records, never its whole list
        parsed, and an item that cannot be read is left out and counted, not the relist."""
        listed = self._relisting.get(event.kind)
        if listed is None:
            return
        try:
            listed.append(self._reduce(event.kind, event.obj))
        except ObjectError as exc:
            self._invalid(event.kind, "relist item", exc)

    def _invalid(self, kind: Kind, what: str, exc: ObjectError) -> None:
        self.metrics.watch_events.labels(kind, "INVALID").inc()
        log.warning("ignoring %s %s: %s", kind, what, exc)

    def _reduce(self, kind: Kind, obj: object) -> object:
        """A listed object as its kind's relist applies it."""
        if kind == Kind.SERVICE:
            return parse_service(obj, self._annotations)
        if kind == Kind.NAMESPACE:
            return namespace_name(obj)
        if kind == Kind.MEMBER_ENDPOINT_SLICE:
            return parse_member_slice(obj)
        if kind == Kind.DNS_SERVICE:
            return parse_dns_service(obj)
        if kind == Kind.DNS_ENDPOINT_SLICE:
            return parse_dns_slice(obj)
        return self._slice(obj)

    def _apply(self, event: ObjectEvent | Relisted, now: float) -> list[Update]:
        if event.kind == Kind.MEMBER_ENDPOINT_SLICE:
            self._membership(event, now)
            return []
        if event.kind.is_dns:
            self._discover(event)
            return []
        if isinstance(event, Relisted):
            if event.kind == Kind.SERVICE:
                return self.truth.replace_services(event.objects, now, event.namespace)
            if event.kind == Kind.NAMESPACE:
                return self.truth.replace_namespaces(event.objects, now)
            return self.truth.replace_slices(
                event.objects, now, event.namespace,
                unlabelled=event.kind == Kind.UNLABELLED_ENDPOINT_SLICE)
        deleted = event.type == "DELETED"
        if event.kind == Kind.SERVICE:
            service = parse_service(event.obj, self._annotations)
            if deleted:
                return self.truth.delete_service(service.target, now)
            return self.truth.apply_service(service, now)
        if event.kind == Kind.NAMESPACE:
            name = namespace_name(event.obj)
            if deleted:
                return self.truth.delete_namespace(name, now)
            return self.truth.apply_namespace(name, now)
        one = self._slice(event.obj)
        if deleted:
            return self.truth.delete_slice(one.target, one.name, now)
        if one.invalid_addresses:
            log.warning("EndpointSlice %s/%s: %d addresses are not IPs; skipped them",
                        one.namespace, one.name, one.invalid_addresses)
        return self.truth.apply_slice(one, now, self.wall() - now)

    def _slice(self, obj: object) -> SliceState:
        return parse_slice(obj, self.settings.endpoint_pod_names,
                           self.truth.scope.labels_matcher)

    def _discover(self, event: ObjectEvent | Relisted) -> None:
        if self.discovery is None:
            return
        if isinstance(event, Relisted):
            if event.kind == Kind.DNS_SERVICE:
                self.discovery.apply_service(event.objects[0] if event.objects else None)
            else:
                self.discovery.slices.clear()
                for state in event.objects:
                    self.discovery.apply_slice(state)
        elif event.kind == Kind.DNS_SERVICE:
            self.discovery.apply_service(
                None if event.type == "DELETED" else parse_dns_service(event.obj))
        elif event.type == "DELETED":
            self.discovery.delete_slice(object_name(event.obj, "EndpointSlice"))
        else:
            self.discovery.apply_slice(parse_dns_slice(event.obj))
        if event.kind == Kind.DNS_SERVICE and self.comparator.synced:
            self._say_dns_service()
        self.set_servers(self.discovery.servers())

    def _measures(self, target: Target, server: ServerRef) -> bool:
        assert self.shard is not None
        return self.shard.measures(target, server.layer)

    def _membership(self, event: ObjectEvent | Relisted, now: float) -> None:
        """The agents' own Service's slices: the fleet, and the targets its change moves."""
        if self.shard is None:
            return
        if isinstance(event, Relisted):
            self._member_slices = {s.name: s.members for s in event.objects}
        elif event.type == "DELETED":
            self._member_slices.pop(object_name(event.obj, "EndpointSlice"), None)
        else:
            one = parse_member_slice(event.obj)
            self._member_slices[one.name] = one.members
        self._set_members(now)

    def _set_members(self, now: float) -> None:
        assert self.shard is not None
        members = {m for ms in self._member_slices.values() for m in ms}
        before = len(self.shard.fleet), self.shard.known
        moved = self.shard.set_members(members)
        share = self._share_budget()
        self._reshard(moved, now)
        if (len(self.shard.fleet), self.shard.known) != before or moved:
            log.info("fleet changed", extra={"kv": {
                "members": len(self.shard.fleet), "moved": len(moved),
                "owned": len(self.shard.owned()), "node_local": self.shard.node_local(),
                "budget_qps": share}})

    def _share_budget(self) -> float | None:
        """This agent's part of the fleet's budget, the agent's own as a cap; None without."""
        fleet_qps = self.settings.fleet_budget_qps
        if self.shard is None or not fleet_qps:
            return None
        share = min(self.settings.probe_budget_qps, self.shard.budget_share(fleet_qps))
        shared = self.scheduler.shared
        if shared is None or shared.qps != share:
            self.scheduler.shared = Budget(share, max(1, min(self.settings.probe_burst,
                                                             math.floor(share))))
        return share

    def _reshard(self, targets: list[Target], now: float) -> None:
        if not targets:
            return
        races = self.comparator.reshard(targets, now)
        self.scheduler.reshard(targets)
        self.metrics.record_windows((), races)
        self._check_sweep()
        self._kick.set()

    def _say_dns_service(self) -> None:
        """One line when the cluster DNS Service is missing, and when it comes back."""
        if self.discovery is None or not self.discovery.needs_service:
            return
        found = self.discovery.service_found
        if found == self._dns_service_found:
            return
        self._dns_service_found = found
        where = f"{self.settings.kube_dns_namespace}/{self.settings.kube_dns_service}"
        if found:
            log.info("cluster DNS Service %s found: kube-dns and coredns layers on", where)
        else:
            log.warning("no cluster DNS Service %s: the kube-dns and coredns layers have no "
                        "servers; set kube_dns_namespace and kube_dns_service to the "
                        "cluster's DNS Service", where)

    @staticmethod
    def _search_conf(settings: Settings) -> ResolvConf | None:
        """Settings.validate checked that the file reads."""
        if not settings.search_names:
            return None
        return parse_resolv_conf(Path(settings.resolv_conf).read_text())

    def set_servers(self, servers: tuple[ServerRef, ...]) -> None:
        """Start probing new servers and forget removed ones."""
        if set(servers) == set(self.probers):
            return
        lost, gained = set(self.probers) - set(servers), set(servers) - set(self.probers)
        for server in lost:
            self.probers.pop(server).close()
            self._layer_up.pop(server, None)
        for server in gained:
            prober = Prober(server, self.settings.probe_timeout, self.wire, self.clock,
                            self.metrics.record_unmatched)
            self.probers[server] = prober if self.search is None else SearchProber(
                prober, self.search, self.scheduler.budget)
        if self._running:
            for verb, which in (("lost", lost), ("gained", gained)):
                if which:
                    names = ", ".join(f"{s.layer}={s.address}" for s in sorted(which))
                    log.info("servers %s", verb, extra={"kv": {"servers": names}})
            self._say_probing()
        balanced = frozenset(s for s in self.probers if s.layer in self.settings.balanced_layers)
        self.comparator.set_servers(self.probers, balanced)
        self.scheduler.set_servers(tuple(sorted(self.probers)), balanced)
        self._check_sweep()
        self._kick.set()

    def _say_probing(self) -> None:
        log.info("probing %s", ", ".join(f"{s.layer}={s.address}" for s in sorted(self.probers))
                 or "no server yet")

    def _absorb(self, update: Update, now: float) -> None:
        if update.stamp.trigger is not None:
            delay = now - update.stamp.trigger
            self._delays.append(delay)
            self.metrics.watch_delay.observe(max(0.0, delay))
        outcome = self.comparator.update(update)
        if outcome.changed:
            log.debug("truth of %s changed%s", update.target,
                      " (learned by relist)" if update.gap else "")
        self._replan(update.target)
        if outcome.changed and self.comparator.synced:
            self.scheduler.changed(update.target, outcome.changed, now)
            self._kick.set()
        self._publish(outcome)

    def _replan(self, target: Target) -> None:
        questions = self.comparator.questions(target)
        moved = []
        if self.shard is not None:
            moved = self.shard.add(target) if questions else self.shard.remove(target)
        self.scheduler.set_plan(target, questions)
        self._reshard(moved, self.clock())
        self._check_sweep()
        self._kick.set()  # the probe loop may be asleep on a wake time from a smaller plan

    def _check_sweep(self) -> None:
        """Says once, when it starts, that the budget cannot sweep every pair in time; not
        while the initial sync is still growing the plan."""
        if not self.ready:
            return
        needed = self.scheduler.sweep_shortfall()
        if needed is not None and not self._sweep_short:
            s = self.scheduler
            log.warning("the probe budget cannot sweep every name every %gs: %d name-server "
                        "pairs need %.1f qps for steady sweeps at %.0f%% of the budget, which "
                        "is %g qps; a sweep takes about %.0fs (raise probe_budget_qps, or "
                        "narrow namespaces)", s.sweep_interval, s.pairs, needed,
                        s.steady_share * 100, s.budget.qps,
                        s.pairs / (s.budget.qps * s.steady_share))
        self._sweep_short = needed is not None

    def _publish(self, outcome: Outcome) -> None:
        self.metrics.record_windows(outcome.windows, outcome.races)
        self.metrics.record_clients(outcome.windows, self.clients)
        if outcome.windows:
            self.closed.add(outcome.windows, self.wall())
            ttl = self.ttl()
            for w in outcome.windows:
                if w.reference != "watch":
                    continue
                bound = bound_of(ttl, w.server.layer)
                past = bound is not None and w.seconds > bound
                self._say["windows closed past their layer's bound" if past
                          else "windows closed"].log(
                    logging.INFO, "%s window closed%s", w.kind,
                    " past the layer's bound" if past else "",
                    kv=identity(w)
                    | {"seconds": round(w.seconds, 3), "resolution": round(w.resolution, 3),
                       "bound": bound, "clients": self._client_seconds(w)})
        if log.isEnabledFor(logging.DEBUG):
            for w in outcome.windows:
                log.debug("window kind=%s layer=%s server=%s name=%s type=%s value=%s "
                          "reference=%s seconds=%.3f resolution=%.3f", w.kind, w.server.layer,
                          w.server.address, w.question.name, w.question.rtype,
                          w.value.replace(" ", "_"), w.reference, w.seconds, w.resolution)
        if outcome.windows or outcome.races:
            for listener in self.outcome_listeners:
                listener(outcome)

    def _client_seconds(self, window: Window) -> str | None:
        """`jvm=35.213 grpc=35.213`: the window as each client profile sees it at worst."""
        return " ".join(f"{name}={'forever' if s is None else s}"
                        for name, s in clients.seen(self.clients, window).items()) or None

    async def _probe(self, key: ProbeKey) -> None:
        prober = self.probers.get(key.server)
        if prober is None:
            return
        result = await prober.probe(key.question)
        self.metrics.record_probe(result)
        if key.server not in self.probers:
            return
        answer = result.answer
        self._layer_up[key.server] = answer is not None
        if answer is None:
            self.comparator.failed(key.question, key.server, result.received)
            self.scheduler.failed(key, result.received)
            self._kick.set()  # the next probe of this name may now be due before the wake
            return
        self._note_ttl(result)
        outcome = self.comparator.observe(Observation(
            key.question, key.server, result.sent, result.received, answer.values, answer.ttl,
            answer.complete))
        self.scheduler.answered(key, result.sent, result.received, answer.values, answer.ttl,
                                self.comparator.settled(key.question, key.server))
        self._kick.set()
        self._publish(outcome)

    def _note_ttl(self, result: ProbeResult) -> None:
        if result.answer is None or result.answer.ttl is None or not result.answer.values:
            return
        seen = self._ttl.setdefault(result.server.layer, deque())
        seen.append((result.received, result.answer.ttl))
        while seen and seen[0][0] < result.received - TTL_HORIZON:
            seen.popleft()
        # Keep the deque short: a lower TTL behind a higher, newer one can never be the max.
        while len(seen) > 1 and seen[-2][1] <= seen[-1][1]:
            del seen[-2]

    def ttl(self) -> dict[str, int]:
        """The highest TTL each layer served lately."""
        return {layer: max(t for _, t in seen) for layer, seen in self._ttl.items() if seen}

    def status(self) -> dict[str, object]:
        """The /api/v1/status document (docs/status.schema.json)."""
        now = self.clock()
        budget = self.scheduler.budget
        return document(Inputs(
            wall=self.wall(), node=self.node, synced=self.comparator.synced,
            open_windows=list(self.comparator.open_detail(now)), closed=self.closed.newest(),
            ttl=self.ttl(), servers=self.probers, layer_up=self._layer_up,
            sweep_period=self.scheduler.sweep_period, budget_qps=budget.qps,
            budget_burst=budget.burst, budget_used=budget.used(now),
            probes_deferred=self.scheduler.deferred_total, monitored=self.truth.monitored,
            monitored_total=len(self.truth.monitored), dropped=self.truth.dropped,
            dropped_now=len(self.truth.dropped), dropped_total=self.truth.dropped_total,
            limit=self.settings.status_limit, shard=self.shard,
            internals=self.internals()), __version__)

    def internals(self) -> dict[str, int]:
        """How much the agent holds now: every count that a leak would grow."""
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # no loop runs: a test reading the document directly
            tasks = 0
        return {"tasks": tasks, **self.truth.census(), **self.comparator.census(),
                **self.scheduler.census()}

    def http_server(self, registry: CollectorRegistry,
                    authorize: Callable[[str | None, str], Awaitable[int]] | None = None
                    ) -> HttpServer:
        """The HTTP edge on this agent: metrics from its snapshots, /status from status(),
        behind the web config if there is one (WebConfigError when it is unusable) and the
        Kubernetes check if given."""
        path = self.settings.web_config_file
        served = Served(load_web_config(path)) if path else None
        if served is not None and served.config.users and authorize is not None:
            raise WebConfigError(f"{path}: `basic_auth_users` and kubernetes_authorization "
                                 "both want the Authorization header; use one of them")
        return HttpServer(registry, lambda: setattr(self.metrics, "snapshot", self.snapshot()),
                          lambda: self.ready, self.status, self.settings.telemetry_path,
                          served, authorize)

    def _notice(self) -> None:
        """Tell the log, once each, what an operator needs to know; throttled per kind."""
        now = self.clock()
        ttl = self.ttl()
        still: set[tuple[str, ServerRef, Question, str]] = set()
        for w in self.comparator.open_detail(now):
            key = (w.kind, w.server, w.question, w.value)
            bound = bound_of(ttl, w.server.layer)
            if bound is None or w.age <= bound:
                continue
            still.add(key)
            if key not in self._past:
                self._say["windows past their layer's bound"].log(
                    logging.INFO, "%s window open past the layer's bound", w.kind,
                    kv=identity(w)
                    | {"age": round(w.age, 3), "bound": bound, "caused_by_truth": w.attributed})
        self._past = still
        dropped = set(self.truth.dropped)
        for target in sorted(dropped - self._dropped):
            self._say["targets dropped by the cap"].log(
                logging.INFO, "target dropped by the cap (max_targets)",
                kv={"namespace": target.namespace, "service": target.service,
                    "max_targets": self.settings.max_targets,
                    "monitored": len(self.truth.monitored)})
        self._dropped = dropped
        reasons = self.truth.misconfigurations() if self.comparator.synced else {}
        for target, found in sorted(reasons.items()):
            for reason in sorted(found - self._misconfigured.get(target, frozenset())):
                self._say["misconfigurations"].log(
                    logging.INFO, "Service misconfigured (dns_staleness_misconfigurations "
                    "in docs/metrics.md)", kv={"namespace": target.namespace,
                                               "service": target.service, "reason": reason})
        self._misconfigured = reasons
        for throttle in self._say.values():
            throttle.flush()

    def snapshot(self) -> Snapshot:
        """Refresh the gauges; called on the event loop right before each render."""
        now = self.clock()
        skew = min(self._delays) if self._delays else None
        return Snapshot(
            open_windows=self.comparator.open_windows(now),
            misconfigurations=self.truth.misconfigurations(),
            ttl=self.ttl(),
            layer_up=dict(self._layer_up),
            targets=len(self.truth.monitored),
            targets_dropped=self.truth.dropped_total,
            probes_deferred=self.scheduler.deferred_total,
            budget_qps=self.scheduler.budget.qps,
            sweep_period=self.scheduler.sweep_period,
            skew=skew,
            dns_service=(self.settings.kube_dns_namespace, self.settings.kube_dns_service,
                         self.discovery.service_found)
            if self.discovery is not None and self.discovery.needs_service and self.ready
            else None,
            shard=None if self.shard is None else ShardView(
                len(self.shard.fleet), len(self.shard.owned()), self.shard.node_local(),
                self.shard.handed_out, self.shard.taken_in,
                None if self.scheduler.shared is None else self.scheduler.shared.qps),
        )

    async def _consume(self, source: AsyncIterator[SourceEvent]) -> None:
        async for event in source:
            self.ingest(event)

    async def _probe_loop(self) -> None:
        while True:
            now = self.clock()
            for key in self.scheduler.due(now):
                self._tasks.spawn(self._probe(key))
            wait = max(0.0, self.scheduler.next_wake(now) - self.clock())
            self._kick.clear()
            await wait_set(self._kick, wait)

    async def _notice_loop(self) -> None:
        while True:
            await asyncio.sleep(NOTICE_EVERY)
            self._notice()

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            now = self.clock()
            for target in self.comparator.prune(now):
                self._replan(target)

    async def run(self, source: AsyncIterator[SourceEvent], stop: asyncio.Event) -> None:
        """Run until `stop` is set or the source fails; the source may also simply end."""
        self._running = True
        self._say_probing()
        try:
            async with self._tasks as tasks:
                tasks.start(self._consume(source), "consume")
                tasks.start(self._probe_loop(), "probe")
                tasks.start(self._prune_loop(), "prune")
                tasks.start(self._notice_loop(), "notice")
                await tasks.wait(stop)
                await tasks.drain(DRAIN)
        finally:
            self.ready = False
            for prober in self.probers.values():
                prober.close()
