"""The truth model: what CoreDNS's kubernetes plugin should answer for every monitored name.

Pure code. The watch adapter feeds reduced Services and EndpointSlices in; out come the full
expected answers of each target that changed, stamped with the time the agent saw the change.
The rules follow plugin/kubernetes in CoreDNS: endpoints whose `ready` is not false, across every
slice of the Service, de-duplicated; per-pod names from `hostname`; SRV for named ports only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from exporter.core.objects import ServiceState, SliceState
from exporter.core.records import (
    Question,
    Target,
    rtype_of,
    service_domain,
    srv_value,
    written_name,
)
from exporter.core.selection import PluginScope

Answers = Mapping[Question, frozenset[str]]


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a change happened, on the agent's monotonic clock."""

    seen: float
    """The agent's receipt of the watch event: the `watch` reference clock."""
    trigger: float | None = None
    """The slice's last-change-trigger-time, moved onto the monotonic clock; None if absent."""


@dataclass(frozen=True, slots=True)
class Update:
    """The new expected answers of one target; None once it is no longer monitored."""

    target: Target
    answers: Answers | None
    stamp: Stamp
    gap: bool = False
    """Learned through a relist: when the change happened is unknown."""


def expected_answers(
    service: ServiceState, slices: Iterable[SliceState], zone: str
) -> dict[Question, frozenset[str]]:
    """Every question the Service's DNS names raise, and the record values CoreDNS serves
    (plugin/kubernetes `findServices`): per address an A or AAAA record at the Service name
    and at the endpoint's own name (hostname, pod name or dashed IP), and per address and
    port an SRV record at both of those names, plus one at `_port._proto` for a named port.
    A slice without ports has no SRV records at all."""
    domain = service_domain(service.target, zone)
    families = {"A"} | ({"AAAA"} if "IPv6" in service.ip_families else set())
    values: dict[Question, set[str]] = {Question(domain, "SRV"): set()}
    for port in service.ports:
        if port.name:
            values[Question(f"_{port.name}._{port.protocol.lower()}.{domain}", "SRV")] = set()
    for one in slices:
        for endpoint in one.endpoints:
            for address, label in zip(endpoint.addresses, endpoint.labels(), strict=True):
                rtype = rtype_of(address)
                families.add(rtype)
                # One string per name and per record, shared by every question that holds
                # it: the comparator keeps them for as long as the endpoint lives.
                own = f"{label}.{domain}"
                values.setdefault(Question(domain, rtype), set()).add(address)
                values.setdefault(Question(own, rtype), set()).add(address)
                for port in one.ports:
                    record = srv_value(port.port, own)
                    values[Question(domain, "SRV")].add(record)
                    values.setdefault(Question(own, "SRV"), set()).add(record)
                    if port.name:
                        srv = Question(f"_{port.name}._{port.protocol.lower()}.{domain}", "SRV")
                        values.setdefault(srv, set()).add(record)
    for rtype in families:
        values.setdefault(Question(domain, rtype), set())
    return {q: frozenset(v) for q, v in values.items()}


def misconfigurations(service: ServiceState, slices: Iterable[SliceState]) -> frozenset[str]:
    """Known causes of missing records that the Service and its slices show on their own."""
    reasons = set()
    if service.ports and not any(p.name for p in service.ports):
        reasons.add("no_named_ports")
    slice_list = list(slices)
    if not service.has_selector and not slice_list:
        reasons.add("selectorless_without_endpoints")
    if any(s.invalid_addresses for s in slice_list):
        reasons.add("invalid_endpoint_address")
    # The controller copies a pod's hostname into its endpoint only when the pod's subdomain
    # names this Service: a mix means some pods get no per-pod record.
    named = {e.hostname is not None for s in slice_list for e in s.endpoints}
    if named == {True, False}:
        reasons.add("endpoint_without_hostname")
    return frozenset(reasons)


def served_slices(scope: PluginScope, service: ServiceState, slices: Iterable[SliceState],
                  exposed: AbstractSet[str] | None) -> tuple[str | None, list[SliceState]]:
    """The option that puts the Service out of CoreDNS's scope (None when in scope), and the
    slices CoreDNS serves of it: none out of scope, where every name is NXDOMAIN on every
    layer and so no window can open, and none outside the plugin's `labels`."""
    excluded = scope.excluded(service, exposed)
    if excluded:
        return excluded, []
    return None, [s for s in slices if not s.outside_labels]


def _within(target: Target, namespace: str | None) -> bool:
    return namespace is None or target.namespace == namespace


@dataclass
class Truth:
    """Services and slices as last seen, and the targets selected among them."""

    zone: str
    selected: Callable[[ServiceState], bool]
    max_targets: int
    services: dict[Target, ServiceState] = field(default_factory=dict)
    slices: dict[Target, dict[str, SliceState]] = field(default_factory=dict)
    monitored: set[Target] = field(default_factory=set)
    dropped: set[Target] = field(default_factory=set)
    dropped_total: int = 0
    """Targets ever turned away by the cap: the agent's counter follows it."""
    scope: PluginScope = field(default_factory=PluginScope)
    exposed: set[str] | None = None
    """Namespaces that match the plugin's `namespace_labels`, from their watch; None without
    that option."""
    written: bool = False
    """Also expect each Service's addresses at `svc.ns`, the name as applications write it,
    which a search-list prober resolves (the sidecar's `search_names`)."""
    _reasons: dict[Target, frozenset[str]] = field(default_factory=dict, init=False)
    """The misconfigurations of each monitored target that has any."""
    _dirty: set[Target] = field(default_factory=set, init=False)
    """Targets admitted, refreshed or retired since `_reasons` was brought up to date: a
    scrape recomputes these only (bench/footprint.py)."""

    def __post_init__(self) -> None:
        if self.scope.namespace_labels and self.exposed is None:
            self.exposed = set()

    def census(self) -> dict[str, int]:
        """What the truth holds, counted for /api/v1/status."""
        return {"services": len(self.services),
                "slices": sum(map(len, self.slices.values()))}

    def _eligible(self, target: Target) -> bool:
        service = self.services.get(target)
        return service is not None and service.headless and self.selected(service)

    def _served(self, target: Target) -> tuple[str | None, list[SliceState]]:
        return served_slices(self.scope, self.services[target],
                             self.slices.get(target, {}).values(), self.exposed)

    def _answers(self, target: Target) -> Answers:
        answers = dict(expected_answers(self.services[target], self._served(target)[1],
                                        self.zone))
        if self.written:
            domain = service_domain(target, self.zone)
            for rtype in ("A", "AAAA"):
                found = answers.get(Question(domain, rtype))
                if found is not None:
                    answers[Question(written_name(target), rtype)] = found
        return answers

    def _admit(self, target: Target, stamp: Stamp) -> list[Update]:
        self._dirty.add(target)
        if target in self.monitored:
            return [Update(target, self._answers(target), stamp)]
        if len(self.monitored) >= self.max_targets:
            if target not in self.dropped:
                self.dropped.add(target)
                self.dropped_total += 1
            return []
        self.dropped.discard(target)
        self.monitored.add(target)
        return [Update(target, self._answers(target), stamp)]

    def _retire(self, target: Target, stamp: Stamp) -> list[Update]:
        self._dirty.add(target)
        self.dropped.discard(target)
        if target not in self.monitored:
            return []
        self.monitored.discard(target)
        updates = [Update(target, None, stamp)]
        for waiting in sorted(self.dropped):
            if len(self.monitored) >= self.max_targets:
                break
            updates += self._admit(waiting, stamp)
        return updates

    def _refresh(self, target: Target, stamp: Stamp) -> list[Update]:
        if self._eligible(target):
            return self._admit(target, stamp)
        return self._retire(target, stamp)

    def apply_service(self, service: ServiceState, now: float) -> list[Update]:
        self.services[service.target] = service
        return self._refresh(service.target, Stamp(now))

    def delete_service(self, target: Target, now: float) -> list[Update]:
        self.services.pop(target, None)
        return self._refresh(target, Stamp(now))

    def apply_slice(self, state: SliceState, now: float, wall_offset: float) -> list[Update]:
        """`wall_offset` is wall time minus monotonic time, to move the trigger time across."""
        by_name = self.slices.setdefault(state.target, {})
        previous = by_name.get(state.name)
        by_name[state.name] = state
        trigger = None
        if state.trigger_time is not None and (
            previous is None or previous.trigger_time != state.trigger_time
        ):
            trigger = state.trigger_time - wall_offset
        return self._refresh(state.target, Stamp(now, trigger))

    def delete_slice(self, target: Target, name: str, now: float) -> list[Update]:
        by_name = self.slices.get(target, {})
        by_name.pop(name, None)
        if not by_name:
            self.slices.pop(target, None)
        return self._refresh(target, Stamp(now))

    def replace_services(self, services: Iterable[ServiceState], now: float,
                         namespace: str | None = None) -> list[Update]:
        """A relist of Services in `namespace` (None: all): adopt it, keep the rest, and
        report the targets whose answers moved."""
        fresh = {s.target: s for s in services}
        changed = {t for t, s in self.services.items()
                   if _within(t, namespace) and fresh.get(t) != s}
        changed |= {t for t, s in fresh.items() if self.services.get(t) != s}

        def adopt() -> None:
            for target in changed:
                if target in fresh:
                    self.services[target] = fresh[target]
                else:
                    del self.services[target]

        return self._replace(adopt, changed, now)

    def replace_slices(self, slices: Iterable[SliceState], now: float,
                       namespace: str | None = None, unlabelled: bool = False) -> list[Update]:
        """A relist of one slice watch in `namespace` (None: all), like replace_services:
        the headless watch's or the unlabelled one's, so the other watch's slices stay."""
        fresh: dict[Target, dict[str, SliceState]] = {}
        for one in slices:
            fresh.setdefault(one.target, {})[one.name] = one
        changed: dict[Target, dict[str, SliceState]] = {}
        for target in set(self.slices) | set(fresh):
            if not _within(target, namespace):
                continue
            old = self.slices.get(target, {})
            new = {name: one for name, one in old.items() if one.unlabelled != unlabelled}
            new.update(fresh.get(target, {}))
            if new != old:
                changed[target] = new

        def adopt() -> None:
            for target, new in changed.items():
                if new:
                    self.slices[target] = new
                else:
                    self.slices.pop(target, None)

        return self._replace(adopt, set(changed), now)

    def _replace(self, adopt: Callable[[], None], changed: set[Target],
                 now: float) -> list[Update]:
        """What changed while the watch was away happened at unknown times: the updates are
        marked as a gap, so they move the gauges but never become window samples. Only the
        targets whose objects changed are worked out again: a relist of 10,000 unchanged
        slices costs their comparison, not 10,000 answers twice."""
        before = {t: self._answers(t) for t in changed if t in self.monitored}
        adopt()
        stamp = Stamp(now)
        updates: list[Update] = []
        for target in sorted(changed):
            for update in self._refresh(target, stamp):
                if update.answers is None or before.get(update.target) != update.answers:
                    updates.append(Update(update.target, update.answers, stamp, gap=True))
        return updates

    def apply_namespace(self, name: str, now: float) -> list[Update]:
        """A Namespace that matches `namespace_labels` was added or changed."""
        return self._expose(name, True, now)

    def delete_namespace(self, name: str, now: float) -> list[Update]:
        """A Namespace was deleted or stopped matching `namespace_labels`."""
        return self._expose(name, False, now)

    def replace_namespaces(self, names: Iterable[str], now: float) -> list[Update]:
        """A relist of the Namespaces that match `namespace_labels`."""
        if self.exposed is None:
            return []
        listed = set(names)
        moved = listed ^ self.exposed
        return self._replace(lambda: setattr(self, "exposed", listed),
                             {t for t in self.services if t.namespace in moved}, now)

    def _expose(self, name: str, exposed: bool, now: float) -> list[Update]:
        if self.exposed is None:
            return []
        if exposed:
            self.exposed.add(name)
        else:
            self.exposed.discard(name)
        stamp, updates = Stamp(now), []
        for target in sorted(t for t in self.services if t.namespace == name):
            updates += self._refresh(target, stamp)
        return updates

    def misconfigurations(self) -> dict[Target, frozenset[str]]:
        for target in self._dirty:
            reasons = self._reasons_of(target) if target in self.monitored else frozenset()
            if reasons:
                self._reasons[target] = reasons
            else:
                self._reasons.pop(target, None)
        self._dirty.clear()
        return dict(self._reasons)

    def _reasons_of(self, target: Target) -> frozenset[str]:
        excluded = self._served(target)[0]
        if excluded:
            return frozenset({excluded})
        every = self.slices.get(target, {}).values()
        reasons = misconfigurations(self.services[target], every)
        if any(s.outside_labels for s in every):
            reasons |= {"outside_labels"}
        return reasons
