"""Settings: one definition, four sources, and one clear line for every bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.settings import Settings, SettingsError, env_of, field_docs, load, settings_for

BAD_FLAGS = [
    (["demo", "--probe-budget-qps", "abc"],
     "probe_budget_qps (--probe-budget-qps): must be a number"),
    (["demo", "--probe-budget-qps", "0"], "must be between 1 and 10000"),
    (["demo", "--probe-budget-qps", "nan"], "must be a finite number"),
    (["demo", "--probe-burst", "2.5"], "probe_burst (--probe-burst): must be a whole number"),
    (["demo", "--probe-burst", "900"], "must not exceed probe_budget_qps"),
    (["demo", "--listen", "localhost"], "listen (--web.listen-address): must be HOST:PORT"),
    (["demo", "--listen", "127.0.0.1:99999"], "port from 0 to 65535"),
    (["demo", "--duration", "-3"], "duration (--duration): must be between 1 and 86400"),
    (["demo", "--fast-interval", "0"], "fast_interval (--fast-interval)"),
    (["demo", "--log-level", "loud"], "log_level (--log.level): must be one of"),
    (["demo", "--zone", ".."], "zone (--zone): must be a DNS name"),
    (["run", "--label-selector", "a=b=c"], "label_selector (--label-selector): cannot parse"),
    (["run", "--layers", "node-local,bogus"], "unknown layer 'bogus'"),
    (["run", "--static-servers", "=10.0.0.1"],
     "static_servers (--static-servers): bad entry"),
    (["run", "--static-servers", "up=not-an-ip"], "bad entry 'up=not-an-ip'"),
    (["run", "--node-local-address", "169.254.20"], "must be an IP address"),
    (["run", "--endpoint-pod-names", "maybe"],
     "endpoint_pod_names (--endpoint-pod-names): must be true or false, got 'maybe'"),
    (["run", "--max-targets", "0"], "max_targets (--max-targets): must be a whole number >= 1"),
    (["run", "--shard-service", "agents"],
     "shard_service (--shard-service): target must be NAMESPACE/SERVICE, got 'agents'"),
    (["run", "--shard-owners", "0"], "shard_owners (--shard-owners): must be a whole number >= 1"),
    (["run", "--fleet-budget-qps", "100"],
     "fleet_budget_qps (--fleet-budget-qps): is shared by the fleet that shard_service names"),
    (["demo", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["demo", "--listen"], "argument --web.listen-address/--listen: expected one argument"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS)
def test_bad_flags_give_one_line_and_exit_2(argv: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("dns-staleness-exporter: error: "), err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("text", "message"), [
    ("probe_budget_qps: [1, 2]\n", "must be a single float, got list"),
    ("bogus: 1\n", "bogus (CONFIG: bogus): unknown setting"),
    ("listen: [\n", "not valid YAML at line 2"),
    ("- a\n- b\n", "must be a mapping of setting names to values"),
    ("listen: {a: 1}\n", "must be a single str, got dict"),
    (b"zone: caf\xe9.local\n", "not UTF-8 text (byte 0xe9 at offset 9); save it as UTF-8"),
])
def test_bad_config_files(tmp_path: Path, text: str | bytes, message: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text)
    assert main(["demo", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message.replace("CONFIG", str(config)) in err and err.count("\n") == 1, err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read the file (No such file or directory)" in capsys.readouterr().err


def test_bad_environment_value(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DNS_STALENESS_PROBE_TIMEOUT", "soon")
    assert main(["demo"]) == 2
    assert ("probe_timeout (DNS_STALENESS_PROBE_TIMEOUT): must be a number, got 'soon'"
            in capsys.readouterr().err)


def test_precedence_default_file_env_flag(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("probe_budget_qps: 30\nprobe_timeout: 2\nsweep_interval: 40\n"
                      "namespaces: [a, b]\n")
    env = {env_of("probe_timeout"): "3", env_of("sweep_interval"): "50"}
    got = load("run", {"sweep_interval": "60"}, env, str(config))
    assert (got.probe_budget_qps, got.probe_timeout, got.sweep_interval) == (30.0, 3.0, 60.0)
    assert got.namespaces == ("a", "b")
    assert got.fast_interval == Settings().fast_interval


def test_demo_has_its_own_defaults_and_flags_still_win() -> None:
    assert load("demo", {}, {}, None).probe_budget_qps == 500.0
    assert load("demo", {"probe_budget_qps": "50"}, {}, None).probe_budget_qps == 50.0
    assert load("run", {}, {}, None).probe_budget_qps == 20.0


def test_every_setting_is_documented_and_reachable() -> None:
    docs = field_docs()
    names = set(Settings.__dataclass_fields__)
    assert set(docs) == names
    assert all(docs[n] and "\n" not in docs[n] for n in names)
    assert set().union(*(settings_for(c) for c in ("run", "demo", "check", "wait"))) == names


def test_check_rejects_a_bad_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "just-a-name", "--kubeconfig", "/nonexistent"]) == 2
    assert capsys.readouterr().err == ("dns-staleness-exporter: error: target must be "
                                       "NAMESPACE/SERVICE, got 'just-a-name'\n")


def test_console_script_prints_no_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "exporter", "demo", "--duration", "x"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr == ("dns-staleness-exporter: error: duration (--duration): "
                           "must be a number, got 'x'\n")


def test_booleans_from_every_source(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("endpoint_pod_names: true\n")
    assert load("run", {}, {}, str(config)).endpoint_pod_names is True
    assert load("run", {}, {env_of("endpoint_pod_names"): "No"}, str(config)) \
        .endpoint_pod_names is False
    assert load("run", {"endpoint_pod_names": "1"}, {}, None).endpoint_pod_names is True
    assert load("run", {}, {}, None).endpoint_pod_names is False


def test_a_list_setting_that_is_not_a_list_in_the_file(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("layers: {a: 1}\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "must be a list or a comma-separated string" in capsys.readouterr().err


def test_an_unknown_environment_variable_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(SettingsError, match=r"loglevel \(DNS_STALENESS_LOGLEVEL\): unknown "
                       r"setting; did you mean log_level\?"):
        load("run", {}, {"DNS_STALENESS_LOGLEVEL": "debug"}, None)


def test_a_setting_the_command_does_not_use_is_ignored_in_the_environment_and_file(
        tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("duration: abc\n")
    got = load("run", {}, {"DNS_STALENESS_DURATION": "abc"}, str(config))
    assert got.duration == Settings().duration


@pytest.mark.parametrize(("given", "level"), [("DEBUG", "debug"), ("Warn", "warning"),
                                              ("warning", "warning"), ("ERROR", "error")])
def test_log_levels_in_any_case_and_warn(given: str, level: str) -> None:
    assert load("run", {"log_level": given}, {}, None).log_level == level


def test_nothing_to_probe_is_an_error() -> None:
    with pytest.raises(SettingsError, match=r"layers \(DNS_STALENESS_LAYERS\): is empty and so "
                       r"is static_servers: nothing to probe"):
        load("run", {}, {"DNS_STALENESS_LAYERS": ""}, None)
    assert load("run", {"layers": "", "static_servers": "up=10.0.0.1"}, {}, None).layers == ()
