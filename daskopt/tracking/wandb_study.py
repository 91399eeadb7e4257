"""Weights & Biases: the study's own run, written from the driver (trial runs: :mod:`.wandb_logger`).

``name=study-<study name>``, ``job_type="study"``, in the study's group: the best-so-far curve, a final
trials table and the trial runs' names. The run is started and written by a thread of its own, so the
engine loop only queues rows (W&B's start takes seconds of CPU on a small machine).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from daskopt.tracking import wandb_logger  # through the module: tests replace its start_run
from daskopt.tracking.base import StudyLogger, wait_for_end, warn

logger = logging.getLogger("daskopt.tracking")


def announce(options: Mapping[str, Any]) -> None:
    """One line on the console: W&B is on, in which mode, where the runs go, and how to turn it off."""
    mode = wandb_logger.resolve_mode(options.get("mode"))
    where = Path(options.get("dir") or os.getcwd()) / "wandb"
    line = (
        f"daskopt: W&B is logging every trial ({mode}, project {options.get('project')}) under {where}; "
        'turn it off with WANDB_MODE=disabled, [wandb] mode = "disabled" in a study file, '
        "or tracking=daskopt.Tracking(wandb=None) in Python"
    )
    logger.info(line)
    print(line, file=sys.stderr, flush=True)


class WandbStudyLogger(StudyLogger):
    """The study's own run, in the driver: best-so-far per finished trial, the trials table at the end.

    The hooks run on the engine loop and only queue: a :class:`_RunWriter` thread starts the run and
    writes to it, so W&B's start in the driver (over a second on two cores: import, helper process, run)
    never holds the loop. ``study_end`` waits until the run is finished on disk (see :class:`_RunWriter.end`).
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options
        self.writer: _RunWriter | None = None
        self.best: float | None = None
        self.finished: list[int] = []  # trial numbers, in finishing order
        self.counts: dict[str, int] = {}

    def study_start(self, study: optuna.Study) -> None:
        config = {
            **self.options.get("config", {}),
            "study": study.study_name,
            "directions": [d.name.lower() for d in study.directions],
            "sampler": type(study.sampler).__name__,
            "pruner": type(study.pruner).__name__,
        }
        announce(self.options)
        self.writer = _RunWriter(self.options, name=f"study-{study.study_name}", config=config)
        if len(study.directions) == 1:
            try:
                self.best = study.best_value  # a resumed study keeps its best
            except ValueError:
                self.best = None

    def trial_finished(self, study: optuna.Study, frozen: optuna.trial.FrozenTrial, worker: str) -> None:
        """One row per finished trial: its number and value, the best so far, the counts by state."""
        if self.writer is None:
            return
        self.finished.append(frozen.number)
        state = frozen.state.name.lower()
        self.counts[state] = self.counts.get(state, 0) + 1
        row: dict[str, Any] = {"trial": frozen.number, **{f"n_{k}": v for k, v in self.counts.items()}}
        if frozen.state == TrialState.COMPLETE and frozen.values is not None:
            if len(study.directions) == 1:
                self.best = _better(self.best, frozen.values[0], study.direction)
                row["trial_value"] = frozen.values[0]
            else:
                row.update({f"trial_value_{i}": v for i, v in enumerate(frozen.values)})
        if self.best is not None:
            row["best_value"] = self.best
        self.writer.log(row)

    def study_end(self, study: optuna.Study) -> None:
        writer, self.writer = self.writer, None
        if writer is None:
            return
        writer.end(self._study_summary(study), _trials_rows(study))
        if wandb_logger.resolve_mode(self.options.get("mode")) == "offline":
            where = Path(self.options.get("dir") or ".") / "wandb"
            logger.info(
                "daskopt: W&B runs are offline in %s; upload them with `wandb sync %s/offline-run-*`", where, where
            )

    def _study_summary(self, study: optuna.Study) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "trial_runs_group": self.options["group"],
            "trial_runs": [f"trial-{number}" for number in sorted(self.finished)],
            "n_trials": len(study.get_trials(deepcopy=False)),
        }
        if len(study.directions) == 1 and self.best is not None:
            try:
                best = study.best_trial
            except ValueError:
                return summary
            summary.update(best_value=best.value, best_trial=best.number, best_params=best.params)
            summary["best_run"] = f"trial-{best.number}"
        return summary


class _RunWriter:
    """The study's run, owned by one thread: started there, fed rows in order, finished by :meth:`end`.

    A failure is warned about once per step (as a failing hook would be) and never raised; rows that
    arrive while the run is starting wait in the queue, so none is lost.
    """

    def __init__(self, options: Mapping[str, Any], *, name: str, config: dict[str, Any]) -> None:
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._work, args=(options, name, config), name="daskopt-wandb-study", daemon=True
        )
        self._thread.start()

    def log(self, row: dict[str, Any]) -> None:
        self._queue.put(("log", row))

    def end(self, summary: dict[str, Any], table: tuple[list[str], list[list[Any]]]) -> None:
        """Write the summary and the trials table, finish the run, and return once that is done (or, inside
        :func:`~daskopt.tracking.base.study_ends_overlapped`, when that is left)."""
        self._queue.put(("end", (summary, table)))
        wait_for_end(self._thread)

    def _work(self, options: Mapping[str, Any], name: str, config: dict[str, Any]) -> None:
        try:
            run = wandb_logger.start_run(options, name=name, job_type="study", config=config)
        except Exception as exc:
            warn("WandbStudyLogger.study_start failed; the study goes on", exc)
            run = None
        failed_log = False
        while True:
            kind, payload = self._queue.get()
            if run is None:
                if kind == "end":
                    return
                continue
            if kind == "log":
                try:
                    run.log(payload)
                except Exception as exc:
                    if not failed_log:
                        failed_log = True
                        warn("WandbStudyLogger.trial_finished failed; the study goes on", exc)
                continue
            summary, (columns, rows) = payload
            try:
                run.summary.update(summary)
                table = wandb_logger.import_wandb().Table(columns=columns, allow_mixed_types=True)
                for row in rows:
                    table.add_data(*row)
                run.log({"trials": table})
            except Exception as exc:
                warn("WandbStudyLogger.study_end failed; the study goes on", exc)
            finally:
                try:
                    run.finish()
                except Exception as exc:
                    warn("WandbStudyLogger.study_end failed; the study goes on", exc)
            return


def _better(best: float | None, value: float, direction: optuna.study.StudyDirection) -> float | None:
    if math.isnan(value):
        return best
    if best is None:
        return value
    return min(best, value) if direction == optuna.study.StudyDirection.MINIMIZE else max(best, value)


def _trials_rows(study: optuna.Study) -> tuple[list[str], list[list[Any]]]:
    """Every trial of the study as the columns and rows of the ``trials`` table (``run`` names its W&B run)."""
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for t in trials for name in t.params})
    n_values = len(study.directions)
    value_cols = ["value"] if n_values == 1 else [f"value_{i}" for i in range(n_values)]
    columns = ["number", "run", "state", *value_cols, *params, "duration_s"]
    rows = []
    for t in trials:
        values = list(t.values) if t.values is not None else [None] * n_values
        duration = t.duration.total_seconds() if t.duration is not None else None
        by_param = [t.params.get(p) for p in params]
        rows.append([t.number, f"trial-{t.number}", t.state.name, *values, *by_param, duration])
    return columns, rows
