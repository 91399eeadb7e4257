"""The logger contract: hooks in order never raise through the guards; every implementation honours it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import pytest

from daskopt.tracking import (
    JsonlStudyLogger,
    StudyLogger,
    StudyLoggers,
    TrialEnd,
    TrialLogger,
    TrialLoggers,
    TrialStart,
    WandbStudyLogger,
    WandbTrialLogger,
    tracking_settings,
)
from tests.tracking.wandb_files import offline_runs

FAKE_KEY = "fake0123456789abcdef0123456789abcdef0123"


class Exploding(TrialLogger, StudyLogger):
    """Every hook raises, mentioning the API key as a careless library might."""

    calls = 0

    def _explode(self, *args: object) -> None:
        self.calls += 1
        raise RuntimeError(f"upload refused for key {FAKE_KEY}")

    trial_start = report = log = trial_end = _explode  # type: ignore[assignment]
    study_start = trial_started = trial_finished = study_end = _explode  # type: ignore[assignment]


class Recording(TrialLogger):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def trial_start(self, start: TrialStart) -> None:
        self.seen.append("start")

    def report(self, value: float, step: int) -> None:
        self.seen.append(f"report {step}")

    def log(self, metrics: object, step: int | None) -> None:
        self.seen.append(f"log {step}")

    def trial_end(self, end: TrialEnd) -> None:
        self.seen.append(f"end {end.state}")


def _trial_hooks(logger: TrialLogger, number: int = 0) -> None:
    logger.trial_start(TrialStart(number, {"x": 1.0}, {"seed": 3}, "tcp://w:1"))
    for step in range(3):
        logger.report(float(step), step)
        logger.log({"train_loss": 0.5}, step)
    logger.trial_end(TrialEnd(number, "COMPLETE", [0.25], {"x": 1.0}, 0.01, "tcp://w:1"))


def test_a_failing_trial_logger_warns_once_per_hook_and_the_others_still_run(monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    bad, good = Exploding(), Recording()
    with caplog.at_level(logging.WARNING, logger="daskopt.tracking"):
        _trial_hooks(TrialLoggers([bad, good]), number=7)
    assert good.seen == ["start", "report 0", "log 0", "report 1", "log 1", "report 2", "log 2", "end COMPLETE"]
    assert bad.calls == 8
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4  # one per hook, not one per call
    assert all("trial 7" in m and "the trial goes on" in m for m in messages)
    assert not any(FAKE_KEY in m for m in messages)
    assert all("***" in m for m in messages)


def test_a_failing_study_logger_warns_and_the_study_goes_on(monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    study = optuna.create_study()
    frozen = study.tell(study.ask(), 1.0)
    with caplog.at_level(logging.WARNING, logger="daskopt.tracking"):
        loggers = StudyLoggers([Exploding()])
        loggers.study_start(study)
        loggers.trial_started(study, 0, {}, "")
        loggers.trial_finished(study, frozen, "")
        loggers.study_end(study)
    assert len(caplog.records) == 4
    assert not any(FAKE_KEY in r.getMessage() for r in caplog.records)


def _trial_loggers(tmp_path: Path) -> dict[str, TrialLogger]:
    settings = tracking_settings("contract", wandb={"mode": "offline"}, output_dir=tmp_path)
    assert settings is not None
    return {"base": TrialLogger(), "wandb": WandbTrialLogger(settings["wandb"])}


def _study_loggers(tmp_path: Path) -> dict[str, StudyLogger]:
    settings = tracking_settings("contract", wandb={"mode": "offline"}, output_dir=tmp_path)
    assert settings is not None
    return {"base": StudyLogger(), "jsonl": JsonlStudyLogger(tmp_path), "wandb": WandbStudyLogger(settings["wandb"])}


@pytest.mark.parametrize("kind", ["base", "wandb"])
def test_trial_logger_contract(tmp_path, kind):
    logger = _trial_loggers(tmp_path)[kind]
    _trial_hooks(logger)
    # trial_end comes also when trial_start never happened (or failed): it must not raise
    _trial_loggers(tmp_path)[kind].trial_end(TrialEnd(1, "FAIL", None, {}, 0.0, "", "ValueError: x"))
    runs = offline_runs(tmp_path, count=1) if kind == "wandb" else []
    assert len(runs) == (1 if kind == "wandb" else 0)  # one finished run for the trial that started
    if runs:
        assert runs[0].exit_code == 0


@pytest.mark.parametrize("kind", ["base", "jsonl", "wandb"])
def test_study_logger_contract(tmp_path, kind):
    study = optuna.create_study(study_name="contract")
    logger = _study_loggers(tmp_path)[kind]
    logger.study_start(study)
    trial = study.ask()
    logger.trial_started(study, trial.number, {}, "tcp://w:1")
    logger.trial_finished(study, study.tell(trial, 2.0), "tcp://w:1")
    failed = study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    logger.trial_finished(study, failed, "")  # never started: told FAIL before it ran
    logger.study_end(study)
    if kind == "jsonl":
        lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
        events = [(r["event"], r.get("number"), r.get("state")) for r in lines]
        assert events == [
            ("study_start", None, None),
            ("trial_start", 0, None),
            ("trial_end", 0, "COMPLETE"),
            ("trial_end", 1, "FAIL"),
            ("study_end", None, None),
        ]
    if kind == "wandb":
        assert len(offline_runs(tmp_path, count=1)) == 1  # the study's own run, finished
