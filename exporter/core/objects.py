"""The one reader of Kubernetes JSON: API objects in, frozen records out.

Services, EndpointSlices, the cluster DNS Service and its slices, pods, ConfigMap values, and
the list, watch and Status envelopes around them. No other module indexes API JSON
(tests/unit/test_layout.py holds every module to that). A parsed slice dict is an order of
magnitude larger than what the comparator needs, so the watch keeps only these records. Odd
objects raise ObjectError with a one-line reason; single bad addresses are dropped and counted
instead, so one typo loses nothing else.
"""

from __future__ import annotations

import codecs
import json
import re
import sys
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exporter.core.records import (
    DNS_PORT,
    Target,
    dashed_ip,
    ip_value,
    join_address,
    served_ip,
)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
"""The EndpointSlice controller, which labels every slice of a headless Service headless."""


class ObjectError(ValueError):
    """An API object that cannot be read; the message names the object and the field."""


@dataclass(frozen=True, slots=True)
class PortSpec:
    name: str
    port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class EndpointState:
    addresses: tuple[str, ...]
    """What DNS answers carry: canonical IPs, IPv4-mapped ones as IPv4 (`served_ip`)."""
    hostname: str | None
    pod_name: str | None = None
    """`targetRef.name`, kept only for `endpoint_pod_names` and when under 64 characters."""
    written: tuple[str, ...] = ()
    """The addresses as the slice writes them, kept only where that differs from `addresses`:
    CoreDNS builds the dashed-IP label from this text."""

    def labels(self) -> tuple[str, ...]:
        """The endpoint's DNS label per address: hostname, pod name, or the dashed IP."""
        name = self.hostname or self.pod_name
        if name:
            return (name.lower(),) * len(self.addresses)
        return tuple(dashed_ip(a) for a in self.written or self.addresses)


@dataclass(frozen=True, slots=True)
class SliceState:
    namespace: str
    name: str
    service: str
    resource_version: str
    address_type: str
    endpoints: tuple[EndpointState, ...]
    """Endpoints whose `conditions.ready` is not false: what CoreDNS serves."""
    not_ready: int
    terminating: int
    """Endpoints whose `conditions.terminating` is true, ready or not: for `check`'s report."""
    ports: tuple[PortSpec, ...]
    trigger_time: float | None
    """`last-change-trigger-time` as Unix seconds, on the pod's node clock."""
    invalid_addresses: int = 0
    unlabelled: bool = False
    """Without the headless label and not the EndpointSlice controller's: the mirroring
    controller's copy of hand-written Endpoints, or a hand-made slice. It reaches the agent
    through a watch of its own."""
    outside_labels: bool = False
    """Its labels miss the kubernetes plugin's `labels` selector: CoreDNS never sees it."""

    @property
    def target(self) -> Target:
        return Target(self.namespace, self.service)


@dataclass(frozen=True, slots=True)
class ServiceState:
    target: Target
    resource_version: str
    headless: bool
    cluster_ip: str
    selector: tuple[tuple[str, str], ...]
    """The pod selector as sorted (key, value) pairs; empty for a selectorless Service."""
    publish_not_ready: bool
    ports: tuple[PortSpec, ...]
    ip_families: tuple[str, ...]
    labels: frozenset[tuple[str, str]]
    annotations: frozenset[tuple[str, str]]

    @property
    def has_selector(self) -> bool:
        return bool(self.selector)


def _mapping(obj: Any, what: str) -> Mapping[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise ObjectError(f"{what} must be an object, got {type(obj).__name__}")
    return obj


def _metadata(obj: Any, kind: str) -> tuple[str, str, Mapping[str, Any]]:
    body = _mapping(obj, kind)
    meta = _mapping(body.get("metadata"), f"{kind}.metadata")
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        raise ObjectError(f"{kind} without metadata.name")
    if not isinstance(namespace, str) or not namespace:
        raise ObjectError(f"{kind} {name} without metadata.namespace")
    # Every object of a namespace would otherwise hold a copy of its name.
    return sys.intern(namespace), name, meta


_NO_PAIRS: frozenset[tuple[str, str]] = frozenset()


def _string_pairs(value: Any, what: str,
                  keep: Container[str] | None = None) -> frozenset[tuple[str, str]]:
    pairs = frozenset((str(k), str(v)) for k, v in _mapping(value, what).items()
                      if keep is None or k in keep)
    # Each empty frozenset is an object of its own, 216 bytes, two per Service.
    return pairs or _NO_PAIRS


def _list(raw: Any, what: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ObjectError(f"{what} must be a list, got {type(raw).__name__}")
    return raw


_SHARED_PORTS: dict[tuple[PortSpec, ...], tuple[PortSpec, ...]] = {}
"""Port lists read so far, each kept once: most Services and slices have one of a few, and
a copy of each costs about 200 bytes. Bounded in count and length, as odd objects could vary
them all."""
_SHARED_PORTS_MAX = 4096
_SHARED_PORTS_LONGEST = 8


def _ports(raw: Any, where: str) -> tuple[PortSpec, ...]:
    ports = []
    for item in _list(raw, f"{where}.ports"):
        port = _mapping(item, f"{where}.ports[]")
        number = port.get("port")
        if not isinstance(number, int) or isinstance(number, bool):
            continue  # EndpointSlice ports may leave port unset: "all ports", no SRV record
        ports.append(
            PortSpec(str(port.get("name") or ""), number, str(port.get("protocol") or "TCP"))
        )
    read = tuple(ports)
    shared = _SHARED_PORTS.get(read)
    if shared is None and len(read) <= _SHARED_PORTS_LONGEST \
            and len(_SHARED_PORTS) < _SHARED_PORTS_MAX:
        shared = _SHARED_PORTS[read] = read
    return shared or read


def parse_trigger_time(value: Any) -> float | None:
    """RFC 3339 time of the annotation, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _spec(obj: Any, kind: str, namespace: str, name: str) -> Mapping[str, Any]:
    return _mapping(_mapping(obj, kind).get("spec"), f"{kind} {namespace}/{name} spec")


def parse_service(obj: Any, annotations: Container[str] | None = None) -> ServiceState:
    """`annotations`: the keys to keep, None for all. The agent reads one (the opt-out), and
    a Service written by `kubectl apply` carries a copy of itself in another."""
    namespace, name, meta = _metadata(obj, "Service")
    spec = _spec(obj, "Service", namespace, name)
    families = spec.get("ipFamilies") or []
    cluster_ip = spec.get("clusterIP")
    return ServiceState(
        target=Target(namespace, name),
        resource_version=str(meta.get("resourceVersion") or ""),
        headless=cluster_ip == "None",
        cluster_ip=cluster_ip if isinstance(cluster_ip, str) else "",
        selector=tuple(sorted(_string_pairs(spec.get("selector"),
                                            f"Service {namespace}/{name} selector"))),
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
        ports=_ports(spec.get("ports"), f"Service {namespace}/{name} spec"),
        ip_families=tuple(str(f) for f in families) if isinstance(families, list) else (),
        labels=_string_pairs(meta.get("labels"), f"Service {namespace}/{name} labels"),
        annotations=_string_pairs(
            meta.get("annotations"), f"Service {namespace}/{name} annotations", annotations
        ),
    )


POD_NAME_MAX = 63
"""CoreDNS ignores a `targetRef.name` that is too long to be a DNS label."""


def parse_slice(obj: Any, pod_names: bool = False,
                plugin_labels: Callable[[Mapping[str, str]], bool] | None = None) -> SliceState:
    """`pod_names`: keep each endpoint's pod name, for the kubernetes plugin's
    `endpoint_pod_names` option; `plugin_labels`: its `labels` selector, if it has one."""
    namespace, name, meta = _metadata(obj, "EndpointSlice")
    where = f"EndpointSlice {namespace}/{name}"
    labels = _mapping(meta.get("labels"), f"{where} labels")
    service = labels.get(SERVICE_NAME_LABEL)
    if not isinstance(service, str) or not service:
        raise ObjectError(f"{where} has no {SERVICE_NAME_LABEL} label")
    body = _mapping(obj, where)
    address_type = sys.intern(str(body.get("addressType") or "IPv4"))
    endpoints: list[EndpointState] = []
    not_ready = invalid = terminating = 0
    for item in _list(body.get("endpoints"), f"{where}.endpoints"):
        endpoint = _mapping(item, f"{where}.endpoints[]")
        conditions = _mapping(endpoint.get("conditions"), f"{where} conditions")
        terminating += conditions.get("terminating") is True
        if conditions.get("ready") is False:
            not_ready += 1
            continue
        addresses, written = [], []
        for address in _list(endpoint.get("addresses"), f"{where} addresses"):
            # CoreDNS goes by the text, not the addressType: an IP is an A or AAAA record
            # even in an FQDN slice, and a name is a CNAME with no A, AAAA or SRV value.
            try:
                addresses.append(served_ip(str(address)))
                written.append(str(address).strip())
            except ValueError:
                invalid += address_type != "FQDN"
        if not addresses and address_type == "FQDN":
            continue
        hostname = endpoint.get("hostname")
        ref = _mapping(endpoint.get("targetRef"), f"{where} targetRef").get("name")
        pod = ref if pod_names and isinstance(ref, str) and 0 < len(ref) <= POD_NAME_MAX \
            else None
        endpoints.append(EndpointState(
            tuple(addresses), hostname if isinstance(hostname, str) and hostname else None,
            pod, tuple(written) if written != addresses else ()))
    annotations = _mapping(meta.get("annotations"), f"{where} annotations")
    return SliceState(
        namespace=namespace,
        name=name,
        service=service,
        resource_version=str(meta.get("resourceVersion") or ""),
        address_type=address_type,
        endpoints=tuple(endpoints),
        not_ready=not_ready,
        terminating=terminating,
        ports=_ports(body.get("ports"), where),
        trigger_time=parse_trigger_time(annotations.get(TRIGGER_ANNOTATION)),
        invalid_addresses=invalid,
        unlabelled=labels.get(HEADLESS_LABEL) is None
        and labels.get(MANAGED_BY_LABEL) != SLICE_CONTROLLER,
        outside_labels=plugin_labels is not None
        and not plugin_labels({str(k): str(v) for k, v in labels.items()}),
    )


@dataclass(frozen=True, slots=True)
class DnsServiceState:
    """The cluster DNS Service: where the kube-dns layer answers."""

    cluster_ip: str | None
    """None for a headless or IP-less Service: there is no kube-dns address to probe."""
    port: int


@dataclass(frozen=True, slots=True)
class DnsSliceState:
    """One EndpointSlice of the cluster DNS Service: its ready replicas as `host:port`."""

    name: str
    servers: tuple[str, ...]


def _dns_port(raw: Any) -> int:
    """The UDP port named `dns` (or the only unnamed UDP port); 53 when there is none."""
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            continue
        number = item.get("port")
        if item.get("protocol", "UDP") == "UDP" and item.get("name", "dns") == "dns" \
                and isinstance(number, int) and not isinstance(number, bool):
            return number
    return DNS_PORT


def parse_dns_service(obj: Any) -> DnsServiceState:
    namespace, name, _ = _metadata(obj, "Service")
    spec = _spec(obj, "Service", namespace, name)
    ip = spec.get("clusterIP")
    usable = isinstance(ip, str) and ip not in ("", "None")
    return DnsServiceState(str(ip) if usable else None, _dns_port(spec.get("ports")))


def _ready_endpoints(obj: Any) -> tuple[str, list[Mapping[str, Any]]]:
    """An EndpointSlice's name, and its endpoints that are not marked unready."""
    namespace, name, _ = _metadata(obj, "EndpointSlice")
    where = f"EndpointSlice {namespace}/{name}"
    raw = _mapping(obj, where).get("endpoints")
    return name, [
        item for item in (raw if isinstance(raw, list) else []) if isinstance(item, Mapping)
        and _mapping(item.get("conditions"), f"{where} conditions").get("ready") is not False]


def parse_dns_slice(obj: Any) -> DnsSliceState:
    name, endpoints = _ready_endpoints(obj)
    port = _dns_port(obj.get("ports"))
    servers = []
    for item in endpoints:
        for address in item.get("addresses") or []:
            try:
                servers.append(join_address(ip_value(str(address)), port))
            except ValueError:
                continue
    return DnsSliceState(name, tuple(servers))


@dataclass(frozen=True, slots=True)
class MemberSliceState:
    """One EndpointSlice of the agents' own Service: the nodes of its ready agents."""

    name: str
    members: tuple[str, ...]


def parse_member_slice(obj: Any) -> MemberSliceState:
    """An endpoint without a nodeName names no member: the kubelet's pods always have one."""
    name, endpoints = _ready_endpoints(obj)
    return MemberSliceState(name, tuple(sorted({
        str(item["nodeName"]) for item in endpoints
        if isinstance(item.get("nodeName"), str) and item["nodeName"]})))


def namespace_name(obj: Any) -> str:
    """`metadata.name` of a Namespace, which has no namespace of its own."""
    meta = _mapping(_mapping(obj, "Namespace").get("metadata"), "Namespace.metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ObjectError("Namespace without metadata.name")
    return name


def object_name(obj: Any, kind: str) -> str:
    """`metadata.name` of a namespaced object; ObjectError when it has none."""
    return _metadata(obj, kind)[1]


@dataclass(frozen=True, slots=True)
class PodState:
    """What `check` reads of a pod: its DNS identity and readiness."""

    name: str
    hostname: str | None
    subdomain: str | None
    ready: bool
    ready_reason: str
    """Why the pod is not Ready, from its Ready condition; empty when it is."""


def parse_pod(obj: Any) -> PodState:
    namespace, name, _ = _metadata(obj, "Pod")
    spec = _spec(obj, "Pod", namespace, name)
    status = _mapping(_mapping(obj, "Pod").get("status"), f"Pod {namespace}/{name} status")
    conditions = status.get("conditions")
    ready, reason = False, "no Ready condition"
    for item in conditions if isinstance(conditions, list) else []:
        condition = _mapping(item, f"Pod {namespace}/{name} conditions[]")
        if condition.get("type") != "Ready":
            continue
        ready = condition.get("status") == "True"
        detail = str(condition.get("reason") or "no reason given")
        message = condition.get("message")
        reason = "" if ready else f"{detail}: {message}" if message else detail
    hostname, subdomain = spec.get("hostname"), spec.get("subdomain")
    return PodState(name, hostname if isinstance(hostname, str) and hostname else None,
                    subdomain if isinstance(subdomain, str) and subdomain else None,
                    ready, reason)


def configmap_value(obj: Any, key: str) -> str:
    """One key of a ConfigMap's `data`; empty when absent."""
    namespace, name, _ = _metadata(obj, "ConfigMap")
    value = _mapping(_mapping(obj, "ConfigMap").get("data"),
                     f"ConfigMap {namespace}/{name} data").get(key)
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Listing:
    """A list response: its items, still raw, and the resourceVersion to watch from."""

    items: tuple[Any, ...]
    resource_version: str


def parse_list(body: Any) -> Listing:
    envelope = _mapping(body, "list response")
    items = envelope.get("items")
    if items is not None and not isinstance(items, list):
        raise ObjectError("list response items must be a list")
    return Listing(tuple(items or ()), _list_version(envelope.get("metadata")))


def _list_version(meta: Any) -> str:
    return str(_mapping(meta, "list response metadata").get("resourceVersion") or "")


_JSON = json.JSONDecoder()
_NOT_SPACE = re.compile(r"[^ \t\n\r]")
_PUNCTUATION = {
    "start": {"{": "key_first"},
    "key_first": {"}": "end"},
    "after_value": {",": "key", "}": "end"},
    "items": {"[": "item_first"},
    "item_first": {"]": "after_value"},
    "after_item": {",": "item", "]": "after_value"},
}
"""ListDecoder's moves on a character of the envelope, by state."""
_MISPLACED = {
    "start": "list response must be a JSON object",
    "end": "list response has text after its closing brace",
    "after_value": "list response is not JSON: a comma or brace must follow a value",
    "after_item": "list response is not JSON: a comma or bracket must follow an item",
}


class ListDecoder:
    """A list response read as its bytes arrive, `parse_list` in pieces: each item comes out
    as soon as it is whole, so the body and all of its parsed items are never in memory
    together (10,000 slices are 20 MB of JSON and four times that parsed). The envelope's
    keys may come in any order; an item split across chunks is parsed again once its part
    has at least doubled, so a huge item costs linear time."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self._pos = 0
        self._state = "start"
        """Where the reader is in the envelope: a key of `_PUNCTUATION` or `value`."""
        self._key = ""
        self._retry_at = 0
        self._meta: Any = None
        self.resource_version = ""
        """Known once the whole body is fed."""

    def feed(self, data: bytes, final: bool = False) -> list[Any]:
        """The items that `data` completed; `final` ends the body and checks it."""
        try:
            text = self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            raise ObjectError(f"list response is not UTF-8: {exc.reason}") from None
        self._text = self._text[self._pos:] + text
        self._pos = 0
        items: list[Any] = []
        if final or len(self._text) >= self._retry_at:
            self._retry_at = 0
            while self._step(items, final):
                pass
        if final:
            if self._state != "end":
                raise ObjectError("list response ends before its closing brace")
            self.resource_version = _list_version(self._meta)
        return items

    def _value(self, at: int, final: bool) -> tuple[Any, int] | None:
        """The JSON value at `at` and where it ends; None until more of it has arrived."""
        try:
            value, end = _JSON.raw_decode(self._text, at)
        except json.JSONDecodeError as exc:
            if final:
                raise ObjectError(f"list response is not JSON: {exc.msg} at character "
                                  f"{exc.pos}") from None
            # Not before its part has doubled; counted from where the next feed's text starts.
            self._retry_at = 2 * len(self._text) - at - self._pos
            return None
        # A number can go on in the next chunk, and "1." or "1e" parse as 1: trust a scalar
        # only once a character that cannot continue it follows.
        if not final and not isinstance(value, dict | list) and (
                end == len(self._text) or self._text[end] in ".eE"):
            return None
        return value, end

    def _step(self, items: list[Any], final: bool) -> bool:
        """One token or value of the envelope; False when the text runs out."""
        found = _NOT_SPACE.search(self._text, self._pos)
        if found is None:
            return False
        at, char = found.start(), found.group()
        state = self._state
        moves = _PUNCTUATION.get(state, {})
        if char in moves:
            self._pos, self._state = at + 1, moves[char]
            return True
        if state in _MISPLACED:
            raise ObjectError(_MISPLACED[state])
        if state in ("key_first", "key"):
            return self._step_key(at, final)
        parsed = self._value(at, final)
        if parsed is None:
            return False
        value, self._pos = parsed
        if state == "items":
            if value is not None:
                raise ObjectError("list response items must be a list")
            self._state = "after_value"
        elif state in ("item_first", "item"):
            items.append(value)
            self._state = "after_item"
        else:
            if self._key == "metadata":
                self._meta = value
            self._state = "after_value"
        return True

    def _step_key(self, at: int, final: bool) -> bool:
        """A key and its colon, taken together or not at all."""
        parsed = self._value(at, final)
        if parsed is None:
            return False
        key, end = parsed
        colon = _NOT_SPACE.search(self._text, end)
        if colon is None:
            if final:
                raise ObjectError("list response ends after a key")
            return False
        if not isinstance(key, str) or colon.group() != ":":
            raise ObjectError("list response is not JSON: a key must be a string and a colon")
        self._key = key
        self._pos, self._state = colon.start() + 1, "items" if key == "items" else "value"
        return True


@dataclass(frozen=True, slots=True)
class Status:
    """A Kubernetes Status: the body of an API error, or of a watch ERROR event."""

    code: int
    reason: str
    message: str


def parse_status(body: Any, default_code: int = 500, default_reason: str = "") -> Status:
    """Never raises: an error body that is not a Status keeps the HTTP code and reason."""
    envelope = body if isinstance(body, Mapping) else {}
    code = envelope.get("code")
    return Status(code if isinstance(code, int) and not isinstance(code, bool) else default_code,
                  str(envelope.get("reason") or default_reason), str(envelope.get("message") or ""))


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One line of a watch stream, its object still raw."""

    type: str
    obj: Any
    resource_version: str | None
    """The object's resourceVersion, to resume from; None when it carries none."""


def parse_watch_event(line: Any) -> WatchEvent:
    envelope = _mapping(line, "watch event")
    obj = envelope.get("object")
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return WatchEvent(str(envelope.get("type") or ""), obj if obj is not None else {},
                      str(version) if version else None)


@dataclass(frozen=True, slots=True)
class ReviewedUser:
    """Who a TokenReview says a bearer token belongs to."""

    name: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...]


def parse_token_review(obj: Any) -> ReviewedUser | None:
    """The user of an authenticated TokenReview; None when the token was not accepted."""
    status = obj.get("status") if isinstance(obj, dict) else None
    if not isinstance(status, dict) or not status.get("authenticated"):
        return None
    found = status.get("user")
    info: dict[str, Any] = found if isinstance(found, dict) else {}
    more = info.get("extra")
    extra: dict[str, Any] = more if isinstance(more, dict) else {}
    return ReviewedUser(str(info.get("username", "")), str(info.get("uid", "")),
                        tuple(str(g) for g in info.get("groups") or ()),
                        tuple(sorted((str(k), tuple(str(x) for x in v or ()))
                                     for k, v in extra.items())))


def access_review(user: ReviewedUser, path: str) -> dict[str, Any]:
    """A SubjectAccessReview of `get` on a non-resource URL for `user`."""
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user.name, "uid": user.uid, "groups": list(user.groups),
                     "extra": {k: list(v) for k, v in user.extra},
                     "nonResourceAttributes": {"path": path, "verb": "get"}}}


def parse_access_review(obj: Any) -> bool:
    status = obj.get("status") if isinstance(obj, dict) else None
    return isinstance(status, dict) and status.get("allowed") is True
