"""What the generators of copied files share: --check reports drift, a plain run rewrites.

A generator gives `outputs` (every file it owns, with the content it must have) and `owned`
(the files of its own kind on disk, so that a copy whose source is gone is found too)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
Outputs = Callable[[], dict[Path, str]]


def drift(outputs: Outputs, owned: Callable[[], Iterable[Path]]) -> list[str]:
    """Files that differ, are missing, or should not be there."""
    expected = outputs()
    problems = [f"{p.relative_to(ROOT)} differs from its source" for p, text in expected.items()
                if not p.is_file() or p.read_text() != text]
    problems += [f"{p.relative_to(ROOT)} has no source any more"
                 for p in sorted(set(owned()) - set(expected))]
    return problems


def main(tool: str, doc: str, argv: list[str] | None, outputs: Outputs,
         owned: Callable[[], Iterable[Path]]) -> int:
    parser = argparse.ArgumentParser(prog=f"scripts/{tool}.py", description=doc)
    parser.add_argument("--check", action="store_true", help="report drift, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(outputs, owned)
        for problem in problems:
            print(f"{tool}: {problem}; run scripts/{tool}.py", file=sys.stderr)
        return 1 if problems else 0
    expected = outputs()
    for path, text in expected.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"{tool}: wrote {path.relative_to(ROOT)}")
    for path in sorted(set(owned()) - set(expected)):
        path.unlink()
        print(f"{tool}: removed {path.relative_to(ROOT)}")
    return 0
