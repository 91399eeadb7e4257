"""Side-by-side runs: one objective under plain ``study.optimize`` and under ``daskopt.optimize``.

Both studies are in-memory, carry the same name (Hyperband's brackets hash it) and get their sampler,
pruner and callbacks from the same factories, so a deterministic objective leaves the same trials in
both storages when daskopt runs one trial at a time. What the two store is compared field by field.

Plain Optuna logs an objective's exception but stores nothing of it; daskopt stores it as
``user_attrs["fail_reason"]`` (``"ValueError: <first line>"``). The plain side wraps the objective to
note each exception in that same wording, so failures can be compared too.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import distribution_to_json
from optuna.trial import FrozenTrial

import daskopt

STUDY_NAME = "conformance"
# what daskopt adds to a FAIL trial; compared apart (see assert_same_failures)
DASKOPT_FAIL_ATTRS = frozenset({"fail_reason", "traceback"})
FIELDS = ("state", "values", "params", "distributions", "intermediate_values", "user_attrs", "system_attrs")

StudyFactory = Callable[[], optuna.Study]
CallbacksFactory = Callable[[], Sequence[Callable[[optuna.Study, FrozenTrial], None]]]


def study_factory(**kwargs: Any) -> StudyFactory:
    """``optuna.create_study(study_name=STUDY_NAME, **kwargs)`` where values that are callables
    (a sampler or pruner factory) are called anew for each study."""

    def make() -> optuna.Study:
        resolved = {k: (v() if callable(v) else v) for k, v in kwargs.items()}
        return optuna.create_study(study_name=STUDY_NAME, **resolved)

    return make


def reason(exc: BaseException) -> str:
    """An exception as daskopt words a ``fail_reason``: ``"<TypeName>: <first line>"``."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class RecordingObjective:
    """The plain side's objective: notes each trial's exception (as daskopt words it), then re-raises."""

    def __init__(self, objective: Callable[[Any], Any]) -> None:
        self.objective = objective
        self.failures: dict[int, str] = {}

    def __call__(self, trial: optuna.Trial) -> Any:
        try:
            return self.objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            self.failures[trial.number] = reason(exc)
            raise


@dataclass
class Runs:
    plain: optuna.Study
    dask: optuna.Study
    plain_failures: dict[int, str] = field(default_factory=dict)

    @property
    def dask_failures(self) -> dict[int, str]:
        return {
            t.number: str(t.user_attrs["fail_reason"])
            for t in self.dask.trials
            if t.state.name == "FAIL" and "fail_reason" in t.user_attrs
        }


def run_plain(
    make_study: StudyFactory,
    objective: Callable[[Any], Any],
    *,
    n_trials: int | None,
    catch: Iterable[type[Exception]] | type[Exception] = (Exception,),
    callbacks: CallbacksFactory | None = None,
    **kwargs: Any,
) -> tuple[optuna.Study, dict[int, str]]:
    study = make_study()
    recording = RecordingObjective(objective)
    study.optimize(
        recording, n_trials=n_trials, catch=catch, callbacks=list(callbacks()) if callbacks else None, **kwargs
    )
    return study, recording.failures


def run_daskopt(
    make_study: StudyFactory,
    objective: Callable[[Any], Any],
    client: Any,
    *,
    n_trials: int | None,
    n_concurrent: int = 1,
    callbacks: CallbacksFactory | None = None,
    **kwargs: Any,
) -> optuna.Study:
    study = make_study()
    daskopt.optimize(
        study,
        objective,
        n_trials=n_trials,
        client=client,
        n_concurrent=n_concurrent,
        callbacks=list(callbacks()) if callbacks else (),
        show_progress_bar=False,
        **kwargs,
    )
    return study


def run_both(
    make_study: StudyFactory,
    objective: Callable[[Any], Any],
    client: Any,
    *,
    n_trials: int,
    n_concurrent: int = 1,
    callbacks: CallbacksFactory | None = None,
    **daskopt_kwargs: Any,
) -> Runs:
    """Plain ``study.optimize(catch=(Exception,))`` (daskopt's default ``catch``) and ``daskopt.optimize``
    with ``n_concurrent`` trials at a time (1: the order plain Optuna runs them in)."""
    plain, failures = run_plain(make_study, objective, n_trials=n_trials, callbacks=callbacks)
    dask = run_daskopt(
        make_study,
        objective,
        client,
        n_trials=n_trials,
        n_concurrent=n_concurrent,
        callbacks=callbacks,
        **daskopt_kwargs,
    )
    return Runs(plain, dask, failures)


# ------------------------------------------------------------------------------------ comparing
def _plain_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"  # so that NaN == NaN
    if isinstance(value, dict):
        return {k: _plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_value(v) for v in value)
    return value


def record(trial: FrozenTrial) -> dict[str, Any]:
    """What the storage holds of a trial, comparable across storages (NaN made equal, daskopt's
    failure attributes left out)."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": _plain_value(trial.values),
        "params": _plain_value(trial.params),
        "distributions": {name: distribution_to_json(d) for name, d in trial.distributions.items()},
        "intermediate_values": _plain_value(dict(trial.intermediate_values)),
        "user_attrs": _plain_value({k: v for k, v in trial.user_attrs.items() if k not in DASKOPT_FAIL_ATTRS}),
        "system_attrs": _plain_value(dict(trial.system_attrs)),
    }


def state_names(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.trials]


def counts(study: optuna.Study) -> dict[str, int]:
    result: dict[str, int] = {}
    for trial in study.trials:
        result[trial.state.name] = result.get(trial.state.name, 0) + 1
    return result


def _close(a: Any, b: Any, rel: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=rel)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def assert_same_trials(
    runs: Runs, fields: Sequence[str] = FIELDS, *, rel: float | None = None, ignore_user_attrs: Iterable[str] = ()
) -> None:
    """Both storages hold the same trials: same count, and per trial number the same ``fields``
    (floats within ``rel`` when given, else exactly)."""
    plain = [record(t) for t in runs.plain.trials]
    dask = [record(t) for t in runs.dask.trials]
    assert len(plain) == len(dask), (
        f"plain Optuna stored {len(plain)} trials {state_names(runs.plain)}, "
        f"daskopt {len(dask)} {state_names(runs.dask)} (daskopt fail reasons: {runs.dask_failures})"
    )
    ignored = set(ignore_user_attrs)
    for a, b in zip(plain, dask, strict=True):
        for name in fields:
            left, right = a[name], b[name]
            if name == "user_attrs":
                left = {k: v for k, v in left.items() if k not in ignored}
                right = {k: v for k, v in right.items() if k not in ignored}
            same = _close(left, right, rel) if rel is not None else left == right
            if not same:
                extra = ""
                if b["state"] == "FAIL" and a["state"] != "FAIL":
                    extra = f" (daskopt fail_reason: {runs.dask_failures.get(b['number'])!r})"
                raise AssertionError(
                    f"trial {a['number']} {name}: plain Optuna stored {left!r}, daskopt stored {right!r}{extra}"
                )


def assert_same_failures(runs: Runs, *, messages: bool = True) -> None:
    """The same trials failed with the same exception type; with ``messages``, Optuna's first line of the
    message appears in daskopt's ``fail_reason`` too (daskopt may add context around it)."""
    plain, dask = runs.plain_failures, runs.dask_failures
    assert plain.keys() == dask.keys(), f"failed trials: plain Optuna {plain}, daskopt {dask}"
    for number, expected in plain.items():
        got = dask[number]
        expected_type = expected.split(":", 1)[0]
        assert got.split(":", 1)[0] == expected_type, (
            f"trial {number}: plain Optuna raised {expected!r}, daskopt {got!r}"
        )
        if messages and ":" in expected:
            text = expected.split(":", 1)[1].strip()
            assert text in got, f"trial {number}: plain Optuna raised {expected!r}, daskopt recorded {got!r}"


def max_overlap(study: optuna.Study) -> int:
    """The most trials the storage held RUNNING at one instant (from their start and completion times)."""
    events: list[tuple[datetime.datetime, int]] = []
    for trial in study.trials:
        if trial.datetime_start is None or trial.datetime_complete is None:
            continue
        events += [(trial.datetime_start, 1), (trial.datetime_complete, -1)]
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += delta
        peak = max(peak, running)
    return peak
