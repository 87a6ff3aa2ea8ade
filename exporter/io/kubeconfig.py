"""Where the API server is and how to authenticate: in-cluster config or kubeconfig files.

Kubeconfigs go through the official `kubernetes` package's loader: merged `KUBECONFIG` lists,
`--context`, exec credential plugins (re-run before their token expires), auth-provider,
client certificates, `proxy-url`. It is imported only when a kubeconfig is used: the DaemonSet
runs in-cluster, where it would cost 30 MB and a third of a second for nothing. The loader's
own messages name no file; the structure is checked here first, so that every problem is one
line naming the file, the context and the field, and what to do about it.
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LOGIN_HINT = ("get one with the cluster's login tool (aws eks update-kubeconfig, gcloud "
              "container clusters get-credentials, az aks get-credentials) or kubectl config "
              "set-credentials")


class KubeconfigError(ValueError):
    """A kubeconfig or in-cluster setup that cannot be used; the message says which field."""


@dataclass(frozen=True)
class ClusterAccess:
    server: str
    """Base URL of the API server, without a trailing slash."""
    ca_file: str | None
    insecure: bool
    token: str | None
    """A bearer token given as such (tests, benchmarks); kubeconfigs give `credential`."""
    token_file: str | None
    """Re-read on every request: projected service-account tokens rotate."""
    cert_file: str | None
    key_file: str | None
    source: str
    """Where this came from, for messages: kubeconfig paths or "in-cluster"."""
    credential: Callable[[], str | None] | None = None
    """The Authorization header from the kubeconfig's loader."""
    refreshes: bool = False
    """`credential` may run an exec or auth-provider plugin, whose token it renews before
    expiry: it may block, so call it off the event loop."""
    proxy: str | None = None
    tls_server_name: str | None = None
    context: str = ""

    def authorization(self) -> str | None:
        """The Authorization header value, or None."""
        if self.token_file:
            try:
                return "Bearer " + Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise KubeconfigError(
                    f"{self.source}: cannot read token file {self.token_file} "
                    f"({exc.strerror})") from None
        if self.token:
            return "Bearer " + self.token
        return self.credential() if self.credential is not None else None

    @property
    def has_credential(self) -> bool:
        return bool(self.token or self.token_file or self.cert_file
                    or self.credential is not None)

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


def _check_file_or_data(body: Mapping[str, Any], key: str, base: Path, where: str) -> None:
    data = body.get(f"{key}-data")
    if data:
        try:
            base64.b64decode(str(data), validate=True)
        except ValueError:
            raise KubeconfigError(f"{where}: `{key}-data` is not valid base64") from None
    elif body.get(key) and not (base / str(body[key])).exists():
        raise KubeconfigError(f"{where}: `{key}` file {(base / str(body[key])).resolve()} "
                              "does not exist")


def _read(path: str) -> Mapping[str, Any]:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise KubeconfigError(f"{path}: cannot read the kubeconfig ({exc.strerror}); "
                              "pass --kubeconfig or set KUBECONFIG") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise KubeconfigError(f"{path}: not valid YAML") from None
    if not isinstance(doc, Mapping):
        raise KubeconfigError(f"{path}: not a kubeconfig (expected a mapping)")
    for kind in ("clusters", "contexts", "users"):
        if kind in doc and not isinstance(doc[kind], list):
            raise KubeconfigError(f"{path}: `{kind}` must be a list")
        for item in doc.get(kind) or []:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise KubeconfigError(f"{path}: every entry of `{kind}` needs a `name`")
    return doc


def _origin(docs: Mapping[str, Mapping[str, Any]], kind: str, name: str) -> str:
    """The file whose entry wins, as kubectl merges: the first that defines the name; all
    of them when none does."""
    return next((path for path, doc in docs.items()
                 if any(i.get("name") == name for i in doc.get(kind) or [])),
                os.pathsep.join(docs))


def from_kubeconfig(paths: str, context: str | None = None) -> ClusterAccess:
    """One kubeconfig, or several joined by the path separator, merged as kubectl does."""
    files = [p for p in paths.split(os.pathsep) if p]
    docs = {path: _read(path) for path in files}
    source = os.pathsep.join(files)
    merged: dict[str, Any] = {kind: [item for doc in docs.values()
                                     for item in doc.get(kind) or []]
                              for kind in ("clusters", "contexts", "users")}
    name = context or next((d["current-context"] for d in docs.values()
                            if d.get("current-context")), None)
    if not name:
        raise KubeconfigError(f"{source}: no `current-context`; set one with "
                              "`kubectl config use-context`, or pass --context")
    ctx_file = _origin(docs, "contexts", str(name))
    ctx = _named(merged["contexts"], str(name), "context", ctx_file)
    cluster_file = _origin(docs, "clusters", str(ctx.get("cluster")))
    cluster = _named(merged["clusters"], str(ctx.get("cluster")), "cluster", cluster_file)
    user_file = _origin(docs, "users", str(ctx.get("user")))
    user = _named(merged["users"], str(ctx.get("user")), "user", user_file) \
        if ctx.get("user") else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeconfigError(f"{cluster_file}: cluster {ctx.get('cluster')!r} has no "
                              "`server` URL")
    proxy = cluster.get("proxy-url")
    if proxy is not None and not str(proxy).startswith(("http://", "https://")):
        raise KubeconfigError(f"{cluster_file}: cluster {ctx.get('cluster')!r}: `proxy-url` "
                              f"{proxy!r} is not an http:// or https:// proxy, the kinds "
                              "the agent can use")
    cluster_base = Path(cluster_file).resolve().parent
    user_base = Path(user_file).resolve().parent
    _check_file_or_data(cluster, "certificate-authority", cluster_base, cluster_file)
    for key in ("client-certificate", "client-key"):
        _check_file_or_data(user, key, user_base, user_file)
    token_file = (user_base / str(user["tokenFile"])).resolve() if user.get("tokenFile") \
        else None
    if token_file is not None and not token_file.is_file():
        raise KubeconfigError(f"{user_file}: `tokenFile` file {token_file} does not exist")
    config = _load(source, str(name), str(ctx.get("user")), user, user_file)
    credential = None
    if token_file is None and config.api_key.get("BearerToken"):
        lock = threading.Lock()

        def credential() -> str | None:
            with lock:  # watchers of several resources may ask at once
                value: str | None = config.get_api_key_with_prefix("BearerToken")
            return value
    return ClusterAccess(
        server=server.rstrip("/"),
        ca_file=config.ssl_ca_cert if server.startswith("https://") else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")), token=None,
        token_file=str(token_file) if token_file else None,
        cert_file=config.cert_file, key_file=config.key_file,
        source=source, credential=credential,
        refreshes="exec" in user or "auth-provider" in user, proxy=config.proxy,
        tls_server_name=config.tls_server_name, context=str(name),
    )


def _load(source: str, context: str, user_name: str, user: Mapping[str, Any],
          user_file: str) -> Any:
    """The official loader's client Configuration for `context`."""
    from kubernetes.client import Configuration
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

    scratch = Path(tempfile.mkdtemp(prefix="dse-kube-"))
    # It holds key material decoded from the kubeconfig: gone when the process ends.
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    config = Configuration()
    said: list[str] = []
    # The loader logs a failed plugin on the root logger and goes on without a credential:
    # keep that line for the one error line.
    hold = _Hold(said)
    logging.getLogger().addFilter(hold)
    try:
        merged = KubeConfigMerger(source).config  # type: ignore[no-untyped-call]
        loader = KubeConfigLoader(  # type: ignore[no-untyped-call]
            merged, active_context=context, config_base_path=None,
            temp_file_path=str(scratch))
        loader.load_and_set(config)  # type: ignore[no-untyped-call]
        if "exec" in user and not config.api_key.get("BearerToken") and not config.cert_file:
            raise ConfigException(said[-1] if said else
                                  "the plugin printed no token or client certificate")
    except (ConfigException, OSError, KeyError, TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        exec_ = user.get("exec")
        what = f"user {user_name!r}: exec plugin {exec_.get('command')!r}: " \
            if isinstance(exec_, Mapping) else ""
        raise KubeconfigError(f"{source}: context {context!r}: {what}{detail}") from None
    finally:
        logging.getLogger().removeFilter(hold)
    return config


class _Hold(logging.Filter):
    """Keeps the root logger's error lines out of the log, for the caller to word."""

    def __init__(self, said: list[str]) -> None:
        super().__init__()
        self.said = said

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and record.levelno >= logging.ERROR:
            self.said.append(record.getMessage())
            return False
        return True


def discover(kubeconfig: str, env: Mapping[str, str] = os.environ,
             context: str = "") -> ClusterAccess:
    """--kubeconfig, else in-cluster, else $KUBECONFIG, else ~/.kube/config. The TLS files
    are loaded once here, so that an unusable certificate is a startup error too."""
    access = _find(kubeconfig, env, context)
    access.ssl_context()
    return access


def _find(kubeconfig: str, env: Mapping[str, str], context: str) -> ClusterAccess:
    if kubeconfig:
        return from_kubeconfig(kubeconfig, context or None)
    found = in_cluster(env)
    if found is not None:
        return found
    # As kubectl: files of the KUBECONFIG list that do not exist are skipped.
    listed = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    present = [p for p in listed if Path(p).exists()]
    if listed and not present:
        raise KubeconfigError(f"no cluster access: not in a pod and no kubeconfig at "
                              f"{os.pathsep.join(listed)} (KUBECONFIG); pass --kubeconfig FILE")
    path = os.pathsep.join(present) or str(Path.home() / ".kube/config")
    if not present and not Path(path).exists():
        raise KubeconfigError("no cluster access: not in a pod (KUBERNETES_SERVICE_HOST unset) "
                              f"and no kubeconfig at {path}; pass --kubeconfig FILE")
    return from_kubeconfig(path, context or None)
