"""Process management shared by the rig components.

Every component runs in its own session (process group) with stdout and stderr
going to a log file in its work directory; ``stop`` signals the whole group. An
``atexit`` hook kills whatever a failed test run left behind, and on Linux a
component started from the main thread also gets SIGKILL when the test process
dies without running ``atexit`` (killed by a CI timeout, for example).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

T = TypeVar("T")

_RUNNING: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()

_PR_SET_PDEATHSIG = 1


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def _die_with_parent() -> None:
    """Child side of fork: get SIGKILL when the parent dies, even by SIGKILL.

    Linux ties this to the thread that forked, so it is only used for processes
    started from the main thread (see ManagedProcess.start).
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


class RigError(RuntimeError):
    """A rig component failed to start, died, or did not become ready in time."""


def tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
    abort: Callable[[], str | None] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than ``None``/``False``.

    Exceptions raised by ``probe`` count as "not yet" (the last one is quoted in
    the timeout message). ``abort`` may return a reason to give up early (for
    example "process exited with code 1").
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
        except Exception as exc:  # the probe's errors mean "not ready yet"
            last_error = exc
        else:
            if result is not None and result is not False:
                return result
        if abort is not None:
            reason = abort()
            if reason is not None:
                raise RigError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


class ManagedProcess:
    """A child process with a log file, a readiness probe and group-wide stop.

    Subclasses implement :meth:`command` and :meth:`is_ready`; they may
    override :meth:`prepare` (runs before the process starts) and :meth:`env`.
    """

    #: Default readiness timeout in seconds; subclasses tune it.
    start_timeout: float = 30.0

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- to implement -----------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        """Return True when the component serves requests; may raise meaning "not yet"."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files, certificates, ... before the process starts."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    # -- lifecycle --------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float | None = None) -> Self:
        """Start the process and wait until :meth:`is_ready`; raise RigError otherwise.
        A stopped process starts again with the same configuration."""
        if self.running:
            raise RigError(f"{self.name} already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        argv = self.command()
        self._log = self.log_path.open("ab")
        self._log.write(f"+ {' '.join(argv)}\n".encode())
        self._log.flush()
        main_thread = threading.current_thread() is threading.main_thread()
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env(),
                start_new_session=True,
                preexec_fn=_die_with_parent if main_thread and _LIBC is not None else None,
            )
        except OSError as exc:
            self._close_log()
            raise RigError(f"cannot start {self.name}: {exc}") from exc
        _RUNNING.add(self)
        limit = self.start_timeout if timeout is None else timeout
        try:
            wait_until(
                lambda: self.is_ready() or None,
                timeout=limit,
                interval=0.1,
                what=f"{self.name} to become ready",
                abort=self._exit_reason,
            )
        except (TimeoutError, RigError) as exc:
            self.stop()
            raise self.failure(str(exc)) from None
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the whole process group (SIGTERM, then SIGKILL); return the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        # Kill anything left in the group (children, or a process ignoring SIGTERM).
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        _RUNNING.discard(self)
        self._close_log()
        return proc.returncode

    def ensure_running(self) -> None:
        """Raise RigError (with the log tail) if the process has died."""
        reason = self._exit_reason()
        if reason is not None:
            raise self.failure(f"{self.name} is not running: {reason}")

    def log_tail(self, lines: int = 40) -> str:
        if self._log is not None:
            self._log.flush()
        return tail(self.log_path, lines)

    def failure(self, message: str) -> RigError:
        """Build a RigError carrying the tail of this component's log."""
        return RigError(f"{message}\n--- last lines of {self.log_path} ---\n{self.log_tail()}\n---")

    def _exit_reason(self) -> str | None:
        if self._proc is None:
            return "not started"
        code = self._proc.poll()
        if code is None:
            return None
        return f"process exited with code {code}"

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid}>"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_all(processes: Sequence[ManagedProcess] | None = None) -> None:
    """Stop the given processes (default: every rig process still running), last first."""
    targets = list(_RUNNING) if processes is None else list(processes)
    for proc in reversed(targets):
        with contextlib.suppress(Exception):
            proc.stop(timeout=5)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_RUNNING):
        pid = proc.pid
        if pid is not None:
            _signal_group(pid, signal.SIGKILL)
