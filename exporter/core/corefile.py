"""Reads the DNS-relevant settings out of a Corefile and works out staleness bounds. Pure code.

The rules follow CoreDNS v1.15.0 (plugin/cache `setup.go`, `cache.go`, `handler.go`;
plugin/kubernetes): the kubernetes plugin answers with TTL 5 and its NXDOMAIN carries a SOA of
TTL `min(ttl, 300)`; the cache keeps an answer `min(max(ttl, minimum), maximum)` seconds,
3600 at most and 5 at least for successes, 1800 and 5 for denials, and serves what remains of
that as the TTL; durations are Go durations (`1h30m`, `90s`), and a bare number is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KUBERNETES_TTL = 5
SOA_TTL_MAX = 300
CACHE_SUCCESS, CACHE_DENIAL, CACHE_MIN = 3600, 1800, 5
SERVE_STALE = 3600
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True, slots=True)
class Cache:
    success: int = CACHE_SUCCESS
    """The most seconds a success is kept (`cache TTL`, `success CAP TTL`)."""
    denial: int = CACHE_DENIAL
    min_success: int = CACHE_MIN
    """The fewest seconds a success is kept, whatever its TTL (`success CAP TTL MINTTL`)."""
    min_denial: int = CACHE_MIN
    caches_success: bool = True
    """False under `disable success` for the zone."""
    caches_denial: bool = True
    serve_stale: int = 0
    """Seconds an expired entry may still be served; 0 when off."""
    stale_ttl: int = 0
    """The TTL of an answer served stale (serve_stale's RESPONSE_TTL)."""
    prefer_positive: bool = False
    """`serve_stale_policy prefer_positive`: an expired success wins over a newer denial."""
    keepttl: bool = False
    """Answers carry the TTL they were stored with, not what remains of it."""
    prefetch: bool = False

    def lifetime(self, ttl: int, denial: bool = False) -> int:
        """How long an answer with this TTL stays in the cache: CoreDNS's `computeTTL`,
        which applies the minimum first and the maximum last."""
        if not (self.caches_denial if denial else self.caches_success):
            return 0
        cap, floor = (self.denial, self.min_denial) if denial else (self.success,
                                                                    self.min_success)
        return min(max(ttl, floor), cap)


@dataclass(frozen=True, slots=True)
class CorefileSettings:
    kubernetes_ttl: int | None
    """The kubernetes plugin's TTL; None when the Corefile has no kubernetes plugin."""
    endpoint_pod_names: bool
    cache: Cache | None
    forwards: tuple[str, ...]
    namespaces: tuple[str, ...] = ()
    """The kubernetes plugin's scope options, as `Settings` names them (coredns_*)."""
    labels: str = ""
    namespace_labels: str = ""
    noendpoints: bool = False


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


def _int(value: str, what: str, low: int = 0) -> int:
    if not re.fullmatch(r"-?\d+", value):
        raise CorefileError(f"{what}: expected a whole number, got {value!r}")
    if int(value) < low:
        raise CorefileError(f"{what}: must be at least {low}, got {value}")
    return int(value)


def go_duration(value: str, what: str) -> float:
    """Seconds of a Go duration (`time.ParseDuration`): `300ms`, `90s`, `1h30m`; a number
    without a unit is refused, as CoreDNS refuses it, except 0."""
    if value in ("0", "+0", "-0"):
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", value.lstrip("+-"))
    if not parts or "".join(n + u for n, u in parts) != value.lstrip("+-"):
        raise CorefileError(f"{what}: cannot read duration {value!r}; write it as Go does, "
                            "e.g. 90s or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    return -seconds if value.startswith("-") else seconds


def _contains(parent: str, zone: str) -> bool:
    """Whether `parent` (lower case, no dots at the ends; the root is "") contains `zone`."""
    return parent == "" or zone == parent or zone.endswith(f".{parent}")


def _covers(zones: tuple[str, ...], zone: str) -> bool:
    """Whether any of these zones (the root is "" or ".") contains `zone`."""
    return any(_contains(z.strip(".").lower(), zone) for z in zones)


def _cache(directive: Block, zone: str) -> Cache | None:
    """The cache as it treats names of `zone`; None when its zones leave `zone` out."""
    args = list(directive.args)
    values: dict[str, Any] = {}
    if args and re.fullmatch(r"-?\d+", args[0]):
        values["success"] = values["denial"] = _int(args.pop(0), "cache TTL", 1)
    if args and not _covers(tuple(args), zone):
        return None
    stale_policy = False
    for child in directive.children:
        name, a = child.name, child.args
        where = f"cache {name}"
        if name in ("success", "denial"):
            if not a:
                raise CorefileError(f"{where}: needs a capacity")
            _int(a[0], f"{where} capacity")
            if len(a) > 3:
                raise CorefileError(f"{where}: takes CAPACITY [TTL [MINTTL]]")
            if len(a) > 1:
                values[name] = _int(a[1], f"{where} TTL", 1)
            if len(a) > 2:
                values[f"min_{name}"] = _int(a[2], f"{where} MINTTL")
        elif name == "prefetch":
            if not a or len(a) > 3:
                raise CorefileError("cache prefetch: takes AMOUNT [DURATION [PERCENTAGE%]]")
            _int(a[0], "cache prefetch AMOUNT")
            if len(a) > 1:
                go_duration(a[1], "cache prefetch DURATION")
            if len(a) > 2 and not re.fullmatch(r"([1-8]\d|90)%", a[2]):
                raise CorefileError(f"cache prefetch: PERCENTAGE must be 10% to 90%, got {a[2]!r}")
            values["prefetch"] = True
        elif name == "serve_stale":
            values.update(_serve_stale(a))
        elif name == "serve_stale_policy":
            if stale_policy or len(a) != 1 or a[0].lower() != "prefer_positive":
                raise CorefileError("cache serve_stale_policy: takes prefer_positive, once")
            stale_policy = True
            values["prefer_positive"] = True
        elif name == "servfail":
            if len(a) != 1 or not 0 <= go_duration(a[0], "cache servfail") <= 300:
                raise CorefileError("cache servfail: takes one duration of at most 5m")
        elif name == "disable":
            if not a or a[0] not in ("success", "denial"):
                raise CorefileError("cache disable: takes success or denial, then zones")
            if _covers(a[1:] or (".",), zone):
                values[f"caches_{a[0]}"] = False
        elif name == "keepttl":
            if a:
                raise CorefileError("cache keepttl: takes no arguments")
            values["keepttl"] = True
        else:
            raise CorefileError(f"cache: unknown property {name!r}")
    if stale_policy and "serve_stale" not in values:
        raise CorefileError("cache serve_stale_policy: requires serve_stale")
    return Cache(**values)


def _serve_stale(args: tuple[str, ...]) -> dict[str, int]:
    """`serve_stale [DURATION [immediate|verify [VERIFY_TIMEOUT] [RESPONSE_TTL [RECHECK]]]]`."""
    if len(args) > 5:
        raise CorefileError("cache serve_stale: too many arguments")
    upto = go_duration(args[0], "cache serve_stale") if args else SERVE_STALE
    if upto < 0:
        raise CorefileError("cache serve_stale: the duration cannot be negative")
    rest = list(args[1:])
    verify = False
    if rest:
        mode = rest.pop(0).lower()
        if mode not in ("immediate", "verify"):
            raise CorefileError(f"cache serve_stale: refresh mode must be immediate or verify, "
                                f"got {mode!r}")
        verify = mode == "verify"
        if verify and rest:
            go_duration(rest.pop(0), "cache serve_stale verify timeout")
        if len(rest) > 2:
            raise CorefileError("cache serve_stale: too many arguments")
    ttl = go_duration(rest[0], "cache serve_stale RESPONSE_TTL") if rest else 0.0
    if ttl < 0 or ttl != int(ttl):
        raise CorefileError("cache serve_stale: RESPONSE_TTL must be whole seconds")
    if len(rest) > 1:
        go_duration(rest[1], "cache serve_stale RECHECK")
    return {"serve_stale": int(upto), "stale_ttl": int(ttl)}


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
            if _contains(block_zone, zone) and (best is None or len(block_zone) > best[0]):
                best = (len(block_zone), block)
    if best is None:
        raise CorefileError(f"no server block serves {zone}")
    chosen = best[1]
    ttl = cache = None
    forwards: list[str] = []
    options: dict[str, tuple[str, ...]] = {}
    for directive in chosen.children:
        if directive.name == "kubernetes":
            ttl = KUBERNETES_TTL
            options = {child.name: child.args for child in directive.children}
            if "ttl" in options:
                if not options["ttl"]:
                    raise CorefileError("kubernetes ttl: needs seconds")
                ttl = _int(options["ttl"][0], "kubernetes ttl")
                if ttl > 3600:
                    raise CorefileError(f"kubernetes ttl: must be 0 to 3600, got {ttl}")
        elif directive.name == "cache":
            cache = _cache(directive, zone)
        elif directive.name == "forward" and len(directive.args) >= 2:
            forwards += directive.args[1:]
    def words(option: str) -> tuple[str, ...]:
        return options.get(option, ())

    if words("namespaces") and words("namespace_labels"):
        raise CorefileError("kubernetes: namespaces and namespace_labels cannot both be set")
    return CorefileSettings(ttl, "endpoint_pod_names" in options, cache, tuple(forwards),
                            namespaces=words("namespaces"), labels=" ".join(words("labels")),
                            namespace_labels=" ".join(words("namespace_labels")),
                            noendpoints="noendpoints" in options)


@dataclass(frozen=True, slots=True)
class Bounds:
    """Worst-case seconds a layer keeps serving a removed record (stale) or a cached NXDOMAIN
    after the first endpoint appears (negative), with a healthy upstream."""

    stale: float
    negative: float


def _downstream(core: Cache | None, core_life: int, ttl: int, local: Cache,
                denial: bool) -> int:
    """How long node-local can serve what the cluster layer served last, counted from the
    change. Without a cluster cache it gets the kubernetes plugin's own TTL. With one, the
    worst case is a refill just before the cluster's entry expires: node-local is handed what
    remains of it (about 0, or the stored TTL under keepttl, or RESPONSE_TTL when served
    stale), clamped to its own minimum."""
    if core_life == 0 or core is None:
        return local.lifetime(ttl, denial)
    handed = core_life if core.keepttl else core.stale_ttl if core.serve_stale else 0
    return core_life + local.lifetime(handed, denial)


def bounds(cluster: CorefileSettings, nodelocal: CorefileSettings | None) -> dict[str, Bounds]:
    """Per layer. With a healthy upstream, `serve_stale` serves an expired entry to one query
    and refreshes it (immediate) or not at all (verify), so it adds nothing; under
    `serve_stale_policy prefer_positive` an expired success outlives a newer NXDOMAIN for the
    whole serve_stale duration, so that is added."""
    ttl = cluster.kubernetes_ttl if cluster.kubernetes_ttl is not None else KUBERNETES_TTL
    soa = min(ttl, SOA_TTL_MAX)
    c = cluster.cache
    stale = negative = 0
    if c is not None:
        stale = c.lifetime(ttl) + (c.serve_stale if c.prefer_positive else 0)
        negative = c.lifetime(soa, True)
    out = {"coredns": Bounds(stale, negative), "kube-dns": Bounds(stale, negative)}
    if nodelocal is not None and nodelocal.cache is not None:
        n = nodelocal.cache
        out["node-local"] = Bounds(
            _downstream(c, stale, ttl, n, False) + (n.serve_stale if n.prefer_positive else 0),
            _downstream(c, negative, soa, n, True))
    return out
