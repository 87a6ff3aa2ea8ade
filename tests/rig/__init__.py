"""Integration-test rig: real etcd, kube-apiserver, kube-controller-manager and
CoreDNS processes on loopback addresses (see docs/rig.md).

Binaries come from ``scripts/rig-install``; :class:`Rig` finds them.
"""

from __future__ import annotations

from .binaries import Rig, RigNotInstalled, default_cache_dir, pinned_versions, rig_or_skip
from .controller_manager import DEFAULT_CONTROLLERS, KubeControllerManager
from .coredns import (
    CLUSTER_DOMAIN,
    ClusterDNSFactory,
    CoreDNS,
    NodeLocalDNSFactory,
    cluster_corefile,
    nodelocal_corefile,
)
from .etcd import Etcd
from .kube import (
    DEFAULT_NODE,
    LAST_CHANGE_TRIGGER_TIME,
    KubeApiError,
    KubeClient,
    api_path,
    ready_addresses,
    slice_endpoints,
)
from .kube_apiserver import SERVICE_CLUSTER_IP_RANGE, KubeApiServer, RestartableApiServer
from .net import dns_probe, free_port, free_ports, next_loopback_address
from .pki import ClusterPki
from .process import ManagedProcess, RigError, stop_all, wait_until

__all__ = [
    "CLUSTER_DOMAIN",
    "DEFAULT_CONTROLLERS",
    "DEFAULT_NODE",
    "LAST_CHANGE_TRIGGER_TIME",
    "SERVICE_CLUSTER_IP_RANGE",
    "ClusterDNSFactory",
    "ClusterPki",
    "CoreDNS",
    "Etcd",
    "KubeApiError",
    "KubeApiServer",
    "KubeClient",
    "KubeControllerManager",
    "ManagedProcess",
    "NodeLocalDNSFactory",
    "RestartableApiServer",
    "Rig",
    "RigError",
    "RigNotInstalled",
    "rig_or_skip",
    "api_path",
    "cluster_corefile",
    "default_cache_dir",
    "dns_probe",
    "free_port",
    "free_ports",
    "next_loopback_address",
    "nodelocal_corefile",
    "pinned_versions",
    "ready_addresses",
    "slice_endpoints",
    "stop_all",
    "wait_until",
]
