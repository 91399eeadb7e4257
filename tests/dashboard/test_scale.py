"""A 10,000-trial study: the first update reads everything once, later ones only what changed.

Times are measured and printed (``pytest -s``) for the record; they are not asserted, as CI machines vary.
"""

from __future__ import annotations

import random
import time

import optuna
from bokeh.document import Document
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from daskopt.dashboard.page import Page
from daskopt.dashboard.snapshot import SnapshotBuilder

DISTRIBUTIONS = {
    "x": FloatDistribution(-5, 5),
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "c": CategoricalDistribution(["a", "b", "c"]),
}


def synthetic_trials(n: int, rng: random.Random) -> list[optuna.trial.FrozenTrial]:
    trials = []
    for _ in range(n):
        params = {"x": rng.uniform(-5, 5), "lr": 10 ** rng.uniform(-4, -1), "c": rng.choice("abc")}
        value = params["x"] ** 2 + rng.random()
        pruned = rng.random() < 0.3
        steps = {s: value + 10 - s for s in range(4 if pruned else 10)}
        state = TrialState.PRUNED if pruned else TrialState.COMPLETE
        trials.append(
            create_trial(
                state=state,
                value=None if pruned else value,
                params=params,
                distributions=DISTRIBUTIONS,
                intermediate_values=steps,
            )
        )
    return trials


def test_ten_thousand_trials_update_incrementally():
    rng = random.Random(0)
    study = optuna.create_study(study_name="big")
    study.add_trials(synthetic_trials(10_000, rng))
    page = Page(SnapshotBuilder(study))
    Document().add_root(page.root)
    started = time.perf_counter()
    page.update()
    first = time.perf_counter() - started
    assert len(page.table.source.data["number"]) == 1000  # the table keeps the latest 1,000 rows
    assert len(page.curves.source.data["number"]) == 1000
    idle = _timed(page.update)
    study.add_trials(synthetic_trials(10, rng))
    ten_new = _timed(page.update)
    assert page.table.source.data["number"][-1] == 10_009
    print(
        f"\n10,000-trial study: first update {first * 1000:.0f} ms, "
        f"idle update {idle * 1000:.2f} ms, update with 10 new trials {ten_new * 1000:.2f} ms"
    )


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
