"""events.jsonl: one line per study/trial event, strict JSON, appended across calls."""

from __future__ import annotations

import json
import math

import optuna

from daskopt.tracking import JsonlStudyLogger


def _read(path):  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run_one_call(study: optuna.Study, logger: JsonlStudyLogger, values: list[float | None]) -> None:
    logger.study_start(study)
    for value in values:
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        logger.trial_started(study, trial.number, dict(trial.params), "tcp://127.0.0.1:1")
        if value is None:
            trial.set_user_attr("fail_reason", "ValueError: boom")
            frozen = study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            frozen = study.tell(trial, value)
        logger.trial_finished(study, frozen, "tcp://127.0.0.1:1")
    logger.study_end(study)


def test_one_line_per_event_with_outcome_fields(tmp_path):
    study = optuna.create_study(study_name="demo")
    _run_one_call(study, JsonlStudyLogger(tmp_path), [0.5, None])
    events = _read(tmp_path / "events.jsonl")
    assert [e["event"] for e in events] == [
        "study_start",
        "trial_start",
        "trial_end",
        "trial_start",
        "trial_end",
        "study_end",
    ]
    start, end, failed = events[1], events[2], events[4]
    assert start["number"] == 0 and set(start["params"]) == {"x"} and start["worker"] == "tcp://127.0.0.1:1"
    assert end["state"] == "COMPLETE" and end["value"] == 0.5 and end["params"] == start["params"]
    assert end["datetime_start"] and end["datetime_complete"] and end["duration_s"] >= 0
    assert failed["state"] == "FAIL" and failed["value"] is None and failed["fail_reason"] == "ValueError: boom"
    assert events[-1] == {**events[-1], "study": "demo", "n_trials": 2}
    assert all(e["time"].endswith("+00:00") for e in events)


def test_a_resumed_study_appends_to_the_same_file(tmp_path):
    study = optuna.create_study(study_name="demo")
    _run_one_call(study, JsonlStudyLogger(tmp_path), [1.0])
    _run_one_call(study, JsonlStudyLogger(tmp_path), [2.0])
    ends = [e for e in _read(tmp_path / "events.jsonl") if e["event"] == "trial_end"]
    assert [(e["number"], e["value"]) for e in ends] == [(0, 1.0), (1, 2.0)]


def test_non_finite_numbers_stay_strict_json(tmp_path):
    study = optuna.create_study(study_name="demo", directions=["minimize", "maximize"])
    logger = JsonlStudyLogger(tmp_path)
    trial = study.ask()
    logger.trial_finished(study, study.tell(trial, [math.inf, -math.inf]), "")
    logger.study_end(study)
    text = (tmp_path / "events.jsonl").read_text()
    assert "Infinity" not in text  # json.loads would accept it; other readers would not
    assert json.loads(text.splitlines()[0])["values"] == ["inf", "-inf"]


def test_every_line_is_on_disk_before_the_study_ends(tmp_path):
    study = optuna.create_study()
    logger = JsonlStudyLogger(tmp_path)
    logger.study_start(study)
    logger.trial_started(study, 0, {"x": 1}, "")
    assert len(_read(tmp_path / "events.jsonl")) == 2  # flushed per line, file still open
    logger.study_end(study)
