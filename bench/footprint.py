"""Footprint and scrape cost of the agent at 1,000 headless Services, at the default budget.

Starts etcd, kube-apiserver and two CoreDNS (cluster, node-local) from the rig, creates N
headless Services with a 3-endpoint EndpointSlice each, and runs `dns-staleness-exporter run`
against them with the default settings. It then measures, in the same run:

- RSS and CPU of the agent in steady state, beside a bare interpreter that imports the same
  packages (the peer: what Python alone costs);
- /metrics render time and size;
- probe round trips from the agent's own histogram while nobody scrapes, then while a scraper
  hammers /metrics: a render runs on the loop from a snapshot, so the two should match;
- /status (the HTML page, which builds the whole status document) fetched every 0.2 s with
  about 100 windows open, and the probe round trips meanwhile. The windows are real: the
  cluster CoreDNS runs with the kubernetes plugin's `labels` option and `--hidden` Services do
  not match it, so CoreDNS answers NXDOMAIN where the agent (not told of the option) expects
  records, on both layers, for as long as the run lasts; they open as the sweep reaches each
  name (at 20 qps it takes about 17 minutes to visit all 10,000 pairs).

    .venv/bin/python -m bench.footprint [--services 1000] [--seconds 60] [--hidden 6]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.rig import start_api
from tests.rig import CoreDNS, KubeApiServer, KubeClient, Rig, api_path, free_port

NS = "footprint"
HIDDEN = "dse-bench"
"""Services with this label set to "hidden" are not served by the cluster CoreDNS."""
IMPORTS = "import aiohttp, dns.message, prometheus_client, uvloop, yaml, exporter.agent"
LOADER = "import kubernetes.config.kube_config"
"""What `run` imports for a kubeconfig, as here; in a pod it does not."""


def log(text: str) -> None:
    print(f"footprint: {text}", file=sys.stderr, flush=True)


def proc_stat(pid: int) -> tuple[float, int, int]:
    """CPU seconds (user + system), RSS and peak RSS in KiB."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return ticks / 100.0, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def populate(kube: KubeClient, services: int, hidden: int) -> float:
    started = time.monotonic()
    kube.create_namespace(NS, wait_for_default_sa=False)  # no controller manager here

    def one(i: int) -> None:
        name = f"svc-{i}"
        kube.create(api_path("v1", "services", NS), {
            "metadata": {"name": name,
                         "labels": {HIDDEN: "hidden" if i < hidden else "served"}},
            "spec": {"clusterIP": "None", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80}]}})
        kube.create(api_path("discovery.k8s.io/v1", "endpointslices", NS), {
            "metadata": {"name": f"{name}-x", "labels": {
                "kubernetes.io/service-name": name, "service.kubernetes.io/headless": "",
                HIDDEN: "hidden" if i < hidden else "served"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.{i // 250}.{i % 250}.{p + 1}"], "hostname": f"p{p}",
                           "conditions": {"ready": True}} for p in range(3)],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]})
        if i % 200 == 199:
            log(f"created {i + 1} of {services} Services with their slices")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(services)))
    return time.monotonic() - started


def get(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
    return time.perf_counter() - started, body


def gzip_cost(body: bytes, level: int, repeats: int = 200) -> tuple[float, int]:
    """Best time of `repeats` compressions of `body` at `level`, and the compressed size."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        out = gzip.compress(body, level)
        best = min(best, time.perf_counter() - started)
    return best, len(out)


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts summed over all label sets."""
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                le = float(sample.labels["le"])
                out[le] = out.get(le, 0.0) + sample.value
    return out


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile q of the samples between two scrapes."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0.0
    for le, count in delta:
        if total and count >= q * total:
            return le
    return float("nan")


@contextmanager
def cluster(rig: Rig, work: Path) -> Iterator[tuple[KubeApiServer, CoreDNS, CoreDNS]]:
    with ExitStack() as stack:
        apiserver = start_api(rig, work, stack)
        core = CoreDNS.cluster(rig.coredns, work / "cluster", apiserver=apiserver, ttl=5,
                               cache=5, kubernetes_options=[f"labels {HIDDEN}=served"]).start()
        stack.callback(core.stop)
        local = CoreDNS.nodelocal(rig.coredns, work / "nodelocal", upstream=core).start()
        stack.callback(local.stop)
        yield apiserver, core, local


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="length of each measured phase")
    parser.add_argument("--hidden", type=int, default=30,
                        help="Services the cluster CoreDNS does not serve: each of their names "
                             "opens windows as the sweep reaches it (about 100 by phase 3)")
    args = parser.parse_args()
    rig = Rig.load()
    with tempfile.TemporaryDirectory() as tmp, cluster(rig, Path(tmp)) as (api, core, local):
        created = populate(api.client(), args.services, args.hidden)
        log(f"{args.services} Services and slices in {created:.1f} s")
        port = free_port("127.0.0.1")
        agent = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "--kubeconfig", str(api.kubeconfig_path),
             "--web.listen-address", f"127.0.0.1:{port}", "--layers", "node-local",
             "--static-servers",
             f"coredns={core.hostport}", "--node-local-address", local.hostport,
             "--watch-start-jitter", "0", "--node-name", "bench"], stderr=subprocess.DEVNULL)
        peer = subprocess.Popen([sys.executable, "-c", f"{IMPORTS}; {LOADER}; import time; "
                                 "time.sleep(600)"])
        in_pod = subprocess.Popen([sys.executable, "-c", f"{IMPORTS}; import time; "
                                   "time.sleep(600)"])
        url = f"http://127.0.0.1:{port}"
        try:
            started = time.monotonic()
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                        break
                except OSError:
                    time.sleep(0.1)
            sync = time.monotonic() - started
            log(f"agent ready after {sync:.1f} s; settling for 10 s")
            time.sleep(10)
            cpu0, _, _ = proc_stat(agent.pid)
            first = get(f"{url}/metrics")[1].decode()
            t0 = time.monotonic()
            log(f"phase 1: {args.seconds:g} s without scrapes")
            time.sleep(args.seconds)
            cpu1, rss, peak = proc_stat(agent.pid)
            quiet_wall = time.monotonic() - t0
            middle = get(f"{url}/metrics")[1].decode()
            log(f"phase 2: {args.seconds:g} s with a scrape every 0.2 s")
            renders: list[float] = []
            t1 = time.monotonic()
            while time.monotonic() - t1 < args.seconds:
                renders.append(get(f"{url}/metrics")[0])
                time.sleep(0.2)
            cpu2, _, peak2 = proc_stat(agent.pid)
            busy_wall = time.monotonic() - t1
            last_body = get(f"{url}/metrics")[1]
            last = last_body.decode()
            log(f"phase 3: {args.seconds:g} s with /status every 0.2 s, /api/v1/status every s")
            pages: list[float] = []
            apis: list[float] = []
            opened_before = json.loads(get(f"{url}/api/v1/status")[1])["open_windows_total"]
            t2 = time.monotonic()
            while time.monotonic() - t2 < args.seconds:
                took, page = get(f"{url}/status")
                pages.append(took)
                if len(pages) % 5 == 0:
                    took, doc = get(f"{url}/api/v1/status")
                    apis.append(took)
                time.sleep(0.2)
            status = json.loads(doc)
            cpu3, _, peak3 = proc_stat(agent.pid)
            status_wall = time.monotonic() - t2
            after_status = get(f"{url}/metrics")[1].decode()
            _, peer_rss, _ = proc_stat(peer.pid)
            _, in_pod_rss, _ = proc_stat(in_pod.pid)
        finally:
            for proc in (agent, peer, in_pod):
                proc.terminate()
                proc.wait(10)

    def probes(text: str) -> float:
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "dns_staleness_probes_total")

    series = sum(1 for line in last.splitlines() if line and not line.startswith("#"))
    gzipped = {level: gzip_cost(last_body, level) for level in (1, 6)}
    quiet = (histogram(first, "dns_staleness_probe_duration_seconds"),
             histogram(middle, "dns_staleness_probe_duration_seconds"))
    busy = (quiet[1], histogram(last, "dns_staleness_probe_duration_seconds"))
    paged = (busy[1], histogram(after_status, "dns_staleness_probe_duration_seconds"))
    renders.sort()
    pages.sort()
    apis.sort()
    metrics_p50 = renders[len(renders) // 2]
    rows = [
        ("headless Services", f"{args.services:,}", ""),
        ("initial sync to ready", f"{sync:.1f} s", ""),
        ("agent RSS, steady", f"{rss / 1024:.1f} MiB",
         f"{rss / peer_rss:.2f}x a bare interpreter with the same imports "
         f"({peer_rss / 1024:.1f} MiB)"),
        ("of which the kubeconfig loader", f"{(peer_rss - in_pod_rss) / 1024:.1f} MiB",
         "the kubernetes package, imported for --kubeconfig only: not in a pod"),
        ("agent peak RSS", f"{max(peak, peak2, peak3) / 1024:.1f} MiB", ""),
        ("agent CPU, no scrapes", f"{(cpu1 - cpu0) / quiet_wall:.1%} of a core",
         f"{probes(middle) - probes(first):,.0f} probes in {quiet_wall:.0f} s"),
        ("agent CPU, scraped every 0.2 s", f"{(cpu2 - cpu1) / busy_wall:.1%} of a core", ""),
        ("/metrics series, bytes", f"{series:,}", f"{len(last_body):,} bytes"),
        ("gzip of /metrics, level 1 (the server's)",
         f"{gzipped[1][0] * 1000:.2f} ms", f"{gzipped[1][1]:,} bytes"),
        ("gzip of /metrics, level 6 (the default)",
         f"{gzipped[6][0] * 1000:.2f} ms", f"{gzipped[6][1]:,} bytes; level 1 takes "
         f"{gzipped[1][0] / gzipped[6][0]:.2f}x its time for {gzipped[1][1] / gzipped[6][1]:.2f}x "
         "its size"),
        ("/metrics render, p50 / p99", f"{renders[len(renders) // 2] * 1000:.1f} ms",
         f"{renders[int(len(renders) * 0.99)] * 1000:.1f} ms over {len(renders)} scrapes"),
        ("probe RTT p50 / p99, no scrapes",
         f"<= {quantile(*quiet, 0.5) * 1000:g} ms", f"<= {quantile(*quiet, 0.99) * 1000:g} ms"),
        ("probe RTT p50 / p99, while scraped",
         f"<= {quantile(*busy, 0.5) * 1000:g} ms", f"<= {quantile(*busy, 0.99) * 1000:g} ms"),
        ("open windows during phase 3",
         f"{opened_before:,} to {status['open_windows_total']:,}",
         f"{args.hidden} Services CoreDNS does not serve; {status['targets']['monitored_total']:,}"
         " targets"),
        ("/status page, p50 / p99", f"{pages[len(pages) // 2] * 1000:.1f} ms",
         f"{pages[int(len(pages) * 0.99)] * 1000:.1f} ms over {len(pages)} fetches, "
         f"{len(page):,} bytes; p50 {pages[len(pages) // 2] / metrics_p50:.2f}x the /metrics "
         "render"),
        ("/api/v1/status, p50 / p99", f"{apis[len(apis) // 2] * 1000:.1f} ms",
         f"{apis[int(len(apis) * 0.99)] * 1000:.1f} ms over {len(apis)} fetches, "
         f"{len(doc):,} bytes"),
        ("agent CPU, /status every 0.2 s", f"{(cpu3 - cpu2) / status_wall:.1%} of a core", ""),
        ("probe RTT p50 / p99, /status every 0.2 s",
         f"<= {quantile(*paged, 0.5) * 1000:g} ms", f"<= {quantile(*paged, 0.99) * 1000:g} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}} | value | note")
    print(f"{'-' * width}-+-------+-----")
    for name, value, note in rows:
        print(f"{name:<{width}} | {value} | {note}")


if __name__ == "__main__":
    main()
