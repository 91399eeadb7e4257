"""The Dask side of the loop: submits lazy trial tasks and learns when they end.

Deciding stays in :mod:`daskopt.engine.loop`; this module only executes (syne-tune's split between
scheduler and backend). Futures complete on the Dask client's own thread; their callbacks are handed to
the engine's event loop with ``call_soon_threadsafe`` so all state changes happen on one thread.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
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
        on_done: Callable[[int, Future], None],
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

    def submit_sized(self, slots: int) -> int:
        """Submit one task that holds ``GPU_SLOT = slots`` (an elastic trial's stretch); returns its id. The
        loop assigns it the trial it was submitted for when it says HELLO (:mod:`daskopt.engine.elastic`)."""
        task_id = next(self._ids)
        resources = {**(self._resources or {}), GPU_RESOURCE: slots}
        future = self._client.submit(
            run_trial_task,
            self._address,
            self._token,
            task_id,
            self._digest,
            self._route,
            key=f"{self._prefix}-{task_id}",
            pure=False,
            resources=resources,
            **self._options,
        )
        self.futures[task_id] = future
        future.add_done_callback(lambda f, i=task_id: self._notify(i, f))
        return task_id

    def _notify(self, task_id: int, future: Future) -> None:
        """On the Dask client's thread: hand the completion to the engine loop, if it still runs."""
        if not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._done, task_id, future)
            except RuntimeError:  # closed between the check and the call: the study is over
                pass

    def _done(self, task_id: int, future: Future) -> None:
        if self.futures.pop(task_id, None) is not None:
            self._on_done(task_id, future)

    def cancel_all(self) -> None:
        """Cancel every task still queued or running; a running objective learns it over the channel."""
        futures = list(self.futures.values())
        self.futures.clear()
        if futures and self._client.status == "running":  # without a scheduler there is no one to tell
            try:
                self._client.cancel(futures, asynchronous=False)
            except Exception:  # the cluster may already be gone; nothing left to cancel then
                pass
