"""`run`: the agent on a node, against the cluster's API server and DNS layers."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket

import aiohttp
from prometheus_client import CollectorRegistry

from exporter.agent import Agent
from exporter.core.layers import Discovery
from exporter.core.records import ServerRef, with_port
from exporter.io.kubeauth import KubeAuthorizer
from exporter.io.kubeconfig import discover
from exporter.io.metrics import Metrics
from exporter.io.node import check_zone, static_layers
from exporter.io.tasks import Background
from exporter.io.watch import KubeApi, KubeSource, resources
from exporter.settings import Settings

log = logging.getLogger(__name__)
NODE_LOCAL_RECHECK = 30.0


async def watch_node_local(settings: Settings, agent: Agent, discovery: Discovery) -> None:
    """Check the NodeLocal DNSCache address until it serves the cluster zone, then add the
    layer; say once why it is not used, and again whenever the reason changes."""
    address = with_port(settings.node_local_address)
    said = None
    while True:
        problem = (await check_zone(ServerRef("node-local", address), settings.zone,
                                    settings.probe_timeout)).problem
        if problem is None:
            break
        if problem != said:
            log.info("node-local layer not used: %s; checking again every %g s", problem,
                     NODE_LOCAL_RECHECK)
            said = problem
        await asyncio.sleep(NODE_LOCAL_RECHECK)
    log.info("node-local DNS cache serves %s at %s: probing it", settings.zone, address)
    discovery.node_local = address
    agent.set_servers(discovery.servers())


async def freeze_after_sync(agent: Agent) -> None:
    """The synced state lives for good: keep it out of every later full collection, which
    would otherwise pause the loop for 100 ms or more at 10,000 slices."""
    await agent.synced.wait()
    gc.collect()
    gc.freeze()


async def run_agent(settings: Settings, stop: asyncio.Event) -> None:
    access = discover(settings.kubeconfig, context=settings.context)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    node = settings.node_name or socket.gethostname()
    discovery = Discovery(node=node,
                          replicas_per_node=settings.coredns_replicas_per_node,
                          enabled=frozenset(settings.layers),
                          static=static_layers(settings.static_servers, settings.layers,
                                               settings.resolv_conf))
    agent = Agent(settings, (), metrics, discovery=discovery, node=node)
    async with aiohttp.ClientSession() as session:
        api = KubeApi(access, session)
        http = agent.http_server(registry, KubeAuthorizer(api).decide
                                 if settings.kubernetes_authorization else None)
        await http.start(settings.listen)
        log.info("serving %s and /status on %s (port %d); API server %s (%s)",
                 settings.telemetry_path, settings.listen, http.port, access.server,
                 access.source)
        try:
            await _watch(settings, agent, discovery, api, metrics, stop)
        finally:
            await http.stop()
            now = agent.clock()
            log.info("shutting down after %.0f s: %d windows open, %d targets monitored",
                     now - agent.started, sum(1 for _ in agent.comparator.open_detail(now)),
                     len(agent.truth.monitored))


async def _watch(settings: Settings, agent: Agent, discovery: Discovery, api: KubeApi,
                 metrics: Metrics, stop: asyncio.Event) -> None:
    async with Background() as tasks:
        source = KubeSource(
            api,
            resources(settings.watched_namespaces(), settings.kube_dns_namespace,
                      settings.kube_dns_service, settings.coredns_namespace_labels,
                      dns=discovery.needs_service, members=settings.shard_target()),
            on_restart=lambda reason: metrics.watch_restarts.labels(reason).inc(),
            watch_timeout=settings.watch_timeout, start_jitter=settings.watch_start_jitter)
        tasks.start(agent.run(source.events(), stop), "agent")
        tasks.start(freeze_after_sync(agent), "freeze")
        if "node-local" in settings.layers:
            tasks.start(watch_node_local(settings, agent, discovery), "node-local")
        await tasks.wait(stop)
