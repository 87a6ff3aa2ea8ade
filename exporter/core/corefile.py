"""Reads the DNS-relevant settings out of a Corefile and works out staleness bounds. Pure code.

Defaults follow CoreDNS: the kubernetes plugin answers with TTL 5; `cache` without a TTL keeps
answers up to 3600 s (1800 s for denials), never less than its 5 s minimum; `serve_stale`
keeps serving expired entries for 1 h unless given a duration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KUBERNETES_TTL = 5
CACHE_SUCCESS, CACHE_DENIAL, CACHE_MIN = 3600, 1800, 5
SERVE_STALE = 3600


@dataclass(frozen=True, slots=True)
class Cache:
    success: int = CACHE_SUCCESS
    denial: int = CACHE_DENIAL
    min_ttl: int = CACHE_MIN
    serve_stale: int = 0
    """Seconds an expired entry may still be served; 0 when off."""
    prefetch: bool = False

    def lifetime(self, ttl: int, denial: bool = False) -> int:
        """How long an answer with this TTL stays in the cache."""
        return max(self.min_ttl, min(ttl, self.denial if denial else self.success))


@dataclass(frozen=True, slots=True)
class CorefileSettings:
    kubernetes_ttl: int | None
    """The kubernetes plugin's TTL; None when the Corefile has no kubernetes plugin."""
    endpoint_pod_names: bool
    cache: Cache | None
    forwards: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Block:
    name: str
    args: tuple[str, ...]
    children: tuple[Block, ...]


class CorefileError(ValueError):
    pass


def _tokens(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        out += re.findall(r"[{}]|[^\s{}]+", line)
        out.append("\n")
    return out


def parse(text: str) -> list[Block]:
    """Server blocks and their directives, as a tree of (name, args, children)."""
    tokens = _tokens(text)
    pos = 0

    def block() -> tuple[Block, ...]:
        nonlocal pos
        items: list[Block] = []
        while pos < len(tokens):
            token = tokens[pos]
            pos += 1
            if token == "\n":
                continue
            if token == "}":
                return tuple(items)
            if token == "{":
                raise CorefileError("'{' without a directive")
            words = [token]
            while pos < len(tokens) and tokens[pos] not in ("\n", "{", "}"):
                words.append(tokens[pos])
                pos += 1
            children: tuple[Block, ...] = ()
            if pos < len(tokens) and tokens[pos] == "{":
                pos += 1
                children = block()
            items.append(Block(words[0], tuple(words[1:]), children))
        return tuple(items)

    return list(block())


def _int(value: str, what: str) -> int:
    if not value.isdigit():
        raise CorefileError(f"{what}: expected seconds, got {value!r}")
    return int(value)


def _duration(value: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m|h)?", value)
    if not match:
        raise CorefileError(f"serve_stale: cannot read duration {value!r}")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600, None: 1}[match[2]]


def _cache(directive: Block) -> Cache:
    success = denial = None
    if directive.args and directive.args[0].isdigit():
        success = denial = int(directive.args[0])
    min_success = min_denial = CACHE_MIN
    stale, prefetch = 0, False
    for child in directive.children:
        if child.name in ("success", "denial") and len(child.args) >= 2:
            cap = _int(child.args[1], f"cache {child.name}")
            floor = _int(child.args[2], f"cache {child.name}") if len(child.args) >= 3 \
                else CACHE_MIN
            if child.name == "success":
                success, min_success = cap, floor
            else:
                denial, min_denial = cap, floor
        elif child.name == "serve_stale":
            stale = _duration(child.args[0]) if child.args else SERVE_STALE
        elif child.name == "prefetch":
            prefetch = True
    return Cache(success if success is not None else CACHE_SUCCESS,
                 denial if denial is not None else CACHE_DENIAL,
                 min(min_success, min_denial), stale, prefetch)


def _block_zones(block: Block) -> list[str]:
    """The zones a server block's keys name (`.:53`, `dns://cluster.local:53`, ...), lower
    case without dots at the ends; the root is ""."""
    zones = []
    for key in (block.name, *block.args):
        key = key.split("://", 1)[-1]
        zone = key.rsplit(":", 1)[0] if ":" in key else key
        zones.append(zone.strip(".").lower())
    return zones


def settings_of(text: str, zone: str = "cluster.local") -> CorefileSettings:
    """What the server block that answers `zone` does: CoreDNS hands a query to the block
    of the most specific zone that contains the name (core/dnsserver), not the first one."""
    zone = zone.strip(".").lower()
    best: tuple[int, Block] | None = None
    for block in parse(text):
        for block_zone in _block_zones(block):
            contains = block_zone == "" or zone == block_zone or zone.endswith(f".{block_zone}")
            if contains and (best is None or len(block_zone) > best[0]):
                best = (len(block_zone), block)
    if best is None:
        raise CorefileError(f"no server block serves {zone}")
    chosen = best[1]
    ttl = cache = None
    pod_names = False
    forwards: list[str] = []
    for directive in chosen.children:
        if directive.name == "kubernetes":
            ttl = KUBERNETES_TTL
            for child in directive.children:
                if child.name == "ttl" and child.args:
                    ttl = _int(child.args[0], "kubernetes ttl")
                pod_names = pod_names or child.name == "endpoint_pod_names"
        elif directive.name == "cache":
            cache = _cache(directive)
        elif directive.name == "forward" and len(directive.args) >= 2:
            forwards += directive.args[1:]
    return CorefileSettings(ttl, pod_names, cache, tuple(forwards))


@dataclass(frozen=True, slots=True)
class Bounds:
    """Worst-case seconds a layer keeps serving a removed record (stale) or a cached NXDOMAIN
    after the first endpoint appears (negative)."""

    stale: float
    negative: float


def bounds(cluster: CorefileSettings, nodelocal: CorefileSettings | None) -> dict[str, Bounds]:
    """Per layer: CoreDNS's own cache lifetime, then node-local re-caching what CoreDNS still
    holds for up to its own lifetime (the remaining TTL, clamped to its minimum)."""
    ttl = cluster.kubernetes_ttl if cluster.kubernetes_ttl is not None else KUBERNETES_TTL
    core = Bounds(0.0, 0.0)
    if cluster.cache is not None:
        c = cluster.cache
        core = Bounds(c.lifetime(ttl) + c.serve_stale, c.lifetime(ttl, True) + c.serve_stale)
    out = {"coredns": core, "kube-dns": core}
    if nodelocal is not None and nodelocal.cache is not None:
        n = nodelocal.cache
        out["node-local"] = Bounds(core.stale + n.lifetime(ttl) + n.serve_stale,
                                   core.negative + n.lifetime(ttl, True) + n.serve_stale)
    return out
