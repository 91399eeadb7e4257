"""Elastic trials in the engine loop: which trial holds how many replica slots, and resizes as restarts.

The loop (:mod:`daskopt.engine.loop`) calls this module at the points where an elastic trial can move:

- at each fill step, :meth:`ElasticTrials.place` runs the allocator (:func:`daskopt.elastic.allocator.plan`)
  over the trials running and the trials asked but not started. A waiting trial that gets slots is
  started on a task submitted for it alone, holding ``GPU_SLOT = replicas`` (Dask places it on a worker
  with that many free); a running trial whose size changes is marked to *resize*;
- at its next ``should_prune()`` with a checkpoint at its latest report, a resizing trial is answered
  SUSPEND (:meth:`resize_due`); when its objective has stopped, it is restarted at once on a new task of
  the new size, from that checkpoint (:meth:`restarted`). It stays the same Optuna trial (RUNNING), with
  its reports: only the task under it changes. ``user_attrs["replicas"]`` lists ``[from_step, replicas]``;
- ``PROFILE`` messages feed each trial's goodput model (step times, noise scale, steps left); the first
  report after a restart measures what restarts cost, which replaces the configured ``restart_s``.

Slots are counted per trial as it *holds* them: a trial keeps its old size until its restart (a shrink
frees slots only then), a grow takes the new slots when it is decided, so two trials never count on
the same free slot. Trials whose objective never checkpoints keep the size they started with.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from statistics import fmean
from typing import TYPE_CHECKING, Any, NamedTuple

from daskopt import attributes
from daskopt.elastic.allocator import ElasticTrial, plan
from daskopt.elastic.goodput import Goodput
from daskopt.elastic.placement import Placement, lr_scale
from daskopt.engine.state import TrialRun
from daskopt.settings import Elastic

if TYPE_CHECKING:
    from distributed import Client

    from daskopt.engine.tasks import TaskPool

logger = logging.getLogger("daskopt")

REPLICAS = "replicas"  # user attribute: [[from_step, replicas], ...] of an elastic trial's stretches


class Stretch(NamedTuple):
    """Where one stretch of a trial runs: ``parts`` as ``(worker, slots)``, the objective's task first, and
    the ``group`` that joins them when there is more than one (:mod:`daskopt.elastic.parts`)."""

    parts: tuple[tuple[str | None, int], ...]
    group: str | None


class ElasticTrials:
    """The elastic trials of one call. ``offered``: the ``GPU_SLOT`` units each worker offers. A trial's
    replicas go to one worker when one has room, else to the fewest that together do."""

    def __init__(
        self, settings: Elastic, offered: dict[str, int], refresh: Callable[[], dict[str, int]] | None = None
    ) -> None:
        self.settings = settings
        self._refresh = refresh  # the workers' GPU_SLOT units now (a call to the scheduler)
        self._pool: TaskPool | None = None  # submits the tasks (attach)
        self._client: Client | None = None
        self.offered = {worker: slots for worker, slots in offered.items() if slots > 0}
        self.capacity = sum(self.offered.values())
        self.max_replicas = max(settings.min_replicas, min(settings.max_replicas, self.capacity))
        self.stretches: dict[int, Stretch] = {}  # trial number -> where its current stretch runs
        self.parts: dict[int, int] = {}  # task id of a part on another worker -> its trial number
        self._groups: dict[str, set[int]] = {}  # group -> its part tasks still running
        self._over: set[str] = set()  # groups whose stretch has ended in the loop's view
        self._prefix = uuid.uuid4().hex[:8]
        self._stretch_ids = itertools.count()
        self.models: dict[int, ElasticTrial] = {}  # by checkpoint key: a retried attempt keeps its model
        self.held: dict[int, int] = {}  # trial number -> slots it holds now
        self.size: dict[int, int] = {}  # trial number -> the replicas of its current stretch
        self.starting: dict[int, tuple[TrialRun, int]] = {}  # task id -> the trial it was submitted for
        self.resizing: dict[int, int] = {}  # running trial -> the replicas it restarts with
        self._restart_began: dict[int, float] = {}  # trial -> when its resize was answered
        self._restart_costs: deque[float] = deque(maxlen=20)
        self._silent: set[int] = set()  # trials warned about: a resize waits for a checkpoint they never make
        self._unprofiled: set[int] = set()  # trials warned about: they report but never profile
        self._unmeasured: set[int] = set()  # trials that have not profiled their current size yet

    # ------------------------------------------------------------------------------- accounting
    @property
    def in_flight(self) -> int:
        """Trials between two tasks: submitted and not yet started, or stopped for a restart."""
        return len(self.starting)

    @property
    def restart_s(self) -> float:
        return fmean(self._restart_costs) if self._restart_costs else self.settings.restart_s

    def model(self, run: TrialRun) -> ElasticTrial:
        key = attributes.checkpoint_key(run.number, run.user_attrs)
        if key not in self.models:
            settings = self.settings
            initial = settings.initial_batch or 1
            goodput = Goodput(
                initial_batch=initial,
                max_per_replica_batch=settings.max_per_replica_batch or (settings.max_batch or initial),
                min_batch=initial,
                max_batch=settings.max_batch if settings.initial_batch else initial,
            )
            self.models[key] = ElasticTrial(
                run.number, goodput, settings.min_replicas, self.max_replicas, changed_at=time.monotonic()
            )
        return self.models[key]

    # ------------------------------------------------------------------------------ the fill step
    def place(
        self,
        ready: deque[TrialRun],
        running: dict[int, TrialRun],
        start: Callable[[TrialRun, int], None],
        asking: int = 0,
    ) -> None:
        """Run the allocator: start waiting trials that get slots (``start(run, replicas)``) and mark running
        trials whose size changes. Trials in flight (starting, restarting) are left as they are, and the
        ``asking`` trials the sampler is still asking count as waiting ones: the first trial asked does not
        take every slot only to give them back (a restart) when the next arrives a moment later."""
        # in flight, or not yet measured at the size they run: a decision now would rest on a guess
        moving = {run.number for run, _ in self.starting.values()} | set(self.resizing) | self._unmeasured
        candidates: dict[int, ElasticTrial] = {}
        for number, run in running.items():
            if number not in moving and number in self.size:
                trial = self.model(run)
                trial.number, trial.replicas = number, self.size[number]
                candidates[number] = trial
        waiting = {run.number: run for run in ready}
        for number, run in waiting.items():
            trial = self.model(run)
            trial.number, trial.replicas = number, 0
            candidates[number] = trial
        for phantom in range(asking):  # negative numbers: never a trial's
            candidates[-1 - phantom] = ElasticTrial(
                -1 - phantom, Goodput(1, 1), self.settings.min_replicas, self.max_replicas, changed_at=-float("inf")
            )
        if not candidates:
            return
        pinned = sum(slots for number, slots in self.held.items() if number in moving)
        now = time.monotonic()
        changes = plan(candidates, self.capacity - pinned, self.restart_s, now, self.settings.min_interval_s)
        if changes:
            logger.debug(
                "daskopt: elastic: %s -> %s (pinned %d, free %d, held %s)",
                {n: t.replicas for n, t in candidates.items()},
                changes,
                pinned,
                self.capacity - sum(self.held.values()),
                self.held,
            )
        free = self.capacity - sum(self.held.values())
        for number, replicas in sorted(changes.items(), key=lambda item: item[1] - candidates[item[0]].replicas):
            trial = candidates[number]
            if number < 0:
                continue
            if number in waiting:
                if replicas > 0 and replicas <= free:
                    ready.remove(waiting[number])
                    free -= replicas
                    self.held[number] = replicas
                    start(waiting[number], replicas)
            elif replicas < trial.replicas:  # a shrink: its slots free when it restarts
                self.resizing[number] = replicas
            elif replicas - trial.replicas <= free:  # a grow takes its new slots now
                free -= replicas - trial.replicas
                self.held[number] = replicas
                self.resizing[number] = replicas

    # ------------------------------------------------------------------------ where replicas run
    def attach(self, pool: TaskPool, client: Client) -> None:
        """The loop's task pool and Dask client, once the loop runs: stretches are submitted through them."""
        from daskopt.engine.slots import elastic_slots

        self._pool, self._client = pool, client
        if self._refresh is None:
            self._refresh = lambda: elastic_slots(client, wait_s=0.0)

    def start(self, run: TrialRun, replicas: int) -> None:
        """Submit ``run``'s stretch of ``replicas``: the task that runs its objective (it is assigned the trial
        when it says HELLO) and, when the replicas span workers, a part task on each other worker."""
        assert self._pool is not None
        stretch = self.split(run, replicas)
        (worker, local), *others = stretch.parts
        self.submitted(self._pool.submit_sized(local, worker), run, replicas, stretch)
        first_rank = local
        for other, slots in others:
            assert stretch.group is not None
            self.part_submitted(
                self._pool.submit_part(stretch.group, first_rank, slots, replicas, other), run, stretch.group
            )
            first_rank += slots

    def end_stretch(self, run: TrialRun) -> None:
        """``run``'s stretch ended in the loop's view (told, lost, restarting, or its task never started): its
        parts are cancelled, and its group's variables deleted once they have all ended."""
        cancel, group = self.stretch_over(run)
        if self._pool is not None:
            self._pool.cancel(cancel)
        if group is not None:
            self._forget([group])

    def part_done(self, task_id: int, future: Any) -> bool:
        """A task ended: whether it was a part of a trial's replicas (then handled here)."""
        if task_id not in self.parts:
            return False
        if future.status == "error":
            logger.debug("daskopt: replica part %d ended with %s", task_id, future.exception())
        group = self.part_over(task_id)
        if group is not None:
            self._forget([group])
        return True

    def close(self) -> None:
        """At the end of the call (its tasks cancelled): delete the variables of every group left."""
        if self._groups:
            self._forget(list(self._groups), wait=True)

    def _forget(self, groups: list[str], wait: bool = False) -> None:
        from daskopt.elastic.parts import delete_groups

        if self._client is None:
            return
        if wait:
            delete_groups(self._client, groups)
        else:
            asyncio.get_running_loop().run_in_executor(None, delete_groups, self._client, groups)

    def split(self, run: TrialRun, replicas: int) -> Stretch:
        """Where ``run``'s next stretch of ``replicas`` runs: on one worker when one has room (Dask picks it),
        else on the workers with the most room first, as few as cover them, each part pinned to its worker
        (two parts queued on one worker would wait for each other). Room is what the workers offer less
        what the other trials' stretches hold there (this trial's own stretch has ended); before a split
        the workers are read again, so no part waits for a worker that has left."""
        free = self._free(run)
        if any(room >= replicas for room in free.values()) or len(free) <= 1:
            return Stretch(((None, replicas),), None)
        if self._refresh is not None:
            try:
                self.offered = {worker: slots for worker, slots in self._refresh().items() if slots > 0}
            except Exception as exc:  # the scheduler did not answer: go on with what was known
                logger.debug("daskopt: elastic: could not read the workers again: %s", exc)
            free = self._free(run)
            if any(room >= replicas for room in free.values()) or len(free) <= 1:
                return Stretch(((None, replicas),), None)
        parts: list[tuple[str | None, int]] = []
        left = replicas
        for worker in sorted(free, key=lambda w: (-free[w], w)):
            if left <= 0 or free[worker] <= 0:
                break
            parts.append((worker, min(left, free[worker])))
            left -= parts[-1][1]
        if left > 0:  # the loop's count and the workers' disagree for a moment: Dask queues the rest
            biggest = max(self.offered, key=lambda w: (self.offered[w], w))
            parts.append((biggest, left))
        if len(parts) == 1:
            return Stretch(tuple(parts), None)
        group = f"daskopt-replicas-{self._prefix}-{run.number}-{next(self._stretch_ids)}"
        return Stretch(tuple(parts), group)

    def _free(self, run: TrialRun) -> dict[str, int]:
        free = dict(self.offered)
        for number, stretch in self.stretches.items():
            if number != run.number:
                for worker, slots in stretch.parts:
                    if worker in free:
                        free[worker] -= slots
        return free

    def submitted(self, task_id: int, run: TrialRun, replicas: int, stretch: Stretch | None = None) -> None:
        self.starting[task_id] = (run, replicas)
        if stretch is not None:
            self.stretches[run.number] = stretch
            if stretch.group is not None:
                self._groups[stretch.group] = set()

    def part_submitted(self, task_id: int, run: TrialRun, group: str) -> None:
        self.parts[task_id] = run.number
        self._groups[group].add(task_id)

    def part_over(self, task_id: int) -> str | None:
        """A part's task ended: the group it belonged to when its variables can go (every part ended, and
        the stretch too), else ``None``."""
        self.parts.pop(task_id, None)
        for group, pending in self._groups.items():
            if task_id in pending:
                pending.discard(task_id)
                return self._forget_if_done(group)
        return None

    def _forget_if_done(self, group: str) -> str | None:
        if group in self._over and not self._groups.get(group):
            self._groups.pop(group, None)
            self._over.discard(group)
            return group
        return None

    def stretch_over(self, run: TrialRun) -> tuple[list[int], str | None]:
        """``run``'s stretch ended in the loop's view: the part tasks to cancel, and its group if its variables
        can go now."""
        stretch = self.stretches.pop(run.number, None)
        if stretch is None or stretch.group is None:
            return [], None
        self._over.add(stretch.group)
        return sorted(self._groups.get(stretch.group, ())), self._forget_if_done(stretch.group)

    def placement(self, run: TrialRun, replicas: int) -> Placement:
        """What ``run`` gets with ``replicas``: the total batch the goodput model picks and its learning rate,
        and its group when its replicas span workers."""
        settings = self.settings
        stretch = self.stretches.get(run.number)
        group, local = (stretch.group, stretch.parts[0][1]) if stretch and stretch.group else (None, None)
        if settings.initial_batch is None:
            return Placement(replicas, group=group, local=local)
        goodput = self.model(run).goodput
        batch = goodput.best(replicas)[1]
        return Placement(
            replicas,
            batch,
            lr_scale(settings.lr_rule, batch, settings.initial_batch, goodput.noise.value),
            group,
            local,
        )

    def began(self, run: TrialRun, replicas: int, worker: str | None = None) -> None:
        """``run``'s stretch with ``replicas`` was assigned (its objective's task on ``worker``): recorded in its
        ``replicas`` attribute, and where it runs in the loop's count of each worker's room."""
        stretch = self.stretches.get(run.number)
        if stretch is not None and worker and stretch.parts[0][0] is None:
            self.stretches[run.number] = Stretch(((worker, stretch.parts[0][1]),), stretch.group)
        trial = self.model(run)
        trial.changed_at = time.monotonic()
        self.size[run.number] = replicas
        self._unmeasured.add(run.number)
        step = 0 if run.checkpoint_step is None else run.checkpoint_step + 1
        history = list(run.user_attrs.get(REPLICAS, [])) + [[step, replicas]]
        run.trial.set_user_attr(REPLICAS, history)
        run.user_attrs[REPLICAS] = history

    def restored(self, run: TrialRun, step: int) -> None:
        """A retry learnt the step of the newest checkpoint it started from: its stretch begins after it."""
        history = [list(entry) for entry in run.user_attrs.get(REPLICAS, [])]
        if history and history[-1][0] == 0:
            history[-1][0] = step + 1
            run.trial.set_user_attr(REPLICAS, history)
            run.user_attrs[REPLICAS] = history

    def task_started(self, task_id: int) -> tuple[TrialRun, int] | None:
        """The trial a task that said HELLO was submitted for (``None``: not an elastic task)."""
        return self.starting.pop(task_id, None)

    def task_lost(self, task_id: int) -> TrialRun | None:
        """A task ended before it started its trial: the trial waits again (returned), its slots freed."""
        entry = self.starting.pop(task_id, None)
        if entry is None:
            return None
        run, _ = entry
        self.held.pop(run.number, None)
        self.end_stretch(run)
        return run

    # ---------------------------------------------------------------------------------- resizes
    def resize_due(self, run: TrialRun) -> bool:
        """Whether ``run`` should stop now to restart at its new size: it has a checkpoint at its latest
        report (no training is lost). One that never checkpoints is warned about once and keeps its size."""
        if run.number not in self.resizing:
            return False
        if run.checkpoint_step is not None and run.checkpoint_step == run.last_step:
            self._restart_began[run.number] = time.monotonic()
            return True
        if run.checkpoint_step is None and run.last_step is not None and run.number not in self._silent:
            self._silent.add(run.number)
            logger.warning(
                "daskopt: elastic trial %d reports but never checkpoints, so it cannot be resized; it keeps its "
                "%d replicas (save a checkpoint before each report: trial.save_checkpoint or "
                "daskopt.integrations.torch.save_checkpoint)",
                run.number,
                self.held.get(run.number, 0),
            )
            self.resizing.pop(run.number)
            self.held[run.number] = self.size.get(run.number, self.held.get(run.number, 0))
        return False

    def restarting(self, run: TrialRun) -> int | None:
        """``run`` stopped after a resize answer: the replicas it restarts with (``None``: not a resize)."""
        replicas = self.resizing.pop(run.number, None)
        if replicas is None:
            return None
        assert run.checkpoint_step is not None
        run.restore = (attributes.checkpoint_key(run.number, run.user_attrs), run.checkpoint_step)
        run.prune_request = 0
        self.held[run.number] = replicas
        return replicas

    def heard(self, run: TrialRun, report: bool = False) -> None:
        """A report or profile from ``run``: the first after a restart measures what the restart cost."""
        began = self._restart_began.pop(run.number, None)
        if began is not None:
            self._restart_costs.append(time.monotonic() - began)
        if report and run.last_step is not None and run.last_step >= 2 and not self.model(run).goodput.steps.fitted:
            if run.number not in self._unprofiled:
                self._unprofiled.add(run.number)
                logger.warning(
                    "daskopt: elastic trial %d reports but never calls trial.profile(seconds_per_step, ...): "
                    "without step times the allocator cannot tell what more replicas would give it, so it keeps "
                    "min_replicas",
                    run.number,
                )

    def profile(
        self, run: TrialRun, replicas: int, batch: int, seconds: float, noise: float | None, remaining: int | None
    ) -> None:
        trial = self.model(run)
        trial.goodput.steps.observe(replicas, batch / replicas, seconds)
        if replicas == self.size.get(run.number):
            self._unmeasured.discard(run.number)
        if noise is not None and noise > 0:
            trial.goodput.noise.assume(noise)
        trial.remaining_s = None if remaining is None else remaining * seconds

    def ended(self, run: TrialRun, replaced: bool) -> None:
        """``run`` was told (or requeued, ``replaced``): its slots are free; its model stays for a retry."""
        self.end_stretch(run)
        self.held.pop(run.number, None)
        self.size.pop(run.number, None)
        self._unmeasured.discard(run.number)
        self.resizing.pop(run.number, None)
        self._restart_began.pop(run.number, None)
        for task_id, (other, _) in list(self.starting.items()):
            if other is run:
                del self.starting[task_id]
        if not replaced:
            self.models.pop(attributes.checkpoint_key(run.number, run.user_attrs), None)
