"""Reduces Service and EndpointSlice JSON to the little that DNS answers depend on.

A parsed slice dict is an order of magnitude larger than what the comparator needs, so the
watch keeps only these frozen records. Odd objects raise ObjectError with a one-line reason;
single bad addresses are dropped and counted instead, so one typo loses nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exporter.records import Target, ip_value

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"


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
    hostname: str | None


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
    ports: tuple[PortSpec, ...]
    trigger_time: float | None
    """`last-change-trigger-time` as Unix seconds, on the pod's node clock."""
    invalid_addresses: int = 0

    @property
    def target(self) -> Target:
        return Target(self.namespace, self.service)


@dataclass(frozen=True, slots=True)
class ServiceState:
    target: Target
    resource_version: str
    headless: bool
    has_selector: bool
    publish_not_ready: bool
    ports: tuple[PortSpec, ...]
    ip_families: tuple[str, ...]
    labels: frozenset[tuple[str, str]]
    annotations: frozenset[tuple[str, str]]


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
    return namespace, name, meta


def _string_pairs(value: Any, what: str) -> frozenset[tuple[str, str]]:
    return frozenset((str(k), str(v)) for k, v in _mapping(value, what).items())


def _ports(raw: Any, where: str) -> tuple[PortSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ObjectError(f"{where}.ports must be a list")
    ports = []
    for item in raw:
        port = _mapping(item, f"{where}.ports[]")
        number = port.get("port")
        if not isinstance(number, int) or isinstance(number, bool):
            continue  # EndpointSlice ports may leave port unset: "all ports", no SRV record
        ports.append(
            PortSpec(str(port.get("name") or ""), number, str(port.get("protocol") or "TCP"))
        )
    return tuple(ports)


def parse_trigger_time(value: Any) -> float | None:
    """RFC 3339 time of the annotation, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_service(obj: Any) -> ServiceState:
    namespace, name, meta = _metadata(obj, "Service")
    spec = _mapping(_mapping(obj, "Service").get("spec"), f"Service {namespace}/{name} spec")
    families = spec.get("ipFamilies") or []
    return ServiceState(
        target=Target(namespace, name),
        resource_version=str(meta.get("resourceVersion") or ""),
        headless=spec.get("clusterIP") == "None",
        has_selector=bool(spec.get("selector")),
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
        ports=_ports(spec.get("ports"), f"Service {namespace}/{name} spec"),
        ip_families=tuple(str(f) for f in families) if isinstance(families, list) else (),
        labels=_string_pairs(meta.get("labels"), f"Service {namespace}/{name} labels"),
        annotations=_string_pairs(
            meta.get("annotations"), f"Service {namespace}/{name} annotations"
        ),
    )


def parse_slice(obj: Any) -> SliceState:
    namespace, name, meta = _metadata(obj, "EndpointSlice")
    where = f"EndpointSlice {namespace}/{name}"
    labels = _mapping(meta.get("labels"), f"{where} labels")
    service = labels.get(SERVICE_NAME_LABEL)
    if not isinstance(service, str) or not service:
        raise ObjectError(f"{where} has no {SERVICE_NAME_LABEL} label")
    body = _mapping(obj, where)
    raw_endpoints = body.get("endpoints")
    raw_endpoints = [] if raw_endpoints is None else raw_endpoints
    if not isinstance(raw_endpoints, list):
        raise ObjectError(f"{where}.endpoints must be a list")
    endpoints: list[EndpointState] = []
    not_ready = invalid = 0
    for item in raw_endpoints:
        endpoint = _mapping(item, f"{where}.endpoints[]")
        ready = _mapping(endpoint.get("conditions"), f"{where} conditions").get("ready")
        if ready is False:
            not_ready += 1
            continue
        addresses = []
        for address in endpoint.get("addresses") or []:
            try:
                addresses.append(ip_value(str(address)))
            except ValueError:
                invalid += 1
        hostname = endpoint.get("hostname")
        endpoints.append(
            EndpointState(tuple(addresses), hostname if isinstance(hostname, str) else None)
        )
    annotations = _mapping(meta.get("annotations"), f"{where} annotations")
    return SliceState(
        namespace=namespace,
        name=name,
        service=service,
        resource_version=str(meta.get("resourceVersion") or ""),
        address_type=str(body.get("addressType") or "IPv4"),
        endpoints=tuple(endpoints),
        not_ready=not_ready,
        ports=_ports(body.get("ports"), where),
        trigger_time=parse_trigger_time(annotations.get(TRIGGER_ANNOTATION)),
        invalid_addresses=invalid,
    )
