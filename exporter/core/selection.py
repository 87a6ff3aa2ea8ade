"""Which headless Services the agent monitors: namespaces, labels, an opt-out annotation."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from exporter.core.objects import ServiceState
from exporter.core.records import Target

_TERM = re.compile(
    r"^\s*(?:(?P<neg>!)\s*(?P<absent>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[\w.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)

Matcher = Callable[[Mapping[str, str]], bool]


class SelectorError(ValueError):
    """A label selector that does not parse; the message quotes the bad term."""


def _split_terms(selector: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for i, char in enumerate(selector):
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return [t for t in terms if t.strip()]


def _term(text: str) -> Matcher:
    match = _TERM.match(text)
    if match is None:
        raise SelectorError(f"cannot parse label selector term {text.strip()!r}")
    if match["absent"]:
        key = match["absent"]
        return lambda labels: key not in labels
    key = match["key"]
    if match["op"]:
        value, equal = match["value"], match["op"] != "!="
        return lambda labels: (labels.get(key) == value) == equal
    if match["setop"]:
        values = {v.strip() for v in match["values"].split(",") if v.strip()}
        if match["setop"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    return lambda labels: key in labels


def parse_label_selector(selector: str) -> Matcher:
    """Kubernetes label selector syntax: `a=b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`."""
    matchers = [_term(t) for t in _split_terms(selector)]
    return lambda labels: all(m(labels) for m in matchers)


@dataclass(frozen=True, slots=True)
class Selection:
    namespaces: frozenset[str] = frozenset()
    """Namespaces to monitor; empty means all."""
    label_selector: str = ""
    opt_out_annotation: str = "dns-staleness-exporter.io/ignore"
    services: frozenset[Target] = frozenset()
    """Services to monitor by name; empty means every one that the rest selects."""

    def matcher(self) -> Callable[[ServiceState], bool]:
        labels_match = parse_label_selector(self.label_selector)
        namespaces, annotation, services = self.namespaces, self.opt_out_annotation, \
            self.services

        def selected(service: ServiceState) -> bool:
            if namespaces and service.target.namespace not in namespaces:
                return False
            if services and service.target not in services:
                return False
            if dict(service.annotations).get(annotation, "").lower() in ("true", "1", "yes"):
                return False
            return labels_match(dict(service.labels))

        return selected



@dataclass(frozen=True)
class PluginScope:
    """What CoreDNS's kubernetes plugin exposes, by its options `namespaces`, `labels`,
    `namespace_labels` and `noendpoints`. A Service outside it answers NXDOMAIN on every name
    (plugin/kubernetes `findServices`): it is out of scope, not missing."""

    namespaces: frozenset[str] = frozenset()
    """`namespaces`: the exposed namespaces; empty means all."""
    labels: str = ""
    """`labels`: the selector on Services and EndpointSlices that CoreDNS watches."""
    namespace_labels: str = ""
    """`namespace_labels`: the selector on Namespaces; the agent then watches them."""
    noendpoints: bool = False
    """`noendpoints`: CoreDNS keeps no endpoints, so every headless name is NXDOMAIN."""
    labels_matcher: Matcher | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        matcher = parse_label_selector(self.labels) if self.labels else None
        object.__setattr__(self, "labels_matcher", matcher)

    def excluded(self, service: ServiceState, exposed: AbstractSet[str] | None) -> str | None:
        """The option that puts the Service out of scope, named as a misconfiguration reason;
        `exposed` is the namespaces that match `namespace_labels` (None without it)."""
        namespace = service.target.namespace
        if self.namespaces and namespace not in self.namespaces:
            return "outside_namespaces"
        if exposed is not None and namespace not in exposed:
            return "outside_namespace_labels"
        if self.labels_matcher is not None and not self.labels_matcher(dict(service.labels)):
            return "outside_labels"
        return "noendpoints" if self.noendpoints else None
