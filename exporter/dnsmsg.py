"""DNS message code: query wire with a patched ID, and answers reduced to comparable sets.

Pure code on top of dnspython's message layer (its IO layer allows one pending query per socket,
which does not fit the probe engine).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from exporter.records import Question, ip_value, srv_value

EDNS_PAYLOAD = 1232
_TC = 0x0200


class Malformed(ValueError):
    """An answer that cannot be parsed, or that does not answer the question asked."""


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: str
    values: frozenset[str]
    ttl: int | None
    """Lowest TTL of the answer RRset, or the negative TTL of an empty answer."""


class QueryWire:
    """Query wire per question, built once; each send only patches the 16-bit ID."""

    def __init__(self) -> None:
        self._cache: dict[Question, bytes] = {}

    def build(self, question: Question, qid: int) -> bytes:
        wire = self._cache.get(question)
        if wire is None:
            query = dns.message.make_query(
                question.name, question.rtype, use_edns=0, payload=EDNS_PAYLOAD
            )
            wire = self._cache[question] = query.to_wire()
        return struct.pack("!H", qid) + wire[2:]


def header_id(wire: bytes) -> int | None:
    return struct.unpack("!H", wire[:2])[0] if len(wire) >= 2 else None


def truncated(wire: bytes) -> bool:
    return len(wire) >= 4 and bool(struct.unpack("!H", wire[2:4])[0] & _TC)


def parse(wire: bytes) -> dns.message.Message:
    try:
        return dns.message.from_wire(wire, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError, IndexError, struct.error) as exc:
        raise Malformed(f"{type(exc).__name__}: {exc}") from None


def question_of(message: dns.message.Message) -> Question | None:
    if len(message.question) != 1:
        return None
    rrset = message.question[0]
    return Question(rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype))


def reduce_answer(message: dns.message.Message, question: Question) -> Answer:
    """The record values that answer `question`, compared as a set (loadbalance shuffles)."""
    rcode = dns.rcode.to_text(message.rcode())
    name = dns.name.from_text(question.name)
    rdtype = dns.rdatatype.from_text(question.rtype)
    values: set[str] = set()
    ttl: int | None = None
    try:
        for rrset in message.answer:
            if rrset.rdtype != rdtype or rrset.name != name:
                continue
            ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
            for rdata in rrset:
                if rdtype == dns.rdatatype.SRV:
                    values.add(srv_value(rdata.port, rdata.target.to_text()))
                else:
                    values.add(ip_value(rdata.address))
    except ValueError as exc:
        raise Malformed(f"bad record data: {exc}") from None
    if ttl is None:
        for rrset in message.authority:
            if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                ttl = min(rrset.ttl, rrset[0].minimum)
    return Answer(rcode, frozenset(values), ttl)
