"""Load: many trials, many trials at once, many reports. Correctness under load, never speed.

- 10,000 trivial trials end with exactly 10,000 outcomes, and the driver's memory stays bounded.
- 64 concurrent trials on 2 cores (2 workers x 32 threads) all end, with every report kept.
- 8 trials each reporting 5,000 steps as fast as they can, with a pruner deciding each batch: every report
  is stored exactly once, at its step, with its value.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import optuna
import psutil
import pytest
from distributed import Client
from optuna.distributions import FloatDistribution

import daskopt
from tests.conftest import local_client, states

SPACE = {"x": FloatDistribution(0, 1)}
MiB = 2**20


@pytest.fixture(scope="module")
def wide_client() -> Iterator[Client]:
    """Two worker processes (the CI machine's two cores), 32 threads each."""
    with local_client(2, 32) as client:
        yield client


def trivial(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0, 1)


def sleeps_and_reports(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    for step in range(5):
        time.sleep(0.01)
        trial.report(x + step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x


STEPS = 5_000
PRUNE_EVERY = 10  # reports are fire-and-forget; a check waits for the decision on the latest step


def reports_fast(trial: optuna.Trial) -> float:
    """``STEPS`` reports, a prune check every ``PRUNE_EVERY``; each value says which trial and step it is."""
    trial.suggest_float("x", 0, 1)
    for step in range(STEPS):
        trial.report(trial.number * STEPS + step, step)
        if (step % PRUNE_EVERY == 0 or step == STEPS - 1) and trial.should_prune():  # the last: no decision unread
            raise optuna.TrialPruned()
    return float(trial.number)


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.slow
def test_ten_thousand_trials_exact_counts_and_bounded_driver_memory(wide_client):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    daskopt.optimize(study, trivial, n_trials=50, client=wide_client, search_space=SPACE, show_progress_bar=False)
    before = _rss()  # after a warm-up call: imports, the objective cache and thread pools are in place
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    daskopt.optimize(
        study,
        trivial,
        n_trials=10_000,
        client=wide_client,
        n_concurrent=4,
        search_space=SPACE,
        show_progress_bar=False,
    )
    grown = _rss() - before
    assert states(study) == {"COMPLETE": 10_000}, {
        t.user_attrs.get("fail_reason") for t in study.trials if t.state.name != "COMPLETE"
    }
    assert [t.number for t in study.trials] == list(range(10_000))
    assert all(t.value == t.params["x"] for t in study.trials)
    assert grown < 500 * MiB, f"the driver grew by {grown / MiB:.0f} MiB for 10,000 trials"


def test_sixty_four_concurrent_trials_on_two_cores(wide_client):
    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.MedianPruner(n_startup_trials=16)
    )
    daskopt.optimize(
        study,
        sleeps_and_reports,
        n_trials=640,
        client=wide_client,
        n_concurrent=64,
        search_space=SPACE,
        show_progress_bar=False,
    )
    counts = states(study)
    reasons = {t.user_attrs["fail_reason"] for t in study.trials if t.state.name == "FAIL"}
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 640, (counts, reasons)
    assert len(study.trials) == 640
    for trial in study.trials:
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(len(steps))), trial.number  # contiguous from 0
        assert len(steps) == 5 if trial.state.name == "COMPLETE" else 1 <= len(steps) <= 5
        assert all(trial.intermediate_values[s] == trial.params["x"] + s for s in steps)
    # trials really overlapped: more at once than the machine has cores (a loose bound, not a speed claim)
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    peak = max(sum(start <= s < end for s, _ in spans) for start, end in spans)
    assert peak > 8, f"at most {peak} trials ran at once"


@pytest.mark.slow
def test_sustained_reporting_stores_every_report_exactly_once(wide_client):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(lower=-1.0))  # decides, never prunes
    daskopt.optimize(
        study, reports_fast, n_trials=8, client=wide_client, n_concurrent=8, search_space=SPACE, show_progress_bar=False
    )
    assert states(study) == {"COMPLETE": 8}
    assert sum(len(t.intermediate_values) for t in study.trials) == 8 * STEPS
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == list(range(STEPS))
        expected = {step: float(trial.number * STEPS + step) for step in range(STEPS)}
        assert trial.intermediate_values == expected
        assert trial.value == float(trial.number)


def long_steps(trial: optuna.Trial) -> float:
    """The concurrency benchmark's shape, shorter: steps of GIL-free waiting, each reported and checked."""
    x = trial.suggest_float("x", 0, 1)
    for step in range(4):
        time.sleep(0.25)
        trial.report(float(step), step)  # the same curve everywhere: a real pruner decides, none is pruned
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x


@pytest.mark.slow
def test_three_hundred_trials_at_once_all_run_and_nothing_is_lost():
    """300 trials at once on 2 cores (3 worker processes x 100 threads), each slot running two in a row:
    exact outcomes, every report stored, and every trial really held a slot while 299 others did."""
    with local_client(3, 100) as client:
        study = optuna.create_study(
            sampler=optuna.samplers.RandomSampler(seed=0),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0),
        )
        daskopt.optimize(
            study,
            long_steps,
            n_trials=600,
            client=client,
            n_concurrent=300,
            search_space=SPACE,
            show_progress_bar=False,
        )
    reasons = {t.user_attrs.get("fail_reason") for t in study.trials if t.state.name != "COMPLETE"}
    assert states(study) == {"COMPLETE": 600}, reasons
    assert [t.number for t in study.trials] == list(range(600))
    assert all(t.intermediate_values == {s: float(s) for s in range(4)} for t in study.trials)
    assert all(t.value == t.params["x"] for t in study.trials)
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    peak = max(sum(start <= s < end for s, _ in spans) for start, end in spans[:50])
    assert peak > 100, f"at most {peak} trials ran at once"
