"""The truth model against CoreDNS's kubernetes plugin rules, and odd API objects."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.core.objects import ObjectError, parse_service, parse_slice
from exporter.core.records import Question, Target
from exporter.core.selection import PluginScope, Selection, SelectorError, parse_label_selector
from exporter.core.truth import Truth, expected_answers

D = "web.ns.svc.cluster.local."


def service(name: str = "web", **spec: Any) -> dict[str, Any]:
    body = {"clusterIP": "None", "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    body.update(spec)
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"}, "spec": body}


def endpoint(ip: str | list[str], hostname: str | None = None,
             ready: bool | None = True) -> dict[str, Any]:
    body: dict[str, Any] = {"addresses": ip if isinstance(ip, list) else [ip]}
    if ready is not None:
        body["conditions"] = {"ready": ready}
    if hostname:
        body["hostname"] = hostname
    return body


def slice_(name: str, *endpoints: dict[str, Any], family: str = "IPv4",
           ports: list[dict[str, Any]] | None = None, trigger: str | None = None,
           svc: str = "web") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": "7",
                            "labels": {"kubernetes.io/service-name": svc,
                                       "service.kubernetes.io/headless": ""}}
    if trigger:
        meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": trigger}
    return {"metadata": meta, "addressType": family, "endpoints": list(endpoints),
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}] if ports is None else ports}


def answers(svc: dict[str, Any], *slices: dict[str, Any]) -> dict[Question, frozenset[str]]:
    return expected_answers(parse_service(svc), [parse_slice(s) for s in slices],
                            "cluster.local")


def test_ready_nil_counts_not_ready_false_is_dropped() -> None:
    got = answers(service(), slice_("a", endpoint("10.0.0.1"), endpoint("10.0.0.2", ready=None),
                                    endpoint("10.0.0.3", ready=False)))
    assert got[Question(D, "A")] == {"10.0.0.1", "10.0.0.2"}


def test_duplicates_across_slices_and_dual_stack() -> None:
    got = answers(service(ipFamilies=["IPv4", "IPv6"]),
                  slice_("a", endpoint("10.0.0.1", "web-0")),
                  slice_("b", endpoint("10.0.0.1", "web-0")),
                  slice_("c", endpoint("fd00::0001", "web-0"), family="IPv6"))
    assert got[Question(D, "A")] == {"10.0.0.1"}
    assert got[Question(D, "AAAA")] == {"fd00::1"}
    assert got[Question(f"web-0.{D}", "AAAA")] == {"fd00::1"}
    assert got[Question(f"_http._tcp.{D}", "SRV")] == {f"80 web-0.{D}"}


def test_srv_targets_hostname_or_dashed_ip_and_every_port_at_the_bare_name() -> None:
    # As the real CoreDNS serves them (tests/integration/test_fidelity.py).
    ports = [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 9000, "protocol": "UDP"}]
    got = answers(service(), slice_("a", endpoint("10.0.0.1", "web-0"), endpoint("10.0.0.2"),
                                    ports=ports))
    assert got[Question(f"_http._tcp.{D}", "SRV")] == {f"80 web-0.{D}", f"80 10-0-0-2.{D}"}
    assert got[Question(D, "SRV")] == {f"80 web-0.{D}", f"9000 web-0.{D}",
                                       f"80 10-0-0-2.{D}", f"9000 10-0-0-2.{D}"}
    assert got[Question(f"web-0.{D}", "SRV")] == {f"80 web-0.{D}", f"9000 web-0.{D}"}
    assert got[Question(f"10-0-0-2.{D}", "A")] == {"10.0.0.2"}
    assert Question(f"10-0-0-1.{D}", "A") not in got  # a named endpoint has no dashed name


def test_empty_service_expects_nxdomain_for_its_names() -> None:
    got = answers(service())
    assert got == {Question(D, "A"): frozenset(), Question(D, "SRV"): frozenset(),
                   Question(f"_http._tcp.{D}", "SRV"): frozenset()}


def test_service_without_ports_has_no_srv() -> None:
    got = answers(service(ports=[]), slice_("a", endpoint("10.0.0.1"), ports=[]))
    assert {q.rtype for q in got if got[q]} == {"A"}
    assert all(not got[q] for q in got if q.rtype == "SRV")


def test_ipv6_labels_follow_the_written_text() -> None:
    got = answers(service(), slice_("a", endpoint("fd00:10:244::"), endpoint("fd00:0:0::5"),
                                    family="IPv6"))
    assert got[Question(D, "AAAA")] == {"fd00:10:244::", "fd00::5"}
    assert got[Question(f"fd00-10-244--0.{D}", "AAAA")] == {"fd00:10:244::"}
    assert got[Question(f"fd00-0-0--5.{D}", "AAAA")] == {"fd00::5"}
    one = parse_slice(slice_("a", endpoint("fd00:0:0::5"), endpoint("fd00::6"), family="IPv6"))
    assert [e.written for e in one.endpoints] == [("fd00:0:0::5",), ()]


def test_an_ipv4_mapped_address_is_served_as_an_a_record() -> None:
    got = answers(service(), slice_("a", endpoint("::ffff:10.0.0.7")))
    assert got[Question(D, "A")] == {"10.0.0.7"}
    assert Question(D, "AAAA") not in got


def test_endpoint_pod_names_name_endpoints_without_a_hostname() -> None:
    def pod(ip: str, name: str, hostname: str | None = None) -> dict[str, Any]:
        return {**endpoint(ip, hostname), "targetRef": {"kind": "Pod", "name": name}}

    raw = slice_("a", pod("10.0.0.1", "web-abc"), pod("10.0.0.2", "x" * 64),
                 pod("10.0.0.3", "web-def", "named"))
    with_names = expected_answers(parse_service(service()), [parse_slice(raw, pod_names=True)],
                                  "cluster.local")
    assert with_names[Question(f"web-abc.{D}", "A")] == {"10.0.0.1"}
    assert with_names[Question(f"10-0-0-2.{D}", "A")] == {"10.0.0.2"}  # name too long
    assert with_names[Question(f"named.{D}", "A")] == {"10.0.0.3"}  # the hostname wins
    without = answers(service(), raw)
    assert Question(f"web-abc.{D}", "A") not in without
    assert without[Question(f"10-0-0-1.{D}", "A")] == {"10.0.0.1"}


def test_fqdn_addresses_are_not_invalid() -> None:
    one = parse_slice(slice_("b", endpoint("db.example.com"), family="FQDN"))
    assert one.invalid_addresses == 0 and one.endpoints == ()


def test_an_fqdn_slice_adds_its_ip_text_as_coredns_does_and_no_name() -> None:
    """CoreDNS reads each address's text, never the addressType: an IP in an FQDN slice is an
    A record (tests/integration/test_odd_objects_api.py found it on the real binary)."""
    got = answers(service(), slice_("a", endpoint("10.0.0.1")),
                  slice_("b", endpoint("10.0.0.9"), family="FQDN"),
                  slice_("c", endpoint("db.example.com"), family="FQDN"))
    assert got[Question(D, "A")] == {"10.0.0.1", "10.0.0.9"}


def test_all_addresses_of_an_endpoint_are_served() -> None:
    got = answers(service(), slice_("a", endpoint(["10.0.0.1", "10.0.0.2"], "web-0")))
    assert got[Question(f"web-0.{D}", "A")] == {"10.0.0.1", "10.0.0.2"}


@pytest.mark.parametrize(("obj", "message"), [
    ([], "EndpointSlice must be an object"),
    ({"metadata": {}}, "without metadata.name"),
    ({"metadata": {"name": "x"}}, "without metadata.namespace"),
    ({"metadata": {"name": "x", "namespace": "ns"}}, "no kubernetes.io/service-name label"),
    ({"metadata": {"name": "x", "namespace": "ns",
                   "labels": {"kubernetes.io/service-name": "web"}}, "endpoints": {}},
     "endpoints must be a list"),
    ({"metadata": {"name": "x", "namespace": "ns",
                   "labels": {"kubernetes.io/service-name": "web"}}, "ports": 3},
     "ports must be a list"),
])
def test_odd_slices_give_one_line_errors(obj: Any, message: str) -> None:
    with pytest.raises(ObjectError, match=message) as info:
        parse_slice(obj)
    assert "\n" not in str(info.value)


def test_bad_addresses_are_counted_and_the_rest_kept() -> None:
    state = parse_slice(slice_("a", endpoint(["10.0.0.1", "not-an-ip"], "web-0")))
    assert state.invalid_addresses == 1
    assert state.endpoints[0].addresses == ("10.0.0.1",)


def test_trigger_time_is_read_and_stamped_only_when_it_changes() -> None:
    truth = Truth("cluster.local", lambda s: True, 10)
    truth.apply_service(parse_service(service()), now=1.0)
    first = slice_("a", endpoint("10.0.0.1"), trigger="2024-01-01T00:00:10Z")
    [update] = truth.apply_slice(parse_slice(first), now=100.0, wall_offset=1704067100.0)
    assert update.stamp.trigger == pytest.approx(110.0)
    [update] = truth.apply_slice(parse_slice(first), now=101.0, wall_offset=1704067100.0)
    assert update.stamp.trigger is None


def test_cap_drops_targets_counts_them_and_admits_them_later() -> None:
    truth = Truth("cluster.local", lambda s: True, max_targets=1)
    assert truth.apply_service(parse_service(service("a")), 0.0)
    assert truth.apply_service(parse_service(service("b")), 0.0) == []
    assert truth.apply_service(parse_service(service("b")), 0.0) == []
    assert truth.dropped_total == 1
    updates = truth.delete_service(Target("ns", "a"), 1.0)
    assert [(u.target.service, u.answers is None) for u in updates] == [("a", True),
                                                                         ("b", False)]


def test_non_headless_and_opted_out_services_are_not_targets() -> None:
    selected = Selection(opt_out_annotation="skip").matcher()
    truth = Truth("cluster.local", selected, 10)
    assert truth.apply_service(parse_service(service(clusterIP="10.96.0.1")), 0.0) == []
    opted = service("b")
    opted["metadata"]["annotations"] = {"skip": "true"}
    assert truth.apply_service(parse_service(opted), 0.0) == []
    assert truth.monitored == set()


def test_a_service_keeps_only_the_annotations_asked_for() -> None:
    """The agent keeps the opt-out alone: `kubectl apply` leaves a copy of the whole object in
    another annotation, and 10,000 Services would hold 10,000 copies."""
    raw = service("b")
    raw["metadata"]["annotations"] = {
        "skip": "yes", "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 900}
    selected = Selection(opt_out_annotation="skip").matcher()
    kept = parse_service(raw, annotations=("skip",))
    assert kept.annotations == {("skip", "yes")} and not selected(kept)
    assert len(parse_service(raw).annotations) == 2
    assert parse_service(service("c"), annotations=("skip",)).annotations == frozenset()


def test_misconfigurations_from_service_and_slices() -> None:
    truth = Truth("cluster.local", lambda s: True, 10)
    truth.apply_service(parse_service(service("a", ports=[{"port": 80}])), 0.0)
    truth.apply_service(parse_service(service("b", selector=None)), 0.0)
    truth.apply_service(parse_service(service("c")), 0.0)
    truth.apply_slice(parse_slice(slice_("c1", endpoint("10.0.0.1", "c-0"), endpoint("10.0.0.2"),
                                         svc="c")), 0.0, 0.0)
    assert truth.misconfigurations() == {
        Target("ns", "a"): {"no_named_ports"},
        Target("ns", "b"): {"selectorless_without_endpoints"},
        Target("ns", "c"): {"endpoint_without_hostname"},
    }


def test_relist_reports_only_targets_whose_answers_moved() -> None:
    truth = Truth("cluster.local", lambda s: True, 10)
    svc_a, svc_b = parse_service(service("a")), parse_service(service("b"))
    truth.apply_service(svc_a, 0.0)
    truth.apply_service(svc_b, 0.0)
    moved = parse_slice(slice_("b1", endpoint("10.0.0.1"), svc="b"))
    assert truth.replace_services([svc_a, svc_b], 5.0) == []
    updates = truth.replace_slices([moved], 5.0)
    assert [(u.target.service, u.gap) for u in updates] == [("b", True)]
    gone = truth.replace_services([svc_b], 6.0)
    assert [(u.target.service, u.answers, u.gap) for u in gone] == [("a", None, True)]


@pytest.mark.parametrize(("selector", "labels", "match"), [
    ("app=db", {"app": "db"}, True),
    ("app==db,tier!=cache", {"app": "db", "tier": "cache"}, False),
    ("app in (db, web)", {"app": "web"}, True),
    ("app notin (db)", {"app": "db"}, False),
    ("!legacy", {"legacy": "1"}, False),
    ("monitored", {"monitored": ""}, True),
    ("", {}, True),
])
def test_label_selectors(selector: str, labels: dict[str, str], match: bool) -> None:
    assert parse_label_selector(selector)(labels) is match


def test_bad_selector_names_the_term() -> None:
    with pytest.raises(SelectorError, match="'a=b=c'"):
        parse_label_selector("x=y,a=b=c")


def test_a_relist_of_one_namespace_keeps_the_others() -> None:
    truth = Truth("cluster.local", lambda s: True, 10)
    other = service("web")
    other["metadata"]["namespace"] = "other"
    truth.apply_service(parse_service(service("web")), 0.0)
    truth.apply_service(parse_service(other), 0.0)
    assert truth.replace_services([parse_service(service("web"))], 1.0, "ns") == []
    assert truth.monitored == {Target("ns", "web"), Target("other", "web")}
    gone = truth.replace_services([], 2.0, "other")
    assert [(u.target, u.answers) for u in gone] == [(Target("other", "web"), None)]


def unlabelled(one: dict[str, Any], managed_by: str | None = None) -> dict[str, Any]:
    """The slice without the headless label, managed by `managed_by`: by default the
    mirroring controller, "" for no managed-by label (a slice made by hand)."""
    labels = one["metadata"]["labels"]
    del labels["service.kubernetes.io/headless"]
    if managed_by != "":
        labels["endpointslice.kubernetes.io/managed-by"] = \
            managed_by or "endpointslicemirroring-controller.k8s.io"
    return one


def test_a_slice_is_unlabelled_when_it_lacks_the_headless_label_and_is_not_the_controllers(
) -> None:
    """As the two slice watches select them: docs/operations.md, "What `run` watches"."""
    assert parse_slice(unlabelled(slice_("m", endpoint("10.0.0.1")))).unlabelled
    assert parse_slice(unlabelled(slice_("by-hand", endpoint("10.0.0.1")), "")).unlabelled
    assert parse_slice(unlabelled(slice_("by-tool", endpoint("10.0.0.1")), "tool")).unlabelled
    both = unlabelled(slice_("m", endpoint("10.0.0.1")))
    both["metadata"]["labels"]["service.kubernetes.io/headless"] = ""
    assert not parse_slice(both).unlabelled  # the headless watch delivers it
    assert not parse_slice(slice_("h", endpoint("10.0.0.1"))).unlabelled
    # A non-headless Service's slice, which neither watch selects.
    cluster_ip = unlabelled(slice_("c", endpoint("10.0.0.1")), "endpointslice-controller.k8s.io")
    assert not parse_slice(cluster_ip).unlabelled


def test_a_relist_replaces_only_its_own_watch_s_slices() -> None:
    truth = Truth("cluster.local", lambda s: True, 10)
    truth.apply_service(parse_service(service("web", selector={})), 0.0)
    truth.apply_slice(parse_slice(slice_("h", endpoint("10.0.0.1"))), 0.0, 0.0)
    truth.apply_slice(parse_slice(unlabelled(slice_("m", endpoint("10.0.0.2")))), 0.0, 0.0)
    # The unlabelled watch relists and finds its slice gone: the headless one stays.
    [update] = truth.replace_slices([], 1.0, unlabelled=True)
    assert update.answers is not None and update.gap
    assert update.answers[Question(D, "A")] == {"10.0.0.1"}
    assert truth.replace_slices([parse_slice(slice_("h", endpoint("10.0.0.1")))], 2.0) == []


def scoped_truth(**options: Any) -> Truth:
    truth = Truth("cluster.local", lambda s: True, 10, scope=PluginScope(**options))
    labelled = service("web")
    labelled["metadata"]["labels"] = {"dns": "on"}
    truth.apply_service(parse_service(labelled), 0.0)
    matcher = truth.scope.labels_matcher
    one = slice_("w1", endpoint("10.0.0.1", "web-0"))
    one["metadata"]["labels"]["dns"] = "on"
    truth.apply_slice(parse_slice(one, plugin_labels=matcher), 0.0, 0.0)
    truth.apply_slice(parse_slice(slice_("w2", endpoint("10.0.0.2", "web-1")),
                                  plugin_labels=matcher),
                      0.0, 0.0)
    return truth


def served_a(truth: Truth) -> frozenset[str]:
    return truth._answers(Target("ns", "web"))[Question(D, "A")]


@pytest.mark.parametrize(("options", "reason"), [
    ({"namespaces": frozenset({"other"})}, "outside_namespaces"),
    ({"labels": "dns=off"}, "outside_labels"),
    ({"namespace_labels": "dns=on"}, "outside_namespace_labels"),
    ({"noendpoints": True}, "noendpoints"),
])
def test_out_of_coredns_scope_every_name_is_nxdomain_and_says_why(
        options: dict[str, Any], reason: str) -> None:
    truth = scoped_truth(**options)
    answers = truth._answers(Target("ns", "web"))
    assert answers and all(not values for values in answers.values())
    assert truth.misconfigurations() == {Target("ns", "web"): {reason}}


def test_in_scope_options_serve_only_the_slices_coredns_sees() -> None:
    assert served_a(scoped_truth()) == {"10.0.0.1", "10.0.0.2"}
    assert served_a(scoped_truth(namespaces=frozenset({"ns"}))) == {"10.0.0.1", "10.0.0.2"}
    # The plugin's labels select slices too: the unlabelled one is never served.
    truth = scoped_truth(labels="dns=on")
    assert served_a(truth) == {"10.0.0.1"}
    assert truth.misconfigurations() == {Target("ns", "web"): {"outside_labels"}}


def test_a_namespace_that_comes_to_match_namespace_labels_is_served() -> None:
    truth = scoped_truth(namespace_labels="dns=on")
    [update] = truth.apply_namespace("ns", 1.0)
    assert update.answers is not None and not update.gap
    assert update.answers[Question(D, "A")] == {"10.0.0.1", "10.0.0.2"}
    assert truth.misconfigurations() == {}
    assert truth.apply_namespace("elsewhere", 2.0) == []
    [gone] = truth.replace_namespaces([], 3.0)
    assert gone.gap and gone.answers is not None and not gone.answers[Question(D, "A")]
    [back] = truth.delete_namespace("ns", 4.0)  # still out: the same answers again
    assert back.answers == gone.answers


def test_written_names_expect_the_services_addresses() -> None:
    """The sidecar's search_names: `web.ns`, as an application writes it, expects what the
    FQDN has; nothing else is added."""
    truth = Truth("cluster.local", lambda s: True, 10, written=True)
    truth.apply_service(parse_service(service()), 1.0)
    (update,) = truth.apply_slice(parse_slice(slice_("s1", endpoint("10.1.0.1", "web-0"))),
                                  2.0, 0.0)
    assert update.answers is not None
    assert update.answers[Question("web.ns", "A")] == update.answers[Question(D, "A")] == \
        frozenset({"10.1.0.1"})
    assert Question("web.ns", "AAAA") not in update.answers  # as the FQDN: no AAAA in IPv4
    plain = Truth("cluster.local", lambda s: True, 10)
    plain.apply_service(parse_service(service()), 1.0)
    (other,) = plain.apply_slice(parse_slice(slice_("s1", endpoint("10.1.0.1", "web-0"))),
                                 2.0, 0.0)
    assert other.answers is not None
    assert set(update.answers) - set(other.answers) == {Question("web.ns", "A")}


def test_services_by_name() -> None:
    selected = Selection(services=frozenset({Target("ns", "web")})).matcher()
    assert selected(parse_service(service("web")))
    assert not selected(parse_service(service("api")))


def test_equal_port_lists_are_kept_once_and_long_ones_not_at_all() -> None:
    """10,000 Services with the same port list hold one copy of it; an odd object with many
    ports is not kept past its own life."""
    first, second = parse_service(service("a")), parse_slice(slice_("b", endpoint("10.0.0.1")))
    assert first.ports is second.ports
    many = [{"name": f"p{i}", "port": 1000 + i, "protocol": "TCP"} for i in range(9)]
    one, other = (parse_slice(slice_(n, endpoint("10.0.0.1"), ports=many)) for n in "cd")
    assert one.ports == other.ports and one.ports is not other.ports
