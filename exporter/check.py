"""`check NAMESPACE/SERVICE`: a one-shot diagnosis of one headless Service's DNS.

It gathers the Service, its EndpointSlices, its pods, the cluster DNS configuration and what
every DNS layer answers, then lets `diagnosis` judge. The expected answers come from the same
truth model as the agent, the probes from the same probers, and stale or missing records from
the same comparator. With `--follow` it runs the agent itself, restricted to the namespace, in
fast mode, and reports every window that opens or closes for the Service.

Every way the API server can fail it (unreachable, 401, 403 on something it must read) ends in
one line naming what failed and what to do, raised as CheckError where the request is made.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO, TypeVar

import aiohttp
from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.agent import Agent
from exporter.core import clients, records
from exporter.core.budget import Budget
from exporter.core.comparator import Comparator, Observation, OpenWindow, Outcome
from exporter.core.corefile import CorefileError, CorefileSettings, bounds, settings_of
from exporter.core.diagnosis import (
    FAIL,
    WARN,
    ServerResult,
    Verdict,
    client_checks,
    cluster_dns_checks,
    dns_checks,
    endpoint_checks,
    follow_checks,
    overall,
    pod_checks,
    resolver_checks,
    scope_checks,
    service_checks,
)
from exporter.core.dnsmsg import QueryWire
from exporter.core.layers import ALL_REPLICAS, Discovery
from exporter.core.objects import (
    SERVICE_NAME_LABEL,
    ObjectError,
    PodState,
    configmap_value,
    parse_dns_service,
    parse_dns_slice,
    parse_list,
    parse_pod,
    parse_service,
    parse_slice,
)
from exporter.core.records import ServerRef, Target, service_domain, with_port
from exporter.core.resolvconf import ResolvConf
from exporter.core.resolvconf import parse as parse_resolv_conf
from exporter.core.selection import PluginScope
from exporter.core.truth import Stamp, Update, expected_answers, served_slices
from exporter.io.kubeconfig import LOGIN_HINT, discover
from exporter.io.metrics import Metrics
from exporter.io.node import check_zone, static_layers
from exporter.io.probe import Prober, ProbeResult
from exporter.io.tasks import Background
from exporter.io.watch import ApiError, KubeApi, KubeSource, resources
from exporter.settings import Settings

SCHEMA = "dns-staleness-exporter/check/v1"
EXIT_NO_VERDICT = 2
"""check could not diagnose (API server unreachable, credentials rejected, RBAC)."""
T = TypeVar("T")


class CheckUsageError(ValueError):
    """A bad command line: exit code 2."""


class CheckError(Exception):
    """check cannot reach a verdict; the message is the one line to print."""


class Denied(Exception):
    """403 on a read that check can do without (pods, ConfigMaps, the DNS Service)."""


def parse_target(text: str) -> Target:
    try:
        return records.parse_target(text)
    except ValueError as exc:
        raise CheckUsageError(str(exc)) from None


async def _get(api: KubeApi, path: str, params: Mapping[str, str] | None = None) -> Any:
    """The object, or None on 404; 403 raises Denied, and every other failure CheckError."""
    server = api.access.server
    try:
        return await api.get(path, params or {})
    except ApiError as exc:
        if exc.status == 404:
            return None
        access = api.access
        if exc.status in (401, 403) and not access.has_credential:
            raise CheckError(f"the API server at {server} refused an anonymous request "
                             f"({exc.status} {exc.reason}): {access.source} gives context "
                             f"{access.context!r} no credential; {LOGIN_HINT}") from None
        if exc.status == 403:
            raise Denied(f"RBAC denies get {path} ({exc.message})") from None
        if exc.status == 401:
            raise CheckError(f"the API server at {server} rejected the credentials from "
                             f"{access.source} (401 {exc.reason}); get a fresh token or "
                             "certificate, or pass another --kubeconfig") from None
        raise CheckError(f"the API server at {server} answered {exc} for {path}") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        detail = str(exc) or type(exc).__name__
        raise CheckError(f"cannot reach the API server at {server} ({detail}); check "
                         "--kubeconfig and the network") from None


async def _require(api: KubeApi, path: str, params: Mapping[str, str] | None = None) -> Any:
    """Like _get, for what check cannot do without: a 403 ends it, naming the grant."""
    try:
        return await _get(api, path, params)
    except Denied as exc:
        raise CheckError(f"{exc}; check needs get and list on services and "
                         "discovery.k8s.io/endpointslices in the Service's namespace") from None


def _read(parse: Callable[[Any], T], obj: Any) -> T:
    """An API object check cannot do without, read or ended with one line."""
    try:
        return parse(obj)
    except ObjectError as exc:
        raise CheckError(f"unreadable API object: {exc}") from None


@dataclass
class Report:
    target: Target
    verdicts: list[Verdict]
    servers: list[dict[str, Any]]
    bounds: dict[str, dict[str, float]]
    windows: list[dict[str, Any]]
    elapsed: float

    @property
    def verdict(self) -> str:
        return overall(self.verdicts)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "version": __version__, "target": str(self.target),
                "verdict": self.verdict, "elapsed_seconds": round(self.elapsed, 3),
                "checks": [asdict(v) for v in self.verdicts], "servers": self.servers,
                "bounds": self.bounds, "windows": self.windows}

    def table(self) -> str:
        width = max(len(v.section) for v in self.verdicts)
        lines = [f"check {self.target}"]
        for v in self.verdicts:
            lines.append(f"  {v.status.upper():<4}  {v.section:<{width}}  {v.message}")
            if v.fix and v.status != "ok":
                lines.append(f"        {'':<{width}}  fix: {v.fix}")
        if self.windows:
            lines.append("  windows seen while watching:")
            lines += [f"    {w['event']:<6} {w['kind']:<11} {w['layer']:<10} {w['name']} "
                      f"{w['type']} {w['value']} {w['seconds']:.2f} s{_clients(w)}"
                      for w in self.windows]
        lines.append(f"verdict: {self.verdict} ({self.elapsed:.1f} s)")
        return "\n".join(lines)


def _clients(window: Mapping[str, Any]) -> str:
    """`; jvm 35.0 s, grpc 35.0 s`: the window as each client profile sees it."""
    found = window.get("clients") or {}
    return "".join(f"; {name} {'for ever' if s is None else f'{s:.1f} s'}"
                   for name, s in found.items())


async def _corefiles(api: KubeApi, settings: Settings) -> tuple[
        CorefileSettings | None, CorefileSettings | None, str | None]:
    base = f"/api/v1/namespaces/{settings.kube_dns_namespace}/configmaps"
    try:
        coredns = await _get(api, f"{base}/coredns")
        nodelocal = await _get(api, f"{base}/node-local-dns")
    except Denied:
        return None, None, "forbidden"
    if coredns is None:
        return None, None, "no configmap coredns"
    try:
        cluster = settings_of(configmap_value(coredns, "Corefile"), settings.zone)
        local = settings_of(configmap_value(nodelocal, "Corefile"), settings.zone) \
            if nodelocal else None
    except (CorefileError, ObjectError) as exc:
        return None, None, f"unreadable Corefile: {exc}"
    return cluster, local, None


async def _exposed(api: KubeApi, scope: PluginScope, namespace: str) -> frozenset[str] | None:
    """With `namespace_labels`, whether CoreDNS exposes the namespace: {namespace} or {};
    None without that option, or when check may not read the Namespace."""
    if not scope.namespace_labels:
        return None
    try:
        found = await _get(api, "/api/v1/namespaces", {
            "labelSelector": scope.namespace_labels, "fieldSelector": f"metadata.name={namespace}"})
    except Denied:
        return None
    return frozenset({namespace}) if found and _read(parse_list, found).items else frozenset()


async def _discover(api: KubeApi, settings: Settings) -> Discovery:
    discovery = Discovery(node="check", replicas_per_node=ALL_REPLICAS,
                          enabled=frozenset(settings.layers),
                          static=static_layers(settings.static_servers, settings.layers,
                                               settings.resolv_conf))
    ns, name = settings.kube_dns_namespace, settings.kube_dns_service
    try:
        service = await _get(api, f"/api/v1/namespaces/{ns}/services/{name}")
        discovery.apply_service(parse_dns_service(service) if service else None)
        slices = await _get(api, f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                            {"labelSelector": f"{SERVICE_NAME_LABEL}={name}"})
        for one in parse_list(slices).items if slices else ():
            discovery.apply_slice(parse_dns_slice(one))
    except (Denied, ObjectError):
        pass  # no kube-dns or coredns layer: the other layers are still checked
    return discovery


async def _probe_all(settings: Settings, servers: Sequence[ServerRef],
                     answers: Mapping[Any, frozenset[str]], target: Target,
                     ) -> tuple[list[ServerResult], list[OpenWindow], list[dict[str, Any]]]:
    comparator = Comparator()
    comparator.set_servers(servers)
    comparator.update(Update(target, answers, Stamp(time.monotonic())))
    wire = QueryWire()
    budget = Budget(settings.probe_budget_qps, settings.probe_burst)
    results, detail = [], []
    for server in servers:
        prober = Prober(server, settings.probe_timeout, wire)
        probes: list[ProbeResult] = []
        try:
            for question in sorted(answers):
                while True:
                    now = time.monotonic()
                    if budget.try_take(now):
                        break
                    await asyncio.sleep(budget.next_free(now) - now)
                probes.append(await prober.probe(question))
        finally:
            prober.close()
        errors = [p.result for p in probes if p.answer is None]
        for p in probes:
            if p.answer is not None:
                comparator.observe(Observation(p.question, server, p.sent, p.received,
                                               p.answer.values, p.answer.ttl))
        ttls = [p.answer.ttl for p in probes if p.answer and p.answer.ttl is not None]
        rtts = [p.received - p.sent for p in probes if p.answer]
        results.append(ServerResult(server.layer, server.address, len(probes),
                                    errors[0] if errors else None, max(ttls, default=None),
                                    sum(rtts) / len(rtts) if rtts else None))
        detail.append({"layer": server.layer, "server": server.address, "names": [
            {"name": p.question.name, "type": p.question.rtype, "result": p.result,
             "expected": sorted(answers[p.question]),
             "served": sorted(p.answer.values) if p.answer else None,
             "ttl": p.answer.ttl if p.answer else None,
             "rtt_ms": round((p.received - p.sent) * 1000, 3)} for p in probes]})
    return results, list(comparator.open_detail(time.monotonic())), detail


async def _follow(settings: Settings, api: KubeApi, discovery: Discovery, target: Target,
                  duration: float, out: TextIO, live: bool) -> list[dict[str, Any]]:
    """Run the agent, restricted to the namespace, and report the target's windows."""
    local = replace(settings, namespaces=(target.namespace,), watch_start_jitter=0.0)
    agent = Agent(local, (), Metrics(CollectorRegistry()), discovery=discovery)
    seen: list[dict[str, Any]] = []
    started = time.monotonic()

    def note(event: str, kind: str, server: ServerRef, name: str, rtype: str, value: str,
             seconds: float) -> None:
        row = {"event": event, "kind": kind, "layer": server.layer, "server": server.address,
               "name": name, "type": rtype, "value": value, "seconds": round(seconds, 3),
               "at": round(time.monotonic() - started, 3)}
        seen.append(row)
        if live:
            print(f"[{row['at']:6.1f}s] {event:<6} {kind:<11} {server.layer:<10} {name} "
                  f"{rtype} {value} {seconds:.2f} s", file=out, flush=True)

    def on_outcome(outcome: Outcome) -> None:
        for w in outcome.windows:
            if w.target == target and w.reference == "watch":
                note("closed", w.kind, w.server, w.question.name, w.question.rtype, w.value,
                     w.seconds)
                seen[-1]["clients"] = clients.seen(agent.clients, w)

    agent.outcome_listeners.append(on_outcome)
    stop = asyncio.Event()
    source = KubeSource(api, resources(local.namespaces, local.kube_dns_namespace,
                                       local.kube_dns_service, local.coredns_namespace_labels),
                        on_restart=lambda _: None)
    opened: set[tuple[str, ServerRef, str, str]] = set()
    async with Background() as tasks:
        tasks.start(agent.run(source.events(), stop), "agent")
        while time.monotonic() - started < duration:
            for w in agent.comparator.open_detail(time.monotonic()):
                key = (w.kind, w.server, str(w.question), w.value)
                if w.target == target and w.attributed and key not in opened:
                    opened.add(key)
                    note("opened", w.kind, w.server, w.question.name, w.question.rtype,
                         w.value, w.age)
            await tasks.wait(stop, 0.1)
    return seen


async def diagnose(settings: Settings, target: Target, out: TextIO = sys.stdout,
                   live: bool = False) -> Report:
    started = time.monotonic()
    access = discover(settings.kubeconfig, context=settings.context)
    verdicts: list[Verdict] = []
    windows: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        api = KubeApi(access, session)
        ns, svc = target.namespace, target.service
        raw_service = await _require(api, f"/api/v1/namespaces/{ns}/services/{svc}")
        service = _read(parse_service, raw_service) if raw_service else None
        verdicts += service_checks(target, service)
        if service is None or not service.headless:
            return Report(target, verdicts, [], {}, [], time.monotonic() - started)
        cluster, nodelocal, problem = await _corefiles(api, settings)
        if cluster is not None:  # the Corefile knows better than a setting
            settings = replace(
                settings, endpoint_pod_names=cluster.endpoint_pod_names,
                coredns_namespaces=cluster.namespaces, coredns_labels=cluster.labels,
                coredns_namespace_labels=cluster.namespace_labels,
                coredns_noendpoints=cluster.noendpoints)
        scope = settings.plugin_scope()
        listed = await _require(api, f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                                {"labelSelector": f"{SERVICE_NAME_LABEL}={svc}"})
        slices = [_read(lambda s: parse_slice(s, settings.endpoint_pod_names,
                                              scope.labels_matcher), s)
                  for s in _read(parse_list, listed).items] if listed else []
        verdicts += endpoint_checks(service, slices)
        excluded, served = served_slices(scope, service, slices,
                                         await _exposed(api, scope, ns))
        verdicts += scope_checks(scope, excluded, len(slices) - len(served))
        pods: list[PodState] | None = []
        if service.selector:
            try:
                found = await _get(api, f"/api/v1/namespaces/{ns}/pods", {
                    "labelSelector": ",".join(f"{k}={v}" for k, v in service.selector)})
                pods = [_read(parse_pod, p) for p in _read(parse_list, found).items] \
                    if found else []
            except Denied:
                pods = None
        verdicts += pod_checks(service, pods, slices)
        discovery = await _discover(api, settings)
        address = with_port(settings.node_local_address)
        if "node-local" in settings.layers:
            found = await check_zone(ServerRef("node-local", address), settings.zone,
                                     settings.probe_timeout)
            if found.problem is None:
                discovery.node_local = address
            elif found.answered:  # silence is normal: most clusters have no node-local cache
                verdicts.append(Verdict("dns", WARN, f"{found.problem}; not probed",
                                        "point --node-local-address at the node's DNS cache"))
        servers = list(discovery.servers())
        answers = expected_answers(service, served, settings.zone)
        results, open_windows, detail = await _probe_all(settings, servers, answers, target)
        verdicts += dns_checks(results, open_windows)
        resolv = _resolv_conf(settings)
        if resolv is not None:
            verdicts += resolver_checks(service_domain(target, settings.zone), resolv)
        layer_bounds = bounds(cluster, nodelocal) if cluster else {}
        verdicts += cluster_dns_checks(cluster, nodelocal, layer_bounds,
                                       settings.max_staleness or None, problem)
        verdicts += client_checks(settings.client_models(), layer_bounds,
                                  cluster.kubernetes_ttl if cluster else None)
        if settings.follow:
            windows = await _follow(settings, api, discovery, target, settings.follow, out,
                                    live)
            verdicts += follow_checks(windows, layer_bounds,
                                      service_domain(target, settings.zone))
    return Report(target, verdicts, detail,
                  {k: {"stale": b.stale, "negative": b.negative} for k, b in
                   layer_bounds.items()}, windows, time.monotonic() - started)


def _resolv_conf(settings: Settings) -> ResolvConf | None:
    """The resolver configuration, when it is a pod's (it searches the cluster zone)."""
    try:
        conf = parse_resolv_conf(Path(settings.resolv_conf).read_text())
    except OSError:
        return None
    zone = settings.zone.strip(".")
    return conf if any(d.endswith(f"svc.{zone}") for d in conf.search) else None


async def run_check(settings: Settings, target_text: str, out: TextIO = sys.stdout) -> int:
    target = parse_target(target_text)
    live = settings.output == "table"
    try:
        async with asyncio.timeout(settings.deadline + settings.follow):
            report = await diagnose(settings, target, out, live)
    except CheckError as exc:
        print(f"check {target}: {exc}", file=sys.stderr)
        return EXIT_NO_VERDICT
    except TimeoutError:
        print(f"check {target}: no verdict within the {settings.deadline:g} s deadline",
              file=out)
        return 1
    if settings.output == "json":
        print(json.dumps(report.to_json(), indent=2), file=out)
    else:
        print(report.table(), file=out)
    return 1 if report.verdict == FAIL else 0
