"""ListDecoder, the list body read in pieces, against json.loads and parse_list as the oracle."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.objects import ListDecoder, ObjectError, parse_list

SCALARS = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(max_size=12)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)
ITEMS = st.lists(st.dictionaries(st.text(max_size=8), VALUES, max_size=5), max_size=8)


def decode(body: bytes, cuts: list[int]) -> tuple[list[Any], str]:
    decoder, items, start = ListDecoder(), [], 0
    for cut in sorted(set(cuts)):
        items += decoder.feed(body[start:cut])
        start = cut
    items += decoder.feed(body[start:], final=True)
    return items, decoder.resource_version


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    envelope: dict[str, Any] = {
        "kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"resourceVersion": str(draw(st.integers(0, 10**9)))},
        "items": draw(ITEMS)}
    keys = draw(st.permutations(list(envelope)))
    extra = draw(st.dictionaries(st.text(max_size=6).filter(lambda k: k not in envelope),
                                 VALUES, max_size=2))
    ordered = {k: envelope[k] for k in keys} | extra
    indent = draw(st.sampled_from([None, 1]))
    body = json.dumps(ordered, indent=indent, ensure_ascii=draw(st.booleans())).encode()
    cuts = draw(st.lists(st.integers(0, len(body)), max_size=12))
    return body, cuts


@given(bodies())
@settings(max_examples=300, deadline=None)
def test_any_chunking_gives_the_items_and_version_of_a_whole_parse(
        case: tuple[bytes, list[int]]) -> None:
    body, cuts = case
    whole = parse_list(json.loads(body))
    assert decode(body, cuts) == (list(whole.items), whole.resource_version)


@given(bodies(), st.data())
@settings(max_examples=200, deadline=None)
def test_a_body_cut_short_is_an_object_error_never_a_short_list(
        case: tuple[bytes, list[int]], data: st.DataObject) -> None:
    body, cuts = case
    end = data.draw(st.integers(0, len(body.rstrip()) - 1))
    with pytest.raises(ObjectError):
        decode(body[:end], [c for c in cuts if c <= end])


@pytest.mark.parametrize(("body", "reason"), [
    (b"[]", "must be a JSON object"),
    (b'{"items": {"a": 1}, "metadata": {}}', "items must be a list"),
    (b'{"items": [], "metadata": []}', "metadata must be an object"),
    (b'{"items": [1,, 2]}', "not JSON"),
    (b'{"items": []} {}', "text after its closing brace"),
    (b'{"items": [], "metadata": {"resourceVersion": "\xff"}}', "not UTF-8"),
    (b'{1: []}', "a key must be a string"),
    (b'{"items": [{} {}]}', "a comma or bracket must follow an item"),
    (b'{"kind": "List" "items": []}', "a comma or brace must follow a value"),
    (b'{"items": [], }', "not JSON"),
])
def test_a_broken_body_is_one_line_naming_what_is_wrong(body: bytes, reason: str) -> None:
    with pytest.raises(ObjectError, match=reason):
        decode(body, [len(body) // 2])


def test_a_huge_item_in_small_chunks_is_parsed_a_few_times_not_once_per_chunk() -> None:
    """5,000 endpoints in one slice, 1 KiB at a time: the retries double, so the work stays
    linear in the item's size."""
    item = {"endpoints": [{"addresses": [f"10.0.{i // 250}.{i % 250}"]} for i in range(5000)]}
    body = json.dumps({"metadata": {"resourceVersion": "7"}, "items": [item]}).encode()
    decoder, attempts = ListDecoder(), 0
    items: list[Any] = []
    for start in range(0, len(body), 1024):
        before = decoder._retry_at
        items += decoder.feed(body[start:start + 1024])
        attempts += decoder._retry_at != before
    items += decoder.feed(b"", final=True)
    assert items == [item] and decoder.resource_version == "7"
    assert attempts <= 12, f"{attempts} parses of a {len(body) // 1024} KiB item"


@pytest.mark.parametrize("number", [b"1.3510798882109918e+16", b"-0.5E-3", b"12.0"])
def test_a_number_cut_at_its_point_or_exponent_waits_for_the_rest(number: bytes) -> None:
    """Found by CI: "1.35e" parses as 1.35 followed by a stray "e"."""
    body = b'{"items": [' + number + b'], "x": ' + number + b', "metadata": {}}'
    whole = json.loads(body)["items"], ""
    for cut in range(len(body)):
        assert decode(body, [cut]) == whole, f"cut at {cut}"
