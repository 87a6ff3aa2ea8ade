"""The Dockerfile, without a Docker engine: its properties read from the file, hadolint, and
its build stage's exact steps run in a fresh virtualenv, whose agent then runs on a read-only
root filesystem with one writable temp dir, as the chart mounts it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml

from exporter import __version__
from tests.rig import rig_or_skip

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dns-staleness-exporter"


@dataclass
class Stage:
    base: str
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.steps if i == instruction]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]


def parse(text: str) -> Dockerfile:
    """Instructions with their continuation lines joined and comments dropped."""
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(base.strip(), name.strip()))
        elif not stages:
            assert instruction == "ARG", f"{instruction} before the first FROM"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].steps.append((instruction, args))
    return Dockerfile(global_args, stages)


@cache
def dockerfile() -> Dockerfile:
    return parse((ROOT / "Dockerfile").read_text())


def assignments(args: str) -> dict[str, str]:
    """`ENV A=1 B="x y"` or `LABEL ...` as a dict."""
    return dict(word.partition("=")[::2] for word in shlex.split(args))


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m[1] or m[2], ""), value)


def stage_env(stage: Stage, base: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """The environment a stage's RUN steps see: its ARGs and ENVs, in order."""
    env = dict(base)
    for instruction, args in stage.steps:
        if instruction == "ARG":
            key, _, default = args.partition("=")
            env[key] = default or dockerfile().global_args.get(key, "")
        elif instruction == "ENV":
            env.update({k: expand(v, env) for k, v in assignments(args).items()})
        env.update(overrides)
    return env


def build_stage() -> Stage:
    return next(s for s in dockerfile().stages if s.name == "build")


def final_stage() -> Stage:
    return dockerfile().stages[-1]


# -- properties ---------------------------------------------------------------------------
def test_multi_stage_on_a_pinned_slim_python() -> None:
    df = dockerfile()
    assert len(df.stages) == 2
    image = df.global_args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-\w+(@sha256:[0-9a-f]{64})?", image), image
    assert all(s.base == "${PYTHON_IMAGE}" for s in df.stages)
    copies = final_stage().args("COPY")
    assert any(c.startswith("--from=build ") for c in copies)


def test_installs_from_the_constraints_file() -> None:
    (run,) = build_stage().args("RUN")
    assert re.search(r"pip\" install -c constraints\.txt \.$", run), run


def test_runs_as_the_charts_non_root_numeric_user() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]
    (user,) = final_stage().args("USER")
    assert user == f"{values['runAsUser']}:{values['runAsGroup']}"
    assert values["runAsUser"] != 0 and values["runAsNonRoot"] is True


def test_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = final_stage().args("ENTRYPOINT")
    assert yaml.safe_load(entrypoint) == ["dns-staleness-exporter"]
    assert "dns-staleness-exporter" in scripts
    (cmd,) = final_stage().args("CMD")
    assert yaml.safe_load(cmd) == ["run"]
    (port,) = final_stage().args("EXPOSE")
    assert int(port) == yaml.safe_load((CHART / "values.yaml").read_text())["containerPort"]


def test_oci_labels() -> None:
    labels: dict[str, str] = {}
    for args in final_stage().args("LABEL"):
        labels |= assignments(args)
    keys = {"title", "description", "version", "licenses", "base.name"}
    assert {f"org.opencontainers.image.{k}" for k in keys} <= set(labels)
    env = stage_env(final_stage(), {}, {})
    assert expand(labels["org.opencontainers.image.version"], env) == __version__
    license_ = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert labels["org.opencontainers.image.licenses"] == license_["text"]


def test_final_stage_runs_nothing_at_build_time() -> None:
    """No RUN in the final stage: nothing there is executed as root or written to the image
    beyond the copied virtualenv; at run time Python writes no bytecode."""
    assert {i for i, _ in final_stage().steps} <= {
        "ARG", "LABEL", "COPY", "ENV", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}
    env = stage_env(final_stage(), {}, {})
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_dockerignore_allows_exactly_what_is_copied() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "an allow-list: everything else stays out of the context"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {src.rstrip("/") for args in build_stage().args("COPY")
              for src in shlex.split(args)[:-1]}
    assert allowed == copied
    assert all((ROOT / src).exists() for src in copied)


def test_hadolint() -> None:
    hadolint = rig_or_skip().hadolint
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the build stage, run for real ---------------------------------------------------------
@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The build stage's COPY and RUN steps, verbatim, with its virtualenv in a temp dir.

    pip reaches the package index, as the image build does; it takes 30 to 60 s."""
    top = tmp_path_factory.mktemp("image")
    stage = build_stage()
    (workdir,) = stage.args("WORKDIR")
    src = top / workdir.lstrip("/")
    src.mkdir(parents=True)
    venv = top / "venv"
    # The build's `python` is the base image's: here, the interpreter running the tests.
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = stage_env(stage, {**os.environ, "PATH": path}, {"VENV": str(venv)})
    for instruction, args in stage.steps:
        if instruction == "COPY":
            *sources, dest = shlex.split(args)
            for source in sources:
                # COPY's rules: a directory's contents go into dest; a file goes into dest/
                # when dest ends in a slash.
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, src / dest,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target = src / dest / Path(source).name if dest.endswith("/") else src / dest
                    shutil.copy(ROOT / source, target)
        elif instruction == "RUN":
            result = subprocess.run(["/bin/sh", "-c", args], cwd=src, env=env,
                                    capture_output=True, text=True, timeout=300, check=False)
            assert result.returncode == 0, f"RUN {args}\n{result.stdout}\n{result.stderr}"
    yield venv


def test_install_steps_succeed_in_a_fresh_virtualenv(image_venv: Path) -> None:
    result = subprocess.run([str(image_venv / "bin" / "dns-staleness-exporter"), "--version"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"dns-staleness-exporter {__version__}"


def test_agent_runs_on_a_read_only_root(image_venv: Path, tmp_path: Path) -> None:
    """The root filesystem remounted read-only in a private mount namespace, a tmpfs as the
    temp dir (the chart's /tmp emptyDir), the final stage's environment: the demo runs the
    whole pipeline and exits 0."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private mount namespace")
    writable = tmp_path / "tmp"
    writable.mkdir()
    env = stage_env(final_stage(), {"PATH": os.environ["PATH"]}, {"VENV": str(image_venv)})
    env["TMPDIR"] = str(writable)
    script = (f"mount --make-rprivate / && mount -o remount,bind,ro / && "
              f"mount -t tmpfs -o size=16m tmpfs {writable} && "
              f"touch {tmp_path}/probe 2>/dev/null && exit 97; "
              f"exec dns-staleness-exporter demo --duration 3 --listen 127.0.0.1:0")
    result = subprocess.run(["unshare", "--mount", "/bin/sh", "-c", script], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0 and "unshare failed" in result.stderr:
        pytest.skip(f"no private mount namespace here: {result.stderr.strip()}")
    assert result.returncode != 97, "the root filesystem was still writable"
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "closed windows" in result.stdout
    assert not list(tmp_path.glob("probe"))
