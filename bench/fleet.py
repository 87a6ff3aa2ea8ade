"""The DNS load of a fleet of agents on the cluster-wide layers, with and without sharding.

Starts etcd and kube-apiserver from the rig, two real CoreDNS replicas with their `prometheus`
plugin and a node-local in front of both (tests/integration/fleet.py), headless targets whose
endpoints' readiness flaps every second, and 3 then 6 agent processes, sharded (the agents'
own slice names them) and unsharded. For each, over the same span and the same churn:

- the queries per second each replica received, less those the node-local forwarded to it
  (CoreDNS's own counts): what the agents sent to the replicas themselves;
- those the node-local forwarded, for the agents' node-local probes that missed its cache;
- the agents' own count of probes per layer, all agents together.

Then the cost model of docs/scale.md at 100, 1,000 and 5,000 nodes, computed from what this run
measured per agent (names per target, from the unsharded probes; bytes per endpoint of the
agents' slice, from the API server) and the defaults (`Settings`).

The last line is the ratio, 6 agents to 3, of the per-replica queries with sharding: 1.0 is a
load that does not grow with the fleet.

    .venv/bin/python -m bench.fleet             # about 4 minutes
    .venv/bin/python -m bench.fleet --quick     # about 2 minutes: 10 s spans
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

from bench.report import section, table
from bench.rig import start_api
from exporter.core.records import Target
from exporter.io.watch import resources
from exporter.settings import Settings
from tests.integration.fleet import (
    AGENTS,
    Load,
    Membership,
    Targets,
    dns_side,
    fleet_load,
    publish_dns,
)
from tests.rig import KubeClient, Rig, api_path

FLEETS = ((3, True), (6, True), (3, False), (6, False))
SWEEP = 5.0
"""The harness's sweep_interval (tests/integration/fleet.py)."""
SLICE_BYTES, SERVICE_BYTES = 2_061, 936
"""A headless slice of 3 endpoints and its Service in a list, `managedFields` included, as
bench/watch_ingest.py measured them (docs/benchmarks.md, "API cost per agent")."""
MODEL_TARGETS = 1_000


def member_bytes(kube: KubeClient, members: Membership, count: int = 100) -> float:
    """Bytes per endpoint of the agents' slice as the API server returns it."""
    members.set([f"node-{i:04d}" for i in range(count)])
    path = api_path("discovery.k8s.io/v1", "endpointslices", members.namespace,
                    f"{AGENTS}-fleet")
    size = len(json.dumps(kube.get(path), separators=(",", ":")))
    members.set([])
    return size / count


def model(names: float, per_endpoint: float) -> str:
    """docs/scale.md's table: steady state, every agent sweeping at the default budget."""
    d = Settings()
    k, extra, servers = d.shard_owners, d.shard_node_local_extra, 1 + d.coredns_replicas_per_node
    steady = d.probe_budget_qps * 0.5  # the sweep's share (core/schedule.py, steady_share)
    plain = resources((), d.kube_dns_namespace, d.kube_dns_service)
    sharded = resources((), d.kube_dns_namespace, d.kube_dns_service, members=Target("m", "a"))
    # kube-proxy, for scale: Services, non-headless EndpointSlices and its Node, listed whole;
    # here with as many ClusterIP Services of 3 endpoints as the targets.
    proxy_mb = MODEL_TARGETS * (SLICE_BYTES + SERVICE_BYTES) / 1e6
    rows = []
    for nodes in (100, 1_000, 5_000):
        for on in (False, True):
            owned = min(MODEL_TARGETS, k * MODEL_TARGETS / nodes) if on else MODEL_TARGETS
            local = min(MODEL_TARGETS, owned + extra) if on else MODEL_TARGETS
            wide_pairs, local_pairs = owned * names * servers, local * names
            need = (wide_pairs + local_pairs) / d.sweep_interval
            scale = min(1.0, steady / need)  # a sweep slower than sweep_interval
            wide = wide_pairs / d.sweep_interval * scale
            forwarded = local_pairs / d.sweep_interval * scale  # node-local TTL 5 < sweep
            period = d.sweep_interval / scale
            list_mb = (MODEL_TARGETS * (SLICE_BYTES + SERVICE_BYTES)
                       + (nodes * per_endpoint if on else 0)) / 1e6
            watches = len(sharded if on else plain)
            rows.append([f"{nodes:,}", f"k={k}" if on else "off",
                         f"{watches} / {watches * nodes:,}",
                         f"{list_mb:.1f} / {list_mb * nodes / 1000:,.1f}",
                         f"{wide:.2f} / {wide * nodes:,.0f}", f"{forwarded:.2f}",
                         f"{forwarded * nodes:,.0f}", f"{period:,.0f}",
                         f"{d.probe_budget_qps * nodes:,.0f}"])
    rows.append(["any", "kube-proxy", "3 per node", f"{proxy_mb:.1f} per node", "-", "-",
                 "-", "-", "-"])
    return table(["nodes", "sharding", "watches: agent / fleet",
                  "list MB (plain): agent / fleet GB", "cluster-wide qps: agent / fleet",
                  "node-local qps per agent", "node-local misses to CoreDNS, fleet",
                  "sweep period s", "worst case qps, fleet (all in fast mode)"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured span per fleet")
    parser.add_argument("--quick", action="store_true", help="10 s spans")
    parser.add_argument("--targets", type=int, default=8, help="headless Services")
    parser.add_argument("--owners", type=int, default=2, help="shard_owners")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else args.seconds
    rig = Rig.load()
    loads: dict[tuple[int, bool], Load] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        api = start_api(rig, work, stack)
        kube = api.client()
        namespace = f"fleet-{uuid.uuid4().hex[:6]}"
        kube.create_namespace(namespace, wait_for_default_sa=False)  # no pods here
        dns = stack.enter_context(dns_side(rig, work / "dns", api))
        publish_dns(kube, namespace, dns)
        targets = Targets(kube, namespace, args.targets, 3).create()
        members = Membership(kube, namespace).create()
        per_endpoint = member_bytes(kube, members)
        for count, sharded in FLEETS:
            print(f"fleet: {count} agents, {'sharded' if sharded else 'unsharded'}, "
                  f"{seconds:g} s ...", flush=True)
            loads[(count, sharded)] = fleet_load(
                dns, targets, members, api.kubeconfig_path, work / str(len(loads)), count,
                sharded, args.owners, seconds)
    replicas = sorted(loads[FLEETS[0]].direct)
    rows = []
    for (count, sharded), load in loads.items():
        rows.append([str(count), f"k={args.owners}" if sharded else "off",
                     *(f"{load.direct[r]:.1f}" for r in replicas),
                     f"{sum(load.via_nodelocal.values()):.1f}",
                     f"{load.probes.get('coredns', 0.0):.1f}",
                     f"{load.probes.get('node-local', 0.0):.1f}"])
    section(f"Queries per second, {args.targets} targets of 3 endpoints, an endpoint flapped "
            f"every second, {seconds:g} s per fleet", table(
                ["agents", "sharding", *(f"replica {r}" for r in replicas),
                 "via node-local", "agents' coredns probes", "agents' node-local probes"],
                rows))
    names = loads[(3, False)].probes["coredns"] * SWEEP / (3 * args.targets * len(replicas))
    section(f"Cost model, {MODEL_TARGETS:,} targets of 3 endpoints, the default settings "
            f"(measured: {names:.1f} names per target, {per_endpoint:.0f} bytes per endpoint "
            "of the agents' slice)", model(names, per_endpoint))
    without = [loads[(6, False)].direct[r] / loads[(3, False)].direct[r] for r in replicas]
    print("\nwithout sharding, 6 agents / 3 agents, per replica: "
          + ", ".join(f"{x:.2f}" for x in without))
    ratios = [loads[(6, True)].direct[r] / loads[(3, True)].direct[r] for r in replicas]
    print("ratio 6 agents / 3 agents, per-replica qps with sharding: "
          + ", ".join(f"{x:.2f}" for x in ratios))


if __name__ == "__main__":
    main()
