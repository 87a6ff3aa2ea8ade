"""What a truth source hands the agent: object events, relists, and the end of the first sync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    kind: str
    """Service, EndpointSlice, or DnsService / DnsEndpointSlice for the cluster DNS itself."""
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK, as the watch says."""
    obj: Any


@dataclass(frozen=True, slots=True)
class Relisted:
    """A fresh list after a gap in the watch: the whole current state of one kind."""

    kind: str
    objects: tuple[Any, ...]
    namespace: str | None = None
    """The watch's scope: a relist replaces only that namespace, or everything when None."""


@dataclass(frozen=True, slots=True)
class Synced:
    """The initial lists are complete: changes from now on open windows."""


SourceEvent = ObjectEvent | Relisted | Synced
