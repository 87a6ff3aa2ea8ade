"""Plain-text tables for the benchmarks' reports (Markdown-friendly)."""

from __future__ import annotations

import re
from collections.abc import Sequence

_NUMBER = re.compile(r"[\d,.x×-]+%?( s| ms| MB)?")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(c.rjust(w) if _NUMBER.fullmatch(c) else c.ljust(w)
                          for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), "-+-".join("-" * w for w in widths),
                      *(line(row) for row in rows)])


def section(title: str, body: str) -> None:
    print(f"\n## {title}\n\n{body}", flush=True)
