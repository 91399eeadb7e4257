"""The engine's settings, resolved once from ``optimize()``'s arguments (or a study file)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from optuna.distributions import BaseDistribution

from daskopt.schedulers.base import Scheduler
from daskopt.settings import Elastic, Failures, Timeout, TrialOptions
from daskopt.tracking.base import StudyLogger

if TYPE_CHECKING:
    from daskopt.engine.view import EngineView

Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


class Service(Protocol):
    """Something that runs beside the loop on its event loop (the dashboard), closed when the call ends."""

    async def close(self) -> None: ...


# Called with the engine (as an EngineView) once its event loop runs; returns the started service.
ServiceStarter = Callable[["EngineView"], Service]


@dataclass(frozen=True)
class EngineConfig:
    """What the loop needs to know besides the study, the objective and the client: the call's plain
    arguments, the user's settings objects (:mod:`daskopt.settings`, validated when they were built) and
    what ``optimize()`` derived from them (the Dask resource request, the trials' tracking settings).

    ``n_trials`` counts trials that reach a final outcome in this call; a lost attempt that is retried
    does not count (its retry does), so a study asked for 100 trials gets 100 outcomes.
    """

    n_concurrent: int
    n_trials: int | None = None
    timeout: Timeout | None = None
    called_at: float | None = None  # when optimize() was called (monotonic): the timeout counts from it
    catch: tuple[type[BaseException], ...] = (Exception,)
    callbacks: Sequence[Callback] = ()
    search_space: dict[str, BaseDistribution] | None = None
    show_progress: bool = True
    failures: Failures = field(default_factory=Failures)
    trials: TrialOptions = field(default_factory=TrialOptions)
    resources: dict[str, float] | None = None  # the Dask resources each trial task requests (GPU_SLOT included)
    checkpoint_root: str | None = None  # folder workers can reach; trial-<n> folders are made below it
    tracking: dict[str, Any] | None = None  # sent to every trial, see daskopt.tracking.trial_loggers
    study_logger: StudyLogger | None = None  # driver-side hooks, see daskopt.tracking.base.StudyLogger
    services: Sequence[ServiceStarter] = ()
    scheduler: Scheduler | None = None  # decides instead of the study's pruner (daskopt.schedulers)
    elastic: Elastic | None = None  # elastic trials: replicas that change while they run (engine/elastic.py)
    elastic_slots: dict[str, int] = field(default_factory=dict)  # GPU_SLOT units by worker address
    channel: str = "auto"  # the trial channel: "auto", "direct" or "relay" (engine/trial_channel.py)
    # engine knobs that are not user settings (tests and benchmarks set them)
    restart_hung_workers: bool = True
    channel_host: str | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    ask_ahead: bool = True  # with a slow sampler and short trials, keep a few trials asked ahead of free slots
