"""The reference reduction of a DNS answer, done with dnspython's full parser.

The property tests check exporter.core.dnsmsg's wire reader against it, and bench/probe_engine.py
uses it for the dnspython peer, so both sides of that comparison do the same work."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from exporter.core.dnsmsg import Answer
from exporter.core.records import Question, ip_value, srv_value


def reference_reduce(message: dns.message.Message, question: Question) -> Answer:
    name = dns.name.from_text(question.name)
    rdtype = dns.rdatatype.from_text(question.rtype)
    values: set[str] = set()
    ttl = None
    for rrset in message.answer:
        if rrset.rdtype == rdtype and rrset.name == name:
            ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
            for rdata in rrset:
                if question.rtype == "SOA":
                    values.add(rdata.mname.to_text().lower())
                elif question.rtype == "SRV":
                    values.add(srv_value(rdata.port, rdata.target.to_text()))
                else:
                    values.add(ip_value(rdata.address))
    if ttl is None:
        for rrset in message.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                ttl = min(rrset.ttl, rrset[0].minimum)
    return Answer(dns.rcode.to_text(message.rcode()), frozenset(values), ttl)
