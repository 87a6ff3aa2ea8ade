"""What clients see: client-cache profiles, and the worst case a client of each can see.

A layer's window ends when the layer stops serving the old state. A client that caches on its
own sees more: it may have asked at the last moment the layer served the old answer, and it
keeps that answer for as long as its runtime holds one, whatever the layer does meanwhile.
From a closed window this module computes that worst case (docs/metrics.md, "Client profiles",
gives each profile's formula and source):

    client = max(window, max(last_old, 0) + hold(ttl_old) [+ stale, if a probe failed])

`last_old` is when the layer last served the old state (from the window's reference; a probe
before the change counts as the change itself, since the layer served the old state until
then as far as anyone knows), `ttl_old` the TTL it served it with, and `hold` the profile's
rule for a positive answer or, when the old state was no record at all, for a failure. A
client that asked between that answer and the window's end can hold it later still, by at
most the window's resolution.

Pure code: no clock, no IO.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.core.comparator import Window

FOREVER = math.inf


@dataclass(frozen=True, slots=True)
class Hold:
    """How long a client keeps one answer: a fixed time, or the answer's TTL between a floor
    and a cap."""

    fixed: float | None = None
    floor: float = 0.0
    cap: float = FOREVER

    def seconds(self, ttl: int | None) -> float:
        if self.fixed is not None:
            return self.fixed
        return min(self.cap, max(self.floor, float(ttl or 0)))

    def describe(self) -> str:
        if self.fixed is not None:
            return "forever" if self.fixed == FOREVER else f"{self.fixed:g} s"
        bounds = []
        if self.floor:
            bounds.append(f"at least {self.floor:g} s")
        if self.cap != FOREVER:
            bounds.append(f"at most {self.cap:g} s")
        return "the TTL" + (f" ({', '.join(bounds)})" if bounds else "")


@dataclass(frozen=True, slots=True)
class ClientProfile:
    name: str
    positive: Hold
    """A successful answer."""
    negative: Hold
    """No record: NXDOMAIN or NODATA."""
    stale: float = 0.0
    """Seconds an expired answer is still used when the refresh fails."""

    def seconds(self, window: Window) -> float:
        """The worst case a client of this profile sees for `window`; FOREVER when it never
        lets the old answer go."""
        hold = (self.negative if window.old_empty else self.positive).seconds(window.old_ttl)
        if hold == 0:
            return window.seconds
        extra = self.stale if window.blind else 0.0
        # The layer served the old state up to the change as far as anyone knows, even when the
        # last probe that saw it came earlier: a client may have asked at the change itself.
        return max(window.seconds, max(window.last_old, 0.0) + hold + extra)

    def describe(self) -> str:
        text = f"answers {self.positive.describe()}, failures {self.negative.describe()}"
        return text + (f", {self.stale:g} s stale on a failed refresh" if self.stale else "")


BUILTIN: dict[str, ClientProfile] = {p.name: p for p in (
    # sun.net.InetAddressCachePolicy: networkaddress.cache.ttl unset and no security manager
    # means 30 s; java.security sets networkaddress.cache.negative.ttl=10. TTLs are ignored.
    ClientProfile("jvm", Hold(30.0), Hold(10.0)),
    # The same with a security manager installed: successful lookups are cached for ever.
    ClientProfile("jvm-security-manager", Hold(FOREVER), Hold(10.0)),
    # gRPC's DNS resolver ignores TTLs and re-resolves when a connection fails, at most once
    # per 30 s (Go: MinResolutionInterval; C core: dns_min_time_between_resolutions_ms).
    ClientProfile("grpc", Hold(30.0), Hold(30.0)),
    # glibc's getaddrinfo without nscd asks the resolver every time (so do Go and musl).
    ClientProfile("glibc", Hold(0.0), Hold(0.0)),
    # nscd's hosts cache keeps the DNS TTL up to positive-time-to-live (3600 in the shipped
    # nscd.conf) and failures for negative-time-to-live (20).
    ClientProfile("nscd", Hold(cap=3600.0), Hold(20.0)),
    # systemd-resolved keeps answers for their TTL, and failures for the SOA minimum, both at
    # most 2 h (CACHE_TTL_MAX_USEC); StaleRetentionSec= is 0 by default.
    ClientProfile("systemd-resolved", Hold(cap=7200.0), Hold(cap=7200.0)),
)}

def seen(profiles: Iterable[ClientProfile], window: Window) -> dict[str, float | None]:
    """The window as each profile sees it, in seconds to the millisecond; None for a client
    that never lets go."""
    return {p.name: None if (s := p.seconds(window)) == FOREVER else round(s, 3)
            for p in profiles}


_HOLD = re.compile(r"^(?:(?P<fixed>[0-9]+(?:\.[0-9]+)?)|(?P<forever>forever)|"
                   r"ttl(?:\((?P<floor>[0-9.]*)\.\.(?P<cap>[0-9.]*)\))?)$")
SYNTAX = ("NAME=positive:HOLD;negative:HOLD[;stale:SECONDS], HOLD being SECONDS, forever, "
          "ttl or ttl(FLOOR..CAP)")


def _hold(text: str) -> Hold:
    match = _HOLD.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a hold: SECONDS, forever, ttl or ttl(FLOOR..CAP)")
    if match["fixed"] is not None:
        return Hold(float(match["fixed"]))
    if match["forever"]:
        return Hold(FOREVER)
    try:
        floor = float(match["floor"]) if match["floor"] else 0.0
        cap = float(match["cap"]) if match["cap"] else FOREVER
    except ValueError:
        raise ValueError(f"{text!r}: FLOOR and CAP are seconds") from None
    if floor > cap:
        raise ValueError(f"{text!r}: the floor is above the cap")
    return Hold(None, floor, cap)


def parse(spec: str) -> ClientProfile:
    """A built-in profile by name, or a custom one: `edge=positive:ttl(5..60);negative:10`.
    Raises ValueError with a message that names the part at fault."""
    name, sep, body = spec.strip().partition("=")
    name = name.strip()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
        raise ValueError(f"{name!r} is not a profile name (lower-case letters, digits, - and _)")
    if not sep:
        if name not in BUILTIN:
            raise ValueError(f"{name!r} is no built-in profile ({', '.join(BUILTIN)}); a custom "
                             f"one is {SYNTAX}")
        return BUILTIN[name]
    parts: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in body.split(";"))):
        key, colon, value = item.partition(":")
        if not colon or key not in ("positive", "negative", "stale"):
            raise ValueError(f"{name}: {item!r} is not positive:, negative: or stale:")
        if key in parts:
            raise ValueError(f"{name}: {key} given twice")
        parts[key] = value.strip()
    if "positive" not in parts or "negative" not in parts:
        raise ValueError(f"{name}: give both positive: and negative: ({SYNTAX})")
    stale = parts.get("stale", "0")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", stale):
        raise ValueError(f"{name}: stale:{stale} is not seconds")
    try:
        positive, negative = _hold(parts["positive"]), _hold(parts["negative"])
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return ClientProfile(name, positive, negative, float(stale))


def parse_all(specs: tuple[str, ...]) -> tuple[ClientProfile, ...]:
    profiles = tuple(parse(s) for s in specs)
    names = [p.name for p in profiles]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"profile {', '.join(twice)} given twice")
    return profiles
