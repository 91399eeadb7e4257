"""The Python entry points: :func:`optimize` and the optuna-distributed style :func:`from_study`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from distributed import Client, LocalCluster
from optuna.distributions import BaseDistribution

from daskopt import gpu
from daskopt.arguments import check_callbacks, check_catch, check_optimize_arguments
from daskopt.engine.config import Callback, EngineConfig
from daskopt.engine.loop import Engine
from daskopt.engine.repeats import expand_repeats
from daskopt.engine.slots import check_resources, cluster_slots
from daskopt.tracking import study_loggers, tracking_settings

Objective = Callable[[Any], Any]


def optimize(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    hard_timeout: bool = False,
    client: Client | None = None,
    n_concurrent: int | None = None,
    catch: Iterable[type[Exception]] | type[Exception] = (Exception,),
    callbacks: Sequence[Callback] = (),
    max_retries: int = 0,
    fail_fast: int | None = 5,
    trial_timeout: float | None = None,
    search_space: dict[str, BaseDistribution] | None = None,
    repeats: int = 0,
    seed_base: int = 0,
    report_last_n: int | None = None,
    resources: dict[str, float] | None = None,
    gpus_per_trial: int | None = None,
    gpu_memory_fraction: float | None = None,
    show_progress_bar: bool = True,
    heartbeat_timeout: float = 60.0,
    chain_below_s: float = 0.5,
    hung_grace_s: float = 10.0,
    scheduler_grace_s: float = 20.0,
    wandb: Mapping[str, Any] | bool | None = None,
    output_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    dashboard: bool | dict[str, Any] | None = None,
) -> optuna.Study:
    """Run ``objective`` on a Dask cluster, each trial a Dask task, and return ``study``.

    Args:
        study: any Optuna study; its sampler, pruner and storage are used as they are.
        objective: a function of one ``optuna.Trial``-compatible argument, as for ``study.optimize``.
        n_trials: trial outcomes to produce in this call (retried attempts are not counted).
            ``None`` with no ``timeout`` runs until Ctrl-C or ``study.stop()``.
        timeout: seconds; no trial starts after it, and the trials running then finish (as in Optuna).
        hard_timeout: at ``timeout``, stop the running trials instead: they are recorded FAIL
            ("interrupted", not counted as outcomes) and their parameters enqueued again, so the next call
            on the study runs them first (as after Ctrl-C).
        client: a Dask client; ``None`` uses the current default client, or starts a ``LocalCluster``
            for this call.
        n_concurrent: trials in flight; defaults to the cluster's worker threads.
        catch: exception types that FAIL the trial and let the study go on. Unlike Optuna, the default
            catches every ``Exception``; pass ``catch=()`` to stop the study at the first error (then an
            :class:`~daskopt.errors.ObjectiveError` is raised).
        callbacks: ``callback(study, frozen_trial)`` after each trial ends, on the client.
        max_retries: a trial whose worker died (or went silent) is re-run with the same parameters up
            to this many times; the retry carries ``retry_of`` and ``attempt`` user attributes.
        fail_fast: when the call's first ``fail_fast`` outcomes are all FAIL with one same error (a
            program that does not exist, a wrong signature, a space the objective disagrees with) and
            nothing completed, stop with :class:`~daskopt.errors.ObjectiveError` instead of spending the
            whole ``n_trials`` on it. ``None`` never stops for that.
        trial_timeout: seconds; a trial running longer is told to stop and recorded as FAIL. An objective
            still running ``hung_grace_s`` later has its worker process restarted (Python threads
            cannot be killed); other trials on that worker are lost (and retried if allowed).
        search_space: declared parameters, sampled in the loop at ask time and shipped with the trial
            (no round trip per ``suggest_*``).
        repeats: run every enqueued configuration this many times with seeds ``seed_base + repeat``
            (``trial.user_attrs["seed"]``), pruning off.
        report_last_n: when the objective returns ``None``, its value is the mean of its last
            ``report_last_n`` reported values.
        resources: Dask resources each trial task requests (e.g. ``{"GPU_SLOT": 1}``).
        gpus_per_trial: each trial requests ``GPU_SLOT = gpus_per_trial`` and gets that many GPUs of its
            worker (``daskopt.integrations.torch.launch`` starts one process per GPU); see docs/gpu.md.
        gpu_memory_fraction: each trial's share of its GPU's memory, enforced with
            ``torch.cuda.set_per_process_memory_fraction`` (times the trials sharing a worker process).
        show_progress_bar: a live line on a terminal; nothing is printed when not a terminal.
        heartbeat_timeout: seconds without a word from a running trial before it is declared lost.
        scheduler_grace_s: how long the client may be disconnected from its scheduler before the call
            stops with :class:`~daskopt.errors.SchedulerLost` (finished trials stay stored).
        chain_below_s: a task whose trial took less than this runs the next trial too, saving Dask's
            per-task dispatch where it dominates; ``0`` gives every trial its own task.
        wandb: log every trial as its own Weights & Biases run (``group`` = study name, ``name`` =
            ``trial-<number>``) plus one run for the study. ``True`` for defaults, or a dict with ``project``
            (default: the study name), ``entity``, ``mode`` (``online``/``offline``/``disabled``; default:
            ``WANDB_MODE``, else online with credentials and offline without), ``tags``, ``dir`` (default:
            ``output_dir``), ``metric`` (name of reported values, default ``value``), ``config`` (fixed
            settings added to each trial's config) and ``settings`` (``wandb.Settings`` overrides).
            Needs the ``wandb`` extra. Objectives log extra metrics with ``trial.log({...}, step=...)``.
        checkpoint_dir: a folder all workers can reach; each trial gets ``trial.checkpoint_dir`` below it,
            and a retried trial gets the folder of the attempt it replaces.
        output_dir: a folder for the study's outputs; ``events.jsonl`` there receives one line per trial
            start and end (appended, so a resumed study continues it). W&B runs go under it too.
        dashboard: serve the live Bokeh page at ``http://127.0.0.1:<port>/daskopt`` while the call runs
            (its URL is printed). ``True``, or a dict with ``host``, ``port`` (0: a free one) and
            ``allow_websocket_origin``.
    """
    check_optimize_arguments(locals())
    catch_types, callbacks = check_catch(catch), check_callbacks(callbacks)
    tracking = tracking_settings(study.study_name, wandb=wandb, output_dir=output_dir)
    services = _dashboard(dashboard)  # before _client_for: a LocalCluster started there lists the page
    objective, resources = gpu.prepare(
        objective, resources, gpus_per_trial=gpus_per_trial, gpu_memory_fraction=gpu_memory_fraction
    )
    with _client_for(client) as active:
        slots = n_concurrent or cluster_slots(active, resources=resources)  # waits for a first worker
        check_resources(active, resources)
        config = EngineConfig(
            n_concurrent=slots,
            n_trials=n_trials,
            timeout=timeout,
            hard_timeout=hard_timeout,
            catch=catch_types,
            callbacks=tuple(callbacks),
            max_retries=max_retries,
            fail_fast=fail_fast,
            trial_timeout=trial_timeout,
            search_space=search_space,
            report_last_n=report_last_n,
            show_progress=show_progress_bar,
            heartbeat_timeout=heartbeat_timeout,
            heartbeat_s=min(5.0, heartbeat_timeout / 3),
            chain_below_s=chain_below_s,
            hung_grace_s=hung_grace_s,
            scheduler_grace_s=scheduler_grace_s,
            resources=resources,
            tracking=tracking,
            checkpoint_root=None if checkpoint_dir is None else str(Path(checkpoint_dir).resolve()),
            study_logger=study_loggers(tracking, output_dir),
            services=services,
        )
        expand_repeats(study, repeats, seed_base)
        _run(Engine(study, objective, active, config))
    return study


def _dashboard(dashboard: bool | dict[str, Any] | None) -> tuple[Any, ...]:
    if not dashboard:
        return ()
    from daskopt.dashboard import dashboard_starters  # bokeh is imported only when asked for

    return dashboard_starters(dashboard)


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
    with LocalCluster(processes=True, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster) as local:
            yield local


def _run(engine: Engine) -> None:
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
