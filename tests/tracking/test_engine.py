"""Tracking through the real engine on the 2-process LocalCluster: W&B runs and events.jsonl on disk."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

import daskopt
from tests.tracking import objectives
from tests.tracking.wandb_files import offline_runs

SPACE = {"x": FloatDistribution(-10, 10), "y": IntDistribution(0, 3)}
# x**2 + 4 is reported at step 0: above 50 the threshold pruner stops the trial there, whatever the order
POINTS = [
    {"x": 0.0, "y": 1},
    {"x": 9.0, "y": 0},
    {"x": 1.0, "y": 2},
    {"x": 8.0, "y": 3},
    {"x": 2.0, "y": 0},
    {"x": 3.0, "y": 1},
]
FAKE_KEY = "fakekey0123456789abcdef0123456789abcdef9"


def _study(name: str) -> optuna.Study:
    study = optuna.create_study(study_name=name, pruner=optuna.pruners.ThresholdPruner(upper=50.0))
    for point in POINTS:
        study.enqueue_trial(point)
    return study


@pytest.fixture(scope="module")
def tracked(client, tmp_path_factory):
    """One study of 6 trials (2 pruned) with W&B offline and an output folder, shared by the checks."""
    out = tmp_path_factory.mktemp("study")
    study = _study("tracked")
    daskopt.optimize(
        study,
        objectives.logs_metrics,
        n_trials=6,
        client=client,
        search_space=SPACE,
        tracking=daskopt.Tracking(wandb={"mode": "offline", "tags": ["t1"]}, output_dir=out),
        show_progress_bar=False,
    )
    return study, out, offline_runs(out, count=7)


def test_one_wandb_run_per_trial_and_one_for_the_study(tracked):
    study, _, runs = tracked
    assert sorted(run.job_type for run in runs) == ["study"] + ["trial"] * 6
    assert {run.group for run in runs} == {"tracked"}
    trials = {run.name: run for run in runs if run.job_type == "trial"}
    assert sorted(trials) == [f"trial-{n}" for n in range(6)]
    for trial in study.trials:
        run = trials[f"trial-{trial.number}"]
        assert run.config == trial.params
        assert run.summary["state"] == trial.state.name
        assert run.summary["trial"] == trial.number and run.summary["worker"].startswith("tcp://")
        reported = trial.intermediate_values
        assert run.metric("value") == reported  # every report, at its step
        assert run.metric("train_loss") == {step: 10.0 * trial.number + step for step in reported}
        if trial.state.name == "COMPLETE":
            assert run.summary["value"] == trial.value
    assert sorted(t.state.name for t in study.trials).count("PRUNED") == 2


def test_study_run_has_best_so_far_trials_table_and_the_trial_runs(tracked):
    study, _, runs = tracked
    (run,) = [run for run in runs if run.job_type == "study"]
    assert run.name == "study-tracked"
    best = [row["best_value"] for row in run.history if "best_value" in row]
    assert len(best) >= 5 and best == sorted(best, reverse=True) and best[-1] == study.best_value
    assert run.summary["trial_runs_group"] == "tracked"
    assert run.summary["trial_runs"] == [f"trial-{n}" for n in range(6)]
    assert run.summary["best_run"] == f"trial-{study.best_trial.number}"
    table = run.summary["trials"]
    assert table["_type"] == "table-file" and table["nrows"] == 6
    rows = json.loads((run.folder / "files" / table["path"]).read_text())
    assert rows["columns"][:4] == ["number", "run", "state", "value"]
    assert sorted(r[2] for r in rows["data"]) == sorted(t.state.name for t in study.trials)


def test_events_jsonl_has_a_start_and_an_end_per_trial(tracked):
    study, out, _ = tracked
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    starts = {e["number"]: e for e in events if e["event"] == "trial_start"}
    ends = {e["number"]: e for e in events if e["event"] == "trial_end"}
    assert sorted(starts) == sorted(ends) == list(range(6))
    for trial in study.trials:
        start, end = starts[trial.number], ends[trial.number]
        assert start["params"] == end["params"] == trial.params  # a declared space is known at start
        assert start["worker"] == end["worker"] and start["worker"].startswith("tcp://")
        assert (end["state"], end["value"]) == (trial.state.name, trial.value)
        assert end["datetime_start"] == trial.datetime_start.isoformat()
    assert events[0]["event"] == "study_start" and events[-1]["event"] == "study_end"


def test_no_api_key_in_any_file_or_output(client, tmp_path, monkeypatch, capfd, caplog):
    """A fake key in every process's environment: offline runs, logs and outputs never contain it."""
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    client.run(_set_env, "WANDB_API_KEY", FAKE_KEY)
    try:
        study = _study("secret")
        daskopt.optimize(
            study,
            objectives.logs_metrics,
            n_trials=4,
            client=client,
            search_space=SPACE,
            tracking=daskopt.Tracking(wandb={"mode": "offline", "settings": {"silent": False}}, output_dir=tmp_path),
        )
        assert len(offline_runs(tmp_path, count=5)) == 5
        worker_logs = json.dumps(client.get_worker_logs())
    finally:
        client.run(_set_env, "WANDB_API_KEY", None)
    assert FAKE_KEY not in worker_logs
    captured = capfd.readouterr()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 20
    leaks = [str(p) for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert leaks == []
    assert FAKE_KEY not in captured.out + captured.err + caplog.text


def _set_env(name: str, value: str | None) -> None:
    import os

    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


DISABLED = """
import json, sys
import optuna, daskopt
from distributed import Client, LocalCluster

def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    trial.report(x, 0)
    trial.log({"extra": x}, step=0)
    return x

if __name__ == "__main__":
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        daskopt.optimize(optuna.create_study(), objective, n_trials=3, client=client,
                         tracking={"wandb": {"mode": "disabled"}, "output_dir": "out"}, show_progress_bar=False)
        workers = list(client.run(lambda: "wandb" in sys.modules).values())
    print(json.dumps({"driver": "wandb" in sys.modules, "workers": workers}))
"""


def test_disabled_mode_imports_nothing_and_writes_no_runs(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(DISABLED))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"driver": False, "workers": [False]}
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert written == ["out", "out/events.jsonl", "run.py"]  # no wandb/ folder anywhere


def test_a_study_file_logs_to_wandb_with_its_metric_name(client, tmp_path):
    """``[wandb]`` and ``[objective] metric`` of a study file reach the runs, under the output folder."""
    from daskopt.runner import run_study
    from daskopt.spec import spec_from_dict

    spec = spec_from_dict(
        {
            "study": {"name": "from-file", "n_trials": 3},
            "objective": {"callable": "tests.tracking.objectives:logs_metrics", "metric": "loss"},
            "space": {"x": {"type": "float", "low": -1.0, "high": 1.0}, "y": {"type": "int", "low": 0, "high": 3}},
            "storage": {"url": "memory"},
            "wandb": {"mode": "offline", "project": "p", "tags": ["a"]},
        },
        base_dir=tmp_path,
    )
    run_study(spec, address=client.scheduler.address)
    out = tmp_path / "runs" / "from-file"
    runs = offline_runs(out, count=4)
    trials = [run for run in runs if run.job_type == "trial"]
    assert len(trials) == 3 and all(run.group == "from-file" for run in runs)
    assert all(len(run.metric("loss")) == 5 and "value" not in run.metric("loss") for run in trials)
    assert len((out / "events.jsonl").read_text().splitlines()) == 2 + 2 * 3


def _warm_state() -> dict[str, object]:
    import os
    import sys

    from daskopt.tracking import wandb_logger

    thread = wandb_logger._warm_thread
    return {
        "done": thread is not None and not thread.is_alive(),
        "wandb": "wandb" in sys.modules,
        "launch_inputs": wandb_logger._LAUNCH_INPUTS in sys.modules,  # skipped: nothing staged
        "service": bool(os.environ.get("WANDB_SERVICE")),
    }


def test_warm_up_prepares_wandb_in_every_worker_and_starts_no_run(tmp_path):
    """Fresh worker processes: the warm-up imports wandb there and starts wandb-core, but logs nothing."""
    from distributed import Client, LocalCluster

    from daskopt.tracking import tracking_settings, warm_up

    tracking = tracking_settings("warm", wandb={"mode": "offline"}, output_dir=tmp_path)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40) as c,
        Client(c) as client,
    ):
        assert not any(state["wandb"] for state in client.run(_warm_state).values())
        warm_up(tracking, client)
        deadline = time.monotonic() + 120
        while not all(state["done"] for state in client.run(_warm_state).values()):
            assert time.monotonic() < deadline, client.run(_warm_state)
            time.sleep(0.2)
        states = list(client.run(_warm_state).values())
    assert states == [{"done": True, "wandb": True, "launch_inputs": False, "service": True}] * 2
    assert not (tmp_path / "wandb").exists()
