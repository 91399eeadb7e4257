"""Workers SIGKILLed at random moments during a 200-trial study, the nannies re-growing them.

The study must end with exactly ``n_trials`` outcomes, every killed trial FAIL with its reason (or retried
with the same parameters), and nothing left RUNNING.
"""

from __future__ import annotations

import os
import random
import signal
import threading

import optuna
import pytest

import daskopt
from tests import trial_objectives as objectives
from tests.conftest import states


class Killer(threading.Thread):
    """Kills a random worker process every ``period`` seconds, ``kills`` times."""

    def __init__(self, client, kills: int, period: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.client, self.kills, self.period = client, kills, period
        self.rng = random.Random(seed)
        self.killed: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while len(self.killed) < self.kills and not self.stop.wait(self.period * self.rng.uniform(0.5, 1.5)):
            try:
                pids = list(self.client.run(os.getpid, on_error="ignore").values())
            except Exception:
                continue  # a worker is restarting; try again next period
            pids = [p for p in pids if isinstance(p, int)]
            if pids:
                pid = self.rng.choice(pids)
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                except ProcessLookupError:
                    pass


@pytest.mark.slow
@pytest.mark.parametrize("max_retries", [0, 3], ids=["fail", "retry"])
def test_random_kills_leave_exact_outcomes_and_nothing_running(client, max_retries):
    client.wait_for_workers(2, timeout=60)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    killer = Killer(client, kills=4, period=0.8, seed=max_retries)
    killer.start()
    try:
        daskopt.optimize(
            study, objectives.sleeps_then_returns, n_trials=200, client=client, failures={"max_retries": max_retries}
        )
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed, "the killer never got to kill a worker"
    counts = states(study)
    assert "RUNNING" not in counts and "WAITING" not in counts
    retried = {t.user_attrs["retry_of"] for t in study.trials if "retry_of" in t.user_attrs}
    outcomes = [t for t in study.trials if t.number not in retried]
    assert len(outcomes) == 200
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert all(t.user_attrs["fail_reason"].startswith("trial lost") for t in failed)
    by_number = {t.number: t for t in study.trials}
    for trial in study.trials:  # a retry keeps every parameter the lost attempt had chosen (it may have
        if "retry_of" in trial.user_attrs:  # died before its define-by-run suggests reached the loop)
            assert by_number[trial.user_attrs["retry_of"]].params.items() <= trial.params.items()
    if max_retries:  # a lost trial is retried until its attempts run out
        assert all(t.number in retried or t.user_attrs.get("attempt") == max_retries for t in failed)
    else:
        assert not retried
    print(f"killed {len(killer.killed)} workers; states {counts}")
