"""DNS message code: query wire with a patched ID, and answers reduced to comparable sets.

Queries are built once with dnspython's message layer (its IO layer allows one pending query per
socket, which does not fit the probe engine). Answers are read by a small bounds-checked wire
reader that extracts only what the comparator needs: bench/probe_engine.py measured dnspython's
full `from_wire` at 75 to 90 % of a probe's CPU, and large StatefulSets make it the hot path.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

import dns.message
import dns.rdatatype

from exporter.core.records import Question, srv_value

EDNS_PAYLOAD = 1232
_TC = 0x0200
_QR = 0x8000


class Malformed(ValueError):
    """An answer that cannot be parsed, or that does not answer the question asked."""


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: str
    values: frozenset[str]
    ttl: int | None
    """Lowest TTL of the answer RRset, or the negative TTL of an empty answer."""
    complete: bool = True
    """False for a TCP answer with TC set: CoreDNS cut it at 64 KB (a large Service's SRV
    records, whose targets are never compressed), so a value it lacks may still be served."""


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


_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
           5: "REFUSED"}
_SOA = 6
_TYPES = {"A": 1, "AAAA": 28, "SRV": 33, "SOA": _SOA}
_TO_QUESTION = b"\xc0\x0c"
"""A compression pointer to offset 12, where the question's name starts."""
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_*")


def _name(wire: bytes, offset: int) -> tuple[str, int]:
    """A domain name at `offset`, lower-cased text with a trailing dot, following compression
    pointers (backwards only, so loops are impossible); returns the name and the offset after
    it in the original position."""
    labels: list[str] = []
    end = -1
    total = 0
    limit = offset
    while True:
        if offset >= len(wire):
            raise Malformed("name runs past the end of the message")
        length = wire[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(wire):
                raise Malformed("truncated compression pointer")
            pointer = ((length & 0x3F) << 8) | wire[offset + 1]
            if pointer >= limit:
                raise Malformed("compression pointer does not point backwards")
            if end < 0:
                end = offset + 2
            offset = limit = pointer
            continue
        if length & 0xC0:
            raise Malformed("unknown label type")
        offset += 1
        if length == 0:
            break
        label = wire[offset:offset + length].lower()
        if len(label) != length:
            raise Malformed("label runs past the end of the message")
        total += length + 1
        if total > 255:
            raise Malformed("name longer than 255 octets")
        if _PLAIN.issuperset(label):
            labels.append(label.decode())
        else:
            labels.append("".join(chr(b) if b in _PLAIN else f"\\{b:03d}" for b in label))
        offset += length
    return ".".join(labels) + ".", end if end >= 0 else offset


@dataclass(frozen=True, slots=True)
class Header:
    id: int
    truncated: bool
    rcode: str
    question: Question | None
    answers: int
    authority: int
    body: int
    """Offset of the first answer record."""


def read_header(wire: bytes) -> Header:
    """The header and the question: enough to match an answer to its query."""
    if len(wire) < 12:
        raise Malformed("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, _ = struct.unpack_from("!6H", wire)
    if not flags & _QR:
        # A query sent back (a reflector, a confused middlebox) would read as an empty answer.
        raise Malformed("not a response: the QR bit is 0")
    offset, question = 12, None
    for index in range(qdcount):
        name, offset = _name(wire, offset)
        if offset + 4 > len(wire):
            raise Malformed("question runs past the end of the message")
        qtype = struct.unpack_from("!H", wire, offset)[0]
        offset += 4
        if index == 0 and qdcount == 1:
            question = Question(name, dns.rdatatype.to_text(qtype))
    rcode = _RCODES.get(flags & 0xF, f"RCODE{flags & 0xF}")
    return Header(qid, bool(flags & _TC), rcode, question, ancount, nscount, offset)


def reduce(wire: bytes, header: Header, question: Question) -> Answer:
    """The record values that answer `question`, as a set (loadbalance shuffles them), and
    their lowest TTL; for an empty answer, the negative TTL from the SOA."""
    wanted = _TYPES.get(question.rtype)
    values: set[str] = set()
    ttl: int | None = None
    negative: int | None = None
    offset = header.body
    for index in range(header.answers + header.authority):
        if wire[offset:offset + 2] == _TO_QUESTION and header.question is not None:
            # Nearly every owner name is a pointer to the question: skip decoding it.
            name, offset = header.question.name, offset + 2
        else:
            name, offset = _name(wire, offset)
        if offset + 10 > len(wire):
            raise Malformed("record header runs past the end of the message")
        rtype, _, rr_ttl, length = struct.unpack_from("!HHIH", wire, offset)
        start = offset + 10
        offset = start + length
        if offset > len(wire):
            raise Malformed("record data runs past the end of the message")
        if index >= header.answers:
            if rtype == _SOA:
                _, after = _name(wire, start)
                _, after = _name(wire, after)
                if after + 20 != offset:
                    raise Malformed("SOA record of the wrong length")
                minimum = struct.unpack_from("!I", wire, after + 16)[0]
                negative = min(rr_ttl, minimum)
            continue
        if rtype != wanted or name != question.name:
            continue
        ttl = rr_ttl if ttl is None else min(ttl, rr_ttl)
        if rtype == 1 and length == 4:
            values.add("%d.%d.%d.%d" % tuple(wire[start:offset]))  # noqa: UP031
        elif rtype == 28 and length == 16:
            values.add(str(ipaddress.IPv6Address(wire[start:offset])))
        elif rtype == 33 and length > 6:
            port = struct.unpack_from("!H", wire, start + 4)[0]
            target, after = _name(wire, start + 6)
            if after != offset:
                raise Malformed("SRV target does not fill the record")
            values.add(srv_value(port, target))
        elif rtype == _SOA:
            primary, _ = _name(wire, start)
            values.add(primary)  # the zone's primary name server: enough to say it is served
        else:
            raise Malformed(f"{question.rtype} record with {length} bytes of data")
    return Answer(header.rcode, frozenset(values), ttl if ttl is not None else negative)
