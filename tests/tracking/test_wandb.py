"""W&B without Dask: options, mode choice, the missing extra, concurrent trial runs in one process."""

from __future__ import annotations

import sys
import threading

import optuna
import pytest

from daskopt.errors import SpecError
from daskopt.tracking import (
    StudyLoggers,
    TrialEnd,
    TrialLoggers,
    TrialStart,
    WandbStudyLogger,
    WandbTrialLogger,
    spec_wandb_option,
    study_ends_overlapped,
    tracking_settings,
)
from daskopt.tracking import base as base_module
from daskopt.tracking import wandb_logger as wandb_logger_module
from daskopt.tracking.wandb_logger import resolve_mode, wandb_options
from tests.tracking.wandb_files import offline_runs


@pytest.mark.parametrize(
    ("wandb", "key", "fragment"),
    [
        ("yes", "wandb", "expected a dict of W&B settings, True or None; got str"),
        ({"projekt": "p"}, "wandb", "unknown key(s) ['projekt']; expected some of ['project', 'entity', 'mode'"),
        ({"mode": "on"}, "wandb.mode", "got 'on'; expected one of ['online', 'offline', 'disabled']"),
        ({"settings": {"api_key": "secret-value"}}, "wandb.settings", "set WANDB_API_KEY or run `wandb login`"),
        (
            {"settings": {"consle": "off"}},
            "wandb.settings",
            "not valid wandb.Settings (consle: Extra inputs are not permitted)",
        ),
        ({"config": {"path": object()}}, "wandb.config", "must be plain data"),
    ],
)
def test_bad_options_are_one_line_errors(wandb, key, fragment):
    with pytest.raises(SpecError) as err:
        wandb_options(wandb, study_name="s", output_dir=None)
    assert err.value.key == key and fragment in str(err.value)
    assert "secret-value" not in str(err.value)


@pytest.mark.parametrize("wandb", [None, False, {"mode": "disabled"}])
def test_off_or_disabled_means_no_tracking_at_all(wandb):
    assert tracking_settings("s", wandb=wandb) is None


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking_settings("s", wandb=True) is None


def test_defaults_from_the_study_and_output_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    options = wandb_options(True, study_name="demo", output_dir=tmp_path / "out")
    assert options == {
        "project": "demo",
        "entity": None,
        "mode": None,  # decided in each process by its credentials
        "tags": [],
        "group": "demo",
        "dir": str((tmp_path / "out").resolve()),
        "metric": "value",
        "config": {},
        "settings": {},
    }
    assert wandb_options({"tags": "a"}, study_name="no-name-1f3", output_dir=None)["project"] == "daskopt"  # type: ignore[index]


def test_mode_follows_credentials_when_not_configured(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    assert resolve_mode(None) == "offline"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password x\n")
    assert resolve_mode(None) == "online"
    assert resolve_mode("offline") == "offline"
    netrc.write_text("")
    monkeypatch.setenv("WANDB_API_KEY", "fake")
    assert resolve_mode(None) == "online"


def test_missing_wandb_names_the_extra(monkeypatch, caplog):
    options = wandb_options({"mode": "offline"}, study_name="s", output_dir=None)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(SpecError, match=r"pip install 'daskopt\[wandb\]'"):
        wandb_options(True, study_name="s", output_dir=None)
    section = type("Section", (), {"mode": None, "project": "p", "entity": None, "tags": ()})()
    assert spec_wandb_option(section, "value") is None  # a study file that did not ask for a mode
    loggers = TrialLoggers([WandbTrialLogger(options)])  # a worker without wandb: warn, run the trial
    loggers.trial_start(TrialStart(0, {}, {}, ""))
    loggers.trial_end(TrialEnd(0, "COMPLETE", [1.0], {}, 0.0))
    assert "pip install 'daskopt[wandb]'" in caplog.text


def test_concurrent_trials_in_one_process_get_their_own_runs(tmp_path):
    """Two trials in two threads, interleaving every call: no value lands in the other trial's run."""
    options = wandb_options({"mode": "offline"}, study_name="threads", output_dir=tmp_path)
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def trial(number: int) -> None:
        try:
            logger = WandbTrialLogger(options)  # type: ignore[arg-type]
            barrier.wait()
            logger.trial_start(TrialStart(number, {"x": float(number)}, {}, f"worker-{number}"))
            for step in range(6):
                barrier.wait()
                logger.report(1000.0 * number + step, step)
                logger.log({"train_loss": float(number)}, step)
            barrier.wait()
            logger.trial_end(
                TrialEnd(number, "COMPLETE", [float(number)], {"x": float(number)}, 0.1, f"worker-{number}")
            )
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=trial, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    runs = {run.name: run for run in offline_runs(tmp_path, count=2)}
    assert sorted(runs) == ["trial-1", "trial-2"]
    for number in (1, 2):
        run = runs[f"trial-{number}"]
        assert run.group == "threads" and run.job_type == "trial" and run.exit_code == 0
        assert run.config == {"x": float(number)}
        assert run.metric("value") == {step: 1000.0 * number + step for step in range(6)}
        assert set(run.metric("train_loss").values()) == {float(number)}
        assert run.summary["state"] == "COMPLETE" and run.summary["value"] == float(number)
        assert run.summary["worker"] == f"worker-{number}"
    import wandb

    assert wandb.run is None  # the global run was never touched


def test_out_of_order_steps_are_kept(tmp_path):
    options = wandb_options({"mode": "offline", "metric": "loss"}, study_name="s", output_dir=tmp_path)
    logger = WandbTrialLogger(options)  # type: ignore[arg-type]
    logger.trial_start(TrialStart(0, {}, {}, ""))
    logger.log({"a": 1.0}, None)  # commits step 0
    logger.report(5.0, 0)  # W&B would drop a row for step 0 now
    logger.trial_end(TrialEnd(0, "FAIL", None, {"late": 1}, 0.0, "", "ValueError: x"))
    (run,) = offline_runs(tmp_path, count=1)
    assert any(row.get("loss") == 5.0 and row.get("step") == 0 for row in run.history)
    assert run.summary["state"] == "FAIL" and run.summary["error"] == "ValueError: x" and run.exit_code == 1
    assert run.config == {"late": 1}  # define-by-run parameters arrive at the end


def _three_trials(study_logger: StudyLoggers, study: optuna.Study) -> None:
    for value in (3.0, 1.0, 2.0):
        trial = study.ask()
        study_logger.trial_finished(study, study.tell(trial, value), "tcp://w:1")


def test_study_run_keeps_the_rows_that_arrive_while_it_starts(tmp_path):
    """The study's run starts on a thread of its own; rows told meanwhile wait for it, in order."""
    options = wandb_options({"mode": "offline"}, study_name="early", output_dir=tmp_path)
    study = optuna.create_study(study_name="early")
    loggers = StudyLoggers([WandbStudyLogger(options)])  # type: ignore[arg-type]
    loggers.study_start(study)
    _three_trials(loggers, study)  # at once: W&B has not started the run yet
    loggers.study_end(study)
    (run,) = offline_runs(tmp_path, count=1)
    assert run.name == "study-early" and run.job_type == "study" and run.exit_code == 0
    rows = [row for row in run.history if "trial" in row]
    assert [row["trial"] for row in rows] == [0, 1, 2]
    assert [row["best_value"] for row in rows] == [3.0, 1.0, 1.0]
    assert run.summary["trial_runs"] == ["trial-0", "trial-1", "trial-2"] and run.summary["best_run"] == "trial-1"
    assert run.summary["trials"]["nrows"] == 3


def test_a_study_run_that_cannot_start_warns_once_and_the_study_goes_on(tmp_path, monkeypatch, caplog):
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("wandb-core did not start")

    monkeypatch.setattr(wandb_logger_module, "start_run", refuse)
    options = wandb_options({"mode": "offline"}, study_name="refused", output_dir=tmp_path)
    study = optuna.create_study(study_name="refused")
    loggers = StudyLoggers([WandbStudyLogger(options)])  # type: ignore[arg-type]
    loggers.study_start(study)
    _three_trials(loggers, study)
    loggers.study_end(study)  # returns: nothing to finish
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "daskopt: WandbStudyLogger.study_start failed; the study goes on: RuntimeError: wandb-core did not start"
    ]
    assert not (tmp_path / "wandb").exists() or not list((tmp_path / "wandb").glob("offline-run-*"))


def test_a_resumed_trial_logs_each_stretch_as_its_own_run_in_order(tmp_path):
    """A trial a scheduler paused at steps 1 and 3 runs three times; each stretch is a run of its own."""
    options = wandb_options({"mode": "offline"}, study_name="paused", output_dir=tmp_path)
    for paused, steps in (([], (0, 1)), ([1], (2, 3)), ([1, 3], (4, 5))):
        logger = WandbTrialLogger(options)  # type: ignore[arg-type]
        logger.trial_start(TrialStart(7, {"x": 1.0}, {"paused_at": paused} if paused else {}, "worker"))
        for step in steps:
            logger.report(float(step), step)
        logger.trial_end(TrialEnd(7, "SUSPENDED", None, {"x": 1.0}, 0.1, "worker"))
    runs = {run.name: run for run in offline_runs(tmp_path, count=3)}
    assert sorted(runs) == ["trial-7", "trial-7-part-2", "trial-7-part-3"]
    assert runs["trial-7-part-3"].metric("value") == {4: 4.0, 5: 5.0}
    assert runs["trial-7-part-2"].config["user_attrs"] == {"paused_at": [1]}


def test_inside_study_ends_overlapped_the_study_run_finishes_when_the_block_is_left(tmp_path):
    """``daskopt run`` closes its cluster while the study run finishes; the run is complete on leaving."""
    options = wandb_options({"mode": "offline"}, study_name="overlap", output_dir=tmp_path)
    study = optuna.create_study(study_name="overlap")
    loggers = StudyLoggers([WandbStudyLogger(options)])  # type: ignore[arg-type]
    with study_ends_overlapped():
        with study_ends_overlapped():  # nested: only the outermost block waits
            loggers.study_start(study)
            _three_trials(loggers, study)
            loggers.study_end(study)  # returns without waiting for the run to finish
        (writer,) = base_module._late_ends or []
    assert not writer.is_alive()  # the block waited for it
    assert base_module._late_ends is None
    (run,) = offline_runs(tmp_path, count=1)
    assert run.exit_code == 0 and run.summary["trials"]["nrows"] == 3


LAUNCH_INPUTS_CHECK = """
import sys
from daskopt.tracking import wandb_logger
launch = "wandb.sdk.launch.inputs.internal"
options = {"project": "p", "group": "g", "mode": "offline", "dir": sys.argv[1]}
wandb_logger.start_run(options, name="plain", job_type="trial", config={}).finish()
print("imported by a plain run:", launch in sys.modules)
from wandb.sdk.launch.inputs import internal
applied = []
internal.StagedLaunchInputs.apply = lambda self, run: applied.append(run.name)
wandb_logger.start_run(options, name="staged", job_type="trial", config={}).finish()
print("applied once imported:", applied)
"""


def test_runs_skip_the_launch_inputs_module_until_something_could_have_staged_an_input(tmp_path):
    """``wandb.init`` imports W&B Launch's input module (0.3-0.8 s of CPU) to apply staged inputs; inputs
    can only be staged through that module, so it is applied exactly when the module is loaded."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", LAUNCH_INPUTS_CHECK, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["imported by a plain run: False", "applied once imported: ['staged']"]
