"""Every setting of the agent, in one typed definition.

Each field carries a one-line `doc`, its help text: flags, `DNS_STALENESS_*` variables, the YAML
file and docs/configuration.md are all derived from this class. The docs are data, not source
docstrings, so that an install of byte-compiled files keeps its --help. Precedence, lowest
first: the default, the `--config` file, the environment, the command-line flag. Values are
validated at startup; a bad one raises SettingsError naming the setting, where it came from,
and the fix.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from exporter.core import clients
from exporter.core.records import Target, ip_value, parse_target, split_address
from exporter.core.selection import PluginScope, SelectorError, parse_label_selector

ENV_PREFIX = "DNS_STALENESS_"
LAYERS = ("node-local", "kube-dns", "coredns", "resolv-conf")
COMMANDS = ("run", "demo", "check", "wait")
Check = Callable[[Any], str | None]


class SettingsError(ValueError):
    def __init__(self, name: str, source: str, problem: str) -> None:
        super().__init__(f"{name} ({source}): {problem}")
        self.name, self.source, self.problem = name, source, problem


def _at_least(low: float, integer: bool = False) -> Check:
    kind = "a whole number" if integer else "a number"
    return lambda v: None if v >= low else f"must be {kind} >= {low:g}"


def _between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low:g} and {high:g}"


def _host_port(value: str) -> str | None:
    try:
        split_address(value, None)
    except ValueError as exc:
        return f"must be HOST:PORT, e.g. 0.0.0.0:9897: {exc}"
    return None


def _ip_port(value: str) -> str | None:
    try:
        host, port = split_address(value)
    except ValueError as exc:
        return f"must be an IP or IP:PORT, e.g. 169.254.20.10 or [fd00::10]:53: {exc}"
    try:
        ip_value(host)
    except ValueError:
        return f"must be an IP address or IP:PORT, e.g. 169.254.20.10; {host!r} is not an IP"
    return None if port else "must be an IP or IP:PORT with a port from 1 to 65535"


def _dns_label(value: str) -> str | None:
    labels = value.strip(".").split(".")
    if not value or any(not 0 < len(label) <= 63 for label in labels):
        return "must be a DNS name, e.g. cluster.local"
    return None


def _selector(value: str) -> str | None:
    try:
        parse_label_selector(value)
    except SelectorError as exc:
        return f"{exc}; use Kubernetes selector syntax, e.g. app=db,tier!=cache"
    return None


def _layers(values: tuple[str, ...]) -> str | None:
    unknown = [v for v in values if v not in LAYERS]
    return f"unknown layer {unknown[0]!r}; choose from {', '.join(LAYERS)}" if unknown else None


def _targets(values: tuple[str, ...]) -> str | None:
    for value in values:
        try:
            parse_target(value)
        except ValueError as exc:
            return str(exc)
    return None


def _service(value: str) -> str | None:
    return _targets((value,)) if value else None


def _hostnames(values: tuple[str, ...]) -> str | None:
    bad = [v for v in values if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", v)]
    return (f"{bad[0]!r} is not a hostname (a DNS label: lower-case letters, digits and -)"
            if bad else None)


def _client_profiles(values: tuple[str, ...]) -> str | None:
    try:
        clients.parse_all(values)
    except ValueError as exc:
        return str(exc)
    return None


def _static(values: tuple[str, ...]) -> str | None:
    for value in values:
        name, sep, address = value.partition("=")
        if not sep or not name or _ip_port(address):
            return (f"bad entry {value!r}: write NAME=IP or NAME=IP:PORT, "
                    f"e.g. upstream=10.0.0.10:53")
    return None


def _one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


_level = _one_of("debug", "info", "warning", "error")
_LEVEL_ALIASES = {"warn": "warning"}
RESERVED_PATHS = ("/", "/healthz", "/readyz", "/status", "/api/v1/status")


def _telemetry_path(value: str) -> str | None:
    if not value.startswith("/") or any(c.isspace() or c in "?#" for c in value):
        return "must be a URL path starting with /, e.g. /metrics"
    if value.rstrip("/") in {p.rstrip("/") for p in RESERVED_PATHS}:
        return f"must not be one of the server's other paths ({', '.join(RESERVED_PATHS)})"
    return None


def setting(default: Any, check: Check | None = None, commands: tuple[str, ...] = COMMANDS,
            per_command: Mapping[str, Any] | None = None, *, doc: str, flag: str = "",
            aliases: tuple[str, ...] = (), duration: bool = False) -> Any:
    """A field with its one-line doc, its validation, the commands that read it, any command's
    own default (demo and check probe faster: demo talks to its own lab, check is a one-shot),
    its flag when it is not the name's (the exporters' `--web.*` and `--log.*`), and older
    flags that still work. A `duration` in seconds also takes a unit: 300s, 5m, 1h, 500ms."""
    return field(default=default,
                 metadata={"check": check, "commands": commands, "doc": doc, "flag": flag,
                           "defaults": dict(per_command or {}), "aliases": aliases,
                           "duration": duration})


def default_for(name: str, command: str) -> Any:
    f = Settings.__dataclass_fields__[name]
    return f.metadata["defaults"].get(command, f.default)


@dataclass(frozen=True)
class Settings:
    listen: str = setting(
        "0.0.0.0:9897", _host_port, ("run", "demo"), {"demo": "127.0.0.1:9897"},
        flag="--web.listen-address", aliases=("--listen",),
        doc="HOST:PORT of the HTTP server: metrics, /status, /healthz and /readyz.")
    web_config_file: str = setting(
        "", None, ("run", "demo"), flag="--web.config.file",
        doc=("TLS, basic auth and headers for the HTTP server, in the Prometheus "
             "exporter-toolkit's web config format (docs/operations.md); re-read on change."))
    kubernetes_authorization: bool = setting(
        False, None, ("run",), flag="--web.kubernetes-authorization",
        doc=("Let a scraper in only with a bearer token that a TokenReview accepts and a "
             "SubjectAccessReview allows to get the path (as kube-rbac-proxy does)."))
    telemetry_path: str = setting(
        "/metrics", _telemetry_path, ("run", "demo"), flag="--web.telemetry-path",
        doc="Path under which the metrics are served.")
    log_level: str = setting(
        "info", _level, COMMANDS, {"demo": "warning", "wait": "warning"}, flag="--log.level",
        aliases=("--log-level",),
        doc=("Log level: debug, info, warn (or warning) or error, in any case; the demo's "
             "own view shows its windows."))
    log_format: str = setting(
        "logfmt", _one_of("logfmt", "json"), flag="--log.format",
        doc="Log line format: logfmt or json (one object per line, the same fields).")
    status_limit: int = setting(
        100, _between(0, 10000), ("run", "demo"),
        doc=("Most windows that /status and /api/v1/status list of each kind: the oldest "
             "open ones, the newest closed ones; also caps the targets listed."))
    kubeconfig: str = setting(
        "", None, ("run", "check", "wait"),
        doc=("Kubeconfig file, or several joined by ':' and merged as kubectl does; empty "
             "means in-cluster config, then $KUBECONFIG, then ~/.kube/config."))
    context: str = setting(
        "", None, ("run", "check", "wait"),
        doc="The kubeconfig context to use; empty means its current-context.")
    zone: str = setting(
        "cluster.local", _dns_label,
        doc="The cluster domain that CoreDNS's kubernetes plugin serves.")
    namespaces: tuple[str, ...] = setting(
        (), None, ("run",),
        doc="Namespaces to monitor, comma-separated; empty means all.")
    label_selector: str = setting(
        "", _selector, ("run",),
        doc="Label selector on Services: only matching headless Services are monitored.")
    opt_out_annotation: str = setting(
        "dns-staleness-exporter.io/ignore", None, ("run",),
        doc='A Service with this annotation set to "true" is not monitored.')
    max_targets: int = setting(
        1000, _at_least(1, True), ("run",),
        doc="Most headless Services monitored at once; the rest are counted and logged as dropped.")
    probe_budget_qps: float = setting(
        20.0, _between(1, 10000), ("run", "demo", "check", "wait"),
        {"demo": 500.0, "check": 200.0},
        doc="Most DNS queries per second, over any one-second window, for all layers together.")
    probe_burst: int = setting(
        4, _at_least(1, True),
        doc="Most queries sent back to back; must not exceed probe_budget_qps.")
    probe_timeout: float = setting(
        1.0, _between(0.01, 30),
        doc="Seconds to wait for a DNS answer before counting a timeout.")
    fast_interval: float = setting(
        0.1, _between(0.01, 10),
        doc=("Seconds between probes of a changed name where the answers give no prediction: "
             "behind a balancer every this, elsewhere doubling up to fast_backoff_max."))
    fast_backoff_max: float = setting(
        1.0, _between(0.01, 60),
        doc=("Longest gap between probes of a changed name on a layer without a cache, whose "
             "answer can change at any moment."))
    fast_cap: float = setting(
        300.0, _between(1, 86400),
        doc="Seconds after which fast mode gives up on a layer that never converges.")
    sweep_interval: float = setting(
        30.0, _between(1, 86400), COMMANDS, {"wait": 2.0},
        doc="Seconds for one steady-state round of every name on every server, budget permitting.")
    history: float = setting(
        900.0, _between(10, 86400),
        doc=("Seconds a removed record stays attributable to its removal, and a removed name "
             "probed."))
    layers: tuple[str, ...] = setting(
        LAYERS, _layers, ("run", "check", "wait"), {"wait": ("node-local", "resolv-conf")},
        doc=("Discovered layers to probe, comma-separated: node-local, kube-dns, coredns, "
             "resolv-conf (wait: the pod's own, node-local and resolv-conf)."))
    node_local_address: str = setting(
        "169.254.20.10", _ip_port, ("run", "check", "wait"),
        doc=("The NodeLocal DNSCache address, IP or IP:PORT; the layer is used only once it "
             "serves the cluster zone (its SOA)."))
    balanced_layers: tuple[str, ...] = setting(
        ("kube-dns",), None, ("run", "check", "wait"),
        doc=("Layers whose address spreads queries over replicas with caches of their own (a "
             "Service IP): a window there ends when the layer last served the old state."))
    balanced_confirm_probes: int = setting(
        10, _at_least(1, True), ("run", "check", "wait"),
        doc=("Answers in a row in the new state that end a window on a balanced layer; one "
             "in the old state, from a replica behind, moves the end."))
    kube_dns_namespace: str = setting(
        "kube-system", None, ("run", "check", "wait"),
        doc="Namespace of the cluster DNS Service.")
    kube_dns_service: str = setting(
        "kube-dns", None, ("run", "check", "wait"),
        doc="Name of the cluster DNS Service; its EndpointSlices list the CoreDNS replicas.")
    resolv_conf: str = setting(
        "/etc/resolv.conf", None, ("run", "check", "wait"),
        doc="resolv.conf whose first nameserver is the resolv-conf layer.")
    static_servers: tuple[str, ...] = setting(
        (), _static, ("run", "check", "wait"),
        doc=("Extra servers, comma-separated NAME=IP[:PORT]; NAME is the layer, "
             "e.g. upstream=10.0.0.10."))
    endpoint_pod_names: bool = setting(
        False, None, ("run", "check", "wait"),
        doc=("Set when the cluster's CoreDNS kubernetes plugin has endpoint_pod_names: endpoints "
             "without a hostname are named by their pod; check reads it from the Corefile."))
    coredns_namespaces: tuple[str, ...] = setting(
        (), None, ("run", "check", "wait"),
        doc=("The kubernetes plugin's namespaces option: the namespaces CoreDNS exposes, "
             "comma-separated; empty means all. check reads it from the Corefile."))
    coredns_labels: str = setting(
        "", _selector, ("run", "check", "wait"),
        doc=("The kubernetes plugin's labels option: CoreDNS sees only Services and slices "
             "that match it. check reads it from the Corefile."))
    coredns_namespace_labels: str = setting(
        "", _selector, ("run", "check", "wait"),
        doc=("The kubernetes plugin's namespace_labels option; when set, run watches Namespaces "
             "(list and watch on namespaces). check reads it from the Corefile."))
    coredns_noendpoints: bool = setting(
        False, None, ("run", "check", "wait"),
        doc=("Set when the kubernetes plugin has noendpoints: every headless name is NXDOMAIN. "
             "check reads it from the Corefile."))
    node_name: str = setting(
        "", None, ("run",),
        doc=("This node's name (downward API): it picks the CoreDNS replicas it probes, and "
             "names this agent among the fleet's members (shard_service)."))
    coredns_replicas_per_node: int = setting(
        1, _at_least(1, True), ("run", "check", "wait"),
        doc="CoreDNS replicas each node probes directly, chosen by rendezvous hashing of the node.")
    shard_service: str = setting(
        "", _service, ("run",),
        doc=("NAMESPACE/SERVICE of the agents' own Service: its ready endpoints' nodes are the "
             "fleet that shares the targets out (docs/design.md, Sharding); empty: every "
             "agent measures every target."))
    shard_owners: int = setting(
        3, _at_least(1, True), ("run",),
        doc=("With shard_service: the agents that measure each target on the kube-dns and "
             "coredns layers; a fleet this size or smaller is unsharded."))
    shard_node_local_extra: int = setting(
        2, _at_least(0, True), ("run",),
        doc=("With shard_service: targets beyond its own shard that each agent probes at its "
             "node-local, so that every node's cache is measured."))
    fleet_budget_qps: float = setting(
        0.0, _at_least(0), ("run",),
        doc=("With shard_service: queries per second the whole fleet may send to the kube-dns "
             "and coredns layers, shared equally by the agents; 0: no fleet budget, each "
             "agent keeps to probe_budget_qps alone."))
    services: tuple[str, ...] = setting(
        (), _targets, ("run",),
        doc=("NAMESPACE/SERVICE entries to monitor, comma-separated (a sidecar's dependencies); "
             "empty means every headless Service selected; without namespaces, only theirs "
             "are watched."))
    search_names: bool = setting(
        False, None, ("run",),
        doc=("Sidecar mode: also probe each Service as its pod's applications write it, "
             "`svc.ns`, through resolv.conf's search list and ndots as glibc expands it "
             "(one query per name tried); needs layers=resolv-conf alone."))
    client_profiles: tuple[str, ...] = setting(
        ("jvm", "grpc"), _client_profiles, ("run", "demo", "check"),
        doc=("Client caches to model, comma-separated: built-in jvm, jvm-security-manager, "
             "grpc, glibc, nscd, systemd-resolved, or NAME=positive:HOLD;negative:HOLD"
             "[;stale:SECONDS] (docs/metrics.md, \"Client profiles\")."))
    watch_timeout: float = setting(
        300.0, _between(10, 3600), ("run",),
        doc="Seconds a watch request lasts before it is renewed (jittered by 20 %).")
    watch_start_jitter: float = setting(
        5.0, _between(0, 600), ("run",),
        doc="Up to this many seconds of random delay before the first list, to spread a rollout.")
    duration: float = setting(
        90.0, _between(1, 86400), ("demo",),
        doc="Seconds the demo runs before it prints its summary.")
    output: str = setting(
        "table", _one_of("table", "json"), ("check",),
        doc="check's output: table (for people) or json (docs/check-output.schema.json).")
    follow: float = setting(
        0.0, _between(0, 86400), ("check",), aliases=("--watch",), duration=True,
        doc=("Seconds check keeps probing in fast mode, reporting every window that opens or "
             "closes."))
    max_staleness: float = setting(
        0.0, _between(0, 86400), ("check",),
        doc="check fails when a layer's configured staleness bound exceeds this; 0 means no limit.")
    deadline: float = setting(
        30.0, _between(1, 3600), ("check",), duration=True,
        doc="Seconds check may take before --follow time; it never hangs past this.")
    replicas: int = setting(
        0, _at_least(0, True), ("wait",),
        doc="wait: ready addresses the Service must have, each resolving; 0 means any.")
    names: tuple[str, ...] = setting(
        (), _hostnames, ("wait",),
        doc=("wait: hostnames (pod names of a StatefulSet or an indexed Job) whose own records "
             "must resolve, comma-separated, e.g. worker-0,worker-1."))
    timeout: float = setting(
        300.0, _between(1, 86400), ("wait",), duration=True,
        doc="Seconds wait waits before it gives up (exit 1, with what is still missing).")

    def plugin_scope(self) -> PluginScope:
        """What the cluster's CoreDNS exposes, by the options above."""
        return PluginScope(frozenset(self.coredns_namespaces), self.coredns_labels,
                           self.coredns_namespace_labels, self.coredns_noendpoints)

    def targets(self) -> frozenset[Target]:
        """The Services of `services`."""
        return frozenset(parse_target(value) for value in self.services)

    def shard_target(self) -> Target | None:
        """The agents' own Service, when the fleet shares the targets out."""
        return parse_target(self.shard_service) if self.shard_service else None

    def watched_namespaces(self) -> tuple[str, ...]:
        """`namespaces`, or those of `services`: only they need watching, and a Role each."""
        return self.namespaces or tuple(sorted({t.namespace for t in self.targets()}))

    def client_models(self) -> tuple[clients.ClientProfile, ...]:
        """The client profiles of client_profiles (validated already)."""
        return clients.parse_all(self.client_profiles)

    def validate(self, sources: Mapping[str, str]) -> Settings:
        for f in fields(self):
            check = f.metadata["check"]
            problem = check(getattr(self, f.name)) if check else None
            if problem:
                raise SettingsError(f.name, sources.get(f.name, "default"), problem)
        if self.coredns_namespaces and self.coredns_namespace_labels:
            raise SettingsError("coredns_namespace_labels",
                                sources.get("coredns_namespace_labels", "default"),
                                "cannot be set with coredns_namespaces: CoreDNS refuses both")
        if self.search_names and (set(self.layers) != {"resolv-conf"} or self.static_servers):
            raise SettingsError("search_names", sources.get("search_names", "default"),
                                "probes through the pod's resolver only: set layers to "
                                "resolv-conf and no static_servers (docs/sidecar.md)")
        if self.search_names and not Path(self.resolv_conf).is_file():
            raise SettingsError("resolv_conf", sources.get("resolv_conf", "default"),
                                f"{self.resolv_conf} is not a readable file, which "
                                "search_names expands names with")
        if self.fleet_budget_qps and not self.shard_service:
            raise SettingsError("fleet_budget_qps", sources.get("fleet_budget_qps", "default"),
                                "is shared by the fleet that shard_service names: set that too")
        if self.probe_burst > self.probe_budget_qps:
            raise SettingsError("probe_burst", sources.get("probe_burst", "default"),
                                f"must not exceed probe_budget_qps ({self.probe_budget_qps:g})")
        if self.fast_backoff_max < self.fast_interval:
            raise SettingsError("fast_backoff_max", sources.get("fast_backoff_max", "default"),
                                f"must not be below fast_interval ({self.fast_interval:g})")
        return self


def field_docs() -> dict[str, str]:
    """The one-line doc of every setting."""
    return {f.name: f.metadata["doc"] for f in fields(Settings)}


def flag_of(name: str) -> str:
    own: str = Settings.__dataclass_fields__[name].metadata["flag"]
    return own or "--" + name.replace("_", "-")


def flags_of(name: str) -> list[str]:
    """The flag, then the older spellings that still work."""
    return [flag_of(name), *Settings.__dataclass_fields__[name].metadata["aliases"]]


def env_of(name: str) -> str:
    return ENV_PREFIX + name.upper()


def settings_for(command: str) -> list[str]:
    return [f.name for f in fields(Settings) if command in f.metadata["commands"]]


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)\s*$")


def _convert(raw: Any, kind: Any, duration: bool = False) -> Any:
    if kind == "tuple[str, ...]":
        if isinstance(raw, list | tuple):
            items = [str(v) for v in raw]
        elif isinstance(raw, str):
            items = raw.split(",")
        else:
            raise ValueError("must be a list or a comma-separated string")
        return tuple(item.strip() for item in items if item.strip())
    if kind == "bool":
        text = str(raw).strip().lower()
        if text not in _BOOLEANS:
            raise ValueError(f"must be true or false, got {raw!r}")
        return _BOOLEANS[text]
    if isinstance(raw, bool | list | dict):
        raise ValueError(f"must be a single {kind}, got {type(raw).__name__}")
    if kind == "int":
        text = str(raw).strip()
        if not text.lstrip("-").isdigit():
            raise ValueError(f"must be a whole number, got {raw!r}")
        return int(text)
    if kind == "float":
        if duration and isinstance(raw, str) and (match := _DURATION.match(raw)):
            return float(match[1]) * _UNITS[match[2]]
        try:
            value = float(raw)
        except ValueError:
            unit = " of seconds, or with a unit: 300s, 5m, 1h" if duration else ""
            raise ValueError(f"must be a number{unit}, got {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {raw!r}")
        return value
    return str(raw)


def _read_file(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SettingsError("config", f"--config {path}",
                            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                            f"{exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise SettingsError("config", f"--config {path}",
                            f"cannot read the file ({exc.strerror}); check the path") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SettingsError("config", f"--config {path}",
                            f"not valid YAML{where}; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError("config", f"--config {path}",
                            "must be a mapping of setting names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def load(command: str, flags: Mapping[str, Any], env: Mapping[str, str],
         config_path: str | None) -> Settings:
    """Merge default < file < environment < flags, convert, and validate."""
    kinds = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in fields(Settings):
        if command in f.metadata["defaults"]:
            values[f.name] = f.metadata["defaults"][command]
    origins: list[tuple[Mapping[str, Any], Callable[[str], str]]] = []
    if config_path:
        origins.append((_read_file(config_path), lambda n: f"{config_path}: {n}"))
    origins.append(({var[len(ENV_PREFIX):].lower(): raw for var, raw in env.items()
                     if var.startswith(ENV_PREFIX)}, env_of))
    origins.append(({n: v for n, v in flags.items() if v is not None}, flag_of))
    used = set(settings_for(command))
    for raw_values, describe in origins:
        for name, raw in raw_values.items():
            if name not in kinds:
                close = difflib.get_close_matches(name, kinds, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                known = ", ".join(sorted(kinds))
                raise SettingsError(name, describe(name),
                                    f"unknown setting; {hint}known: {known}")
            if describe is not flag_of and name not in used:
                continue  # one file or environment can serve every command
            try:
                values[name] = _convert(raw, kinds[name],
                                        Settings.__dataclass_fields__[name].metadata["duration"])
            except ValueError as exc:
                raise SettingsError(name, describe(name), str(exc)) from None
            sources[name] = describe(name)
    if "log_level" in values:
        level = str(values["log_level"]).lower()
        values["log_level"] = _LEVEL_ALIASES.get(level, level)
    settings = replace(Settings(), **values).validate(sources)
    if command in ("run", "check", "wait") and not settings.layers and not settings.static_servers:
        raise SettingsError("layers", sources.get("layers", "default"),
                            "is empty and so is static_servers: nothing to probe; name a "
                            f"layer ({', '.join(LAYERS)}) or a static server")
    return settings


def reference_table() -> str:
    """The Markdown table of docs/configuration.md, so the docs cannot drift from the code."""
    docs = field_docs()
    rows = ["| setting | flag | environment | default | commands | meaning |",
            "|---|---|---|---|---|---|"]
    for f in fields(Settings):
        default = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        for command, value in f.metadata["defaults"].items():
            default = f"{default} ({command}: {value})"
        flags = ", ".join(f"`{flag}`" for flag in flags_of(f.name))
        rows.append(f"| `{f.name}` | {flags} | `{env_of(f.name)}` | `{default}` | "
                    f"{', '.join(f.metadata['commands'])} | {docs[f.name]} |")
    return "\n".join(rows)
