"""The command line as a new user meets it: every --help works, and each way a command can fail
ends in its own one line, never in a traceback or in another failure's words."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.cli import build_parser, main


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["demo", "--help"],
                                  ["check", "--help"]], ids=" ".join)
def test_every_command_has_help(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "exporter", *argv], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: dns-staleness-exporter") and not proc.stderr


def test_follow_keeps_its_old_spelling() -> None:
    parser = build_parser()
    assert parser.parse_args(["check", "a/b", "--follow", "5"]).follow == "5"
    assert parser.parse_args(["check", "a/b", "--watch", "7"]).follow == "7"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_check_against_an_unreachable_api_server(tmp_path: Path, closed_port: int,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
current-context: c
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
clusters: [{{name: k, cluster: {{server: "https://127.0.0.1:{closed_port}",
                                 insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: t}}}}]
""")
    assert main(["check", "ns/svc", "--kubeconfig", str(kubeconfig), "--deadline", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"check ns/svc: cannot reach the API server at "
                                   f"https://127.0.0.1:{closed_port} (")
    assert "listen" not in captured.err and "Traceback" not in captured.err


def test_a_busy_listen_address_names_the_address(busy_port: int,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--listen", f"127.0.0.1:{busy_port}", "--duration", "1"]) == 2
    assert capsys.readouterr().err == (
        f"dns-staleness-exporter: error: cannot listen on 127.0.0.1:{busy_port}: Address "
        "already in use; pass another --web.listen-address, e.g. 127.0.0.1:0 for a free "
        "port\n")
