"""A study's output files: ``best.json`` and ``trials.csv``, rewritten whole after each run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from daskopt import attributes
from daskopt.attributes import DIAGNOSTICS
from daskopt.errors import SpecError
from daskopt.schedulers.pbt import schedule
from daskopt.spec import StudySpec

_NOT_IN_CSV = DIAGNOSTICS  # fail_reason has its own column; tracebacks are multi-line


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def check_output_dir(spec: StudySpec) -> Path:
    out = Path(spec.output.dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".daskopt-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SpecError(f"cannot write to {out}: {exc.strerror or exc}", key="output.dir") from None
    return out


def best_summary(study: optuna.Study) -> dict[str, Any] | list[dict[str, Any]] | None:
    """Best trial (or the Pareto front for several objectives) as plain JSON data."""

    def describe(trial: FrozenTrial) -> dict[str, Any]:
        value: Any = trial.values if len(study.directions) > 1 else trial.value
        summary = {"number": trial.number, "value": value, "params": trial.params}
        if attributes.PARENT in trial.user_attrs:  # a PBT member: the hyperparameters it had, stretch by stretch
            summary["member"] = trial.user_attrs.get(attributes.MEMBER)
            summary["schedule"] = schedule(study, trial.number)
        return summary

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    if len(study.directions) > 1:
        return [describe(t) for t in study.best_trials]
    return describe(study.best_trial)


def write_outputs(study: optuna.Study, out: Path) -> None:
    """``best.json`` and ``trials.csv`` in the output folder (rewritten whole, so always consistent)."""
    (out / "best.json").write_text(json.dumps(best_summary(study), indent=2) + "\n")
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for t in trials for name in t.params})
    attrs = sorted({k for t in trials for k, v in t.user_attrs.items() if k not in _NOT_IN_CSV and _scalar(v)})
    n_values = len(study.directions)
    value_cols = ["value"] if n_values == 1 else [f"value_{i}" for i in range(n_values)]
    tmp = out / "trials.csv.tmp"
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["number", "state", *value_cols, *[f"params_{p}" for p in params], *[f"user_attrs_{a}" for a in attrs]]
            + ["duration_s", "fail_reason"]
        )
        for t in trials:
            values = list(t.values) if t.values is not None else [None] * n_values
            duration = t.duration.total_seconds() if t.duration is not None else None
            reason = t.user_attrs.get("fail_reason", "")
            extra = [t.user_attrs.get(a) if _scalar(t.user_attrs.get(a)) else None for a in attrs]
            row = [t.number, t.state.name, *values, *[t.params.get(p) for p in params], *extra, duration, reason]
            writer.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row])
    tmp.replace(out / "trials.csv")
