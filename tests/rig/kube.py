"""A tiny synchronous Kubernetes API client plus helpers to fake pods without a kubelet.

There is no kubelet and no scheduler in the rig: pods are created with
``spec.nodeName`` already set (the Node object must exist, or the EndpointSlice
controller skips the pod) and their status is written through the ``/status``
subresource, as a kubelet would.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from .net import http_request
from .process import wait_until

Obj = dict[str, Any]
ObjList = list[dict[str, Any]]

DEFAULT_NODE = "rig-node-0"
FAKE_IMAGE = "rig.invalid/pause:none"  # never pulled: there is no kubelet
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
LAST_CHANGE_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


class KubeApiError(RuntimeError):
    """A non-2xx answer from the API server."""

    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = ""
        message = body.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            self.reason = str(parsed.get("reason", ""))
            message = str(parsed.get("message", message))
        self.message = message
        super().__init__(f"{method} {path}: HTTP {status} {self.reason}: {message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_path(
    group_version: str,
    resource: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """Build an API path.

    ``api_path("v1", "pods", "ns", "web-0")`` is ``/api/v1/namespaces/ns/pods/web-0``;
    ``group_version`` is ``v1`` for the core group, else e.g. ``discovery.k8s.io/v1``.
    """
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    parts = [base]
    if namespace is not None:
        parts.append(f"namespaces/{urllib.parse.quote(namespace)}")
    parts.append(resource)
    if name is not None:
        parts.append(urllib.parse.quote(name))
    if subresource is not None:
        parts.append(subresource)
    return "/".join(parts)


class KubeClient:
    """Minimal JSON client: bearer token over HTTPS, server CA verified."""

    def __init__(self, server: str, token: str, ca_file: Path, *, timeout: float = 15.0) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.ca_file = ca_file
        self.timeout = timeout
        self.ssl_context = ssl.create_default_context(cafile=str(ca_file))

    # -- raw requests -----------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | Sequence[Any] | None = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Obj:
        """Send a request; return the decoded JSON object; raise KubeApiError on non-2xx."""
        url = self.server + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        status, raw = http_request(
            url,
            method=method,
            body=data,
            headers=headers,
            context=self.ssl_context,
            timeout=self.timeout,
        )
        if not 200 <= status < 300:
            raise KubeApiError(method, path, status, raw)
        if not raw:
            return {}
        decoded = json.loads(raw)
        return cast(Obj, decoded) if isinstance(decoded, dict) else {"items": decoded}

    def get(self, path: str) -> Obj:
        return self.request("GET", path)

    def get_or_none(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except KubeApiError as err:
            if err.not_found:
                return None
            raise

    def list(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjList:
        """GET a collection and return its ``items``."""
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        items = self.request("GET", path, params=params).get("items") or []
        return cast(ObjList, items)

    def create(self, path: str, obj: Mapping[str, Any]) -> Obj:
        """POST ``obj`` to the collection ``path``."""
        return self.request("POST", path, body=obj)

    def update(self, path: str, obj: Mapping[str, Any]) -> Obj:
        """PUT the whole object (``metadata.resourceVersion`` guards against races)."""
        return self.request("PUT", path, body=obj)

    def patch(
        self,
        path: str,
        patch: Mapping[str, Any] | Sequence[Any],
        *,
        patch_type: str = "merge",
    ) -> Obj:
        """PATCH with ``patch_type`` "merge" (default), "strategic" or "json"."""
        return self.request("PATCH", path, body=patch, content_type=PATCH_TYPES[patch_type])

    def update_status(self, path: str, obj: Mapping[str, Any]) -> Obj:
        """PUT the object to its ``/status`` subresource."""
        return self.update(path + "/status", obj)

    def patch_status(
        self, path: str, patch: Mapping[str, Any], *, patch_type: str = "merge"
    ) -> Obj:
        return self.patch(path + "/status", patch, patch_type=patch_type)

    def delete(
        self,
        path: str,
        *,
        grace_seconds: int | None = None,
        propagation: str | None = None,
        missing_ok: bool = False,
    ) -> Obj | None:
        """DELETE; with ``missing_ok`` a 404 returns None instead of raising."""
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_seconds is not None:
            options["gracePeriodSeconds"] = grace_seconds
        if propagation is not None:
            options["propagationPolicy"] = propagation
        try:
            return self.request("DELETE", path, body=options)
        except KubeApiError as err:
            if missing_ok and err.not_found:
                return None
            raise

    def wait_for(
        self,
        path: str,
        predicate: Callable[[Obj], bool],
        *,
        timeout: float = 30.0,
        what: str | None = None,
    ) -> Obj:
        """Poll ``path`` until ``predicate(obj)`` holds; return the object."""

        def probe() -> Obj | None:
            obj = self.get_or_none(path)
            return obj if obj is not None and predicate(obj) else None

        return wait_until(probe, timeout=timeout, what=what or f"{path} to match")

    # -- namespaces and nodes ---------------------------------------------
    def create_namespace(
        self, name: str, *, wait_for_default_sa: bool = True, timeout: float = 30.0
    ) -> Obj:
        """Create a namespace; by default wait for its ``default`` ServiceAccount.

        The ServiceAccount admission plugin rejects pods until the serviceaccount
        controller has created that account.
        """
        ns = self.create(
            api_path("v1", "namespaces"),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        if wait_for_default_sa:
            self.wait_for(
                api_path("v1", "serviceaccounts", name, "default"),
                lambda _: True,
                timeout=timeout,
                what=f"ServiceAccount {name}/default",
            )
        return ns

    def create_node(
        self, name: str = DEFAULT_NODE, *, labels: Mapping[str, str] | None = None
    ) -> Obj:
        """Create a Node object (no kubelet behind it); return the existing one if present."""
        node: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "topology.kubernetes.io/zone": "rig-zone-a",
                    **(labels or {}),
                },
            },
        }
        try:
            return self.create(api_path("v1", "nodes"), node)
        except KubeApiError as err:
            if err.conflict:
                return self.get(api_path("v1", "nodes", name=name))
            raise

    # -- service accounts and RBAC ------------------------------------------
    def create_service_account(self, namespace: str, name: str) -> Obj:
        return self.create(
            api_path("v1", "serviceaccounts", namespace),
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        )

    def request_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: Sequence[str] = (),
        expiration_seconds: int = 3600,
    ) -> str:
        """Get a bound token for a ServiceAccount through the TokenRequest API."""
        spec: Obj = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        resp = self.create(
            api_path("v1", "serviceaccounts", namespace, service_account, "token"),
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(resp["status"]["token"])

    def grant_cluster_role(
        self,
        name: str,
        rules: Sequence[Mapping[str, Any]],
        *,
        namespace: str,
        service_account: str,
    ) -> None:
        """Create ClusterRole ``name`` with ``rules`` and bind it to a ServiceAccount."""
        rbac = "rbac.authorization.k8s.io/v1"
        self.create(
            api_path(rbac, "clusterroles"),
            {
                "apiVersion": rbac,
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": [dict(r) for r in rules],
            },
        )
        self.create(
            api_path(rbac, "clusterrolebindings"),
            {
                "apiVersion": rbac,
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
                ],
            },
        )

    def grant_role(
        self,
        name: str,
        rules: Sequence[Mapping[str, Any]],
        *,
        namespace: str,
        service_account: str,
    ) -> None:
        """Create Role ``name`` with ``rules`` in ``namespace`` and bind it to a ServiceAccount
        of that namespace."""
        rbac = "rbac.authorization.k8s.io/v1"
        self.create(api_path(rbac, "roles", namespace), {
            "apiVersion": rbac, "kind": "Role", "metadata": {"name": name},
            "rules": [dict(r) for r in rules]})
        self.create(api_path(rbac, "rolebindings", namespace), {
            "apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": service_account,
                          "namespace": namespace}]})

    def with_token(self, token: str) -> KubeClient:
        """A client for the same server authenticating with another bearer token."""
        return KubeClient(self.server, token, self.ca_file, timeout=self.timeout)

    # -- pods -------------------------------------------------------------
    def create_pod(
        self,
        namespace: str,
        name: str,
        labels: Mapping[str, str],
        *,
        hostname: str | None = None,
        subdomain: str | None = None,
        node: str = DEFAULT_NODE,
        container_ports: Iterable[tuple[str, int, str]] = (),
        termination_grace_seconds: int = 30,
    ) -> Obj:
        """Create a pod already bound to ``node`` (no scheduler). It stays Pending
        until :meth:`set_pod_ready` writes a status."""
        container: Obj = {"name": "app", "image": FAKE_IMAGE}
        ports = [
            {"name": pname, "containerPort": port, "protocol": proto}
            for pname, port, proto in container_ports
        ]
        if ports:
            container["ports"] = ports
        spec: Obj = {
            "nodeName": node,
            "containers": [container],
            "terminationGracePeriodSeconds": termination_grace_seconds,
            "automountServiceAccountToken": False,
        }
        if hostname is not None:
            spec["hostname"] = hostname
        if subdomain is not None:
            spec["subdomain"] = subdomain
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": spec,
        }
        return self.create(api_path("v1", "pods", namespace), pod)

    def set_pod_ready(self, namespace: str, name: str, ip: str, ready: bool = True) -> Obj:
        """Write the status a kubelet would: phase Running, podIP(s), and the
        Ready/ContainersReady conditions (``lastTransitionTime`` moves only when a
        condition's status changes, which is what the EndpointSlice controller uses
        for the last-change-trigger-time annotation)."""
        path = api_path("v1", "pods", namespace, name)
        pod = self.get(path)
        status: Obj = pod.get("status") or {}
        old = {c.get("type"): c for c in status.get("conditions") or []}
        now = now_rfc3339()

        def cond(ctype: str, value: bool) -> Obj:
            text = "True" if value else "False"
            prev = old.get(ctype)
            if prev is not None and prev.get("status") == text and prev.get("lastTransitionTime"):
                since = prev["lastTransitionTime"]
            else:
                since = now
            return {"type": ctype, "status": text, "lastTransitionTime": since}

        new_status: Obj = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": status.get("startTime") or now,
            "conditions": [
                cond("PodScheduled", True),
                cond("Initialized", True),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ],
        }
        return self.patch_status(path, {"status": new_status})

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        """Delete a pod.

        ``grace_seconds=0`` removes it at once (what a kubelet does when the
        containers are gone). Any other value, or None for the pod's own
        terminationGracePeriodSeconds, leaves it Terminating for good (no kubelet
        finishes the job): its endpoint turns ``terminating`` / not ready.
        """
        self.delete(
            api_path("v1", "pods", namespace, name), grace_seconds=grace_seconds, missing_ok=True
        )

    # -- services and endpoint slices --------------------------------------
    def create_headless_service(
        self,
        namespace: str,
        name: str,
        selector: Mapping[str, str],
        ports: Iterable[tuple[str, int, str]] = (("http", 80, "TCP"),),
        publish_not_ready: bool = False,
    ) -> Obj:
        """Create a ``clusterIP: None`` Service; ports are (name, port, protocol)."""
        svc: Obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "clusterIP": "None",
                "selector": dict(selector),
                "publishNotReadyAddresses": publish_not_ready,
                "ports": [
                    {"name": pname, "port": port, "targetPort": port, "protocol": proto}
                    for pname, port, proto in ports
                ],
            },
        }
        return self.create(api_path("v1", "services", namespace), svc)

    def create_endpoints_service(self, namespace: str, name: str,
                                 hosts: Mapping[str, str | None], port: int = 5432) -> ObjList:
        """A selectorless headless Service backed by hand-written v1 Endpoints (`hosts` maps
        IP to hostname), as people write them for a database outside the cluster; waits for
        the slice that the mirroring controller makes of them, and returns it."""
        self.create(api_path("v1", "services", namespace), {
            "metadata": {"name": name},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": port}]}})
        addresses = [{"ip": ip, **({"hostname": h} if h else {})} for ip, h in hosts.items()]
        self.create(api_path("v1", "endpoints", namespace), {
            "metadata": {"name": name},
            "subsets": [{"addresses": addresses, "ports": [{"name": "pg", "port": port}]}]})
        return self.wait_for_endpointslice(namespace, name)

    def list_endpointslices(self, namespace: str, service: str) -> ObjList:
        return self.list(
            api_path("discovery.k8s.io/v1", "endpointslices", namespace),
            label_selector=f"{SERVICE_NAME_LABEL}={service}",
        )

    def wait_for_endpointslice(
        self,
        namespace: str,
        service: str,
        predicate: Callable[[ObjList], bool] | None = None,
        *,
        timeout: float = 30.0,
        interval: float = 0.1,
    ) -> ObjList:
        """Poll the Service's EndpointSlices until ``predicate(slices)`` holds
        (default: at least one slice exists); return them."""
        check = predicate or (lambda slices: bool(slices))

        def probe() -> ObjList | None:
            slices = self.list_endpointslices(namespace, service)
            return slices if check(slices) else None

        return wait_until(
            probe,
            timeout=timeout,
            interval=interval,
            what=f"EndpointSlices of {namespace}/{service} to match",
        )


# -- reading EndpointSlices --------------------------------------------------
def slice_endpoints(slices: Iterable[Obj]) -> ObjList:
    """All endpoints of the given slices."""
    return [ep for s in slices for ep in (s.get("endpoints") or [])]


def ready_addresses(slices: Iterable[Obj]) -> set[str]:
    """Addresses of endpoints whose ``conditions.ready`` is not false (the API's rule)."""
    out: set[str] = set()
    for ep in slice_endpoints(slices):
        if (ep.get("conditions") or {}).get("ready", True) is not False:
            out.update(ep.get("addresses") or [])
    return out
