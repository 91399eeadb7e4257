"""``daskopt run|status|best`` as a user runs them: real processes, real clusters, real storage files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from daskopt.runner import outcomes
from tests.conftest import DaskCommandCluster, free_port
from tests.studyfiles import objective_source, release, start_run, wait_for_finished, write_study


def daskopt(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daskopt.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def load(folder: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "cli.journal")))
    return optuna.load_study(study_name="cli", storage=storage)


def by_state(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


BAD_FILES = [
    ("[study\nname='x'", "study.toml:1: invalid TOML"),
    (
        "[study]\nname = 'x'\n[objective]\ncallable = 'obj:objective'\n"
        "[space]\nx = { type = 'float', low = 2, high = 1 }",
        "space.x",
    ),
    ("[study]\nname = 'x'\n[objective]\ncallable = 'obj:objective'\n[sampler]\nname = 'tpee'", "tpe"),
    ("[study]\nname = 'x'\n[objectiv]\ncallable = 'obj:objective'", "objective"),
    ("[study]\nname = 'x'\n[objective]\ncallable = 'missing_module:objective'", "objective.callable"),
    ("[study]\nname = 'x'\n[objective]\ncallable = 'obj:nope'", "has no attribute 'nope'"),
    (
        "[study]\nname = 'x'\n[objective]\ncallable = 'obj:objective'\n"
        "[storage]\nurl = 'postgresql://u:p@127.0.0.1:1/db'",
        "study.toml: storage.url: cannot open postgresql://",
    ),
    (
        "[study]\nname = 'x'\n[objective]\ncallable = 'obj:objective'\n[storage]\nurl = 'sqlite:///obj.py/x.db'",
        "study.toml: storage.url: cannot create the folder",
    ),
    ("[study]\nname = 'x'\n[objective]\ncallable = 'obj:objective'\n[cluster]\nkind = 'slurm'", "sbatch"),
]
BAD_IDS = ["toml", "range", "sampler", "section", "import", "attr", "db-driver", "storage-path", "no-sbatch"]
SCHEDULED = "[study]\nname = 'x'\n[objective]\ncallable = 'obj:objective'\n[scheduler]\n"
BAD_FILES += [
    (
        SCHEDULED + "name = 'asha'",
        "study.toml: scheduler.name: unknown scheduler 'asha'; valid names: asha-promotion, hyperband-promotion",
    ),
    (
        SCHEDULED + "name = 'asha-promotion'\noptions = { max_resource = 9, grace = 1 }",
        "study.toml: scheduler.options.grace: scheduler 'asha-promotion' takes no option 'grace'",
    ),
    (
        SCHEDULED + "name = 'asha-promotion'\noptions = { min_resource = 1 }",
        "study.toml: scheduler.options.max_resource: missing; scheduler 'asha-promotion' needs option 'max_resource'",
    ),
    (
        SCHEDULED + "name = 'asha-promotion'\noptions = { max_resource = 9, reduction_factor = 1 }",
        "study.toml: scheduler.options: asha-promotion rejected options",
    ),
    (
        SCHEDULED + "name = 'asha-promotion'\noptions = { max_resource = 9 }\n[pruner]\nname = 'median'",
        "study.toml: scheduler: [scheduler] 'asha-promotion' and [pruner] 'median' would both decide",
    ),
]
BAD_IDS += ["scheduler-name", "scheduler-option", "scheduler-required", "scheduler-value", "scheduler-and-pruner"]


@pytest.mark.parametrize(("text", "fragment"), BAD_FILES, ids=BAD_IDS)
def test_bad_input_is_one_line_and_exit_2(tmp_path, text, fragment):
    (tmp_path / "obj.py").write_text(objective_source(tmp_path))
    (tmp_path / "study.toml").write_text(text)
    done = daskopt("run", "study.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert fragment in done.stderr
    said = [line for line in done.stderr.strip().splitlines() if not line.startswith("daskopt: study ")]
    assert len(said) == 1, done.stderr  # one line of error (after the banner, for what the storage or cluster finds)
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.journal").exists()  # nothing written before validation passed


def test_missing_file_and_missing_study_exit_2(tmp_path):
    assert daskopt("run", "nope.toml", cwd=tmp_path).returncode == 2
    write_study(tmp_path)
    for command in ("status", "best"):  # a study never run: said in one line, and the storage not created
        done = daskopt(command, "study.toml", cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("daskopt: error: study.toml: storage.url: ") and "does not exist" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "cli.journal").exists()


def test_dry_run_validates_and_runs_nothing(tmp_path):
    write_study(tmp_path)
    done = daskopt("run", "study.toml", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"name": "cli"' in done.stdout and "cluster: local" in done.stdout
    assert not (tmp_path / "cli.journal").exists()


@pytest.mark.slow  # make test-fast leaves it out; make test runs it
def test_run_writes_outputs_and_a_second_run_resumes(tmp_path):
    write_study(tmp_path, n_trials=6)
    first = daskopt("run", "study.toml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert by_state(load(tmp_path)) == {"COMPLETE": 6}
    assert (tmp_path / "runs" / "cli" / "best.json").exists()
    assert len((tmp_path / "runs" / "cli" / "trials.csv").read_text().splitlines()) == 7
    again = daskopt("run", "study.toml", "--n-trials", "9", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert by_state(load(tmp_path)) == {"COMPLETE": 9}
    best = daskopt("best", "study.toml", cwd=tmp_path)
    assert best.returncode == 0 and '"params"' in best.stdout
    status = daskopt("status", "study.toml", cwd=tmp_path)
    assert "9 complete" in status.stdout


@pytest.mark.slow
def test_killed_driver_resumes_without_losing_or_duplicating_trials(tmp_path):
    write_study(tmp_path, n_trials=24, sleep=0.3, hold_from=8)
    driver = start_run(tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_finished(tmp_path / "cli.journal", lambda: load(tmp_path), 5)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the cluster it started, mid-study
    driver.wait()
    before = load(tmp_path)
    completed_before = {t.number: t.value for t in before.trials if t.state.name == "COMPLETE"}
    assert completed_before and by_state(before).get("RUNNING", 0) > 0
    release(tmp_path)

    resumed = daskopt("run", "study.toml", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = load(tmp_path)
    counts = by_state(after)
    assert "RUNNING" not in counts
    interrupted = [t for t in after.trials if t.user_attrs.get("fail_reason", "").startswith("interrupted")]
    assert counts == {"COMPLETE": 24, "FAIL": len(interrupted)}
    assert {t.number: t.value for t in after.trials if t.number in completed_before} == completed_before
    retries = [t for t in after.trials if "retry_of" in t.user_attrs]
    assert sorted(t.user_attrs["retry_of"] for t in retries) == [t.number for t in interrupted]  # once each
    # with the parameters it had; one killed before its first suggest was answered had none stored (the
    # loop stores a value before it answers), and its retry samples them, as Optuna's
    # RetryFailedTrialCallback does for a trial without parameters
    had = {t.number: t.params for t in interrupted if t.params}
    assert {t.user_attrs["retry_of"]: t.params for t in retries if t.user_attrs["retry_of"] in had} == had


CHECKPOINTED = """
import time

import optuna

STEPS = 5


def objective(trial):
    x = trial.suggest_float("x", -5, 5)
    state = trial.load_checkpoint() or {"total": 0.0, "ran": []}
    for step in range(0 if trial.resume_step is None else trial.resume_step + 1, STEPS):
        state["total"] += (x - 1) ** 2 / (step + 1)
        state["ran"].append(step)
        trial.save_checkpoint(state, step)
        trial.report(state["total"], step)
        if trial.should_prune():
            raise optuna.TrialPruned()
        time.sleep(0.01)
    trial.set_user_attr("ran", state["ran"])
    return state["total"]
"""


def test_a_scheduler_study_pauses_resumes_and_ends_with_every_trial_told(tmp_path):
    path = write_study(tmp_path, n_trials=6)
    (tmp_path / "obj.py").write_text(CHECKPOINTED)
    scheduler = "\n[scheduler]\nname = 'asha-promotion'\noptions = { max_resource = 4, reduction_factor = 2 }\n"
    path.write_text(path.read_text() + scheduler)
    done = daskopt("run", "study.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    study = load(tmp_path)
    trials, counts = study.trials, by_state(study)
    assert set(counts) <= {"COMPLETE", "PRUNED"} and counts.get("COMPLETE", 0) >= 1, counts
    assert sum(counts.values()) == 6
    assert any(t.user_attrs.get("paused_at") for t in trials)  # rungs at steps 1 and 2 (full budget at 4)
    for trial in trials:
        if trial.state.name == "COMPLETE":  # however often it was paused, each step ran once
            assert trial.user_attrs["ran"] == list(range(5))
            assert sorted(trial.intermediate_values) == list(range(5))
        else:  # still paused when the study ended: PRUNED at its last report, which it had a checkpoint for
            assert trial.user_attrs["suspended"] is True
            assert trial.value == trial.intermediate_values[trial.user_attrs["paused_at"][-1]]
    folders = sorted(p.name for p in (tmp_path / "runs" / "cli" / "checkpoints").iterdir())
    assert folders == [f"trial-{n}" for n in range(6)]
    assert (tmp_path / "runs" / "cli" / "best.json").exists()


@pytest.fixture()
def scheduler_address(tmp_path):
    with DaskCommandCluster(tmp_path) as cluster:
        yield cluster.address


def test_address_cluster_from_dask_commands(tmp_path, scheduler_address):
    write_study(tmp_path, n_trials=6, cluster=f'kind = "address"\naddress = "{scheduler_address}"')
    done = daskopt("run", "study.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert by_state(load(tmp_path)) == {"COMPLETE": 6}


def test_unreachable_address_is_bad_input_within_a_bounded_wait(tmp_path):
    cluster = f'kind = "address"\naddress = "tcp://127.0.0.1:{free_port()}"\nconnect_timeout = "2s"'
    write_study(tmp_path, cluster=cluster)
    started = time.monotonic()
    done = daskopt("run", "study.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot reach the Dask scheduler" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "cli.journal").exists()


def test_unwritable_output_dir_is_bad_input(tmp_path):
    path = write_study(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    path.write_text(path.read_text() + textwrap.dedent('\n[output]\ndir = "blocker/out"\n'))
    done = daskopt("run", "study.toml", cwd=tmp_path)
    assert done.returncode == 2 and "output.dir" in done.stderr


@pytest.mark.slow  # make test-fast leaves it out; make test runs it
def test_a_run_whose_trials_all_fail_exits_1_with_the_reason(tmp_path):
    write_study(tmp_path, n_trials=3)
    (tmp_path / "obj.py").write_text(
        "def objective(trial):\n    trial.suggest_float('x', -5, 5)\n    raise OSError('disk gone')\n"
    )
    done = daskopt("run", "study.toml", cwd=tmp_path)
    assert done.returncode == 1
    assert "all 3 trial(s) of this run failed; the first (trial 0): OSError: disk gone" in done.stderr
    assert "its traceback: daskopt status" in done.stderr and "--trial 0" in done.stderr
    shown = daskopt("status", "study.toml", "--trial", "0", cwd=tmp_path)
    assert shown.returncode == 0 and "trial 0: FAIL" in shown.stdout
    assert "error: OSError: disk gone" in shown.stdout and "raise OSError('disk gone')" in shown.stdout
    again = daskopt("run", "study.toml", cwd=tmp_path)  # its 3 outcomes are there: nothing to run, not success
    assert again.returncode == 1
    assert "nothing to run: the study already holds 3 outcome(s) and none completed" in again.stderr


def test_a_setup_error_stops_the_run_before_it_spends_the_study(tmp_path):
    write_study(tmp_path, n_trials=40)
    broken = "def objective(trial):\n    trial.suggest_float('x', -5, 5)\n    raise ImportError('no module x')\n"
    (tmp_path / "obj.py").write_text(broken)
    done = daskopt("run", "study.toml", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "ImportError: no module x (and so did the 4 trials before it: fail_fast)" in done.stderr
    assert "Traceback" not in done.stderr
    failed = by_state(load(tmp_path))
    assert set(failed) <= {"FAIL", "PRUNED"} and sum(failed.values()) < 10  # stopped at the 5th, not the 40th
    (tmp_path / "obj.py").write_text(objective_source(tmp_path))  # fixed: the rerun runs the rest
    assert daskopt("run", "study.toml", cwd=tmp_path).returncode == 0
    assert by_state(load(tmp_path))["COMPLETE"] >= 30


def test_trials_csv_holds_user_attributes(tmp_path):
    write_study(tmp_path, n_trials=3)
    (tmp_path / "obj.py").write_text(
        "def objective(trial):\n    trial.set_user_attr('seed', 7)\n    return trial.suggest_float('x', -5, 5)\n"
    )
    assert daskopt("run", "study.toml", cwd=tmp_path).returncode == 0
    header, *rows = (tmp_path / "runs" / "cli" / "trials.csv").read_text().splitlines()
    assert "user_attrs_seed" in header.split(",") and len(rows) == 3


def test_dry_run_prints_no_warnings(tmp_path):
    write_study(tmp_path)
    done = daskopt("run", "study.toml", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0 and "Warning" not in done.stderr


@pytest.mark.slow
def test_ctrl_c_stops_within_seconds_exits_130_and_the_next_run_reruns_what_it_cut(tmp_path):
    write_study(tmp_path, n_trials=200, sleep=1.0)  # ~100 s if it ran to its end
    driver = start_run(tmp_path)
    wait_for_finished(tmp_path / "cli.journal", lambda: load(tmp_path), 3)
    driver.send_signal(signal.SIGINT)
    interrupted_at = time.monotonic()
    _, stderr = driver.communicate(timeout=90)
    assert driver.returncode == 130, stderr
    assert time.monotonic() - interrupted_at < 45
    assert "interrupted" in stderr and "Traceback" not in stderr
    study = load(tmp_path)
    assert all(t.state.is_finished() or t.state.name == "WAITING" for t in study.trials)  # nothing RUNNING
    # the trials the interrupt cut short are FAIL "interrupted" and waiting, re-enqueued with their parameters
    cut = {t.number: t.params for t in study.trials if t.user_attrs.get("fail_reason", "").startswith("interrupted")}
    waiting = {
        t.user_attrs["retry_of"]: t.system_attrs["fixed_params"] for t in study.trials if t.state.name == "WAITING"
    }
    assert cut and waiting == cut
    # the next run runs them first, and they do not count twice
    resumed = daskopt("run", "study.toml", "--n-trials", str(outcomes(study) + len(cut)), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    rerun = {t.user_attrs["retry_of"]: t for t in load(tmp_path).trials if t.user_attrs.get("retry_of") in cut}
    assert {n: t.params for n, t in rerun.items()} == cut and all(t.state.name == "COMPLETE" for t in rerun.values())


def test_adaptive_local_cluster_starting_empty_grows_and_runs(tmp_path):
    cluster = 'kind = "local"\nadapt = { minimum = 0, maximum = 2 }'
    write_study(tmp_path, n_trials=6, cluster=cluster)
    done = daskopt("run", "study.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert by_state(load(tmp_path)) == {"COMPLETE": 6}


def test_status_prints_lines_that_open_the_study_with_optuna_itself(tmp_path):
    """The printed Python line is run as printed, in a fresh interpreter: it must load the same study."""
    write_study(tmp_path, n_trials=4)
    assert daskopt("run", "study.toml", cwd=tmp_path).returncode == 0
    done = daskopt("status", "study.toml", cwd=tmp_path)
    dashboard = next(line for line in done.stdout.splitlines() if line.startswith("browse it with: "))
    assert dashboard == f"browse it with: optuna-dashboard {tmp_path / 'cli.journal'}"
    python = next(line for line in done.stdout.splitlines() if line.startswith("open it in Python: "))
    code = f"import optuna\nstudy = {python.removeprefix('open it in Python: ')}\nprint(len(study.trials))"
    opened = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip() == "4"


def test_status_tells_paused_trials_from_running_ones(tmp_path):
    write_study(tmp_path, n_trials=1)
    assert daskopt("run", "study.toml", cwd=tmp_path).returncode == 0
    study = load(tmp_path)
    paused, running = study.ask(), study.ask()  # as a killed driver leaves them: one paused by a scheduler
    paused.set_user_attr("paused_at", [1, 3])
    paused.set_user_attr("suspended", True)
    lines = daskopt("status", "study.toml", cwd=tmp_path).stdout.splitlines()
    assert any(line.startswith(f"paused: trial {paused.number} at step 3") for line in lines)
    assert any(line.startswith(f"running: trial {running.number} since") for line in lines)
