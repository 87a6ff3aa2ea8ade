"""`check`'s reasoning: facts about one headless Service in, verdict lines out. Pure code.

Each rule turns what an operator would otherwise dig out with kubectl, jq and dig into one line
with a status (ok, warn, fail) and, where something is wrong, the fix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.core.clients import FOREVER, ClientProfile
from exporter.core.comparator import OpenWindow
from exporter.core.corefile import Bounds, CorefileSettings
from exporter.core.objects import PodState, ServiceState, SliceState
from exporter.core.records import Target
from exporter.core.resolvconf import ResolvConf, lookup_costs
from exporter.core.selection import PluginScope
from exporter.core.truth import misconfigurations

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True, slots=True)
class Verdict:
    section: str
    status: str
    message: str
    fix: str = ""


def overall(verdicts: Iterable[Verdict]) -> str:
    statuses = {v.status for v in verdicts}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


def service_checks(target: Target, service: ServiceState | None) -> list[Verdict]:
    if service is None:
        return [Verdict("service", FAIL, f"{target} not found",
                        "check the namespace and name (kubectl get svc -n NAMESPACE)")]
    if not service.headless:
        return [Verdict("service", FAIL,
                        f"clusterIP is {service.cluster_ip or 'unset'}, not None: DNS answers "
                        "with the cluster IP, "
                        "not the pods", "recreate the Service with clusterIP: None")]
    kind = "with a selector" if service.has_selector else "selectorless"
    out = [Verdict("service", OK, f"headless (clusterIP: None), {kind}")]
    if not service.ports:
        out.append(Verdict("ports", WARN, "no ports: no SRV records",
                           "add a named port if clients look up SRV records"))
    elif not any(p.name for p in service.ports):
        shown = ", ".join(f"{p.port}/{p.protocol}" for p in service.ports)
        out.append(Verdict("ports", WARN, f"no named port ({shown}): no SRV records",
                           "name the port (e.g. name: http) to get _http._tcp SRV records"))
    else:
        named = ", ".join(f"_{p.name}._{p.protocol.lower()}" for p in service.ports if p.name)
        out.append(Verdict("ports", OK, f"SRV records: {named}"))
    if service.publish_not_ready:
        out.append(Verdict("service", OK,
                           "publishNotReadyAddresses: true: not-ready pods are in DNS too"))
    return out


SCOPE_REASONS = {
    "outside_namespaces": ("its namespace is not in the kubernetes plugin's namespaces",
                           "add the namespace to the kubernetes plugin's namespaces option"),
    "outside_namespace_labels": ("its namespace does not match the kubernetes plugin's "
                                 "namespace_labels",
                                 "label the namespace to match namespace_labels"),
    "outside_labels": ("the Service does not match the kubernetes plugin's labels",
                       "label the Service (and its slices) to match the labels option"),
    "noendpoints": ("the kubernetes plugin has noendpoints: no headless name is served",
                    "remove noendpoints from the Corefile if headless names should resolve"),
}
"""Per reason that puts a Service out of CoreDNS's scope: what it means, and the fix."""


def scope_checks(scope: PluginScope, excluded: str | None, unseen: int) -> list[Verdict]:
    """`excluded`: the reason the Service is out of scope; `unseen`: its slices that miss the
    plugin's `labels`."""
    if excluded:
        meaning, fix = SCOPE_REASONS[excluded]
        return [Verdict("scope", WARN, f"CoreDNS does not serve this Service ({excluded}): "
                        f"{meaning}; every name is NXDOMAIN", fix)]
    out = []
    if unseen:
        out.append(Verdict("scope", WARN, f"{unseen} EndpointSlice{'s' if unseen != 1 else ''} "
                           f"miss the kubernetes plugin's labels ({scope.labels}): CoreDNS "
                           "does not serve their endpoints", SCOPE_REASONS["outside_labels"][1]))
    elif scope != PluginScope():
        out.append(Verdict("scope", OK, "in the kubernetes plugin's scope"))
    return out


def endpoint_checks(service: ServiceState, slices: Sequence[SliceState]) -> list[Verdict]:
    if not service.has_selector and not slices:
        return [Verdict("endpoints", FAIL,
                        "selectorless Service without EndpointSlices: no DNS records",
                        f"create EndpointSlices labelled kubernetes.io/service-name="
                        f"{service.target.service}")]
    ready = sum(len(s.endpoints) for s in slices)
    not_ready = sum(s.not_ready for s in slices)
    terminating = sum(s.terminating for s in slices)
    text = (f"{ready} ready, {not_ready} not ready ({terminating} terminating) in "
            f"{len(slices)} EndpointSlice{'s' if len(slices) != 1 else ''}")
    out = [Verdict("endpoints", OK, text) if ready else
           Verdict("endpoints", WARN, f"{text}: the name answers NXDOMAIN",
                   "make the pods Ready, or set publishNotReadyAddresses if that is intended")]
    seen = Counter(a for s in slices for e in s.endpoints for a in e.addresses)
    for address, count in sorted(seen.items()):
        if count > 1:
            out.append(Verdict("endpoints", WARN, f"{address} is in {count} slices",
                               "usually transient while the controller moves an endpoint"))
    return out


def pod_checks(service: ServiceState, pods: Sequence[PodState] | None,
               slices: Sequence[SliceState]) -> list[Verdict]:
    if pods is None:
        return [Verdict("pods", WARN, "cannot list pods (RBAC): pod checks skipped",
                        "grant list on pods to whoever runs check")]
    svc = service.target.service
    hostnames = {e.hostname for s in slices for e in s.endpoints if e.hostname}
    out = []
    for pod in sorted(pods, key=lambda p: p.name):
        hostname, subdomain = pod.hostname, pod.subdomain
        if hostname and not subdomain:
            out.append(Verdict("pods", FAIL, f"{pod.name} sets hostname {hostname!r} but no "
                               "subdomain: it gets no per-pod record",
                               f"set spec.subdomain: {svc}"))
        elif subdomain and subdomain != svc:
            out.append(Verdict("pods", FAIL, f"{pod.name} has subdomain {subdomain!r}, not "
                               f"{svc!r}: no {hostname or pod.name}.{svc} record",
                               f"set spec.subdomain: {svc} (StatefulSet: serviceName: {svc})"))
        elif hostname and subdomain == svc and hostname not in hostnames and pod.ready:
            out.append(Verdict("pods", WARN, f"{pod.name} is Ready with hostname {hostname!r}, "
                               "but no endpoint carries it yet"))
        if not pod.ready:
            out.append(Verdict("pods", WARN, f"{pod.name} not Ready ({pod.ready_reason})",
                               "not-ready pods are left out of DNS"))
    # The agent's own rule, so that its misconfiguration gauge and check agree.
    if "endpoint_without_hostname" in misconfigurations(service, slices) and not any(
            v.status == FAIL for v in out):
        plain = sorted(p.name for p in pods if not p.hostname)
        who = f" ({', '.join(plain)})" if plain else ""
        out.append(Verdict(
            "pods", WARN, f"endpoint_without_hostname: some endpoints have no hostname{who}, "
            "so only those with one get a per-pod record by name",
            f"set spec.hostname and spec.subdomain: {svc} on every pod (a StatefulSet with "
            f"serviceName: {svc} does)"))
    if not out:
        out.append(Verdict("pods", OK, f"{len(pods)} pods: hostnames and subdomains match"))
    return out


@dataclass(frozen=True, slots=True)
class ServerResult:
    """What one DNS server answered for the target's names."""

    layer: str
    address: str
    names: int
    error: str | None
    """The error class of a probe that got no answer, if any did."""
    ttl: int | None
    rtt: float | None


def dns_checks(results: Sequence[ServerResult], windows: Sequence[OpenWindow]) -> list[Verdict]:
    out = []
    for result in results:
        where = f"{result.layer} {result.address}"
        if result.error:
            out.append(Verdict("dns", FAIL, f"{where}: {result.error}",
                               "the layer is down or unreachable from here"))
            continue
        mine = [w for w in windows
                if (w.server.layer, w.server.address) == (result.layer, result.address)]
        for w in sorted(mine, key=lambda w: (w.kind, str(w.question), w.value)):
            kind = "stale" if w.kind == "stale" else "missing"
            fix = ("a cache still holds a removed record; it expires within its TTL"
                   if kind == "stale" else "the layer has not caught up, or cached NXDOMAIN")
            out.append(Verdict("dns", FAIL, f"{where}: {kind} {w.question.name} "
                                            f"{w.question.rtype} {w.value}", fix))
        if not mine:
            ttl = f"TTL {result.ttl}" if result.ttl is not None else "no TTL"
            rtt = f"{result.rtt * 1000:.1f} ms" if result.rtt is not None else "-"
            out.append(Verdict("dns", OK, f"{where}: {result.names} names agree with the "
                                          f"truth ({ttl}, {rtt})"))
    return out


def resolver_checks(fqdn: str, conf: ResolvConf) -> list[Verdict]:
    """The client's cost of each way to write the name. Informational: ndots:5 is every
    pod's default, so it is no fault of the Service, but it is what to change in clients."""
    costs = lookup_costs(fqdn, conf)
    out = [Verdict("resolver", OK,
                   f"{cost.name!r} takes {cost.queries} queries per address family "
                   f"(ndots:{conf.ndots}); a lost packet on any costs {conf.timeout} s")
           for cost in costs if cost.queries > 1]
    fastest = [c.name for c in costs if c.queries == 1]
    out.append(Verdict("resolver", OK, f"one query: {', '.join(fastest)}; write {fqdn} "
                       "(trailing dot) in client configuration"))
    return out


def cluster_dns_checks(cluster: CorefileSettings | None, nodelocal: CorefileSettings | None,
                       bounds: Mapping[str, Bounds], expected: float | None,
                       problem: str | None) -> list[Verdict]:
    if cluster is None:
        return [Verdict("cluster-dns", WARN, f"cannot read the CoreDNS Corefile ({problem}): "
                        "staleness bounds unknown",
                        "grant get on configmaps in kube-system, or pass the bound you expect")]
    cache = cluster.cache
    text = (f"kubernetes ttl {cluster.kubernetes_ttl}, "
            + (f"cache {cache.success} s (min {cache.min_success} s), denials {cache.denial} s "
               f"(min {cache.min_denial} s)" if cache else "no cache"))
    out = [Verdict("cluster-dns", OK, text)]
    for layer, settings in (("coredns", cluster), ("node-local", nodelocal)):
        if settings is not None and settings.cache is not None and settings.cache.serve_stale:
            policy = settings.cache.prefer_positive
            out.append(Verdict(
                "cluster-dns", WARN, f"{layer} cache has serve_stale "
                f"({settings.cache.serve_stale} s): while its upstream fails, removed records "
                "outlive their TTL" + (", and with prefer_positive a removed Service's last "
                                       "answer outlives its NXDOMAIN even when healthy"
                                       if policy else ""),
                "drop serve_stale for headless zones"))
    for layer in ("coredns", "node-local"):
        if layer not in bounds:
            continue
        bound = bounds[layer]
        line = (f"{layer} can serve a removed record for up to {bound.stale:g} s, "
                f"a cached NXDOMAIN for up to {bound.negative:g} s")
        if expected is not None and bound.stale > expected:
            out.append(Verdict("cluster-dns", FAIL, f"{line}, over the expected {expected:g} s",
                               "lower the kubernetes plugin ttl, or the cache TTL"))
        else:
            out.append(Verdict("cluster-dns", OK, line))
    return out


def client_checks(profiles: Sequence[ClientProfile], bounds: Mapping[str, Bounds],
                  record_ttl: int | None) -> list[Verdict]:
    """What a client of each profile can see at worst, from each layer's Corefile bound: it
    asked just before the layer let go of the old answer, and holds it as its runtime does,
    given the record TTL of the kubernetes plugin. An upper bound: through a cache whose TTLs
    count down, a client that respects TTLs holds less."""
    layers = [layer for layer in ("node-local", "coredns") if layer in bounds]
    if not layers:
        return [] if not profiles else [Verdict(
            "clients", WARN, "no layer bound known (Corefiles unread): what clients see is not "
            "computed", "grant get on the coredns and node-local-dns ConfigMaps")]
    out = []
    for profile in profiles:
        parts, worst = [], 0.0
        for layer in layers:
            bound = bounds[layer]
            stale = bound.stale + profile.positive.seconds(record_ttl)
            negative = bound.negative + profile.negative.seconds(record_ttl)
            worst = max(worst, stale)
            shown = "for ever" if stale == FOREVER else f"for up to {stale:g} s"
            parts.append(f"{shown} through {layer} (bound {bound.stale:g} s), a new pod "
                         f"unknown for up to {negative:g} s")
        line = f"{profile.name} clients can dial a deleted pod {'; '.join(parts)}"
        if worst == FOREVER:
            out.append(Verdict("clients", WARN, line, "bound the client's cache, e.g. "
                               "networkaddress.cache.ttl for the JVM"))
        else:
            out.append(Verdict("clients", OK, line))
    return out


FOLLOW_SLACK = 1.0
"""Seconds a closed window may exceed its layer's bound before it fails: one probe interval
and the bound's own whole-second rounding, with room to spare."""


def follow_checks(windows: Sequence[Mapping[str, Any]], bounds: Mapping[str, Bounds],
                  domain: str) -> list[Verdict]:
    """A window seen while following fails when it outlasts what the layer's Corefile allows:
    a stale one its stale bound; a missing one on a name of its own (an endpoint's, which
    did not exist before) the negative bound, since a cached NXDOMAIN is what hides it; a
    missing one at the Service's names (`domain` and its `_port._proto` names) the larger of
    the two, as a cached answer without the new value hides it as long as a removed one."""
    out = []
    for w in windows:
        bound = bounds.get(w["layer"])
        if w["event"] != "closed" or bound is None:
            continue
        own_name = w["name"] != domain and not w["name"].startswith("_")
        limit = bound.stale if w["kind"] == "stale" else bound.negative if own_name \
            else max(bound.stale, bound.negative)
        if w["seconds"] > limit + FOLLOW_SLACK:
            out.append(Verdict("follow", FAIL, f"{w['layer']} {w['kind']} window of "
                               f"{w['seconds']:.2f} s on {w['name']} {w['value']}, over its "
                               f"bound of {limit:g} s"))
    return out
