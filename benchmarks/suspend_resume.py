"""suspend_resume: what pausing a trial and resuming it costs, against its checkpoint I/O plus one Dask dispatch.

Each trial saves its state (``state_kb`` of random bytes plus counters) before every report. A scheduler
that pauses every trial once, at step 1, and resumes it as soon as a slot is free (the cheapest policy, so
that what is measured is the mechanism) runs 2 × ``slots`` trials on a 2-worker × 2-thread
``LocalCluster``. Inside each trial: ``t_paused`` when ``should_prune()`` is called at step 1 (the
decision to pause comes back from it), ``t_resumed`` when the objective starts again after its state was
loaded; the cost of one pause and resume is ``t_resumed - t_paused`` (the question and its answer, the
objective stopping, the loop's bookkeeping, the trial's new assignment, its task starting, and the
checkpoint load).

Baselines, measured in the same run on the same cluster: one Dask dispatch (``client.submit`` of a no-op
task and its result, the round trip a resume on a fresh task needs at least) and the checkpoint I/O of
the same state (one ``save_checkpoint`` plus one ``load_checkpoint`` on the same folder). Target: the
pause-and-resume median at most the sum of the two medians (``ratio <= 1``).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import optuna

from benchmarks.common import Settings, dask_cluster, run_daskopt, slots
from daskopt.schedulers.base import CONTINUE, SUSPEND, Decision, Report, Scheduler
from daskopt.trial import checkpoints

NAME = "suspend_resume"
DESCRIPTION = "one pause and resume of a trial vs its checkpoint I/O plus one Dask dispatch"
STEPS = 4


class PauseOnce(Scheduler):
    """Pauses every trial at step 1 and resumes it at the first free slot."""

    name = "pause-once"

    def __init__(self) -> None:
        self.paused: deque[int] = deque()
        self.done: set[int] = set()

    def decide(self, report: Report) -> Decision:
        if report.step == 1 and report.number not in self.done and report.checkpointed:
            self.done.add(report.number)
            return SUSPEND
        return CONTINUE

    def suspended(self, number: int, step: int) -> None:
        self.paused.append(number)

    def resume_next(self) -> int | None:
        return self.paused.popleft() if self.paused else None


def pausing_objective(trial: Any, state_kb: int) -> float:
    """``STEPS`` steps with a checkpoint each; records when it was told to pause and when it came back."""
    state = trial.load_checkpoint()
    if state is None:
        state = {"blob": os.urandom(state_kb * 1024), "steps": 0}
    else:
        trial.set_user_attr("t_resumed", time.time())
    start = 0 if trial.resume_step is None else trial.resume_step + 1
    for step in range(start, STEPS):
        state["steps"] += 1
        trial.save_checkpoint(state, step)
        trial.report(float(step), step)
        if step == 1 and trial.resume_step is None:
            trial.set_user_attr("t_paused", time.time())
        if trial.should_prune():
            raise optuna.TrialPruned()
    return float(state["steps"])


def _noop() -> int:
    return 0


def _dispatch_ms(client: Any, n: int) -> float:
    """Median round trip of one no-op Dask task (submit to result), after a warm-up."""
    client.submit(_noop, pure=False).result()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.submit(_noop, pure=False).result()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _checkpoint_io_ms(state_kb: int, n: int) -> float:
    """Median of one checkpoint write plus one read of the same state, in a fresh folder."""
    state = {"blob": os.urandom(state_kb * 1024), "steps": 0}
    times = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for step in range(n):
            t0 = time.perf_counter()
            with checkpoints.writing(root, step) as path:
                checkpoints.save_state(path, state)
            checkpoints.load_state(root / checkpoints.folder_name(step))
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run(settings: Settings) -> dict[str, Any]:
    import functools

    state_kb = settings.pick(smoke=16, quick=1024, full=1024)
    repeats = settings.reps(smoke=1, quick=1, full=3)
    costs: list[float] = []
    dispatch, io = [], []
    with dask_cluster(2, 2) as client:
        n = 2 * slots(client)
        for i in range(repeats):
            dispatch.append(_dispatch_ms(client, settings.pick(smoke=5, quick=20, full=50)))
            io.append(_checkpoint_io_ms(state_kb, settings.pick(smoke=3, quick=10, full=20)))
            study = optuna.create_study(pruner=optuna.pruners.NopPruner())
            with tempfile.TemporaryDirectory() as folder:
                run_daskopt(
                    client,
                    study,
                    functools.partial(pausing_objective, state_kb=state_kb),
                    n_trials=n,
                    scheduler=PauseOnce(),
                    tracking={"checkpoint_dir": folder},
                )
            trials = [t for t in study.trials if "t_resumed" in t.user_attrs]
            assert len(trials) == n and all(t.state.name == "COMPLETE" for t in study.trials), "a trial was lost"
            run_costs = [(t.user_attrs["t_resumed"] - t.user_attrs["t_paused"]) * 1e3 for t in trials]
            costs += run_costs
            print(
                f"  run {i + 1}/{repeats}: pause+resume p50 {statistics.median(run_costs):.1f} ms "
                f"(n={len(run_costs)}), dispatch {dispatch[-1]:.2f} ms, checkpoint I/O {io[-1]:.2f} ms",
                flush=True,
            )
    baseline = statistics.median(dispatch) + statistics.median(io)
    cost = statistics.median(costs)
    return {
        "state_kb": state_kb,
        "pause_resume_ms": cost,
        "pause_resume_p90_ms": sorted(costs)[int(0.9 * (len(costs) - 1))],
        "dispatch_ms": statistics.median(dispatch),
        "checkpoint_io_ms": statistics.median(io),
        "ratio": cost / baseline,
    }
