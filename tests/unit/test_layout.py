"""The package's layout holds: one reader of Kubernetes JSON, every module under a contract,
and nothing that cites a file outside the repository."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "exporter"
READER = PACKAGE / "core" / "objects.py"
TOP_LEVEL = {"__init__", "__main__", "agent", "settings", "run", "demo", "check", "wait", "cli"}
"""The modules outside exporter.core and exporter.io; .importlinter's stack names each."""

API_FIELDS = frozenset({
    "metadata", "spec", "status", "items", "data", "object", "resourceVersion", "labels",
    "annotations", "endpoints", "addresses", "conditions", "ports", "clusterIP", "selector",
    "hostname", "subdomain", "addressType", "targetRef", "ipFamilies", "code",
})
"""Field names of Kubernetes API objects and their envelopes (lists, watch events, Status)."""


def json_reads(source: str) -> list[tuple[int, str]]:
    """Lines that index an API field (`x["spec"]`) or look one up (`x.get("spec")`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        key = None
        if not isinstance(node, ast.expr):
            continue
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("get", "pop", "setdefault") and node.args
              and isinstance(node.args[0], ast.Constant)):
            key = node.args[0].value
        if isinstance(key, str) and key in API_FIELDS:
            found.append((node.lineno, key))
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_scanner_finds_what_it_must() -> None:
    sample = ('name = one["metadata"]["name"]\nspec = obj.get("spec") or {}\n'
              'ok = row["layer"]\nalso = d.get("server")\n')
    assert json_reads(sample) == [(1, "metadata"), (2, "spec")]
    assert json_reads(READER.read_text()), "the reader itself reads JSON"


@pytest.mark.parametrize("path", [p for p in modules() if p != READER],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_only_objects_reads_kubernetes_json(path: Path) -> None:
    reads = json_reads(path.read_text())
    assert not reads, (f"{path.relative_to(ROOT)} reads Kubernetes JSON at "
                       f"{', '.join(f'line {n} ({k!r})' for n, k in reads)}: add a reader to "
                       "exporter/core/objects.py that returns a frozen record")


def test_every_module_falls_under_a_contract() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == {"core", "io"}
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == TOP_LEVEL, "a new top-level module needs its place in .importlinter's stack"
    contracts = (ROOT / ".importlinter").read_text()
    for name in TOP_LEVEL - {"__init__", "__main__"} | packages:
        assert f"exporter.{name}" in contracts, name


def test_code_cites_only_files_of_the_repository() -> None:
    for path in [*modules(), *sorted((ROOT / "tests").rglob("*.py")),
                 *sorted((ROOT / "bench").rglob("*.py"))]:
        # The product brief lives beside the repository, not in it: docs/design.md is the spec.
        assert "SPEC" ".md" not in path.read_text(), path.relative_to(ROOT)
