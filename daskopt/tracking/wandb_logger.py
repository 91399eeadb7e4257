"""Weights & Biases: one run per trial (started inside the trial's task); the study's own run is in
:mod:`.wandb_study`.

``wandb`` is the optional ``wandb`` extra and is imported only when a study logs to W&B: then, as the
call starts, a background thread in the driver and in each worker process imports it and starts its
helper process (:func:`warm_up`), so that the first run of each process does not wait for them; with
``mode = "disabled"`` no logger is built at all, so nothing of wandb is imported anywhere.

Trial runs are ``group=<study name>``, ``name=trial-<number>``, ``job_type="trial"``; the study's run from
the driver is ``name=study-<study name>``, ``job_type="study"`` in the same group, with the best-so-far
curve, a final trials table and the trial runs' names. Every run is created with
``reinit="create_new"`` and logged through its own run object, never ``wandb.log``, so concurrent trials
in the threads of one worker process cannot mix their data.

Mode: the configured one, else ``WANDB_MODE`` of the driver, else decided in each process: ``online``
when that process has W&B credentials (``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE`` or a netrc entry),
``offline`` otherwise. Offline runs are folders under ``<dir>/wandb/`` (``dir`` defaults to the study's
output folder), uploaded later with ``wandb sync``. The API key is never read, passed or shown by daskopt.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import netrc
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgpack

from daskopt import attributes
from daskopt.errors import SpecError
from daskopt.tracking.base import TrialEnd, TrialLogger, TrialStart

logger = logging.getLogger("daskopt.tracking")

INSTALL_HINT = "pip install 'daskopt[wandb]'"
MODES = ("online", "offline", "disabled")
OPTION_KEYS = ("project", "entity", "mode", "tags", "dir", "metric", "config", "settings")
# Measured with wandb 0.31: ~15-30 ms per init after the first in a process instead of ~60 ms.
LEAN_SETTINGS: dict[str, Any] = {
    "x_disable_stats": True,
    "x_disable_meta": True,
    "x_disable_machine_info": True,
    "x_save_requirements": False,
    "save_code": False,
    "disable_git": True,
    "console": "off",
    "silent": True,
}
_ENV_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline", "disabled": "disabled"}


# ------------------------------------------------------------------------------- driver-side options
def wandb_options(
    wandb: Mapping[str, Any] | bool | None, *, study_name: str, output_dir: str | Path | None
) -> dict[str, Any] | None:
    """``optimize(wandb=...)`` checked and completed into the plain settings every trial receives.

    ``None``/``False``, or mode ``disabled``, give ``None`` (no W&B anywhere). Raises :class:`SpecError`
    for unknown keys or values, and when ``wandb`` is not installed.
    """
    if wandb is None or wandb is False:
        return None
    if wandb is True:
        wandb = {}
    if not isinstance(wandb, Mapping):
        raise SpecError(f"expected a dict of W&B settings, True or None; got {type(wandb).__name__}", key="wandb")
    unknown = sorted(set(wandb) - set(OPTION_KEYS))
    if unknown:
        raise SpecError(f"unknown key(s) {unknown}; expected some of {list(OPTION_KEYS)}", key="wandb")
    mode = wandb.get("mode") or _mode_from_env()
    if mode not in (None, *MODES):
        raise SpecError(f"got {mode!r}; expected one of {list(MODES)} or None", key="wandb.mode")
    if mode == "disabled":
        return None
    if importlib.util.find_spec("wandb") is None:
        raise SpecError(f"W&B logging needs the wandb package; install it with: {INSTALL_HINT}", key="wandb")
    settings = dict(wandb.get("settings") or {})
    if "api_key" in settings:
        raise SpecError("do not pass the API key here; set WANDB_API_KEY or run `wandb login`", key="wandb.settings")
    tags = wandb.get("tags") or ()
    directory = wandb.get("dir") or output_dir
    options = {
        "project": wandb.get("project") or _default_project(study_name),
        "entity": wandb.get("entity"),
        "mode": mode,
        "tags": [tags] if isinstance(tags, str) else [str(t) for t in tags],
        "group": study_name,
        "dir": str(Path(directory).resolve()) if directory else None,
        "metric": wandb.get("metric") or "value",
        "config": dict(wandb.get("config") or {}),
        "settings": settings,
    }
    _check_sendable(options)
    _check_settings(settings)
    return options


def _check_sendable(options: dict[str, Any]) -> None:
    """The options travel to every trial in its assignment (msgpack): plain data only."""
    for key, value in options.items():
        try:
            msgpack.packb(value)
        except (TypeError, ValueError, msgpack.PackException) as exc:
            raise SpecError(f"must be plain data (numbers, strings, lists, dicts): {exc}", key=f"wandb.{key}") from None


def _check_settings(settings: dict[str, Any]) -> None:
    """Bad ``wandb.Settings`` fail here once, not in every trial."""
    if not settings:
        return
    try:
        import_wandb().Settings(**{**LEAN_SETTINGS, **settings})
    except Exception as exc:  # pydantic's ValidationError, with wandb's own explanation
        errors = exc.errors() if hasattr(exc, "errors") else [{"loc": (), "msg": str(exc)}]
        why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise SpecError(f"not valid wandb.Settings ({why})", key="wandb.settings") from None


def spec_wandb_option(section: Any, metric: str) -> dict[str, Any] | None:
    """A study file's ``[wandb]`` section as ``optimize(wandb=...)``.

    Study files log to W&B whenever ``wandb`` is installed (offline without credentials); without it,
    a file that names no ``mode`` runs without W&B, one that asks for a mode gets the install hint.
    """
    if section.mode is None and importlib.util.find_spec("wandb") is None:
        logger.info("daskopt: wandb is not installed, trials are not logged to W&B (%s)", INSTALL_HINT)
        return None
    return {
        "project": section.project,
        "entity": section.entity,
        "mode": section.mode,
        "tags": list(section.tags),
        "metric": metric,
    }


def _mode_from_env() -> str | None:
    if os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        return "disabled"
    return _ENV_MODES.get(os.environ.get("WANDB_MODE", "").strip().lower())


def _default_project(study_name: str) -> str:
    return "daskopt" if study_name.startswith("no-name-") else study_name


# ---------------------------------------------------------------------------------- in each process
def import_wandb() -> Any:
    """``wandb``, once this process's warm-up (if any) is done: W&B is never used while it still runs, as
    two threads importing one package's modules at once can fail on their circular imports."""
    warming = _warm_thread
    if warming is not None and warming is not threading.current_thread():
        warming.join()
    try:
        import wandb
    except ImportError:
        raise ImportError(f"W&B logging needs the wandb package here; install it with: {INSTALL_HINT}") from None
    _skip_unstaged_launch_inputs(wandb)
    return wandb


# Every wandb.init (wandb 0.31) imports W&B Launch's job-input module to apply the inputs a Launch job staged,
# and that first import costs 0.3-0.8 s of CPU per process, more the more modules the process holds
# (pydantic scans sys.modules per model). Inputs can only be staged through that module, so while no one
# has imported it there is nothing to apply: the call is skipped then, and made as before otherwise.
_LAUNCH_INPUTS = "wandb.sdk.launch.inputs.internal"
_warm_lock = threading.Lock()
_warm_thread: threading.Thread | None = None


def _skip_unstaged_launch_inputs(wandb: Any) -> None:
    run_class: Any = getattr(getattr(getattr(wandb, "sdk", None), "wandb_run", None), "Run", None)
    apply_inputs = getattr(run_class, "_detect_and_apply_job_inputs", None)
    if apply_inputs is None or getattr(apply_inputs, "_daskopt_lazy", False):
        return  # another wandb version: its own behaviour, unchanged

    def apply_staged_inputs(run: Any) -> None:
        if _LAUNCH_INPUTS in sys.modules:
            apply_inputs(run)

    apply_staged_inputs._daskopt_lazy = True  # type: ignore[attr-defined]
    run_class._detect_and_apply_job_inputs = apply_staged_inputs


def warm_up() -> None:
    """Start W&B's one-off costs in this process now, on a background thread, once per process.

    A process's first run pays ~1.5 s on two cores before it starts: ``import wandb``, the modules
    ``wandb.init`` imports on first use, and the start of wandb-core, the helper process that writes the
    runs (``wandb.setup()``, W&B's own way to prepare a process). Started while the cluster starts or the
    objective is shipped, these run in time that would otherwise be spent waiting, and while fewer modules
    are loaded. Best effort: any failure is left for the first real run to report.
    """
    global _warm_thread
    with _warm_lock:
        if _warm_thread is not None:
            return
        _warm_thread = threading.Thread(target=_warm, name="daskopt-wandb-warm-up", daemon=True)
        _warm_thread.start()


def _warm() -> None:
    try:
        import wandb

        _skip_unstaged_launch_inputs(wandb)
        wandb.setup()
    except Exception as exc:  # e.g. wandb-core cannot start here: the first run says so, with its context
        logger.debug("daskopt: W&B warm-up failed: %s: %s", type(exc).__name__, exc)


def warm_up_workers(client: Any) -> None:
    """:func:`warm_up` in every worker process of ``client``'s cluster, without waiting for it (a worker
    that misses it, or joins later, pays the start-up in its first trial, as without warming)."""
    try:
        client.run(_warm_up_worker, wait=False)
    except Exception as exc:
        logger.debug("daskopt: W&B warm-up on the workers failed: %s: %s", type(exc).__name__, exc)


async def _warm_up_worker() -> None:
    """A coroutine so that ``client.run(..., wait=False)`` returns at once; it only starts the thread."""
    warm_up()


def resolve_mode(mode: str | None) -> str:
    """The configured mode, or ``online`` when this process has credentials and ``offline`` otherwise."""
    return mode or ("online" if has_credentials() else "offline")


def has_credentials() -> bool:
    """Whether this process could log in to W&B without a prompt (the key itself is never read)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC") or None).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def start_run(options: Mapping[str, Any], *, name: str, job_type: str, config: dict[str, Any]) -> Any:
    """A new W&B run of its own (``reinit="create_new"``), with the lean settings."""
    wandb = import_wandb()
    return wandb.init(
        project=options["project"],
        entity=options.get("entity"),
        group=options["group"],
        job_type=job_type,
        name=name,
        tags=list(options.get("tags") or ()) or None,
        config=config,
        mode=resolve_mode(options.get("mode")),
        dir=_usable_dir(options.get("dir")),
        reinit="create_new",
        settings=wandb.Settings(**{**LEAN_SETTINGS, **options.get("settings", {})}),
    )


def _usable_dir(directory: str | None) -> str | None:
    """``directory``, created if needed; ``None`` (wandb's default, ``./wandb``) when this process cannot."""
    if not directory:
        return None
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("daskopt: W&B dir %s is not writable here (%s); using ./wandb", directory, exc.strerror)
        return None
    return directory


# ------------------------------------------------------------------------------------- trial runs
class WandbTrialLogger(TrialLogger):
    """One W&B run for one trial, created in the trial's own thread."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options
        self.run: Any = None
        self._logged = False

    def trial_start(self, start: TrialStart) -> None:
        config = {**self.options.get("config", {}), **start.params}
        if start.user_attrs:
            config["user_attrs"] = start.user_attrs
        paused = start.user_attrs.get(attributes.PAUSED_AT) or ()  # a resumed trial: one run per stretch, in order
        name = f"trial-{start.number}" + (f"-part-{len(paused) + 1}" if paused else "")
        self.run = start_run(self.options, name=name, job_type="trial", config=config)

    def report(self, value: float, step: int) -> None:
        self._log({self.options.get("metric") or "value": value}, step)

    def log(self, metrics: Mapping[str, Any], step: int | None) -> None:
        self._log(dict(metrics), step)

    def _log(self, data: dict[str, Any], step: int | None) -> None:
        run = self.run
        if run is None:
            return
        if step is not None and step < run.step:
            data, step = {**data, "step": step}, None  # W&B drops rows for past steps; keep the data
        run.log(data, step=step)
        self._logged = True

    def trial_end(self, end: TrialEnd) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        try:
            if end.params:
                run.config.update(end.params, allow_val_change=True)  # define-by-run parameters
            if self._logged:
                run.log({}, commit=True)  # write the last pending row now, or it would overwrite the summary
            run.summary.update(_trial_summary(end))
        finally:
            run.finish(exit_code=1 if end.state == "FAIL" else 0)


def _trial_summary(end: TrialEnd) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "trial": end.number,
        "state": end.state,
        "duration_s": end.duration_s,
        "worker": end.worker,
    }
    if end.values is not None and len(end.values) == 1:
        summary["value"] = end.values[0]
    elif end.values is not None:
        summary["values"] = end.values
    if end.error:
        summary["error"] = end.error
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    if devices:
        summary["gpu"] = devices.split(",")[0]
        summary["cuda_visible_devices"] = devices
    return summary
