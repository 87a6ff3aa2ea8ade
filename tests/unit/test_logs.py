"""Log lines as exporters print them (docs/operations.md, "Logs"), and the throttle."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from exporter.io.logs import JsonFormatter, LogfmtFormatter, Throttle

ROOT = Path(__file__).resolve().parents[2]
LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def record(msg: str, *args: object, level: int = logging.INFO, **kv: object
           ) -> logging.LogRecord:
    rec = logging.LogRecord("exporter.agent", level, __file__, 1, msg, args, None)
    rec.kv = kv
    return rec


def logfmt(line: str) -> dict[str, str]:
    pairs = LOGFMT_PAIR.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line, line
    return {k: json.loads(v) if v.startswith('"') else v for k, v in pairs}


def test_logfmt_and_json_carry_the_same_fields() -> None:
    rec = record('window "closed" after %d s', 5, level=logging.WARNING, layer="node-local",
                 value="80 web-0.web.ns.svc.cluster.local.", seconds=5.02, past_bound=True)
    text = logfmt(LogfmtFormatter().format(rec))
    data = json.loads(JsonFormatter().format(rec))
    assert list(text) == list(data) == ["ts", "level", "logger", "msg", "layer", "value",
                                        "seconds", "past_bound"]
    assert data["msg"] == text["msg"] == 'window "closed" after 5 s'
    assert data["level"] == text["level"] == "warn"
    assert text["value"] == data["value"] == "80 web-0.web.ns.svc.cluster.local."
    assert (text["seconds"], data["seconds"]) == ("5.02", 5.02)
    assert (text["past_bound"], data["past_bound"]) == ("true", True)
    stamp = datetime.fromisoformat(data["ts"])
    assert stamp.tzinfo is not None and re.search(r"\.\d{3}[+-]\d\d:\d\d$", data["ts"])


def test_an_exception_is_one_field_not_many_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(rec)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["error"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_passes_a_burst_then_counts() -> None:
    clock = Clock()
    logger = logging.getLogger("test.throttle")
    logger.setLevel(logging.INFO)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign,assignment]
    logger.addHandler(handler)
    try:
        throttle = Throttle(logger, "windows closed", clock, burst=3, per=30.0)
        for i in range(1000):  # a rollout: 1,000 lines in one instant
            throttle.log(logging.INFO, "window %d closed", i)
        assert [r.getMessage() for r in seen] == ["window 0 closed", "window 1 closed",
                                                  "window 2 closed"]
        throttle.flush()  # no token yet: nothing
        assert len(seen) == 3
        clock.now = 10.0  # a line's worth of tokens back
        throttle.flush()
        assert seen[-1].getMessage() == "log lines held back"
        assert seen[-1].kv == {"what": "windows closed", "suppressed": 997}  # type: ignore[attr-defined]
        clock.now = 20.0
        throttle.log(logging.INFO, "window again")
        assert seen[-1].kv == {}  # type: ignore[attr-defined]
        throttle.log(logging.INFO, "held")
        clock.now = 30.0
        throttle.log(logging.INFO, "and on")
        assert seen[-1].kv == {"suppressed": 1}  # type: ignore[attr-defined]
    finally:
        logger.removeHandler(handler)


def test_json_log_of_a_run_is_valid_line_by_line(tmp_path: Path) -> None:
    """The demo at info level in JSON: every stderr line is one object with the fields of
    the logfmt line; a bad format is refused in one line."""
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "demo", "--duration", "8", "--log.format", "json",
         "--log.level", "INFO", "--web.listen-address", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) >= 3, proc.stderr
    messages = []
    for line in lines:
        data = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= set(data), line
        assert datetime.fromisoformat(data["ts"]).tzinfo is not None, line
        assert data["level"] in ("debug", "info", "warn", "error"), line
        messages.append(data["msg"])
    assert "initial sync done" in messages
    assert any(m.endswith("window closed") for m in messages), messages
    bad = subprocess.run([sys.executable, "-m", "exporter", "demo", "--log.format", "xml"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "log_format (--log.format): must be one of logfmt, json" in bad.stderr
