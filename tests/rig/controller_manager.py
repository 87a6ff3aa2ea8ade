"""A real kube-controller-manager running a minimal set of controllers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .kube_apiserver import KubeApiServer
from .net import free_port, http_request, insecure_tls_context, next_loopback_address
from .process import ManagedProcess

# Canonical controller names since Kubernetes 1.30 (the old short names such as
# "endpointslice" or "serviceaccount-token" still work as aliases).
DEFAULT_CONTROLLERS: tuple[str, ...] = (
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "namespace-controller",
    "garbage-collector-controller",
)


class KubeControllerManager(ManagedProcess):
    """kube-controller-manager with the admin kubeconfig, no leader election,
    serving its health endpoint on its own loopback address."""

    start_timeout = 60.0

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        *,
        apiserver: KubeApiServer,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        address: str | None = None,
        name: str = "kube-controller-manager",
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(name, workdir)
        self.binary = binary
        self.apiserver = apiserver
        self.controllers = list(controllers)
        self.address = address or next_loopback_address()
        self.port = free_port(self.address)
        self.extra_args = list(extra_args)
        self.cert_dir = workdir / "certs"
        self._tls = insecure_tls_context()  # it serves a self-signed certificate

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    def prepare(self) -> None:
        self.cert_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        kubeconfig = self.apiserver.kubeconfig_path
        pki = self.apiserver.pki
        return [
            str(self.binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--controllers={','.join(self.controllers)}",
            f"--service-account-private-key-file={pki.sa_private_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--bind-address={self.address}",
            f"--secure-port={self.port}",
            f"--cert-dir={self.cert_dir}",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            "--profiling=false",
            "--v=1",
            *self.extra_args,
        ]

    def is_ready(self) -> bool:
        status, body = http_request(f"{self.url}/healthz", context=self._tls, timeout=2)
        return status == 200 and body.strip() == b"ok"
