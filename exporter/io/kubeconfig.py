"""Where the API server is and how to authenticate: in-cluster config or a kubeconfig file.

Pure parsing plus file reads; no sockets. Every problem raises KubeconfigError with one line
that names the file and the field, and what to do about it.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeconfigError(ValueError):
    """A kubeconfig or in-cluster setup that cannot be used; the message says which field."""


@dataclass(frozen=True)
class ClusterAccess:
    server: str
    """Base URL of the API server, without a trailing slash."""
    ca_file: str | None
    insecure: bool
    token: str | None
    token_file: str | None
    """Re-read on every request: projected service-account tokens rotate."""
    cert_file: str | None
    key_file: str | None
    source: str
    """Where this came from, for messages: a kubeconfig path or "in-cluster"."""

    def bearer(self) -> str | None:
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise KubeconfigError(
                    f"{self.source}: cannot read token file {self.token_file} "
                    f"({exc.strerror})") from None
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file and self.key_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise KubeconfigError(f"{self.source}: unusable certificate-authority or client "
                                  f"certificate ({exc}); check those fields") from None
        return context


def in_cluster(env: Mapping[str, str], root: Path = SERVICE_ACCOUNT) -> ClusterAccess | None:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    token = root / "token"
    if not token.exists():
        raise KubeconfigError(f"in-cluster: {token} is missing; mount the service account "
                              "token (automountServiceAccountToken: true)")
    host = f"[{host}]" if ":" in host else host
    ca = root / "ca.crt"
    return ClusterAccess(f"https://{host}:{port}", str(ca) if ca.exists() else None,
                         False, None, str(token), None, None, "in-cluster")


def _named(items: Any, name: str, kind: str, path: str) -> Mapping[str, Any]:
    if not isinstance(items, list):
        raise KubeconfigError(f"{path}: `{kind}s` must be a list")
    for item in items:
        if isinstance(item, Mapping) and item.get("name") == name:
            body = item.get(kind)
            if not isinstance(body, Mapping):
                raise KubeconfigError(f"{path}: {kind} {name!r} has no `{kind}` mapping")
            return body
    where = "current-context" if kind == "context" else "contexts"
    raise KubeconfigError(f"{path}: no {kind} named {name!r}; check `{where}` and `{kind}s`")


def _file_or_data(body: Mapping[str, Any], key: str, base: Path, path: str,
                  scratch: Path) -> str | None:
    """A file path, or base64 data written to a private temp file (ssl wants files)."""
    data = body.get(f"{key}-data")
    if data:
        try:
            raw = base64.b64decode(str(data), validate=True)
        except ValueError:
            raise KubeconfigError(f"{path}: `{key}-data` is not valid base64") from None
        target = scratch / key
        target.write_bytes(raw)
        target.chmod(0o600)
        return str(target)
    value = body.get(key)
    if not value:
        return None
    file = (base / str(value)).resolve()
    if not file.exists():
        raise KubeconfigError(f"{path}: `{key}` file {file} does not exist")
    return str(file)


def from_kubeconfig(path: str, context: str | None = None) -> ClusterAccess:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise KubeconfigError(f"{path}: cannot read the kubeconfig ({exc.strerror}); "
                              "pass --kubeconfig or set KUBECONFIG") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise KubeconfigError(f"{path}: not valid YAML") from None
    if not isinstance(doc, Mapping):
        raise KubeconfigError(f"{path}: not a kubeconfig (expected a mapping)")
    name = context or doc.get("current-context")
    if not name:
        raise KubeconfigError(f"{path}: no `current-context`; set one with "
                              "`kubectl config use-context`")
    ctx = _named(doc.get("contexts"), str(name), "context", path)
    cluster = _named(doc.get("clusters"), str(ctx.get("cluster")), "cluster", path)
    user = _named(doc.get("users"), str(ctx.get("user")), "user", path) if ctx.get("user") \
        else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeconfigError(f"{path}: cluster {ctx.get('cluster')!r} has no `server` URL")
    if "exec" in user or "auth-provider" in user:
        raise KubeconfigError(f"{path}: user {ctx.get('user')!r} uses exec or auth-provider "
                              "plugins, which the agent does not run; use a token or a "
                              "client certificate")
    base = Path(path).resolve().parent
    scratch = Path(tempfile.mkdtemp(prefix="dse-kube-"))
    # It holds key material decoded from the kubeconfig: gone when the process ends.
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    token_file = (base / str(user["tokenFile"])).resolve() if user.get("tokenFile") else None
    if token_file is not None and not token_file.is_file():
        raise KubeconfigError(f"{path}: `tokenFile` file {token_file} does not exist")
    return ClusterAccess(
        server=server.rstrip("/"),
        ca_file=_file_or_data(cluster, "certificate-authority", base, path, scratch),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=str(user["token"]) if user.get("token") else None,
        token_file=str(token_file) if token_file else None,
        cert_file=_file_or_data(user, "client-certificate", base, path, scratch),
        key_file=_file_or_data(user, "client-key", base, path, scratch),
        source=path,
    )


def discover(kubeconfig: str, env: Mapping[str, str] = os.environ) -> ClusterAccess:
    """--kubeconfig, else in-cluster, else $KUBECONFIG, else ~/.kube/config. The TLS files
    are loaded once here, so that an unusable certificate is a startup error too."""
    access = _find(kubeconfig, env)
    access.ssl_context()
    return access


def _find(kubeconfig: str, env: Mapping[str, str]) -> ClusterAccess:
    if kubeconfig:
        return from_kubeconfig(kubeconfig)
    found = in_cluster(env)
    if found is not None:
        return found
    path = env.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube/config")
    if not Path(path).exists():
        raise KubeconfigError("no cluster access: not in a pod (KUBERNETES_SERVICE_HOST unset) "
                              f"and no kubeconfig at {path}; pass --kubeconfig FILE")
    return from_kubeconfig(path)
