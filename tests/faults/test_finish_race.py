"""A trial's FINISH must not be lost when its task closes the connection while the loop still answers it.

A task whose trial ran longer than ``chain_below_s`` closes its connection right after sending FINISH. If a
prune decision reached it after its last ``report`` (so it was never read), the close resets the
connection; when the busy loop then writes its next decision, asyncio's transport fails that write and
drops the connection before reading the FINISH waiting behind it: a completed trial is recorded as
"trial lost". A slow pruner makes the timing deterministic; a busy loop (a slow sampler, a W&B study run,
a loaded machine) does the same by chance (seen with ``daskopt run`` and W&B, whose first trial per worker
lasts about a second).
"""

from __future__ import annotations

import time

import optuna
from optuna.distributions import FloatDistribution

import daskopt
from tests.conftest import states


class SlowDecisions(optuna.pruners.BasePruner):
    """Never prunes; takes 0.1 s to decide step 0 and 0.3 s to decide step 1 (it runs on the loop)."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        time.sleep(0.1 if trial.last_step == 0 else 0.3)
        return False


def reports_then_returns(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    time.sleep(0.6)  # longer than chain_below_s: the task closes its connection after this trial
    trial.report(x, 0)  # answered 0.1 s later: after the next report, so that answer is never read
    time.sleep(0.05)
    trial.report(x, 1)  # read by the loop before FINISH is sent, and answered only 0.3 s later ...
    time.sleep(0.1)
    return x  # ... after FINISH was sent and the connection closed


def test_finish_sent_before_the_task_closes_is_recorded(client):
    study = optuna.create_study(pruner=SlowDecisions())
    daskopt.optimize(
        study,
        reports_then_returns,
        n_trials=3,
        client=client,
        n_concurrent=1,
        search_space={"x": FloatDistribution(0, 1)},
        show_progress_bar=False,
    )
    reasons = [t.user_attrs.get("fail_reason") for t in study.trials if t.state.name != "COMPLETE"]
    assert states(study) == {"COMPLETE": 3}, reasons
