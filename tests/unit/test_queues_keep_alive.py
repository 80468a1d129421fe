"""RunQueues keeps the messages it holds alive, and only those (no servers needed)."""

from __future__ import annotations

import asyncio

from services.scheduler.queues import RunQueues


async def test_held_items_are_touched_until_settled() -> None:
    release = asyncio.Event()

    async def handler(key: str, batch: list[str]) -> None:
        if key == "slow":
            await release.wait()

    queues: RunQueues[str] = RunQueues(handler, max_active=4)
    touched: list[list[str]] = []
    seen_both = asyncio.Event()

    async def touch(items: list[str]) -> None:
        touched.append(sorted(items))
        if sorted(items) == ["held-1", "held-2"]:
            seen_both.set()

    stop = asyncio.Event()
    alive = asyncio.create_task(queues.keep_alive(touch, 0.01, stop))
    queues.put("fast", "quick")
    queues.put("slow", "held-1")
    queues.put("slow", "held-2")  # both wait on the slow handler
    await asyncio.wait_for(seen_both.wait(), 10)
    assert all("quick" not in items for items in touched)  # settled at once: never touched

    release.set()
    await asyncio.wait_for(asyncio.gather(*queues.workers.values()), 10)
    assert queues.held == {}
    stop.set()
    await asyncio.wait_for(alive, 10)
