"""The client's side: what resolv.conf makes a lookup of a Service name cost. Pure code.

glibc and musl try a name with fewer dots than `ndots` against every search domain first, and
only then as written; each try is one query per address family, and a lost UDP packet on any of
them stalls the lookup for `timeout` seconds (5 by default) before the retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    ndots: int = 1
    timeout: int = 5
    attempts: int = 2


def parse(text: str) -> ResolvConf:
    nameservers: list[str] = []
    search: tuple[str, ...] = ()
    options: dict[str, int] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = tuple(w.rstrip(".").lower() for w in words[1:])
        elif words[0] == "options":
            for option in words[1:]:
                key, _, value = option.partition(":")
                if value.isdigit():
                    options[key] = int(value)
    return ResolvConf(tuple(nameservers), search, options.get("ndots", 1),
                      options.get("timeout", 5), options.get("attempts", 2))


def candidates(name: str, conf: ResolvConf) -> list[str]:
    """The absolute names a resolver tries for `name`, in order."""
    if name.endswith("."):
        return [name.lower()]
    as_is = name.lower() + "."
    searched = [f"{name.lower()}.{domain}." for domain in conf.search]
    return [as_is, *searched] if name.count(".") >= conf.ndots else [*searched, as_is]


@dataclass(frozen=True, slots=True)
class Cost:
    name: str
    """The name as an application would write it."""
    queries: int
    """Queries per address family until the one that answers."""
    wasted: list[str] = field(default_factory=list)
    """The names tried first that cannot answer."""


def lookup_costs(fqdn: str, conf: ResolvConf) -> list[Cost]:
    """The cost of each way of writing the Service's name, from `svc` to the FQDN with a dot."""
    labels = fqdn.rstrip(".").split(".")
    forms = [".".join(labels[:n]) for n in range(1, len(labels) + 1)] + [fqdn]
    costs = []
    for form in forms:
        tries = candidates(form, conf)
        if fqdn not in tries:
            continue
        index = tries.index(fqdn)
        costs.append(Cost(form, index + 1, tries[:index]))
    return costs
