"""Log lines as Prometheus exporters print them, and a throttle for the ones an event repeats.

Two formats with the same fields: logfmt (`ts=... level=info logger=... msg="..." k=v`) and
JSON, one object per line. `ts` is RFC 3339 with the zone, in milliseconds. Facts that a reader
may filter on go in `extra={"kv": {...}}` and become fields of their own.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
          logging.ERROR: "error", logging.CRITICAL: "error"}


def fields_of(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created).astimezone().isoformat(
            timespec="milliseconds"),
        "level": LEVELS.get(record.levelno, record.levelname.lower()),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    kv: Mapping[str, Any] = getattr(record, "kv", {})
    fields.update((k, v) for k, v in kv.items() if k not in fields)
    if record.exc_info:
        fields["error"] = formatter.formatException(record.exc_info)
    return fields


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if text and not any(c in text for c in ' ="\\') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields_of(record, self).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields_of(record, self), ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring again replaces it and leaves others' handlers alone."""


def configure(level: str, fmt: str) -> None:
    """The root logger on stderr, in `fmt` (logfmt or json), at `level`."""
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class Throttle:
    """At most `burst` lines per `per` seconds for one kind of line; the lines held back are
    counted, and the next line that passes says how many (`suppressed=N`), so a rollout of
    1,000 pods gives a handful of lines and a number, not a flood."""

    def __init__(self, logger: logging.Logger, what: str, clock: Callable[[], float],
                 burst: int = 10, per: float = 60.0) -> None:
        self.logger, self.what, self.clock = logger, what, clock
        self.burst, self.per = burst, per
        self._tokens = float(burst)
        self._updated: float | None = None
        self.suppressed = 0

    def _take(self) -> bool:
        now = self.clock()
        if self._updated is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.burst
                               / self.per)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def log(self, level: int, msg: str, *args: object, kv: Mapping[str, Any] | None = None
            ) -> None:
        if not self.logger.isEnabledFor(level):
            return
        if not self._take():
            self.suppressed += 1
            return
        fields = dict(kv or {})
        if self.suppressed:
            fields["suppressed"] = self.suppressed  # lines of this kind held back before it
            self.suppressed = 0
        self.logger.log(level, msg, *args, extra={"kv": fields})

    def flush(self) -> None:
        """Say how many lines were held back, once the flood has passed."""
        if self.suppressed and self._take():
            count, self.suppressed = self.suppressed, 0
            self.logger.info("log lines held back", extra={"kv": {"what": self.what,
                                                                "suppressed": count}})
