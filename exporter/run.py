"""`run`: the agent on a node, against the cluster's API server and DNS layers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from exporter.agent import Agent
from exporter.comparator import ServerRef
from exporter.dnsmsg import QueryWire
from exporter.kubeconfig import discover
from exporter.layers import Discovery, first_nameserver, host_port, split_static, with_port
from exporter.metrics import Metrics
from exporter.probe import Prober
from exporter.records import Question
from exporter.server import HttpServer
from exporter.settings import Settings
from exporter.watch import KubeApi, KubeSource, resources

log = logging.getLogger(__name__)
NODE_LOCAL_RECHECK = 30.0


def static_layers(settings: Settings) -> tuple[ServerRef, ...]:
    servers = [ServerRef(*split_static(entry)) for entry in settings.static_servers]
    if "resolv-conf" in settings.layers:
        try:
            nameserver = first_nameserver(Path(settings.resolv_conf).read_text())
        except OSError as exc:
            log.warning("resolv-conf layer off: cannot read %s (%s)", settings.resolv_conf,
                        exc.strerror)
            nameserver = None
        if nameserver:
            servers.append(ServerRef("resolv-conf", host_port(nameserver)))
    return tuple(servers)


async def node_local_answers(settings: Settings) -> str | None:
    """The NodeLocal DNSCache address if it answers a probe now, else None."""
    address = with_port(settings.node_local_address)
    prober = Prober(ServerRef("node-local", address), settings.probe_timeout, QueryWire())
    try:
        result = await prober.probe(Question(f"kubernetes.default.svc.{settings.zone.strip('.')}.",
                                             "A"))
    finally:
        prober.close()
    return address if result.answer is not None else None


async def watch_node_local(settings: Settings, agent: Agent, discovery: Discovery) -> None:
    """Probe the NodeLocal DNSCache address until it answers, then add the layer."""
    while True:
        address = await node_local_answers(settings)
        if address is not None:
            break
        await asyncio.sleep(NODE_LOCAL_RECHECK)
    log.info("node-local DNS cache answers at %s: probing it", address)
    discovery.node_local = address
    agent.set_servers(discovery.servers())


async def run_agent(settings: Settings, stop: asyncio.Event) -> None:
    access = discover(settings.kubeconfig)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    discovery = Discovery(node=settings.node_name or socket.gethostname(),
                          replicas_per_node=settings.coredns_replicas_per_node,
                          enabled=frozenset(settings.layers), static=static_layers(settings))
    agent = Agent(settings, (), metrics, discovery=discovery)
    http = HttpServer(registry, lambda: setattr(metrics, "snapshot", agent.snapshot()),
                      lambda: agent.ready)
    await http.start(settings.listen)
    log.info("serving metrics on %s (port %d); API server %s", settings.listen, http.port,
             access.server)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as session:
            source = KubeSource(
                KubeApi(access, session),
                resources(settings.namespaces, settings.kube_dns_namespace,
                          settings.kube_dns_service),
                on_restart=lambda reason: metrics.watch_restarts.labels(reason).inc(),
                watch_timeout=settings.watch_timeout, start_jitter=settings.watch_start_jitter)
            if "node-local" in settings.layers:
                tasks.append(asyncio.create_task(watch_node_local(settings, agent, discovery)))
            await agent.run(source.events(), stop)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await http.stop()
