"""A single-member etcd on a loopback address, data in a temp directory."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .net import free_ports, http_request, next_loopback_address
from .process import ManagedProcess


class Etcd(ManagedProcess):
    start_timeout = 30.0

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        *,
        address: str | None = None,
        name: str = "etcd",
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(name, workdir)
        self.binary = binary
        self.address = address or next_loopback_address()
        self.client_port, self.peer_port = free_ports(self.address, 2)
        self.data_dir = workdir / "data"
        self.extra_args = list(extra_args)

    @property
    def client_url(self) -> str:
        return f"http://{self.address}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address}:{self.peer_port}"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.name}={self.peer_url}",
            "--initial-cluster-state=new",
            # A throw-away test store: durability is not needed, speed is.
            "--unsafe-no-fsync",
            "--snapshot-count=10000",
            "--log-level=warn",
            *self.extra_args,
        ]

    def is_ready(self) -> bool:
        status, raw = http_request(f"{self.client_url}/health", timeout=1)
        if status != 200:
            return False
        body = json.loads(raw)
        return isinstance(body, dict) and body.get("health") == "true"

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, raw = http_request(f"{self.client_url}{path}", method="POST",
                                   body=json.dumps(body).encode(),
                                   headers={"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"etcd {path}: HTTP {status}: {raw[:200]!r}")
        return dict(json.loads(raw))

    def compact(self) -> int:
        """Two writes outside the API's keys, then compaction at the newest revision: a watch
        from any older resourceVersion gets 410 Gone. Returns that revision."""
        key = base64.b64encode(f"dse-test/{uuid.uuid4().hex}".encode()).decode()
        for _ in range(2):
            self._post("/v3/kv/put", {"key": key, "value": base64.b64encode(b"x").decode()})
        revision = int(self._post("/v3/kv/range", {"key": key})["header"]["revision"])
        self._post("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        self._post("/v3/kv/deleterange", {"key": key})
        return revision
