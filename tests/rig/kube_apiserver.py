"""A real kube-apiserver on a loopback address, backed by the rig's etcd."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from pathlib import Path

from .kube import KubeClient
from .net import free_port, http_request, next_loopback_address
from .pki import ClusterPki
from .process import ManagedProcess

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "rig-admin"


class KubeApiServer(ManagedProcess):
    """kube-apiserver with RBAC, a static admin token (group ``system:masters``)
    and a generated CA, serving certificate and service-account key pair.

    After :meth:`start`, :attr:`kubeconfig_path` holds an admin kubeconfig (CA
    data, server URL, token) usable by CoreDNS and the controller manager.
    """

    start_timeout = 120.0

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        *,
        etcd_url: str,
        address: str | None = None,
        name: str = "kube-apiserver",
        openssl: str | Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(name, workdir)
        self.binary = binary
        self.etcd_url = etcd_url
        self.address = address or next_loopback_address()
        self.port = free_port(self.address)
        self.token = secrets.token_hex(24)
        self.openssl = openssl
        self.extra_args = list(extra_args)
        self.kubeconfig_path = workdir / "admin.kubeconfig"
        self.token_file = workdir / "tokens.csv"
        self.cert_dir = workdir / "certs"
        self._pki: ClusterPki | None = None
        self._probe: KubeClient | None = None

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def pki(self) -> ClusterPki:
        if self._pki is None:
            raise RuntimeError(f"{self.name}: certificates are made by start()")
        return self._pki

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_cert

    def prepare(self) -> None:
        self._pki = ClusterPki.generate(
            self.workdir / "pki",
            ip_sans=[self.address, "10.96.0.1"],
            dns_sans=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            openssl=self.openssl,
        )
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        # token,user,uid,"group1,group2"
        self.token_file.write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        self.token_file.chmod(0o600)
        self.write_kubeconfig(self.kubeconfig_path)

    def write_kubeconfig(
        self, path: Path, *, token: str | None = None, user: str = ADMIN_USER
    ) -> Path:
        """Write a kubeconfig for this server (JSON, which kubeconfig readers accept
        as YAML); the admin token unless ``token`` is given (e.g. a ServiceAccount's)."""
        ca_data = base64.b64encode(self.pki.ca_cert.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "rig",
                    "cluster": {"server": self.url, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": user, "user": {"token": token or self.token}}],
            "contexts": [{"name": "rig", "context": {"cluster": "rig", "user": user}}],
            "current-context": "rig",
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        path.chmod(0o600)
        return path

    def command(self) -> list[str]:
        pki = self.pki
        return [
            str(self.binary),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.address}",
            f"--secure-port={self.port}",
            f"--advertise-address={self.address}",
            f"--cert-dir={self.cert_dir}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            # Published in kube-system/extension-apiserver-authentication, which the
            # controller manager's delegated authentication reads (it logs errors
            # every few seconds while the request-header CA is missing).
            f"--requestheader-client-ca-file={pki.ca_cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_public_key}",
            f"--service-account-signing-key-file={pki.sa_private_key}",
            "--authorization-mode=Node,RBAC",
            f"--token-auth-file={self.token_file}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # The lease reconciler would publish the advertise address in the
            # default/kubernetes EndpointSlice, and loopback addresses are invalid there.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=false",
            "--profiling=false",
            "--v=1",
            *self.extra_args,
        ]

    def is_ready(self) -> bool:
        if self._probe is None:
            self._probe = self.client(timeout=2)
        status, _ = http_request(
            f"{self.url}/readyz",
            headers={"Authorization": f"Bearer {self.token}"},
            context=self._probe.ssl_context,
            timeout=2,
        )
        return status == 200

    def client(self, *, timeout: float = 15.0) -> KubeClient:
        """An admin KubeClient for this API server."""
        return KubeClient(self.url, self.token, self.pki.ca_cert, timeout=timeout)


class RestartableApiServer(KubeApiServer):
    """Keeps its address, port and certificates across stop() and start(): a restart, as
    its clients see one."""

    def prepare(self) -> None:
        if self._pki is None:
            super().prepare()
