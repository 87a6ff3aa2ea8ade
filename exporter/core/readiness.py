"""What `wait` waits for: every expected name of a Service served, on every layer, as the truth
has it. Pure code over the comparator's state: `pending` says what is still missing, and an
empty list means done.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exporter.core.comparator import Comparator
from exporter.core.records import Question, ServerRef, Target, service_domain

ADDRESS_TYPES = ("A", "AAAA")


@dataclass(frozen=True, slots=True)
class Want:
    replicas: int = 0
    """Ready addresses the Service must have; 0: at least one."""
    names: tuple[str, ...] = ()
    """Hostnames whose own records must exist, e.g. a StatefulSet's pod names."""


def _addresses(comparator: Comparator, name: str) -> frozenset[str]:
    found: frozenset[str] = frozenset()
    for rtype in ADDRESS_TYPES:
        found |= comparator.expected(Question(name, rtype)) or frozenset()
    return found


def pending(comparator: Comparator, target: Target, zone: str, want: Want,
            servers: Sequence[ServerRef]) -> list[str]:
    """One line per thing still missing: first what the truth lacks, then each name a server
    does not serve as the truth has it. Empty when `wait` may return."""
    questions = [q for q in comparator.questions(target) if comparator.expected(q) is not None]
    if not questions:
        return [f"{target}: no headless Service with that name is monitored yet (it does not "
                "exist, is not headless, or is not in the namespaces watched)"]
    domain = service_domain(target, zone)
    out = []
    ready = len(_addresses(comparator, domain))
    if ready < max(want.replicas, 1):
        out.append(f"{target}: {ready} ready address{'es' if ready != 1 else ''} in the "
                   f"truth, waiting for {max(want.replicas, 1)}")
    for host in want.names:
        if not _addresses(comparator, f"{host}.{domain}"):
            out.append(f"{target}: no ready endpoint with hostname {host} in the truth")
    if not servers:
        out.append("no DNS server to probe: no layer of `layers` was found")
    for server in servers:
        out += _unserved(comparator, questions, server)
    return out


def _unserved(comparator: Comparator, questions: Iterable[Question],
              server: ServerRef) -> list[str]:
    out = []
    for question in sorted(questions):
        expected = comparator.expected(question) or frozenset()
        served = comparator.served(question, server)
        if served is None:
            out.append(f"{server.layer} {server.address}: {question} not asked yet")
        elif not comparator.settled(question, server):
            missing = sorted(expected - served)
            extra = sorted(served - expected)
            what = "; ".join(filter(None, [
                f"lacks {', '.join(missing)}" if missing else "",
                f"still serves {', '.join(extra)}" if extra else "",
                "not asked since the last change" if not missing and not extra else ""]))
            out.append(f"{server.layer} {server.address}: {question} {what}")
    return out
