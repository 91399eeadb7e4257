"""The Dask side of the loop: submits lazy trial tasks and learns when they end.

Deciding stays in :mod:`daskopt.engine.loop`; this module only executes (syne-tune's split between
scheduler and backend). Futures complete on the Dask client's own thread; their completions are handed to
the engine's event loop with ``call_soon_threadsafe`` so all state changes happen on one thread: one call
for all the completions that arrive before the loop gets to them (a thousand trials ending together are
one callback and one fill, not a thousand).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from distributed import Client, Future

from daskopt.gpu.trial import GPU_RESOURCE
from daskopt.trial.task import run_trial_task


class TaskPool:
    """Keeps trial tasks submitted to the cluster and tracks which are still outstanding."""

    def __init__(
        self,
        client: Client,
        loop: asyncio.AbstractEventLoop,
        channel: tuple[str | None, str, str | None],
        digest: str,
        on_done: Callable[[list[tuple[int, Future]]], None],
        resources: dict[str, float] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self._client = client
        self._loop = loop
        self._address, self._token, self._route = channel  # direct address, token, relay route
        self._digest = digest
        self._on_done = on_done
        self._resources = resources
        self._options = options or {}
        self._prefix = f"daskopt-trial-{uuid.uuid4().hex[:8]}"
        self._ids = itertools.count()
        self.futures: dict[int, Future] = {}
        self._ended: deque[tuple[int, Future]] = deque()  # completions the loop has not taken yet
        self._wake_due = False

    @property
    def outstanding(self) -> int:
        return len(self.futures)

    def submit(self, count: int) -> None:
        """Submit ``count`` more tasks in one graph: one ``client.map`` instead of ``count`` submits (2,000
        separate submits cost the loop thread ~1.5 s with 1,000 trials at once)."""
        if count <= 0:
            return
        ids = [next(self._ids) for _ in range(count)]
        futures = self._client.map(
            run_trial_task,
            [self._address] * count,
            [self._token] * count,
            ids,
            [self._digest] * count,
            [self._route] * count,
            key=[f"{self._prefix}-{task_id}" for task_id in ids],
            pure=False,
            resources=self._resources,
            **self._options,
        )
        for task_id, future in zip(ids, futures, strict=True):
            self.futures[task_id] = future
            future.add_done_callback(lambda f, i=task_id: self._notify(i, f))

    def submit_sized(self, slots: int, worker: str | None = None) -> int:
        """Submit one task that holds ``GPU_SLOT = slots`` (an elastic trial's stretch), preferably on
        ``worker``; returns its id. The loop assigns it the trial it was submitted for when it says HELLO
        (:mod:`daskopt.engine.elastic`)."""
        task_id = next(self._ids)
        args = (self._address, self._token, task_id, self._digest, self._route)
        return self._submit_holding(task_id, run_trial_task, args, slots, worker, f"{self._prefix}-{task_id}")

    def submit_part(self, group: str, first_rank: int, slots: int, world: int, worker: str | None) -> int:
        """Submit the part of an elastic trial's replicas that runs on ``worker`` (ranks ``first_rank ..``,
        :func:`daskopt.elastic.parts.run_part`); returns its id."""
        from daskopt.elastic.parts import run_part

        task_id = next(self._ids)
        key = f"{self._prefix}-part-{task_id}"
        return self._submit_holding(task_id, run_part, (group, first_rank, slots, world), slots, worker, key)

    def _submit_holding(
        self,
        task_id: int,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        slots: int,
        worker: str | None,
        key: str,
    ) -> int:
        resources = {**(self._resources or {}), GPU_RESOURCE: slots}
        options = dict(self._options)
        if worker is not None and "workers" not in options:  # a preference: a worker that left is no trap
            options.update(workers=[worker], allow_other_workers=True)
        future = self._client.submit(function, *args, key=key, pure=False, resources=resources, **options)
        self.futures[task_id] = future
        future.add_done_callback(lambda f, i=task_id: self._notify(i, f))
        return task_id

    def cancel(self, task_ids: list[int]) -> None:
        """Cancel some tasks (their completions still reach the loop, as cancelled), off the loop's thread."""
        futures = [self.futures[i] for i in task_ids if i in self.futures]
        if futures and self._client.status == "running":
            self._loop.run_in_executor(None, self._cancel_quietly, futures)

    def _cancel_quietly(self, futures: list[Future]) -> None:
        try:
            self._client.cancel(futures, asynchronous=False)
        except Exception:  # the cluster may already be gone; nothing left to cancel then
            pass

    def _notify(self, task_id: int, future: Future) -> None:
        """On the Dask client's thread: queue the completion, and wake the engine loop if it is not due to
        look already."""
        self._ended.append((task_id, future))
        if self._wake_due or self._loop.is_closed():
            return
        self._wake_due = True
        try:
            self._loop.call_soon_threadsafe(self._take_ended)
        except RuntimeError:  # closed between the check and the call: the study is over
            pass

    def _take_ended(self) -> None:
        self._wake_due = False  # before taking: a completion queued from now on wakes the loop again
        done = []
        while self._ended:
            task_id, future = self._ended.popleft()
            if self.futures.pop(task_id, None) is not None:
                done.append((task_id, future))
        if done:
            self._on_done(done)

    def cancel_all(self) -> None:
        """Cancel every task still queued or running; a running objective learns it over the channel."""
        futures = list(self.futures.values())
        self.futures.clear()
        if futures and self._client.status == "running":  # without a scheduler there is no one to tell
            try:
                self._client.cancel(futures, asynchronous=False)
            except Exception:  # the cluster may already be gone; nothing left to cancel then
                pass
