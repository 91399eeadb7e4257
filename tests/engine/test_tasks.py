"""How task completions reach the loop: from the Dask client's thread, in one call per turn of the loop."""

from __future__ import annotations

import asyncio
import threading

from daskopt.engine.tasks import TaskPool


def test_completions_that_arrive_together_reach_the_loop_in_one_call():
    async def scenario() -> list[list[tuple[int, str]]]:
        calls: list[list[tuple[int, str]]] = []
        pool = TaskPool(None, asyncio.get_running_loop(), (None, "token", None), "digest", calls.append)  # type: ignore[arg-type]
        pool.futures = {i: f"future-{i}" for i in range(100)}  # type: ignore[misc]

        def complete(ids: range) -> None:
            for i in ids:
                pool._notify(i, f"future-{i}")  # type: ignore[arg-type]

        # the Dask thread reports 100 completions while the loop is busy (blocked here): one wake-up
        notifier = threading.Thread(target=complete, args=(range(100),))
        notifier.start()
        notifier.join()
        await asyncio.sleep(0.05)
        assert calls == [[(i, f"future-{i}") for i in range(100)]]
        assert pool.outstanding == 0
        complete(range(100, 101))  # a task the pool no longer tracks (cancelled with the rest): dropped
        await asyncio.to_thread(complete, range(5))  # already taken: not handed over twice
        await asyncio.sleep(0.05)
        return calls

    assert len(asyncio.run(scenario())) == 1
