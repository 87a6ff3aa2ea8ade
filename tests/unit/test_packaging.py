"""The wheel ships every subpackage, a core module imports in a fresh venv, and --help survives an
install of byte-compiled files only."""

from __future__ import annotations

import compileall
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources, so that the build leaves the tree alone."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "exporter", src / "exporter",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(dist), str(src)],
                   check=True, capture_output=True, timeout=300)
    return next(dist.glob("dns_staleness_exporter-*.whl"))


def test_the_wheel_holds_every_subpackage(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "exporter").rglob("*.py")}
    assert {"exporter/core/truth.py", "exporter/io/probe.py"} <= sources
    assert sources <= names, sorted(sources - names)


def test_a_core_module_imports_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    # The core needs nothing outside the standard library: no dependency is installed here.
    out = subprocess.run(
        [str(python), "-I", "-c", "import exporter.core.truth as t, exporter.core.comparator; "
         "print(t.__file__)"], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip().startswith(str(venv))


def test_help_survives_a_byte_compiled_install(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert compileall.compile_dir(site / "exporter", legacy=True, quiet=1)
    for source in (site / "exporter").rglob("*.py"):
        source.unlink()
    script = (f"import sys; sys.path.insert(0, {str(site)!r}); import exporter; "
              f"assert exporter.__file__.startswith({str(site)!r}), exporter.__file__; "
              "from exporter.cli import main; main(['run', '--help'])")
    out = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "Seconds a watch request lasts before it is renewed" in " ".join(out.stdout.split())
