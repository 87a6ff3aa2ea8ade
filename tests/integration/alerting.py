"""Helpers for the alerting end-to-end test: the rig's Prometheus and Alertmanager as managed
processes, a webhook receiver, a TCP proxy in front of the API server (to cut the agents'
watches), and the rows the terminal summary prints."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rig import ManagedProcess, free_port
from tests.rig.net import http_request

TIMELINE: list[tuple[str, str, str, str, str, str]] = []
"""Rows for the terminal summary: step, alert, fired, webhook got it, resolved, webhook got the
resolution; times in seconds after the step's action."""
DASHBOARD_CHECKS: list[tuple[str, int, int]] = []
"""Rows for the terminal summary: dashboard, panel queries and variable queries checked."""

LOCAL = "127.0.0.1"


class PrometheusError(RuntimeError):
    pass


class Prometheus(ManagedProcess):
    """Prometheus with a 1 s scrape and evaluation interval and the given rule file."""

    def __init__(self, binary: Path, workdir: Path, *, targets: Mapping[str, str],
                 rules: Mapping[str, Any], alertmanager: str, job: str,
                 cluster: str, features: Sequence[str] = ()) -> None:
        super().__init__("prometheus", workdir)
        self.binary = binary
        self.features = features
        self.port = free_port(LOCAL)
        self.rules = rules
        # The agent does not export `node`: the scrape job adds it, as the chart's monitors do.
        relabel: list[dict[str, Any]] = [
            {"source_labels": ["__address__"], "regex": address.replace(".", r"\."),
             "target_label": "node", "replacement": node}
            for node, address in targets.items()]
        relabel.append({"target_label": "cluster", "replacement": cluster})
        self.config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": [{
                "job_name": job,
                "static_configs": [{"targets": list(targets.values())}],
                "relabel_configs": relabel,
            }],
        }

    @property
    def url(self) -> str:
        return f"http://{LOCAL}:{self.port}"

    def prepare(self) -> None:
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config))
        (self.workdir / "rules.yaml").write_text(yaml.safe_dump(dict(self.rules)))

    def command(self) -> list[str]:
        return [str(self.binary), "--config.file=prometheus.yml",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={LOCAL}:{self.port}",
                # Alerts reach Alertmanager on the evaluation that changes them (default 1m).
                "--rules.alert.resend-delay=1s",
                *(f"--enable-feature={feature}" for feature in self.features)]

    def is_ready(self) -> bool:
        return http_request(f"{self.url}/-/ready", timeout=1)[0] == 200

    def api(self, path: str, params: Mapping[str, str | float]) -> Any:
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        status, body = http_request(f"{self.url}/api/v1/{path}?{query}", timeout=10)
        payload = json.loads(body)
        if status != 200 or payload.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params)}: {status} {payload.get('error')}")
        return payload["data"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> Any:
        return self.api("query_range", {"query": expr, "start": start, "end": end,
                                        "step": step})

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts", {})["alerts"]
        return alerts


class Alertmanager(ManagedProcess):
    """Alertmanager routing everything to one webhook, with 1 s grouping and no cluster port."""

    def __init__(self, binary: Path, workdir: Path, *, webhook: str) -> None:
        super().__init__("alertmanager", workdir)
        self.binary = binary
        self.port = free_port(LOCAL)
        self.config = {
            "route": {"receiver": "webhook", "group_by": ["alertname", "cluster", "node",
                                                          "namespace", "service", "layer"],
                      "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "webhook", "webhook_configs": [
                {"url": webhook, "send_resolved": True}]}],
        }

    @property
    def address(self) -> str:
        return f"{LOCAL}:{self.port}"

    def prepare(self) -> None:
        (self.workdir / "alertmanager.yml").write_text(yaml.safe_dump(self.config))

    def command(self) -> list[str]:
        return [str(self.binary), "--config.file=alertmanager.yml",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={self.address}",
                "--cluster.listen-address="]  # no gossip port on 0.0.0.0

    def is_ready(self) -> bool:
        return http_request(f"http://{self.address}/-/ready", timeout=1)[0] == 200


@dataclass(frozen=True)
class Notification:
    received: float
    """time.monotonic() when the webhook got it."""
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]


class Webhook:
    """Alertmanager's webhook receiver: records every alert of every POST, with its arrival."""

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        received = self._received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest's output clean

        self.server = ThreadingHTTPServer((LOCAL, 0), Handler)
        self.url = f"http://{LOCAL}:{self.server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _received(self, payload: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            self.notifications += [
                Notification(now, a["status"], a["labels"], a["annotations"])
                for a in payload.get("alerts", [])]

    def start(self) -> Webhook:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def since(self, t: float) -> list[Notification]:
        with self._lock:
            return [n for n in self.notifications if n.received >= t]

    def first(self, alertname: str, status: str, since: float,
              match: Mapping[str, str] | None = None) -> Notification | None:
        for n in self.since(since):
            if (n.labels.get("alertname") == alertname and n.status == status
                    and all(n.labels.get(k) == v for k, v in (match or {}).items())):
                return n
        return None


class ApiProxy:
    """A TCP proxy in front of the API server, on its address (so its TLS name still matches);
    `reset()` cuts every connection, as a load balancer restart would."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server((host, 0))
        self.port = int(self.listener.getsockname()[1])
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> ApiProxy:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def reset(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.reset()


def has_data(result: Mapping[str, Any]) -> bool:
    """A query_range result holds at least one real (not NaN) value."""
    return any(not math.isnan(float(value)) for series in result["result"]
               for _, value in series["values"])


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Grafana's template variables, longest name first (`$__rate_interval` before `$__r`)."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
    return expr


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
            for row in rows]


def write_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMELINE:
        terminalreporter.section("alerting timeline (seconds after the step's action)")
        header = ("step", "alert", "fired", "webhook", "resolved", "webhook resolved")
        for line in _table([header, *TIMELINE]):
            terminalreporter.write_line(line)
    if DASHBOARD_CHECKS:
        terminalreporter.section("dashboard queries checked against the live Prometheus")
        total = (sum(r[1] for r in DASHBOARD_CHECKS), sum(r[2] for r in DASHBOARD_CHECKS))
        rows = [("dashboard", "panel queries", "variable queries"),
                *[(d, str(p), str(v)) for d, p, v in DASHBOARD_CHECKS],
                ("total", str(total[0]), str(total[1]))]
        for line in _table(rows):
            terminalreporter.write_line(line)
