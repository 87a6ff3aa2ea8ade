"""Locating the rig's binaries: ``<cache>/rig.env`` written by ``scripts/rig-install``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "scripts" / "rig_versions.env"
INSTALL_SCRIPT = "scripts/rig-install"


class RigNotInstalled(RuntimeError):
    """The rig's binaries are missing or were built for other versions."""


def default_cache_dir() -> Path:
    """``$DSE_RIG_CACHE`` or ``~/.cache/dns-staleness-exporter/rig`` (as scripts/rig-install)."""
    env = os.environ.get("DSE_RIG_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "dns-staleness-exporter" / "rig"


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse plain ``KEY=VALUE`` lines (``#`` comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def pinned_versions() -> dict[str, str]:
    """The versions pinned in scripts/rig_versions.env."""
    return parse_env_file(VERSIONS_FILE)


@dataclass(frozen=True)
class Rig:
    """Paths of the rig's binaries, as recorded in ``<cache>/rig.env``."""

    cache_dir: Path
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    coredns: Path
    prometheus: Path
    promtool: Path
    alertmanager: Path
    dnsperf: Path
    openssl: Path
    helm: Path
    hadolint: Path
    jsonnet: Path
    jsonnet_lint: Path
    etcd_version: str
    kubernetes_version: str
    coredns_version: str

    @classmethod
    def load(cls, cache_dir: Path | None = None, *, check_versions: bool = True) -> Rig:
        """Read ``<cache>/rig.env``; raise RigNotInstalled with a how-to-fix message."""
        cache = cache_dir if cache_dir is not None else default_cache_dir()
        env_file = cache / "rig.env"
        hint = f"run `{INSTALL_SCRIPT}` from the repository root (see docs/rig.md)"
        if not env_file.is_file():
            raise RigNotInstalled(f"the test rig is not installed ({env_file} is missing): {hint}")
        env = parse_env_file(env_file)
        if check_versions and VERSIONS_FILE.is_file():
            pinned = pinned_versions()
            for key in ("ETCD_VERSION", "KUBERNETES_VERSION", "COREDNS_VERSION", "HELM_VERSION",
                        "HADOLINT_VERSION", "JSONNET_VERSION"):
                if key in pinned and env.get(key) != pinned[key]:
                    raise RigNotInstalled(
                        f"{env_file} has {key}={env.get(key)} but {VERSIONS_FILE.name} pins "
                        f"{pinned[key]}: {hint}"
                    )

        def path(key: str) -> Path:
            value = env.get(key)
            if not value:
                raise RigNotInstalled(f"{env_file} lacks {key}: {hint}")
            p = Path(value)
            if not (p.is_file() and os.access(p, os.X_OK)):
                raise RigNotInstalled(f"{key}={p} from {env_file} is not an executable: {hint}")
            return p

        return cls(
            cache_dir=cache,
            etcd=path("ETCD"),
            kube_apiserver=path("KUBE_APISERVER"),
            kube_controller_manager=path("KUBE_CONTROLLER_MANAGER"),
            coredns=path("COREDNS"),
            prometheus=path("PROMETHEUS"),
            promtool=path("PROMTOOL"),
            alertmanager=path("ALERTMANAGER"),
            dnsperf=path("DNSPERF"),
            openssl=path("OPENSSL"),
            helm=path("HELM"),
            hadolint=path("HADOLINT"),
            jsonnet=path("JSONNET"),
            jsonnet_lint=path("JSONNET_LINT"),
            etcd_version=env.get("ETCD_VERSION", ""),
            kubernetes_version=env.get("KUBERNETES_VERSION", ""),
            coredns_version=env.get("COREDNS_VERSION", ""),
        )


def rig_or_skip() -> Rig:
    """The rig for a test that needs one of its binaries: skips the test when the rig is not
    installed, or fails it with DSE_RIG_REQUIRED=1 (as CI runs), naming the fix."""
    try:
        return Rig.load()
    except RigNotInstalled as exc:
        if os.environ.get("DSE_RIG_REQUIRED", "") not in ("", "0"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
