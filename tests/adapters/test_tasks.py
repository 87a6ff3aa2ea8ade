"""io/tasks.py on a real event loop: what the agent's loops stand on to end when told."""

from __future__ import annotations

import asyncio

from exporter.io.tasks import Background, wait_set


async def kicked_loop(kick: asyncio.Event, wakes: list[int]) -> None:
    """The agent's probe loop, reduced to its sleep."""
    while True:
        kick.clear()
        await wait_set(kick, 5.0)
        wakes.append(1)


async def test_a_cancel_in_the_turn_that_sets_the_event_still_cancels() -> None:
    """3.11's wait_for returned the event's result to a task cancelled in that same turn: the
    loop ran on, a SIGTERM'd agent never exited and a cancelled demo never ended."""
    kick, wakes = asyncio.Event(), list[int]()
    task = asyncio.create_task(kicked_loop(kick, wakes))
    await asyncio.sleep(0.01)
    kick.set()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2.0)
    assert done == {task} and task.cancelled()
    assert wakes == []


async def test_the_timeout_and_the_event_each_end_the_wait() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wait_set(asyncio.Event(), 0.05)
    assert loop.time() - started >= 0.05
    kick = asyncio.Event()
    loop.call_later(0.01, kick.set)
    started = loop.time()
    await wait_set(kick, 5.0)
    assert loop.time() - started < 1.0


async def test_leaving_the_block_cancels_a_loop_kicked_as_it_leaves() -> None:
    """The agent's shutdown: Background's exit cancels a loop whose kick is set at once."""
    kick, wakes = asyncio.Event(), list[int]()
    async with asyncio.timeout(2.0):  # a swallowed cancel hangs the exit: fail instead
        async with Background() as tasks:
            tasks.start(kicked_loop(kick, wakes), "loop")
            await asyncio.sleep(0.01)
            kick.set()
    assert wakes == []


async def test_a_drain_stops_the_long_tasks_and_lets_the_short_ones_land() -> None:
    landed: list[str] = []

    async def short(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        landed.append(name)

    kick = asyncio.Event()
    async with Background() as tasks:
        tasks.start(kicked_loop(kick, []), "loop")
        tasks.spawn(short("quick", 0.01))
        tasks.spawn(short("slow", 5.0))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await tasks.drain(0.2)
        assert 0.01 <= loop.time() - started < 1.0
        assert landed == ["quick"]
    assert landed == ["quick"]  # the exit cancelled the slow one
