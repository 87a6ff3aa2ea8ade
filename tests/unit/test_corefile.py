"""The Corefile as CoreDNS reads it: the server block of the most specific zone, and the
kubernetes plugin's options that change what it serves."""

from __future__ import annotations

import pytest

from exporter.core.corefile import CorefileError, bounds, go_duration, settings_of

KUBERNETES = """kubernetes cluster.local in-addr.arpa ip6.arpa {
        ttl 30
        %s
    }
    cache 30"""


@pytest.mark.parametrize("text", [
    # The kubeadm layout: one root block serves the cluster zone too.
    ".:53 {\n    errors\n    " + KUBERNETES % "" + "\n    forward . /etc/resolv.conf\n}\n",
    # A root block that only forwards, before the cluster zone's own block.
    ".:53 {\n    forward . 8.8.8.8\n}\ncluster.local:53 {\n    " + KUBERNETES % "" + "\n}\n",
    # The same with a scheme and the zone written with a trailing dot.
    "dns://.:53 {\n    forward . 8.8.8.8\n}\ndns://cluster.local.:53 {\n    "
    + KUBERNETES % "" + "\n}\n",
])
def test_the_most_specific_block_answers(text: str) -> None:
    found = settings_of(text)
    assert found.kubernetes_ttl == 30
    assert found.cache is not None and found.cache.success == 30


def test_a_more_specific_unrelated_zone_is_not_chosen() -> None:
    text = ("example.org:53 {\n    forward . 1.1.1.1\n}\n.:53 {\n    "
            + KUBERNETES % "" + "\n}\n")
    assert settings_of(text).kubernetes_ttl == 30


def test_endpoint_pod_names_is_read() -> None:
    on = settings_of(".:53 {\n    " + KUBERNETES % "endpoint_pod_names" + "\n}\n")
    off = settings_of(".:53 {\n    " + KUBERNETES % "" + "\n}\n")
    assert on.endpoint_pod_names and not off.endpoint_pod_names


def test_no_block_for_the_zone() -> None:
    with pytest.raises(CorefileError, match="no server block serves cluster.local"):
        settings_of("example.org:53 {\n    forward . 1.1.1.1\n}\n")


def test_the_kubernetes_plugin_scope_options_are_read() -> None:
    found = settings_of("""cluster.local:53 {
    kubernetes cluster.local {
        namespaces team-a team-b
        labels dns in (on, yes)
        noendpoints
    }
}""")
    assert found.namespaces == ("team-a", "team-b")
    assert found.labels == "dns in (on, yes)"
    assert found.noendpoints and not found.namespace_labels


def test_namespaces_with_namespace_labels_is_refused_as_coredns_does() -> None:
    with pytest.raises(CorefileError, match="cannot both be set"):
        settings_of(".:53 {\n kubernetes cluster.local {\n  namespaces a\n"
                    "  namespace_labels x=y\n }\n}")


def bounds_of(cluster: str, nodelocal: str | None = None) -> dict[str, tuple[float, float]]:
    def block(body: str) -> str:
        return f"cluster.local:53 {{\n{body}\n}}"
    found = bounds(settings_of(block(cluster)),
                   settings_of(block(nodelocal)) if nodelocal else None)
    return {layer: (b.stale, b.negative) for layer, b in found.items()}


KUBERNETES_30 = "kubernetes cluster.local {\n ttl 30\n}"


def test_kubeadm_defaults_node_local_adds_its_minimum_not_its_lifetime() -> None:
    found = bounds_of(f"{KUBERNETES_30}\ncache 30", "cache {\n success 9984 30\n denial 9984 5\n}")
    assert found == {"coredns": (30, 30), "kube-dns": (30, 30), "node-local": (35, 35)}


@pytest.mark.parametrize(("cache", "stale", "negative"), [
    ("cache {\n success 9984 30 10\n}", 30, 30),
    ("cache {\n success 9984 3 10\n}", 3, 30),  # the maximum applies last
    ("cache {\n denial 9984 3 1\n}", 30, 3),
    ("cache {\n disable success\n}", 0, 30),
    ("cache 30 example.org", 0, 0),  # the cache's zones leave the cluster zone out
    ("cache {\n serve_stale 1h30m\n}", 30, 30),  # healthy upstream: one refresh
    ("cache {\n serve_stale 10m\n serve_stale_policy prefer_positive\n}", 630, 30),
])
def test_coredns_bounds_follow_the_cache_plugin(cache: str, stale: int, negative: int) -> None:
    assert bounds_of(f"{KUBERNETES_30}\n{cache}")["coredns"] == (stale, negative)


def test_the_negative_bound_starts_from_the_soa_ttl() -> None:
    ttl_600 = "kubernetes cluster.local {\n ttl 600\n}"
    assert bounds_of(f"{ttl_600}\ncache 3600")["coredns"] == (600, 300)


def test_keepttl_upstream_hands_node_local_the_full_ttl() -> None:
    found = bounds_of(f"{KUBERNETES_30}\ncache 30 {{\n keepttl\n}}", "cache 30")
    assert found["node-local"] == (60, 60)
    assert bounds_of(KUBERNETES_30, "cache 30")["node-local"] == (30, 30)


@pytest.mark.parametrize(("value", "seconds"), [
    ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("300ms", 0.3), ("0", 0)])
def test_go_durations(value: str, seconds: float) -> None:
    assert go_duration(value, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["3600", "1x", "", "h"])
def test_bad_durations_are_refused(value: str) -> None:
    with pytest.raises(CorefileError, match="Go does"):
        go_duration(value, "x")
