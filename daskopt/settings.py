"""Typed settings for :func:`daskopt.optimize`, one object per concern (Ray's ``FailureConfig``, httpx's
``Timeout``).

``optimize()`` keeps Optuna's small signature; everything beyond it lives in these frozen objects. Each
checks itself when it is built, raising one line that names the object, the field, what was received
and what was expected, and ``daskopt run`` builds the same objects from a study file's sections
(:func:`daskopt.runner.run.settings_from_spec`), so a setting is validated in one place whichever way
it arrives. The engine's configuration (:class:`daskopt.engine.config.EngineConfig`) is composed of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from daskopt.arguments import check_bool, check_int, check_seconds
from daskopt.tracking.base import StudyLogger

DASHBOARD_OPTIONS = ("host", "port", "allow_websocket_origin")


@dataclass(frozen=True)
class Timeout:
    """``optimize(timeout=...)`` as an object: ``seconds`` for the whole call, and what happens then.

    At the deadline no trial starts; the running ones finish, as in Optuna. ``hard=True`` stops them
    instead: they are recorded FAIL ("interrupted", not counted as outcomes) and their parameters are
    enqueued again, so the next call on the study runs them first (as after Ctrl-C). A plain number is
    ``Timeout(seconds)``.
    """

    seconds: float
    hard: bool = False

    def __post_init__(self) -> None:
        check_seconds("seconds", self.seconds, where="daskopt.Timeout")
        check_bool("hard", self.hard, where="daskopt.Timeout")


@dataclass(frozen=True)
class Failures:
    """What a failing, lost, silent or overrunning trial costs the study.

    Args:
        max_retries: a trial whose worker died (or went silent) is re-run with the same parameters up to
            this many times; the retry carries ``retry_of`` and ``attempt`` user attributes and does not
            count toward ``n_trials``.
        fail_fast: when the call's first ``fail_fast`` outcomes are all FAIL with one same error (a
            program that does not exist, a wrong signature, an objective that cannot be loaded) and
            nothing completed, stop with :class:`~daskopt.errors.ObjectiveError`; ``None``: never.
        trial_timeout: seconds; a trial running longer is told to stop and recorded FAIL.
        hung_grace_s: an objective still running this long after it was told to stop has its worker
            process restarted (Python threads cannot be killed).
        heartbeat_timeout: seconds without a word from a running trial before it is declared lost.
        scheduler_grace_s: how long the client may be disconnected from its scheduler before the call
            stops with :class:`~daskopt.errors.SchedulerLost`.
    """

    max_retries: int = 0
    fail_fast: int | None = 5
    trial_timeout: float | None = None
    hung_grace_s: float = 10.0
    heartbeat_timeout: float = 60.0
    scheduler_grace_s: float = 20.0

    def __post_init__(self) -> None:
        where = "daskopt.Failures"
        check_int("max_retries", self.max_retries, 0, where=where)
        check_int("fail_fast", self.fail_fast, 1, optional=True, where=where)
        check_seconds("trial_timeout", self.trial_timeout, optional=True, where=where)
        check_seconds("hung_grace_s", self.hung_grace_s, zero=True, where=where)
        check_seconds("heartbeat_timeout", self.heartbeat_timeout, where=where)
        check_seconds("scheduler_grace_s", self.scheduler_grace_s, where=where)

    @property
    def heartbeat_s(self) -> float:
        """How often a running trial says it is alive: a third of the timeout, at most 5 s."""
        return min(5.0, self.heartbeat_timeout / 3)


@dataclass(frozen=True)
class Resources:
    """What each trial task takes of its worker.

    Args:
        gpus_per_trial: each trial requests the integer Dask resource ``GPU_SLOT = gpus_per_trial`` and
            gets that many GPUs of its worker (docs/gpu.md).
        gpu_memory_fraction: each trial's share of its GPU's memory, enforced with
            ``torch.cuda.set_per_process_memory_fraction``.
        dask: further Dask resources each trial task requests, e.g. ``{"MEMORY_SLOT": 1}``.
    """

    gpus_per_trial: int | None = None
    gpu_memory_fraction: float | None = None
    dask: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        where = "daskopt.Resources"
        check_int("gpus_per_trial", self.gpus_per_trial, 1, optional=True, where=where)
        fraction = self.gpu_memory_fraction
        if fraction is not None and not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
            raise ValueError(f"{where}: gpu_memory_fraction must be a number in (0, 1], got {fraction!r}")
        if self.dask is not None and not (
            isinstance(self.dask, Mapping)
            and all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in self.dask.items())
        ):
            raise TypeError(f'{where}: dask must be a dict of resource name -> amount, e.g. {{"GPU_SLOT": 1}}')


@dataclass(frozen=True)
class Tracking:
    """Where a study's records go besides its Optuna storage.

    Args:
        wandb: log every trial as its own Weights & Biases run (``group`` = study name, ``name`` =
            ``trial-<number>``) plus one run for the study: ``True`` for defaults, or a dict with
            ``project``, ``entity``, ``mode``, ``tags``, ``dir``, ``metric``, ``config``, ``settings``.
            Needs the ``wandb`` extra. Nothing is logged to W&B without it.
        output_dir: a folder for the study's outputs; ``events.jsonl`` there gets one line per trial
            start and end. W&B runs go under it too.
        checkpoint_dir: a folder all workers can reach; each trial gets ``trial.checkpoint_dir`` below
            it, and a retried trial gets the folder of the attempt it replaces.
        loggers: more driver-side loggers (:class:`daskopt.tracking.StudyLogger` subclasses), called on
            the client as trials start and finish.
    """

    wandb: Mapping[str, Any] | bool | None = None
    output_dir: str | Path | None = None
    checkpoint_dir: str | Path | None = None
    loggers: Sequence[StudyLogger] = ()

    def __post_init__(self) -> None:
        where = "daskopt.Tracking"
        if self.wandb is not None and not isinstance(self.wandb, (bool, Mapping)):
            raise TypeError(f"{where}: wandb must be True, False, None or a dict of W&B options, got {self.wandb!r}")
        for name in ("output_dir", "checkpoint_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, Path)):
                raise TypeError(f"{where}: {name} must be a folder path, got {value!r}")
        loggers = tuple(self.loggers)
        if not all(isinstance(logger, StudyLogger) for logger in loggers):
            raise TypeError(f"{where}: loggers must be daskopt.tracking.StudyLogger instances, got {loggers!r}")
        object.__setattr__(self, "loggers", loggers)


@dataclass(frozen=True)
class Dashboard:
    """The live Bokeh page, served while the call runs at ``http://<host>:<port>/daskopt``.

    ``port=0`` takes a free port (printed). The page is read-only and listens on loopback by default.
    """

    host: str = "127.0.0.1"
    port: int = 0
    allow_websocket_origin: Sequence[str] = ()

    def __post_init__(self) -> None:
        where = "daskopt.Dashboard"
        if not isinstance(self.host, str) or not self.host:
            raise TypeError(f"{where}: host must be a host name or address, got {self.host!r}")
        check_int("port", self.port, 0, where=where)
        if self.port > 65535:
            raise ValueError(f"{where}: port must be an int in 0..65535, got {self.port!r}")
        object.__setattr__(self, "allow_websocket_origin", tuple(self.allow_websocket_origin))

    def options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`daskopt.dashboard.start_dashboard`."""
        options = {"host": self.host, "port": self.port}
        if self.allow_websocket_origin:
            options["allow_websocket_origin"] = list(self.allow_websocket_origin)
        return options

    @classmethod
    def coerce(cls, value: Dashboard | bool | Mapping[str, Any] | None) -> Dashboard | None:
        """``optimize(dashboard=...)``: ``True`` for the defaults, a dict of the fields, or the object."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(DASHBOARD_OPTIONS))
            if unknown:
                raise ValueError(
                    f"daskopt.Dashboard: unknown option(s) {unknown}; valid options: {', '.join(DASHBOARD_OPTIONS)}"
                )
            return cls(**value)
        raise TypeError(f"dashboard must be True, False, None, a dict or a daskopt.Dashboard, got {value!r}")


@dataclass(frozen=True)
class TrialOptions:
    """How each trial runs and what its value is.

    Args:
        report_last_n: when the objective returns ``None``, its value is the mean of its last
            ``report_last_n`` reported values.
        repeats: run every enqueued configuration (``study.enqueue_trial``) this many times, with seeds
            ``seed_base + repeat`` (``trial.user_attrs["seed"]``), pruning off.
        seed_base: the first repeat's seed.
        chain_below_s: a task whose trial took less than this runs the next trial too, saving Dask's
            per-task dispatch where it dominates; ``0`` gives every trial its own task.
    """

    report_last_n: int | None = None
    repeats: int = 0
    seed_base: int = 0
    chain_below_s: float = 0.5

    def __post_init__(self) -> None:
        where = "daskopt.TrialOptions"
        check_int("report_last_n", self.report_last_n, 1, optional=True, where=where)
        check_int("repeats", self.repeats, 0, where=where)
        check_int("seed_base", self.seed_base, -(2**63), where=where)
        check_seconds("chain_below_s", self.chain_below_s, zero=True, where=where)


LR_RULES = ("adascale", "linear", "sqrt", "none")


@dataclass(frozen=True)
class Elastic:
    """Elastic trials: each trial's replicas (``GPU_SLOT`` units, on one worker or several) change while it runs.

    The loop's allocator (:mod:`daskopt.elastic`) reassigns slots among running and waiting trials by
    their goodput, measured inside each trial (``trial.profile``); a change is a checkpoint at a report
    and a restart at the new size from it, so the trial stays one Optuna trial. The trial reads its size,
    total batch and learning-rate factor from ``trial.elastic`` (docs/gpu.md, "Elastic trials").

    Args:
        min_replicas: the fewest replicas a trial runs with (it waits until that many slots are free).
        max_replicas: the most replicas a trial may have; also capped by the cluster's ``GPU_SLOT`` total (a
            trial's replicas span workers when no single one has room for them).
        initial_batch: the total batch the trial's hyperparameters were tuned for (``M0``); with it the batch
            follows the allocation (up to ``max_batch`` and ``max_per_replica_batch`` per replica) where the
            measured gradient noise scale says a larger one pays; without it the batch is the objective's own.
        max_batch: the largest total batch.
        max_per_replica_batch: the largest batch of one replica (what fits in its memory).
        lr_rule: how the learning rate follows the batch ``M``: ``adascale`` (the gain
            ``(φ/M0 + 1) / (φ/M + 1)`` with the measured noise scale ``φ``), ``linear`` (``M / M0``), ``sqrt``
            (``sqrt(M / M0)``) or ``none``; read it as ``trial.elastic.lr_scale``.
        restart_s: what a resize costs a trial before one is measured (then the measured mean is used):
            a grow is made only where it saves more of the trial's remaining time than this.
        min_interval_s: the shortest time between two resizes of one trial.
    """

    min_replicas: int = 1
    max_replicas: int = 8
    initial_batch: int | None = None
    max_batch: int | None = None
    max_per_replica_batch: int | None = None
    lr_rule: str = "sqrt"
    restart_s: float = 10.0
    min_interval_s: float = 30.0

    def __post_init__(self) -> None:
        where = "daskopt.Elastic"
        check_int("min_replicas", self.min_replicas, 1, where=where)
        check_int("max_replicas", self.max_replicas, 1, where=where)
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"{where}: max_replicas must be >= min_replicas ({self.min_replicas}), got {self.max_replicas}"
            )
        for name in ("initial_batch", "max_batch", "max_per_replica_batch"):
            check_int(name, getattr(self, name), 1, optional=True, where=where)
        if self.max_batch is not None and self.initial_batch is not None and self.max_batch < self.initial_batch:
            raise ValueError(
                f"{where}: max_batch must be >= initial_batch ({self.initial_batch}), got {self.max_batch}"
            )
        if self.lr_rule not in LR_RULES:
            raise ValueError(f"{where}: lr_rule must be one of {', '.join(LR_RULES)}, got {self.lr_rule!r}")
        check_seconds("restart_s", self.restart_s, zero=True, where=where)
        check_seconds("min_interval_s", self.min_interval_s, zero=True, where=where)

    @classmethod
    def coerce(cls, value: Elastic | Mapping[str, Any] | None) -> Elastic | None:
        """``optimize(elastic=...)``: ``None`` (fixed-size trials), a dict of the fields, or the object."""
        return None if value is None else _settings_object(cls, "elastic", value)


SETTINGS_TYPES = {"failures": Failures, "resources": Resources, "tracking": Tracking, "trials": TrialOptions}


def coerce(name: str, value: Any) -> Any:
    """An ``optimize()`` settings argument as its object: ``None`` gives the defaults, a dict the fields."""
    cls = SETTINGS_TYPES[name]
    return cls() if value is None else _settings_object(cls, name, value)


def _settings_object(cls: type[Any], name: str, value: Any) -> Any:
    """``value`` as a ``cls``: the object itself, or built from a dict of its fields (an unknown one named)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise TypeError(f"daskopt.{cls.__name__}: unknown field(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**value)
    raise TypeError(
        f"daskopt.optimize: {name} must be a daskopt.{cls.__name__} (or a dict of its fields), got {value!r}"
    )


def coerce_timeout(value: Timeout | float | None) -> Timeout | None:
    if value is None or isinstance(value, Timeout):
        return value
    check_seconds("timeout", value, optional=True)
    return Timeout(float(value))


__all__ = [
    "Dashboard",
    "Elastic",
    "Failures",
    "Resources",
    "Timeout",
    "TrialOptions",
    "Tracking",
    "coerce",
    "coerce_timeout",
]
