"""/status: the status document (exporter/core/status.py) as one HTML page, no script.

It reloads itself every 5 s. Each row of a window carries the window's identity in `data-*`
attributes, so that a browser test can match the page against /api/v1/status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:0.9em;white-space:nowrap}
th{background:#f0f0f0}tr.past td{background:#fde2e2}
td.num{text-align:right;font-variant-numeric:tabular-nums}.none{color:#777}"""


IDENTITY = ("kind", "layer", "server", "name", "type", "value")


def _cell(value: Any) -> str:
    if value is None:
        return '<td class="none">-</td>'
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, int | float):
        return f'<td class="num">{value:g}</td>'
    return f"<td>{value}</td>"


def _table(title: str, columns: Sequence[tuple[str, str]], rows: Iterable[Mapping[str, Any]],
           shown: int, total: int, row_class: str = "") -> str:
    head = "".join(f"<th>{escape(label)}</th>" for _, label in columns)
    body = []
    for row in rows:
        # Each text escaped once, for its cell and its data attribute alike.
        text = {k: escape(v) if isinstance(v, str) else v for k, v in row.items()}
        classes = row_class + (" past" if row.get("past_bound") else "")
        data = "".join(f' data-{k}="{text[k]}"' for k in IDENTITY if k in text)
        cells = "".join(_cell(text.get(key)) for key, _ in columns)
        body.append(f'<tr class="{classes.strip()}"{data}>{cells}</tr>')
    more = f" (the first {shown} of {total})" if total > shown else ""
    empty = "" if body else '<p class="none">none</p>'
    table = f"<table><tr>{head}</tr>{''.join(body)}</table>" if body else ""
    return f"<h2>{escape(title)}: {total}{more}</h2>{empty}{table}"


OPEN = (("layer", "layer"), ("server", "server"), ("namespace", "namespace"),
        ("service", "service"), ("name", "question"), ("type", "type"), ("value", "record"),
        ("kind", "kind"), ("age_seconds", "age (s)"), ("caused_by_truth", "caused by truth"),
        ("ttl", "layer TTL (s)"))
CLOSED = (("closed_at", "closed at"), ("layer", "layer"), ("server", "server"),
          ("namespace", "namespace"), ("service", "service"), ("name", "question"),
          ("type", "type"), ("value", "record"), ("kind", "kind"), ("seconds", "seconds"),
          ("resolution_seconds", "resolution (s)"))
LAYERS = (("layer", "layer"), ("server", "server"), ("up", "up"), ("ttl", "TTL (s)"))
TARGET = (("namespace", "namespace"), ("service", "service"))


def render(doc: Mapping[str, Any]) -> str:
    budget, targets = doc["budget"], doc["targets"]
    sweep = doc["sweep_period_seconds"]
    summary = (f"<p>node <b>{escape(doc['node'])}</b>, version {escape(doc['version'])}, "
               f"{'synced' if doc['synced'] else 'not synced yet'}, at "
               f"{escape(doc['generated_at'])}. Budget {budget['qps']:g} queries/s (burst "
               f"{budget['burst']}), {budget['used_last_second']} sent in the last second, "
               f"{budget['deferred_total']} deferred in all. Last whole sweep: "
               f"{'not yet' if sweep is None else f'{sweep:.1f} s'}. "
               f'As JSON: <a href="api/v1/status">/api/v1/status</a>.</p>')
    closed = doc["closed_windows"]
    parts = [
        _table("Open windows", OPEN, doc["open_windows"], len(doc["open_windows"]),
               doc["open_windows_total"], "open"),
        _table("Closed windows, newest first", CLOSED, closed, len(closed), len(closed),
               "closed"),
        _table("Layers", LAYERS, doc["layers"], len(doc["layers"]), len(doc["layers"])),
        _table("Targets monitored", TARGET, targets["monitored"], len(targets["monitored"]),
               targets["monitored_total"]),
        _table("Targets dropped by the cap", TARGET, targets["dropped"],
               len(targets["dropped"]), targets["dropped_now"]),
    ]
    return (f'<!doctype html><html><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="5"><title>dns-staleness-exporter status'
            f"</title><style>{STYLE}</style></head><body><h1>dns-staleness-exporter status</h1>"
            f"{summary}{''.join(parts)}</body></html>")
