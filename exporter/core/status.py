"""The status document behind /status and /api/v1/status (docs/status.schema.json).

Pure code: the agent hands in what it holds, with the clock readings; this builds the
versioned, bounded document. Its words are check's (`docs/check-output.schema.json`): kind,
layer, server, name, type, value, seconds.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.core.comparator import OpenWindow, Window
from exporter.core.records import ServerRef, Target
from exporter.core.shard import Shard

SCHEMA = "dns-staleness-exporter/status/v1"
BOUND_SLACK = 5.0
"""Seconds past the layer's TTL before a window counts as past its bound: the alert
DnsStalenessRecordStaleBeyondTTL's own margin, for the probe resolution and the watch lag."""


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


def bound_of(ttl: Mapping[str, int], layer: str) -> float | None:
    """Seconds a window on `layer` may last before it is past the layer's bound; None while
    the layer has served no TTL."""
    seen = ttl.get(layer)
    return None if seen is None else seen + BOUND_SLACK


class ClosedLog:
    """The newest closed windows, one per window (its watch reference), with wall times."""

    def __init__(self, limit: int) -> None:
        self._log: deque[tuple[float, Window]] = deque(maxlen=limit)

    def add(self, windows: Iterable[Window], wall: float) -> None:
        for window in windows:
            if window.reference == "watch":
                self._log.append((wall, window))

    def newest(self) -> list[tuple[float, Window]]:
        return list(reversed(self._log))


@dataclass(frozen=True)
class Inputs:
    """What the agent holds at one instant."""

    wall: float
    node: str
    synced: bool
    open_windows: list[OpenWindow]
    closed: list[tuple[float, Window]]
    ttl: Mapping[str, int]
    servers: Iterable[ServerRef]
    layer_up: Mapping[ServerRef, bool]
    sweep_period: float | None
    budget_qps: float
    budget_burst: int
    budget_used: int
    probes_deferred: int
    monitored: Iterable[Target]
    monitored_total: int
    dropped: Iterable[Target]
    dropped_now: int
    dropped_total: int
    limit: int
    shard: Shard | None = None
    internals: Mapping[str, int] | None = None
    """Sizes of what the agent holds (tasks, names, cells, fast-mode entries): for a soak or
    a leak hunt, not for alerts."""


def _who(target: Target) -> dict[str, str]:
    return {"namespace": target.namespace, "service": target.service}


def _first(items: Iterable[Target], limit: int) -> list[Target]:
    # By plain strings: dataclass comparisons made sorting 1,000 targets the page's cost.
    return heapq.nsmallest(limit, items, key=lambda t: (t.namespace, t.service))


def document(i: Inputs, version: str) -> dict[str, Any]:
    """The status document; every list is cut to `limit`, with its full length beside it."""
    opened = heapq.nsmallest(i.limit, i.open_windows, key=lambda w: (
        -w.age, w.server.layer, w.server.address, w.question.name, w.question.rtype, w.value))
    monitored = _first(i.monitored, i.limit)
    dropped = _first(i.dropped, i.limit)
    return {
        "schema": SCHEMA,
        "version": version,
        "generated_at": rfc3339(i.wall),
        "node": i.node,
        "synced": i.synced,
        "open_windows_total": len(i.open_windows),
        "open_windows": [_open(w, i.ttl) for w in opened],
        "closed_windows": [_closed(wall, w) for wall, w in i.closed[: i.limit]],
        "layers": [{"layer": s.layer, "server": s.address, "up": i.layer_up.get(s),
                    "ttl": i.ttl.get(s.layer)} for s in sorted(i.servers)],
        "sweep_period_seconds": i.sweep_period,
        "budget": {"qps": i.budget_qps, "burst": i.budget_burst,
                   "used_last_second": i.budget_used, "deferred_total": i.probes_deferred},
        "targets": {"monitored_total": i.monitored_total,
                    "monitored": [_who(t) for t in monitored],
                    "dropped_total": i.dropped_total, "dropped_now": i.dropped_now,
                    "dropped": [_who(t) for t in dropped]},
        "shard": None if i.shard is None else _shard(i.shard, i.limit),
        "internals": dict(i.internals or {}),
    }


def _shard(shard: Shard, limit: int) -> dict[str, Any]:
    owned = shard.owned()
    return {"members_total": len(shard.fleet), "members": sorted(shard.fleet)[:limit],
            "owners": shard.k, "known": shard.known, "owned_total": len(owned),
            "owned": [_who(t) for t in _first(owned, limit)],
            "node_local_total": shard.node_local()}


def identity(w: OpenWindow | Window) -> dict[str, Any]:
    """Which record of which server a window is about, in the document's words (and the
    info logs' fields)."""
    return {"kind": w.kind, "layer": w.server.layer, "server": w.server.address,
            **_who(w.target), "name": w.question.name, "type": w.question.rtype,
            "value": w.value}


def _open(w: OpenWindow, ttl: Mapping[str, int]) -> dict[str, Any]:
    bound = bound_of(ttl, w.server.layer)
    return {**identity(w), "age_seconds": round(w.age, 3), "caused_by_truth": w.attributed,
            "ttl": ttl.get(w.server.layer), "past_bound": bound is not None and w.age > bound}


def _closed(wall: float, w: Window) -> dict[str, Any]:
    return {**identity(w), "seconds": round(w.seconds, 3),
            "resolution_seconds": round(w.resolution, 3), "closed_at": rfc3339(wall)}
