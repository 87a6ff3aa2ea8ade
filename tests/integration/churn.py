"""Random churn of headless Services and their pods through the real API server, with the
test's own model of what each name should resolve to and a log of when that changed. Shared
by tests/integration/test_soak.py and bench/endurance.py.

The pods are real Pod objects (no kubelet: the harness writes their status), so the
controller-manager's endpoint slice controller turns each change into slices as it would
in a cluster. CoreDNS serves ready endpoints only, so the model's records are: at the
Service name, the IPs of its ready pods (A) and each one's SRV record (port 80 and the pod's
own name), also at `_http._tcp`; at each pod's own name, its IP and its SRV record while it
is ready."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.rig import KubeClient, api_path, wait_until

Records = dict[tuple[str, str], frozenset[str]]
"""(name, type) to the values CoreDNS should serve."""


@dataclass(frozen=True)
class Change:
    """A record the model gained or lost, and when the API call that did it returned
    (time.monotonic)."""

    at: float
    name: str
    rtype: str
    value: str
    added: bool


@dataclass
class Churn:
    kube: KubeClient
    namespace: str
    rng: random.Random
    services: tuple[str, ...]
    pods: int = 3
    """Pod names per Service: NAME-0 to NAME-(pods - 1)."""
    hostnames: bool = True
    """False: pods set no hostname, so with endpoint_pod_names their names are pod names."""
    model: dict[str, dict[str, tuple[str, bool]]] = field(default_factory=dict)
    """Per Service that exists: pod name to (IP, ready)."""
    free: list[str] = field(default_factory=list)
    changes: int = 0
    log: list[Change] = field(default_factory=list)
    _by_record: dict[tuple[str, str, str], list[Change]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        count = max(400, 2 * self.pods * len(self.services))
        self.free = [f"10.244.{80 + i // 200}.{10 + i % 200}" for i in range(count)]
        self.rng.shuffle(self.free)

    def domain(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc.cluster.local."

    def names(self, services: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
        """Every A name of these Services (all by default): the Service's and each pod's."""
        out = []
        for service in services or self.services:
            out.append((self.domain(service), "A"))
            out += [(f"{service}-{i}.{self.domain(service)}", "A") for i in range(self.pods)]
        return out

    def records(self, service: str) -> Records:
        """What CoreDNS should serve for the Service's names now, by the model."""
        domain = self.domain(service)
        ready = {pod: ip for pod, (ip, up) in self.model.get(service, {}).items() if up}
        srv = frozenset(f"80 {pod}.{domain}" for pod in ready)
        out = {(domain, "A"): frozenset(ready.values()), (domain, "SRV"): srv,
               (f"_http._tcp.{domain}", "SRV"): srv}
        for pod in self.model.get(service, {}):
            up = pod in ready
            out[f"{pod}.{domain}", "A"] = frozenset({ready[pod]} if up else ())
            out[f"{pod}.{domain}", "SRV"] = frozenset({f"80 {pod}.{domain}"} if up else ())
        return out

    @contextmanager
    def _logged(self, *services: str) -> Iterator[None]:
        before = {s: self.records(s) for s in services}
        yield
        at = time.monotonic()
        for service in services:
            after = self.records(service)
            for name, rtype in before[service].keys() | after.keys():
                old = before[service].get((name, rtype), frozenset())
                new = after.get((name, rtype), frozenset())
                for value in sorted(old ^ new):
                    change = Change(at, name, rtype, value, value in new)
                    self.log.append(change)
                    self._by_record.setdefault((name, rtype, value), []).append(change)

    def create_service(self, name: str) -> None:
        self.kube.create_headless_service(self.namespace, name, {"app": name})
        self.model[name] = {}
        for i in range(2):
            self.add_pod(name, f"{name}-{i}")

    def add_pod(self, service: str, pod: str, ip: str | None = None) -> None:
        ip = ip or self.free.pop(0)
        self.kube.create_pod(self.namespace, pod, {"app": service},
                             hostname=pod if self.hostnames else None,
                             subdomain=service if self.hostnames else None)
        with self._logged(service):
            self.kube.set_pod_ready(self.namespace, pod, ip)
            self.model[service][pod] = (ip, True)

    def delete_pod(self, service: str, pod: str) -> str:
        with self._logged(service):
            ip, _ = self.model[service].pop(pod)
            self.kube.delete_pod(self.namespace, pod, grace_seconds=0)
        return ip

    def recreate(self, service: str, pod: str) -> None:
        """The pod deleted and, once gone, created again with a new IP, as a StatefulSet
        does."""
        self.free.append(self.delete_pod(service, pod))
        wait_until(lambda: self.kube.get_or_none(
            api_path("v1", "pods", self.namespace, pod)) is None or None, timeout=30,
            what=f"{pod} to go")
        self.add_pod(service, pod)

    def step(self, among: tuple[str, ...] = ()) -> str:
        """One random change, to one of `among` (default: any Service); returns what it was."""
        service = self.rng.choice(among or self.services)
        pods = self.model.get(service)
        if pods is None:
            self.create_service(service)
            self.changes += 1
            return "service recreated"
        absent = [f"{service}-{i}" for i in range(self.pods) if f"{service}-{i}" not in pods]
        choice = self.rng.random()
        self.changes += 1
        if choice < 0.25 and absent:
            self.add_pod(service, self.rng.choice(absent))
            return "scale up"
        if choice < 0.45 and pods:
            self.free.append(self.delete_pod(service, self.rng.choice(sorted(pods))))
            return "scale down"
        if choice < 0.6 and pods:
            self.recreate(service, self.rng.choice(sorted(pods)))
            return "pod recreated"
        if choice < 0.75 and pods:
            pod = self.rng.choice(sorted(pods))
            ip, ready = pods[pod]
            with self._logged(service):
                self.kube.set_pod_ready(self.namespace, pod, ip, ready=not ready)
                pods[pod] = (ip, not ready)
            return "readiness flap"
        if choice < 0.9 and pods and absent:
            other = self.rng.choice([s for s in self.services if s != service])
            donor = self.model.get(other) or {}
            if donor:
                pod = self.rng.choice(sorted(donor))
                ip = self.delete_pod(other, pod)
                self.add_pod(service, self.rng.choice(absent), ip)  # the IP moves over
                return "IP reused across Services"
        if choice >= 0.97 or not pods:
            for pod in sorted(pods):
                self.free.append(self.delete_pod(service, pod))
            with self._logged(service):
                self.kube.delete(api_path("v1", "services", self.namespace, service))
                del self.model[service]
            return "service deleted"
        self.changes -= 1
        return "nothing"

    def cause(self, kind: str, name: str, rtype: str, value: str, start: float,
              lag: float) -> float | None:
        """When the model made the change that a window of `kind` says (stale: the value
        left the name; propagation: it came), in the `lag` seconds before `start`, the moment
        the agent learned of it, or just after; None if it made none."""
        added = kind == "propagation"
        times = [c.at for c in self._by_record.get((name, rtype, value), ())
                 if c.added == added and start - lag <= c.at <= start + 1.0]
        return max(times) if times else None
