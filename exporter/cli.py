"""The command line: `run`, `demo`, `check` and `wait`, with flags derived from Settings."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

import uvloop

from exporter import __version__
from exporter.core.records import parse_target
from exporter.io.logs import configure
from exporter.settings import (
    Settings,
    SettingsError,
    default_for,
    env_of,
    field_docs,
    flags_of,
    load,
    settings_for,
)

PROG = "dns-staleness-exporter"
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """Bad flags give one line on stderr and exit 2, like bad settings."""

    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _add_settings(parser: argparse.ArgumentParser, command: str) -> None:
    docs = field_docs()
    parser.add_argument("--config", metavar="FILE",
                        help="YAML file of settings (keys as below, with underscores)")
    for name in settings_for(command):
        default = default_for(name, command)
        shown = ",".join(default) if isinstance(default, tuple) else default
        # argparse formats help with %: a literal one must be doubled.
        text = f"{docs[name]} [default: {shown!r}; env {env_of(name)}]".replace("%", "%%")
        parser.add_argument(*flags_of(name), dest=name, metavar=name.split("_")[-1].upper(),
                            help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Measures how long each DNS layer of a Kubernetes "
                     "node serves records of headless Services after they changed.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command, text in (
        ("run", "run the agent on this node (in-cluster config, or a kubeconfig)"),
        ("demo", "reproduce the stale-record incident on loopback and measure it; no cluster"),
        ("check", "diagnose one headless Service's DNS now, and exit non-zero on a problem"),
        ("wait", "block until every name of a headless Service resolves on every layer as the "
                 "API has it (exit 0), or time out (exit 1): an init container's gate"),
    ):
        sub = commands.add_parser(command, help=text, description=text)
        if command in ("check", "wait"):
            sub.add_argument("target", metavar="NAMESPACE/SERVICE")
        _add_settings(sub, command)
    return parser


async def _serve(command: str, settings: Settings, target: str) -> int:
    from exporter.check import CheckUsageError, run_check
    from exporter.demo import run_demo
    from exporter.io.kubeconfig import KubeconfigError
    from exporter.io.server import ListenError
    from exporter.io.webconfig import WebConfigError
    from exporter.run import run_agent
    from exporter.wait import run_wait

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if command == "check":
            return await run_check(settings, target)
        if command == "wait":
            try:
                parsed = parse_target(target)
            except ValueError as exc:
                raise CheckUsageError(str(exc)) from None
            return await run_wait(settings, parsed, stop)
        if command == "demo":
            await run_demo(settings, stop=stop)
        else:
            await run_agent(settings, stop)
    except CheckUsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KubeconfigError as exc:
        print(f"{PROG}: error: kubeconfig: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ListenError, WebConfigError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo", *(argv if argv is not None else sys.argv[1:])])
    command = args.command
    flags = {name: getattr(args, name) for name in settings_for(command)}
    try:
        settings = load(command, flags, os.environ, args.config)
    except SettingsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure(settings.log_level, settings.log_format)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve(command, settings, getattr(args, "target", "")))
