"""Tracking: per-trial loggers on the workers, study loggers on the driver (see :mod:`.base`).

:func:`tracking_settings` turns ``optimize()``'s arguments into the plain settings shipped to every trial
(``Assignment.tracking``); :func:`trial_loggers` builds a trial's loggers from them inside the task and
:func:`study_loggers` the driver's. Optional backends are imported only when configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from daskopt.tracking.base import (
    StudyLogger,
    StudyLoggers,
    TrialEnd,
    TrialLogger,
    TrialLoggers,
    TrialStart,
    study_ends_overlapped,
)
from daskopt.tracking.jsonl import JsonlStudyLogger
from daskopt.tracking.wandb_logger import (
    WandbTrialLogger,
    spec_wandb_option,
    wandb_options,
    warm_up_workers,
)
from daskopt.tracking.wandb_logger import warm_up as warm_up_wandb
from daskopt.tracking.wandb_study import WandbStudyLogger

__all__ = [
    "JsonlStudyLogger",
    "StudyLogger",
    "StudyLoggers",
    "TrialEnd",
    "TrialLogger",
    "TrialLoggers",
    "TrialStart",
    "WandbStudyLogger",
    "WandbTrialLogger",
    "spec_wandb_option",
    "study_ends_overlapped",
    "study_loggers",
    "tracking_settings",
    "trial_loggers",
    "warm_up",
]

NO_TRIAL_LOGGER = TrialLogger()


def tracking_settings(
    study_name: str, *, wandb: Mapping[str, Any] | bool | None = None, output_dir: str | Path | None = None
) -> dict[str, Any] | None:
    """What every trial needs to build its loggers (plain data, sent with the assignment), or ``None``."""
    options = wandb_options(wandb, study_name=study_name, output_dir=output_dir)
    return {"wandb": options} if options is not None else None


def warm_up(tracking: Mapping[str, Any] | None, client: Any = None) -> None:
    """Start the configured backends' one-off costs now, in the background: in this process, and in the
    worker processes of ``client`` when given. Returns at once; nothing when nothing is tracked."""
    if not tracking or not tracking.get("wandb"):
        return
    warm_up_wandb()
    if client is not None:
        warm_up_workers(client)


def trial_loggers(tracking: Mapping[str, Any] | None) -> TrialLogger:
    """The loggers of one trial, in its task; a shared no-op when nothing is tracked."""
    if not tracking:
        return NO_TRIAL_LOGGER
    loggers: list[TrialLogger] = []
    if tracking.get("wandb"):
        loggers.append(WandbTrialLogger(tracking["wandb"]))
    return TrialLoggers(loggers)


def study_loggers(
    tracking: Mapping[str, Any] | None, output_dir: str | Path | None, extra: Sequence[StudyLogger] = ()
) -> StudyLogger:
    """The driver's loggers: ``events.jsonl`` whenever there is an output folder, W&B when configured, and
    the caller's own (``daskopt.Tracking(loggers=[...])``)."""
    loggers: list[StudyLogger] = []
    if output_dir is not None:
        loggers.append(JsonlStudyLogger(output_dir))
    if tracking and tracking.get("wandb"):
        loggers.append(WandbStudyLogger(tracking["wandb"]))
    loggers.extend(extra)
    return StudyLoggers(loggers)
