"""Tasks that live exactly as long as a block: the one place that starts, cancels and reaps them.

    async with Background() as tasks:
        tasks.start(consume(), "consume")
        await tasks.wait(stop)   # until `stop` is set; a failed task raises here

Leaving the block, however it is left, cancels every task still running and awaits them all,
so no task outlives its owner and none dies with an unretrieved exception.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Self


class Background:
    def __init__(self) -> None:
        self._watched: set[asyncio.Task[Any]] = set()
        """Tasks whose failure `wait` raises."""
        self._spawned: set[asyncio.Task[Any]] = set()
        """Short tasks that leave the set when they end."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        tasks = self._watched | self._spawned
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def start(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> None:
        """A task that runs for the whole block; `wait` raises its failure."""
        self._watched.add(asyncio.create_task(coro, name=name))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """A short task that must not raise (a probe): forgotten once done, cancelled at exit."""
        task = asyncio.create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def drain(self, seconds: float) -> None:
        """Cancel the block's long tasks, then give the short ones up to `seconds` to end on
        their own (a probe in flight lands and is counted) before the exit cancels them."""
        watched, self._watched = self._watched, set()
        for task in watched:
            task.cancel()
        await asyncio.gather(*watched, return_exceptions=True)
        if self._spawned:
            await asyncio.wait(set(self._spawned), timeout=seconds)

    async def wait(self, stop: asyncio.Event, limit: float | None = None) -> None:
        """Return when `stop` is set or `limit` seconds pass; raise the first failure of a task
        from `start`. A task that simply ends is dropped."""
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                done, _ = await asyncio.wait([stopper, *self._watched], timeout=remaining,
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stopper}:
                    self._watched.discard(task)
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            stopper.cancel()
            await asyncio.gather(stopper, return_exceptions=True)


async def wait_set(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass. Not wait_for: on 3.11, a cancel that
    meets the event's setting in one turn of the loop returns instead of raising, so a loop
    around it runs on after its owner cancelled it."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
