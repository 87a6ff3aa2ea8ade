"""The wire reader against dnspython as the oracle, and against hostile bytes."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.dnsmsg import Malformed, QueryWire, read_header, reduce
from exporter.core.records import Question
from tests.dnsref import reference_reduce

LABEL = st.text("abcdefghijklmnopqrstuvwxyzABC0123456789-", min_size=1, max_size=12)
NAMES = st.lists(LABEL, min_size=1, max_size=5).map(lambda ls: ".".join(ls) + ".")
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(str)
# dnspython's make_response draws a throwaway random ID before it copies the query's.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning")


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, Question]:
    qname = draw(NAMES)
    rtype = draw(st.sampled_from(["A", "AAAA", "SRV", "SOA"]))
    query = dns.message.make_query(qname, rtype, use_edns=0, payload=1232,
                                   id=draw(st.integers(0, 65535)))
    response = dns.message.make_response(query)
    response.set_rcode(draw(st.sampled_from([dns.rcode.NOERROR, dns.rcode.NXDOMAIN,
                                             dns.rcode.SERVFAIL])))
    soa_owners = set()
    for _ in range(draw(st.integers(0, 3))):
        owner = qname if draw(st.booleans()) else draw(NAMES)
        kind = draw(st.sampled_from(["A", "AAAA", "SRV", "SOA"]))
        if kind == "SOA" and owner.lower() in soa_owners:
            continue  # SOA is a singleton type: dnspython keeps one record per owner
        if kind == "SOA":
            soa_owners.add(owner.lower())
            texts = [f"ns.{draw(NAMES)} host.{qname} 1 7200 1800 86400 60"]
        elif kind == "A":
            texts = draw(st.lists(IPV4, min_size=1, max_size=8))
        elif kind == "AAAA":
            texts = draw(st.lists(IPV6, min_size=1, max_size=4))
        else:
            texts = [f"0 {draw(st.integers(0, 100))} {draw(st.integers(1, 65535))} "
                     f"{draw(NAMES)}" for _ in range(draw(st.integers(1, 4)))]
        rdatas = [dns.rdata.from_text(dns.rdataclass.IN, kind, t) for t in texts]
        response.answer.append(
            dns.rrset.from_rdata_list(owner, draw(st.integers(0, 86400)), rdatas))
    if draw(st.booleans()):
        soa = f"ns.{qname} host.{qname} 1 7200 1800 86400 {draw(st.integers(0, 3600))}"
        response.authority.append(dns.rrset.from_text(qname, draw(st.integers(0, 3600)),
                                                      "IN", "SOA", soa))
    return response.to_wire(), Question(qname.lower(), rtype)


@settings(max_examples=500, deadline=None)
@given(responses())
def test_reader_agrees_with_dnspython(case: tuple[bytes, Question]) -> None:
    wire, question = case
    header = read_header(wire)
    assert header.question == question
    assert reduce(wire, header, question) == reference_reduce(dns.message.from_wire(wire),
                                                            question)


@settings(max_examples=1000, deadline=None)
@given(responses(), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)),
                             max_size=4), st.integers(0, 2000))
def test_hostile_bytes_raise_only_malformed(case: tuple[bytes, Question],
                                            flips: list[tuple[int, int]], cut: int) -> None:
    wire, question = case
    data = bytearray(wire)
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    data = data[: max(0, len(data) - cut % (len(data) + 1))]
    try:
        header = read_header(bytes(data))
        if header.question is not None:
            reduce(bytes(data), header, header.question)
    except Malformed:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_malformed(data: bytes) -> None:
    try:
        header = read_header(data)
        if header.question is not None:
            reduce(data, header, header.question)
    except Malformed:
        pass


def as_response(wire: bytes) -> bytes:
    """The query wire with QR set, as a server's echo of the header would have it."""
    return wire[:2] + bytes([wire[2] | 0x80]) + wire[3:]


def test_compression_loop_is_malformed() -> None:
    wire = as_response(QueryWire().build(Question("a.example.", "A"), 1))
    looped = wire[:12] + b"\xc0\x0c" + wire[-4:]
    with pytest.raises(Malformed, match="backwards"):
        read_header(looped)


def test_a_query_sent_back_is_not_an_empty_answer() -> None:
    """A reflected query matches its ID and question and carries no record: read as an answer,
    it would be the layer serving nothing, a missing window made by garbage."""
    with pytest.raises(Malformed, match="not a response"):
        read_header(QueryWire().build(Question("a.example.", "A"), 1))


def test_query_wire_patches_only_the_id() -> None:
    wire = QueryWire()
    question = Question("web.ns.svc.cluster.local.", "SRV")
    one, two = wire.build(question, 1), wire.build(question, 0xBEEF)
    assert one[2:] == two[2:] and two[:2] == b"\xbe\xef"
    message = dns.message.from_wire(two)
    assert message.id == 0xBEEF and message.payload == 1232
    assert read_header(as_response(two)).question == question
