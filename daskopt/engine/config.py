"""The engine's settings, resolved once from ``optimize()``'s arguments (or a study file)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
from optuna.distributions import BaseDistribution

from daskopt.tracking.base import StudyLogger

Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


class Service(Protocol):
    """Something that runs beside the loop on its event loop (the dashboard), closed when the call ends."""

    async def close(self) -> None: ...


# Called with the Engine once its event loop runs; returns the started service.
ServiceStarter = Callable[[Any], Service]


@dataclass(frozen=True)
class EngineConfig:
    """What the loop needs to know besides the study, the objective and the client.

    ``n_trials`` counts trials that reach a final outcome in this call; a lost attempt that is retried
    does not count (its retry does), so a study asked for 100 trials gets 100 outcomes.
    """

    n_concurrent: int
    n_trials: int | None = None
    timeout: float | None = None
    hard_timeout: bool = False  # at ``timeout``, stop running trials and enqueue them again (else they finish)
    ask_ahead: bool = True  # with a slow sampler and short trials, keep a few trials asked ahead of free slots
    catch: tuple[type[BaseException], ...] = (Exception,)
    callbacks: Sequence[Callback] = ()
    max_retries: int = 0
    fail_fast: int | None = 5  # see daskopt.engine.state.FailFast
    trial_timeout: float | None = None
    search_space: dict[str, BaseDistribution] | None = None
    report_last_n: int | None = None
    show_progress: bool = True
    heartbeat_s: float = 5.0
    heartbeat_timeout: float = 60.0
    chain_below_s: float = 0.5
    hung_grace_s: float = 10.0
    restart_hung_workers: bool = True
    scheduler_grace_s: float = 20.0
    channel_host: str | None = None
    resources: dict[str, float] | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    checkpoint_root: str | None = None  # folder workers can reach; trial-<n> folders are made below it
    tracking: dict[str, Any] | None = None  # sent to every trial, see daskopt.tracking.trial_loggers
    study_logger: StudyLogger | None = None  # driver-side hooks, see daskopt.tracking.base.StudyLogger
    services: Sequence[ServiceStarter] = ()

    def __post_init__(self) -> None:
        checks = [
            ("n_concurrent", self.n_concurrent, 1),
            ("n_trials", self.n_trials, 1),
            ("max_retries", self.max_retries, 0),
            ("report_last_n", self.report_last_n, 1),
            ("fail_fast", self.fail_fast, 1),
        ]
        for name, value, minimum in checks:
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        for name, seconds in (("timeout", self.timeout), ("trial_timeout", self.trial_timeout)):
            if seconds is not None and not seconds > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
