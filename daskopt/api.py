"""The Python entry points: :func:`optimize` and the optuna-distributed style :func:`from_study`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import optuna
from distributed import Client, LocalCluster
from optuna.distributions import BaseDistribution

from daskopt import gpu
from daskopt.arguments import check_callbacks, check_catch, check_optimize_arguments
from daskopt.engine.config import Callback, EngineConfig, ServiceStarter
from daskopt.engine.gc_pauses import short_gc_pauses
from daskopt.engine.loop import Engine
from daskopt.engine.repeats import expand_repeats
from daskopt.engine.slots import (
    check_elastic,
    check_resources,
    cluster_slots,
    elastic_slots,
    unprofiled_worker_config,
    warn_profiled_busy_workers,
)
from daskopt.schedulers.base import Scheduler, check_scheduler
from daskopt.settings import (
    Dashboard,
    Elastic,
    Failures,
    Resources,
    Timeout,
    Tracking,
    TrialOptions,
    coerce,
    coerce_timeout,
)
from daskopt.tracking import study_ends_overlapped, study_loggers, tracking_settings, warm_up
from daskopt.worker_priority import lower_worker_priority

Objective = Callable[[Any], Any]


def optimize(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int | None = None,
    timeout: float | Timeout | None = None,
    n_concurrent: int | None = None,
    client: Client | None = None,
    catch: Iterable[type[Exception]] | type[Exception] = (Exception,),
    callbacks: Iterable[Callback] = (),
    search_space: dict[str, BaseDistribution] | None = None,
    show_progress_bar: bool = True,
    failures: Failures | Mapping[str, Any] | None = None,
    resources: Resources | Mapping[str, Any] | None = None,
    tracking: Tracking | Mapping[str, Any] | None = None,
    trials: TrialOptions | Mapping[str, Any] | None = None,
    dashboard: Dashboard | bool | Mapping[str, Any] | None = None,
    services: Iterable[ServiceStarter] = (),
    channel: Literal["auto", "direct", "relay"] = "auto",
    scheduler: Scheduler | None = None,
    elastic: Elastic | Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Run ``objective`` on a Dask cluster, each trial a Dask task, and return ``study``.

    The first arguments are Optuna's own (``n_concurrent`` is ``n_jobs``); the rest are settings objects
    (:mod:`daskopt.settings`), each also accepted as a dict of its fields.

    Args:
        study: any Optuna study; its sampler, pruner and storage are used as they are.
        objective: a function of one ``optuna.Trial``-compatible argument, as for ``study.optimize``.
        n_trials: trial outcomes to produce in this call (retried attempts are not counted).
            ``None`` with no ``timeout`` runs until Ctrl-C or ``study.stop()``.
        timeout: seconds (or a :class:`~daskopt.Timeout`); no trial starts after it, and running trials
            finish, as in Optuna. ``Timeout(seconds, hard=True)`` stops them and enqueues them again.
        n_concurrent: trials running at once (never exceeded); defaults to the cluster's worker threads.
        client: a Dask client; ``None`` uses the current default client, or starts a ``LocalCluster``
            for this call, its workers at nice 19 so that the loop decides before trials compute
            (:func:`~daskopt.lower_worker_priority` does the same for a cluster of your own on this machine).
        catch: exception types that FAIL the trial and let the study go on. Unlike Optuna, the default
            catches every ``Exception``; pass ``catch=()`` to stop the study at the first error (then an
            :class:`~daskopt.errors.ObjectiveError` is raised).
        callbacks: ``callback(study, frozen_trial)`` after each trial ends, on the client. An exception a
            callback raises stops the call and is raised from it, as in Optuna.
        search_space: declared parameters, sampled in the loop at ask time and shipped with the trial
            (no round trip per ``suggest_*``).
        show_progress_bar: a live line on a terminal; nothing is printed when not a terminal.
        failures: :class:`~daskopt.Failures`: retries, ``fail_fast``, trial timeout, heartbeats.
        resources: :class:`~daskopt.Resources`: GPUs per trial, GPU memory share, Dask resources.
        tracking: :class:`~daskopt.Tracking`: W&B, the output and checkpoint folders, more loggers.
        trials: :class:`~daskopt.TrialOptions`: ``report_last_n``, seeded repeats, task chaining.
        dashboard: serve the live Bokeh page while the call runs (its URL is printed): ``True``, or a
            :class:`~daskopt.Dashboard` (or a dict of its fields).
        services: your own services beside the loop: each ``start(engine_view)`` is called on the loop's
            event loop when the call starts and returns an object whose ``async close()`` is awaited when
            it ends; ``engine_view`` (:class:`daskopt.engine.view.EngineView`) is read-only.
        channel: how trials reach this process: ``"auto"`` (direct when the workers can connect to it, else
            relayed through the scheduler; a line says which), ``"direct"`` (an error at once if they
            cannot) or ``"relay"`` (through the scheduler only: the client needs to reach the scheduler
            and nothing else).
        scheduler: a trial scheduler that pauses, resumes and clones trials (:mod:`daskopt.schedulers`:
            promotion-type ASHA and Hyperband, PBT, PB2); it decides instead of the study's pruner and
            needs trials that checkpoint, and a ``checkpoint_dir``.
        elastic: :class:`~daskopt.Elastic`: trials whose replicas (``GPU_SLOT`` units of one worker) change
            while they run, by their measured goodput; a resize is a restart from a checkpoint.
    """
    check_optimize_arguments(locals())
    called_at = time.monotonic()  # Optuna's timeout counts from here
    catch_types, callbacks = check_catch(catch), check_callbacks(callbacks)
    deadline = coerce_timeout(timeout)
    failures_, resources_ = coerce("failures", failures), coerce("resources", resources)
    tracking_, trials_ = coerce("tracking", tracking), coerce("trials", trials)
    board = Dashboard.coerce(dashboard)
    elastic_ = Elastic.coerce(elastic)
    trial_tracking = tracking_settings(study.study_name, wandb=tracking_.wandb, output_dir=tracking_.output_dir)
    warm_up(trial_tracking)  # W&B's start-up in this process, while the cluster starts and the call sets up
    starters = tuple(services)
    if not all(map(callable, starters)):
        raise TypeError(f"daskopt.optimize: services must be callables start(engine_view), got {starters!r}")
    starters = _dashboard(board) + starters  # before _client_for: a LocalCluster started there lists the page
    objective, request = gpu.prepare(
        objective,
        dict(resources_.dask) if resources_.dask else None,
        gpus_per_trial=resources_.gpus_per_trial,
        gpu_memory_fraction=resources_.gpu_memory_fraction,
    )
    checkpoint = tracking_.checkpoint_dir
    check_scheduler(scheduler, study, None if checkpoint is None else str(checkpoint), "daskopt.optimize")
    if elastic_ is not None:
        objective = check_elastic(elastic_, objective, resources_, scheduler, checkpoint)
    with _client_for(client) as active:
        warm_up(trial_tracking, active)  # and in the workers, before their first trial needs it
        if elastic_ is not None:
            capacity = elastic_slots(active)  # waits for a first worker
            slots = n_concurrent or max(1, sum(capacity.values()) // elastic_.min_replicas)
        else:
            slots = n_concurrent or cluster_slots(active, resources=request)  # waits for a first worker
            check_resources(active, request)
            warn_profiled_busy_workers(active, slots)
        config = EngineConfig(
            n_concurrent=slots,
            n_trials=n_trials,
            timeout=deadline,
            called_at=called_at,
            catch=catch_types,
            callbacks=tuple(callbacks),
            search_space=search_space,
            show_progress=show_progress_bar,
            failures=failures_,
            trials=trials_,
            resources=request,
            checkpoint_root=None if checkpoint is None else str(Path(checkpoint).resolve()),
            tracking=trial_tracking,
            study_logger=study_loggers(trial_tracking, tracking_.output_dir, extra=tracking_.loggers),
            services=starters,
            channel=channel,
            scheduler=scheduler,
            elastic=elastic_,
            elastic_slots=capacity if elastic_ is not None else {},
        )
        expand_repeats(study, trials_.repeats, trials_.seed_base)
        _run(Engine(study, objective, active, config))
    return study


def _dashboard(board: Dashboard | None) -> tuple[Any, ...]:
    if board is None:
        return ()
    from daskopt.dashboard import dashboard_starters  # bokeh is imported only when asked for

    return dashboard_starters(board.options())


@contextlib.contextmanager
def _client_for(client: Client | None) -> Iterator[Client]:
    """The given client, the default one, or a private ``LocalCluster`` closed afterwards."""
    if client is not None:
        yield client
        return
    from distributed import default_client

    try:
        active = default_client()
    except ValueError:  # no default client (only this call's lookup: the caller's errors must pass through)
        active = None
    if active is not None:
        yield active
        return
    # the W&B study run finishes while the private cluster closes, and before the call returns
    with (
        study_ends_overlapped(),
        LocalCluster(
            processes=True, threads_per_worker=1, dashboard_address=":0", config=unprofiled_worker_config()
        ) as cluster,
    ):
        with Client(cluster) as local:
            lower_worker_priority(local)  # the loop decides before trials compute (daskopt/worker_priority.py)
            yield local


def _run(engine: Engine) -> None:
    """Run the engine's event loop, with the garbage collector's full pauses kept short meanwhile
    (:mod:`daskopt.engine.gc_pauses`)."""
    with short_gc_pauses():
        _run_loop(engine)


def _run_loop(engine: Engine) -> None:
    """Run the engine's event loop here, or on a helper thread when this thread already has one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(engine.run())
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(engine.run())
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="daskopt-engine")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


class DistributedStudy:
    """``from_study(study, client)``: the same study, optimized on Dask (optuna-distributed's API).

    Attribute access falls through to the wrapped ``optuna.Study``.
    """

    def __init__(self, study: optuna.Study, client: Client | None = None) -> None:
        self._study = study
        self._client = client

    def optimize(self, objective: Objective, n_trials: int | None = None, **kwargs: Any) -> optuna.Study:
        return optimize(self._study, objective, n_trials=n_trials, client=self._client, **kwargs)

    def into_study(self) -> optuna.Study:
        return self._study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def from_study(study: optuna.Study, client: Client | None = None) -> DistributedStudy:
    """Wrap ``study`` so that ``.optimize(objective, n_trials=...)`` runs its trials on Dask."""
    return DistributedStudy(study, client)
