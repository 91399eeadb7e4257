"""The driver (``daskopt run``) SIGKILLed while promotion-type ASHA holds trials paused, then run again.

A paused trial is RUNNING in storage with ``suspended`` set. The rerun marks it FAIL ("interrupted ...
(paused at step k)") and re-enqueues it with ``restore = [old number, checkpoint folder key, k]``; the new
attempt carries the old reports up to step ``k``, stays paused until the scheduler promotes it, and then
goes on from the checkpoint of step ``k``. The objective counts the steps it computes in its checkpoint
state, so a trial that completes shows whether any step ran twice (or never) across pauses and drivers.

Every point is enqueued so the scheduler's choices are known in advance (distance to 1 orders the trials
at every step): trials 0-11 are the good ones, best first, and trials from ``HOLD_FROM`` on are bad ones
that wait for the release file. With 2 slots, the first driver ends up with trial 0 complete, trials 1-3
paused at rung 1 (step 3), 4-11 paused at rung 0 (step 1) and held trials in both slots: it cannot
move on until the release, so the kill always lands there. In the rerun, the bad trials fill the rungs
until trial 1's new attempt is promoted from its checkpoint at step 3 and completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from daskopt.runner import outcomes
from tests.studyfiles import RUN, release

STEPS = 9  # steps 0-8; max_resource = 9 puts the rungs at steps 1 and 3
HOLD_FROM = 12  # trials from here on wait for the release: the kill always lands with trials paused
N_TRIALS = 18
SLOTS = 2  # 2 local workers of one thread
GOOD = [round(1 + 0.1 * (i + 1), 2) for i in range(HOLD_FROM)]  # best first: |x - 1| grows with the number
BAD = [round(-3 + 0.1 * i, 2) for i in range(N_TRIALS - HOLD_FROM)]

OBJECTIVE = """
import os
import time

import optuna


def objective(trial):
    x = trial.suggest_float("x", -3, 3)
    state = trial.load_checkpoint() or {"total": 0.0, "ran": []}
    start = 0 if trial.resume_step is None else trial.resume_step + 1
    if trial.number >= HOLD_FROM:  # says it holds a slot, then waits until the test creates RELEASE
        open(os.path.join(HELD, str(trial.number)), "w").close()
        deadline = time.monotonic() + 300
        while not os.path.exists(RELEASE) and time.monotonic() < deadline:
            time.sleep(0.05)
    for step in range(start, STEPS):
        state["total"] += (x - 1) ** 2 / (step + 1)
        state["ran"].append(step)  # each step computed, across pauses, resumes and drivers
        trial.save_checkpoint(state, step)
        trial.report(state["total"], step)
        if trial.should_prune():
            raise optuna.TrialPruned()
        time.sleep(0.02)
    trial.set_user_attr("ran", state["ran"])
    return state["total"]
"""

STUDY = """
[study]
name = "paused"
n_trials = {n_trials}

[objective]
callable = "obj:objective"

[space]
x = {{ type = "float", low = -3, high = 3 }}

[sampler]
name = "random"
options = {{ seed = 1 }}

[scheduler]
name = "asha-promotion"
options = {{ max_resource = {steps} }}

[storage]
url = "journal:paused.journal"

[cluster]
kind = "local"
n_workers = {slots}

[dashboard]
enabled = false
"""


def _write(folder: Path) -> None:
    (folder / "held").mkdir()
    source = OBJECTIVE.replace("HOLD_FROM", str(HOLD_FROM)).replace("STEPS", str(STEPS))
    source = source.replace("RELEASE", repr(str(folder / "release"))).replace("HELD", repr(str(folder / "held")))
    (folder / "obj.py").write_text(source)
    points = "".join(f"\n[[enqueue]]\nx = {x}\n" for x in GOOD + BAD)
    (folder / "study.toml").write_text(STUDY.format(n_trials=N_TRIALS, steps=STEPS, slots=SLOTS) + points)


def _load(folder: Path) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(folder / "paused.journal"))
    return optuna.load_study(study_name="paused", storage=optuna.storages.JournalStorage(backend))


def _stuck(folder: Path) -> bool:
    """Held trials run in every slot (so nothing else can move), every good trial is complete or paused,
    and one at least complete."""
    if len(list((folder / "held").iterdir())) < SLOTS:
        return False
    try:
        trials = _load(folder).get_trials(deepcopy=False)
    except Exception:  # not created yet, or a line half written
        return False
    if len(trials) < N_TRIALS:
        return False
    good = trials[:HOLD_FROM]
    paused = [t for t in good if t.state.name == "RUNNING" and t.user_attrs.get("suspended") is True]
    complete = [t for t in good if t.state.name == "COMPLETE"]
    held = [t for t in trials[HOLD_FROM:] if t.state.name == "RUNNING"]
    return bool(complete) and len(paused) + len(complete) == HOLD_FROM and len(held) >= SLOTS


@pytest.mark.slow
def test_killed_driver_resumes_paused_trials_from_their_checkpoints(tmp_path):
    _write(tmp_path)
    driver = subprocess.Popen(
        RUN, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        stable = 0
        while time.monotonic() < deadline and driver.poll() is None and stable < 2:
            stable = stable + 1 if _stuck(tmp_path) else 0
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the cluster it started
        driver.wait()
    assert stable == 2, "the first driver never reached the state the kill is meant for"

    before = _load(tmp_path).trials  # a snapshot
    completed_before = {t.number: t.value for t in before if t.state.name == "COMPLETE"}
    paused_before = {t.number: t for t in before if t.state.name == "RUNNING" and t.user_attrs.get("suspended")}
    running_before = {t.number: t for t in before if t.state.name == "RUNNING"}
    # the one schedule these points allow with 2 slots (module docstring)
    assert sorted(completed_before) == [0]
    assert {n: t.user_attrs["paused_at"][-1] for n, t in paused_before.items()} == {
        **{n: 3 for n in (1, 2, 3)},
        **{n: 1 for n in range(4, HOLD_FROM)},
    }
    held = set(running_before) - set(paused_before)  # in the slots (and one asked ahead, at times)
    assert len(held) >= SLOTS and held <= set(range(HOLD_FROM, N_TRIALS)), sorted(held)
    for number, trial in paused_before.items():  # reported up to the step it is paused at, no further
        assert sorted(trial.intermediate_values) == list(range(trial.user_attrs["paused_at"][-1] + 1)), number
    release(tmp_path)

    resumed = subprocess.run(RUN, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr, resumed.stderr
    after = _load(tmp_path)
    trials = after.trials
    states = {t.number: t.state.name for t in trials}
    assert "RUNNING" not in states.values() and "WAITING" not in states.values()
    assert outcomes(after) == N_TRIALS
    # nothing completed before the kill is lost or changed
    assert {n: trials[n].value for n in completed_before} == completed_before
    assert all(trials[n].state.name == "COMPLETE" for n in completed_before)
    # every trial left RUNNING is FAIL "interrupted" (saying where it was paused) and has one new attempt
    for number, old in running_before.items():
        assert states[number] == "FAIL"
        reason = trials[number].user_attrs["fail_reason"]
        assert reason.startswith("interrupted"), reason
        if number in paused_before:
            assert f"(paused at step {old.user_attrs['paused_at'][-1]})" in reason
    attempts = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    assert sorted(attempts) == sorted(running_before)
    assert [t.number for t in trials if t.state.name == "FAIL"] == sorted(running_before)
    for number, new in attempts.items():
        old = running_before[number]
        assert new.params == old.params
        if number in paused_before:  # from the step it was paused at, carrying the reports up to it
            step = old.user_attrs["paused_at"][-1]
            assert new.user_attrs["restore"] == [number, number, step]
            assert {s: v for s, v in new.intermediate_values.items() if s <= step} == old.intermediate_values
        else:  # running (held, before its first checkpoint): its newest checkpoint, which is none
            assert new.user_attrs["restore"] == [number, number, None]
    # every completed trial computed each step exactly once, however often it was paused or moved
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    for trial in complete:
        assert trial.user_attrs["ran"] == list(range(STEPS)), trial.number
        assert sorted(trial.intermediate_values) == list(range(STEPS))
        x = trial.params["x"]
        assert trial.value == pytest.approx(sum((x - 1) ** 2 / (s + 1) for s in range(STEPS)))
    # a trial paused at the kill was promoted in the rerun and completed from its checkpoint
    resumed_complete = [n for n, t in attempts.items() if n in paused_before and t.state.name == "COMPLETE"]
    assert resumed_complete == [1], {n: (t.state.name, t.user_attrs.get("paused_at")) for n, t in attempts.items()}
    assert attempts[1].intermediate_values == pytest.approx(
        {s: (GOOD[1] - 1) ** 2 * sum(1 / (k + 1) for k in range(s + 1)) for s in range(STEPS)}
    )
    # the rest of the rerun's trials were still paused when it ended: PRUNED at their last report
    for trial in trials:
        if trial.state.name == "PRUNED":
            last = max(trial.intermediate_values)
            assert trial.user_attrs["suspended"] is True and trial.user_attrs["paused_at"][-1] == last
            assert trial.value == trial.intermediate_values[last]
