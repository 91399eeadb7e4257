"""What each example must show after its README's ``daskopt run examples/<name>/study.toml`` ran as written.

tests/test_readme.py runs every README block as a user runs it (the example studies with the trials their
files ask for) and, after each example's run, calls :func:`check_example` on the study it stored; the same
studies were run a second time, with fewer trials, by a test of their own before, which cost the suite
a minute and a half for nothing the README run does not show.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from daskopt.runner import open_study, outcomes
from daskopt.spec import StudySpec, load_spec
from tests.studyfiles import live_processes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EPOCHS = 20  # train.py's --epochs in examples/command_pruning/study.toml


def run_example(
    name: str, tmp_path: Path, n_trials: int, study_file: str = "study.toml"
) -> tuple[StudySpec, optuna.Study]:
    """Copy ``examples/<name>``, run one of its study files with ``n_trials`` from the copy's parent folder
    (the GPU tests, tests/gpu, run ``study-gpu.toml`` this way); its spec and stored study."""
    folder = tmp_path / name
    shutil.copytree(EXAMPLES / name, folder, ignore=shutil.ignore_patterns("runs", "*.journal", "__pycache__"))
    command = [sys.executable, "-m", "daskopt.cli", "run", str(Path(name) / study_file), "--n-trials", str(n_trials)]
    env = {**os.environ, "WANDB_MODE": "disabled"}  # W&B logging is tested elsewhere; here it only costs time
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    spec = load_spec(folder / study_file)
    study = open_study(spec, create=False)
    assert outcomes(study) == n_trials
    return spec, study


def check_example(name: str, study_file: Path) -> None:
    """The checks every example's run passes, then the example's own (``CHECKS``)."""
    spec = load_spec(study_file)
    study = open_study(spec, create=False)
    assert outcomes(study) == spec.study.n_trials, (name, outcomes(study))
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)), name
    assert (Path(spec.output.dir) / "trials.csv").is_file(), name
    CHECKS[name](spec, study, study_file.parent)


def check_quickstart(spec: StudySpec, study: optuna.Study, folder: Path) -> None:
    assert study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def check_command_pruning(spec: StudySpec, study: optuna.Study, folder: Path) -> None:
    """Trials are pruned, and every trial's program output is kept."""
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    assert pruned, f"no trial was pruned: {[t.state.name for t in study.trials]}"
    assert study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert not study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    logs = Path(spec.output.dir) / "logs"
    for trial in study.trials:
        assert (logs / f"trial-{trial.number}.stdout").is_file()
        assert (logs / f"trial-{trial.number}.stderr").is_file()
    for trial in pruned:  # stopped early: fewer reports than epochs, and no final value line
        reports = (logs / f"trial-{trial.number}.stdout").read_text().count('"step"')
        assert 0 < reports < EPOCHS
    if Path("/proc").is_dir():
        assert not live_processes(str(folder)), "a trial's program outlived it"


def check_ablation_repeats(spec: StudySpec, study: optuna.Study, folder: Path) -> None:
    """Each enqueued point runs once with each seed."""
    assert spec.study.repeats == 3 and spec.study.seed_base == 42
    trials = study.get_trials(deepcopy=False)
    for point in spec.enqueue:
        runs = [t for t in trials if t.params == dict(point)]
        assert sorted(t.user_attrs.get("seed") for t in runs) == [42, 43, 44], point
        assert all(t.state == TrialState.COMPLETE for t in runs), "a repeat was pruned or failed"
    assert len([t for t in trials if "seed" not in t.user_attrs]) == spec.study.n_trials - 3 * len(spec.enqueue)


def check_torch_digits(spec: StudySpec, study: optuna.Study, folder: Path) -> None:
    """The CNN trains with ASHA on CPU workers."""
    assert spec.cluster.kind == "local" and not spec.cluster.uses_gpu
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.FAIL], [t.user_attrs.get("fail_reason") for t in trials]
    assert all(t.intermediate_values for t in trials), "every trial reports per epoch"
    best = max(v for t in trials for v in t.intermediate_values.values())
    assert best > 0.8, f"the known-good enqueued point learns the digits (best accuracy {best:.3f})"


def check_pbt_digits(spec: StudySpec, study: optuna.Study, folder: Path) -> None:
    """Members go on from better members, and best.json shows the winner's schedule."""
    assert spec.scheduler is not None and spec.scheduler.name == "pbt"
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.FAIL], [t.user_attrs.get("fail_reason") for t in trials]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == spec.study.n_trials  # the population
    assert [t for t in trials if t.state == TrialState.PRUNED], "no member went on from a better one"
    last = spec.scheduler.options["last_step"]
    for trial in complete:  # a member's curve is whole: the parent's reports, then its own
        assert sorted(trial.intermediate_values) == list(range(last + 1))
    best = json.loads((Path(spec.output.dir) / "best.json").read_text())
    assert best["value"] == study.best_value > 0.8
    if "schedule" in best:  # the winner went on from another member at least once
        assert best["schedule"][0]["from_step"] == 0 and best["schedule"][-1]["trial"] == best["number"]
    assert (Path(spec.output.dir) / "checkpoints").is_dir()


def check_elastic_digits(spec: StudySpec, study: optuna.Study, folder: Path) -> None:
    """Trials change size and each stays one trial, with one curve."""
    trials = study.get_trials(deepcopy=False)
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.user_attrs.get("fail_reason") for t in trials]
    sizes = [[replicas for _, replicas in t.user_attrs["replicas"]] for t in trials]
    assert any(len(s) > 1 for s in sizes), sizes  # 2 trials on 4 slots: they grew (and maybe shrank back)
    for trial in trials:  # one curve across its stretches
        assert sorted(trial.intermediate_values) == list(range(len(trial.intermediate_values)))
    assert max(t.value for t in trials) > 0.9


CHECKS: dict[str, Callable[[StudySpec, optuna.Study, Path], None]] = {
    "quickstart": check_quickstart,
    "command_pruning": check_command_pruning,
    "ablation_repeats": check_ablation_repeats,
    "torch_digits": check_torch_digits,
    "pbt_digits": check_pbt_digits,
    "elastic_digits": check_elastic_digits,
}
