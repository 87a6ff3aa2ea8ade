"""The rig's components as the benchmarks start them (docs/rig.md)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from tests.rig import Etcd, KubeApiServer, Rig


def start_api(rig: Rig, work: Path, stack: ExitStack) -> KubeApiServer:
    """etcd and a kube-apiserver in front of it, both stopped when `stack` closes."""
    etcd = Etcd(rig.etcd, work / "etcd").start()
    stack.callback(etcd.stop)
    api = KubeApiServer(rig.kube_apiserver, work / "apiserver", etcd_url=etcd.client_url).start()
    stack.callback(api.stop)
    return api
