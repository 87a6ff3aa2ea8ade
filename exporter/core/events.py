"""What a truth source hands the agent: object events, relists, and the end of the first sync."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What a watch delivers; the value is the `kind` label of the watch-event counter."""

    SERVICE = "Service"
    ENDPOINT_SLICE = "EndpointSlice"
    UNLABELLED_ENDPOINT_SLICE = "UnlabelledEndpointSlice"
    """Slices without the headless label that the EndpointSlice controller did not make: the
    mirroring controller's copies of hand-written Endpoints, and hand-made slices. CoreDNS
    serves them as it serves the others."""
    NAMESPACE = "Namespace"
    """Namespaces that match the kubernetes plugin's `namespace_labels`: only those exposed."""
    DNS_SERVICE = "DnsService"
    """The cluster DNS Service itself: where the kube-dns layer answers."""
    DNS_ENDPOINT_SLICE = "DnsEndpointSlice"
    """The cluster DNS Service's slices: the CoreDNS replicas."""
    MEMBER_ENDPOINT_SLICE = "AgentEndpointSlice"
    """The agents' own Service's slices: the fleet that shares the targets out."""

    @property
    def is_dns(self) -> bool:
        return self in (Kind.DNS_SERVICE, Kind.DNS_ENDPOINT_SLICE)


class RestartReason(StrEnum):
    """Why a watch relisted or reconnected; the `reason` label of the restart counter."""

    GONE = "gone"
    """410 Gone: the resourceVersion was compacted away."""
    ERROR = "error"
    """A network error, a timeout, or an API error other than the ones below."""
    FORBIDDEN = "forbidden"
    """403: RBAC denies list or watch."""
    UNAUTHORIZED = "unauthorized"
    """401: the credentials were rejected."""


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    kind: Kind
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK, as the watch says."""
    obj: Any


LISTED = "LISTED"
"""The `type` of an ObjectEvent that carries one item of a relist."""


@dataclass(frozen=True, slots=True)
class Relisting:
    """A fresh list after a gap in the watch begins: its items follow one by one as LISTED
    object events, so that no one ever holds the whole list parsed, then Relisted."""

    kind: Kind


@dataclass(frozen=True, slots=True)
class Relisted:
    """The fresh list is complete: the whole current state of one kind."""

    kind: Kind
    objects: tuple[Any, ...] = ()
    """The listed items as their records (ServiceState, SliceState, ...): the agent reads
    each as it comes and fills these in; the watch sends none."""
    namespace: str | None = None
    """The watch's scope: a relist replaces only that namespace, or everything when None."""


@dataclass(frozen=True, slots=True)
class Synced:
    """The initial lists are complete: changes from now on open windows."""


SourceEvent = ObjectEvent | Relisting | Relisted | Synced
