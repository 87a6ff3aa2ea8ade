"""`wait NAMESPACE/SERVICE`: block until every expected name of the Service resolves, on every
layer the pod uses, as the truth has it; a readiness gate for batch launchers (MPI, indexed
Jobs) whose workers fail while their peers' names do not resolve yet.

It is the agent, restricted to the Service's namespace: the same truth model, probers, budget
and fast mode, so a cached NXDOMAIN is probed again when it expires, not in a tight loop.
Without the kube-dns or coredns layers (the default: node-local and the pod's resolver) it
reads nothing outside the namespace, so a namespaced Role is enough.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from typing import TextIO

import aiohttp
from prometheus_client import CollectorRegistry

from exporter.agent import Agent
from exporter.core.events import RestartReason
from exporter.core.layers import ALL_REPLICAS, Discovery
from exporter.core.readiness import Want, pending
from exporter.core.records import ServerRef, Target, with_port
from exporter.io.kubeconfig import discover
from exporter.io.metrics import Metrics
from exporter.io.node import check_zone, static_layers
from exporter.io.tasks import Background
from exporter.io.watch import ApiError, KubeApi, KubeSource, resources
from exporter.settings import Settings

EXIT_DONE, EXIT_TIMEOUT, EXIT_REFUSED = 0, 1, 2
PROGRESS = 10.0
"""Seconds between progress lines on stderr."""
SHOWN = 20
"""Lines of what is missing printed on a timeout; the rest are counted."""


async def _node_local(settings: Settings, discovery: Discovery) -> None:
    """Node-local is a layer only where it serves the cluster zone; most clusters have none."""
    if "node-local" not in settings.layers:
        return
    address = with_port(settings.node_local_address)
    found = await check_zone(ServerRef("node-local", address), settings.zone,
                             settings.probe_timeout)
    if found.problem is None:
        discovery.node_local = address


async def _refused(api: KubeApi, namespace: str) -> str | None:
    """Whether the API server lets this identity list what `wait` watches: a refusal is one
    line before any watch starts, not a watch retrying for ever."""
    for path in (f"/api/v1/namespaces/{namespace}/services",
                 f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"):
        try:
            await api.get(path, {"limit": "1"})
        except ApiError as exc:
            if exc.status in (401, 403):
                return f"the API server answered {exc.status} {exc.reason} to list {path}"
            raise
    return None


def _layers_text(servers: list[ServerRef]) -> str:
    return ", ".join(f"{s.layer} {s.address}" for s in servers) or "no layer"


async def run_wait(settings: Settings, target: Target, stop: asyncio.Event,
                   out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    started = time.monotonic()
    access = discover(settings.kubeconfig, context=settings.context)
    want = Want(settings.replicas, settings.names)
    local = replace(settings, namespaces=(target.namespace,), watch_start_jitter=0.0)
    discovery = Discovery(node="wait", replicas_per_node=ALL_REPLICAS,
                          enabled=frozenset(settings.layers),
                          static=static_layers(settings.static_servers, settings.layers,
                                               settings.resolv_conf))
    await _node_local(settings, discovery)
    agent = Agent(local, (), Metrics(CollectorRegistry()), discovery=discovery)
    refused: list[RestartReason] = []

    def on_restart(reason: RestartReason) -> None:
        if reason in (RestartReason.FORBIDDEN, RestartReason.UNAUTHORIZED):
            refused.append(reason)

    halt = asyncio.Event()
    async with aiohttp.ClientSession() as session, Background() as tasks:
        api = KubeApi(access, session)
        try:
            refusal = await _refused(api, target.namespace)
        except (ApiError, aiohttp.ClientError, OSError) as exc:
            print(f"wait {target}: cannot reach the API server at {access.server} ({exc})",
                  file=err)
            return EXIT_REFUSED
        if refusal is not None:
            print(f"wait {target}: {refusal}: grant get, list and watch on services and "
                  f"discovery.k8s.io/endpointslices in {target.namespace} (docs/wait.md)",
                  file=err)
            return EXIT_REFUSED
        source = KubeSource(api, resources(local.namespaces, settings.kube_dns_namespace,
                                           settings.kube_dns_service,
                                           settings.coredns_namespace_labels,
                                           dns=discovery.needs_service),
                            on_restart=on_restart, watch_timeout=settings.watch_timeout)
        tasks.start(agent.run(source.events(), halt), "agent")
        said = started
        lines = ["the first list of the namespace is not in yet"]
        while not stop.is_set():
            now = time.monotonic()
            if refused:
                halt.set()
                print(f"wait {target}: the API server answered {refused[0]} to the watch of "
                      f"{target.namespace}: grant get, list and watch on services and "
                      f"discovery.k8s.io/endpointslices there (docs/wait.md)", file=err)
                return EXIT_REFUSED
            servers = sorted(agent.probers)
            if agent.synced.is_set():
                lines = pending(agent.comparator, target, settings.zone, want, servers)
                if not lines:
                    halt.set()
                    names = len(agent.comparator.questions(target))
                    print(f"wait {target}: {names} names resolve as the API has them on "
                          f"{_layers_text(servers)} after {now - started:.1f} s", file=out)
                    return EXIT_DONE
            if now - started >= settings.timeout:
                halt.set()
                print(f"wait {target}: timed out after {settings.timeout:g} s; still missing "
                      f"({len(lines)}):", file=out)
                for line in lines[:SHOWN]:
                    print(f"  {line}", file=out)
                if len(lines) > SHOWN:
                    print(f"  ... and {len(lines) - SHOWN} more", file=out)
                return EXIT_TIMEOUT
            if now - said >= PROGRESS:
                said = now
                more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
                print(f"wait {target}: {now - started:.0f} s: {lines[0]}{more}", file=err,
                      flush=True)
            await tasks.wait(stop, 0.1)
        halt.set()
    return EXIT_TIMEOUT
