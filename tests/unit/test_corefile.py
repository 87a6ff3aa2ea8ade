"""The Corefile as CoreDNS reads it: the server block of the most specific zone, and the
kubernetes plugin's options that change what it serves."""

from __future__ import annotations

import pytest

from exporter.core.corefile import CorefileError, settings_of

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
