"""Every example runs as a user runs it: ``daskopt run <study.toml>`` in a fresh process, on a copy of the
example folder (so no journal or run files land in the repository), with fewer trials than the file asks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from daskopt.runner import open_study, outcomes
from daskopt.spec import StudySpec, load_spec
from tests.studyfiles import live_processes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EPOCHS = 20  # train.py's --epochs in examples/command_pruning/study.toml

pytestmark = pytest.mark.slow


def run_example(
    name: str, tmp_path: Path, n_trials: int, study_file: str = "study.toml"
) -> tuple[StudySpec, optuna.Study]:
    """Copy ``examples/<name>``, run it from the copy's parent folder, return its spec and stored study."""
    folder = tmp_path / name
    shutil.copytree(EXAMPLES / name, folder, ignore=shutil.ignore_patterns("runs", "*.journal", "__pycache__"))
    command = [sys.executable, "-m", "daskopt.cli", "run", str(Path(name) / study_file), "--n-trials", str(n_trials)]
    env = {**os.environ, "WANDB_MODE": "disabled"}  # W&B logging is tested elsewhere; here it only costs time
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    spec = load_spec(folder / study_file)
    study = open_study(spec, create=False)
    assert outcomes(study) == n_trials
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    assert (Path(spec.output.dir) / "trials.csv").is_file()
    return spec, study


def test_quickstart(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    _, study = run_example("quickstart", tmp_path, n_trials=6)
    assert study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def test_command_pruning_prunes_and_keeps_logs(tmp_path: Path) -> None:
    spec, study = run_example("command_pruning", tmp_path, n_trials=10)
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
        assert not live_processes(str(tmp_path / "command_pruning")), "a trial's program outlived it"


def test_ablation_repeats_run_each_point_with_each_seed(tmp_path: Path) -> None:
    spec, study = run_example("ablation_repeats", tmp_path, n_trials=10)
    assert spec.study.repeats == 3 and spec.study.seed_base == 42
    trials = study.get_trials(deepcopy=False)
    for point in spec.enqueue:
        runs = [t for t in trials if t.params == dict(point)]
        assert sorted(t.user_attrs.get("seed") for t in runs) == [42, 43, 44], point
        assert all(t.state == TrialState.COMPLETE for t in runs), "a repeat was pruned or failed"
    assert len([t for t in trials if "seed" not in t.user_attrs]) == 10 - 3 * len(spec.enqueue)


def test_torch_digits_trains_the_cnn_with_asha(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    spec, study = run_example("torch_digits", tmp_path, n_trials=4)
    assert spec.cluster.kind == "local" and not spec.cluster.uses_gpu
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.FAIL], [t.user_attrs.get("fail_reason") for t in trials]
    assert all(t.intermediate_values for t in trials), "every trial reports per epoch"
    best = max(v for t in trials for v in t.intermediate_values.values())
    assert best > 0.8, f"the known-good enqueued point learns the digits (best accuracy {best:.3f})"


def test_pbt_digits_members_go_on_from_better_members_and_best_shows_their_schedule(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    spec, study = run_example("pbt_digits", tmp_path, n_trials=4)  # a population of 4 on 2 worker processes
    assert spec.scheduler is not None and spec.scheduler.name == "pbt"
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.FAIL], [t.user_attrs.get("fail_reason") for t in trials]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    assert [t for t in trials if t.state == TrialState.PRUNED], "no member went on from a better one"
    last = spec.scheduler.options["last_step"]
    for trial in complete:  # a member's curve is whole: the parent's reports, then its own
        assert sorted(trial.intermediate_values) == list(range(last + 1))
    best = json.loads((Path(spec.output.dir) / "best.json").read_text())
    assert best["value"] == study.best_value > 0.8
    if "schedule" in best:  # the winner went on from another member at least once
        assert best["schedule"][0]["from_step"] == 0 and best["schedule"][-1]["trial"] == best["number"]
    assert (Path(spec.output.dir) / "checkpoints").is_dir()


def test_elastic_digits_trials_change_size_and_stay_one_trial(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    _, study = run_example("elastic_digits", tmp_path, n_trials=1)
    trials = study.get_trials(deepcopy=False)
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.user_attrs.get("fail_reason") for t in trials]
    sizes = [[replicas for _, replicas in t.user_attrs["replicas"]] for t in trials]
    assert any(len(s) > 1 for s in sizes), sizes  # alone on 4 slots, it grew (and maybe shrank back)
    for trial in trials:  # one curve across its stretches
        assert sorted(trial.intermediate_values) == list(range(len(trial.intermediate_values)))
    assert max(t.value for t in trials) > 0.9
