"""PBT's decisions, explore step, synchronous barrier and replay, on reports alone (no cluster)."""

from __future__ import annotations

import math
import statistics

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from daskopt.optuna_access import enqueued_params
from daskopt.schedulers import CONTINUE, PB2, PBT, SUSPEND, Exploit, Replay, Report

LR = {"lr": FloatDistribution(1e-3, 1.0, log=True)}


def _started(scheduler, n_trials=None, direction="minimize"):
    study = optuna.create_study(direction=direction, pruner=optuna.pruners.NopPruner())
    scheduler.start(study, [], n_concurrent=4, n_trials=n_trials)
    return scheduler


def _report(number, step, value, lr=0.1, checkpointed=True, member=-1):
    return Report(number, step, value, step if checkpointed else None, {"lr": lr}, LR, member)


def test_a_member_decides_once_per_interval_and_the_bottom_exploits_the_top():
    pbt = _started(PBT(perturbation_interval=5, seed=0))
    assert pbt.decide(_report(0, 3, 1.0)) == CONTINUE  # 4 steps done: not yet
    assert pbt.decide(_report(0, 4, 1.0)) == CONTINUE  # the only one ranked
    decision = pbt.decide(_report(1, 4, 5.0, lr=0.5))  # the worse of two copies the better
    assert isinstance(decision, Exploit)
    assert (decision.donor, decision.step) == (0, 4)
    assert decision.params["lr"] != 0.1 and 1e-3 <= decision.params["lr"] <= 1.0
    assert pbt.decide(_report(0, 9, 0.5)) == CONTINUE  # the best goes on
    assert pbt.decide(_report(2, 4, 0.1)) == CONTINUE  # a new best


def test_a_donor_without_a_checkpoint_is_never_copied():
    pbt = _started(PBT(perturbation_interval=1, seed=0))
    assert pbt.decide(_report(0, 0, 1.0, checkpointed=False)) == CONTINUE
    assert pbt.decide(_report(1, 0, 9.0)) == CONTINUE  # the only better member has nothing to copy


def test_maximize_ranks_the_other_way():
    pbt = _started(PBT(perturbation_interval=1, seed=0), direction="maximize")
    pbt.decide(_report(0, 0, 1.0))
    decision = pbt.decide(_report(1, 0, 9.0))
    assert decision == CONTINUE
    assert isinstance(pbt.decide(_report(0, 1, 0.5)), Exploit)


def test_no_decision_at_the_last_step():
    pbt = _started(PBT(perturbation_interval=1, last_step=3, seed=0))
    pbt.decide(_report(0, 2, 1.0))
    assert isinstance(pbt.decide(_report(1, 2, 9.0)), Exploit)
    pbt.decide(_report(0, 3, 1.0))
    assert pbt.decide(_report(2, 3, 9.0, member=1)) == CONTINUE


SPACES = {
    "float_log": FloatDistribution(1e-4, 1.0, log=True),
    "float_step": FloatDistribution(0.0, 1.0, step=0.1),
    "int": IntDistribution(1, 8),
    "int_step": IntDistribution(0, 30, step=3),
    "choice": CategoricalDistribution(["a", "b", "c"]),
}


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), resample=st.sampled_from([0.0, 0.5, 1.0]), data=st.data())
def test_explore_keeps_every_value_inside_its_distribution(seed, resample, data):
    pbt = PBT(perturbation_interval=1, resample_probability=resample, perturbation_factors=(3.0, 0.1), seed=seed)
    params = {name: data.draw(st.sampled_from(_grid(d))) for name, d in SPACES.items()}
    explored = pbt.explore(dict(params), SPACES)
    assert set(explored) == set(params)
    for name, value in explored.items():
        distribution = SPACES[name]
        assert (
            value in distribution.choices
            if isinstance(distribution, CategoricalDistribution)
            else _contains(distribution, value)
        )


def _grid(distribution):
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if distribution.step is not None:
        n = round((distribution.high - distribution.low) / distribution.step)
        return [distribution.low + k * distribution.step for k in range(n + 1)]
    return [distribution.low, distribution.high, (distribution.low + distribution.high) / 2]


def _contains(distribution, value):
    return distribution._contains(distribution.to_internal_repr(value))


def test_a_small_int_still_moves_and_a_choice_moves_to_a_neighbour():
    pbt = PBT(perturbation_interval=1, resample_probability=0.0, perturbation_factors=(1.2,), seed=0)
    assert pbt.explore({"n": 2}, {"n": IntDistribution(1, 8)}) == {"n": 3}
    moved = {pbt.explore({"c": "b"}, {"c": SPACES["choice"]})["c"] for _ in range(50)}
    assert moved == {"a", "c"}


def test_a_custom_explore_is_applied_and_kept_in_range():
    pbt = PBT(perturbation_interval=1, resample_probability=0.0, explore=lambda p: {**p, "lr": p["lr"] * 100}, seed=0)
    assert pbt.explore({"lr": 0.5}, LR) == {"lr": 1.0}


def test_synchronous_members_wait_for_the_population_then_the_bottom_exploits():
    pbt = _started(PBT(perturbation_interval=2, synchronous=True, seed=1), n_trials=4)
    for number, value in enumerate([1.0, 2.0, 3.0]):
        assert pbt.decide(_report(number, 1, value)) == SUSPEND
        pbt.suspended(number, 1)
    assert pbt.resume_next() is None  # one member has not reached the interval
    assert pbt.decide(_report(3, 1, 4.0)) == SUSPEND
    pbt.suspended(3, 1)
    queued = [pbt.resume_next() for _ in range(4)]
    assert queued[:3] == [0, 1, 2]
    assert isinstance(queued[3], Exploit) and queued[3].target == 3 and queued[3].donor == 0
    assert pbt.resume_next() is None


def test_synchronous_pbt_needs_the_population_size():
    with pytest.raises(ValueError, match="synchronous PBT needs n_trials"):
        _started(PBT(perturbation_interval=2, synchronous=True))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"perturbation_interval": 0}, "perturbation_interval"),
        ({"perturbation_interval": 1, "quantile_fraction": 0.7}, "quantile_fraction"),
        ({"perturbation_interval": 1, "resample_probability": 2}, "resample_probability"),
        ({"perturbation_interval": 1, "perturbation_factors": ()}, "perturbation_factors"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PBT(**kwargs)


def test_replay_changes_parameters_where_the_schedule_does():
    rows = [{"from_step": 0, "params": {"lr": 0.5}}, {"from_step": 3, "params": {"lr": 0.1}}]
    replay = _started(Replay(rows), n_trials=1)
    waiting = replay.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [enqueued_params(t) for t in waiting] == [{"lr": 0.5}]
    assert replay.decide(_report(0, 1, 1.0)) == CONTINUE
    assert replay.decide(_report(0, 2, 1.0)) == Exploit(donor=0, step=2, params={"lr": 0.1})
    assert replay.decide(_report(1, 5, 1.0)) == CONTINUE
    with pytest.raises(ValueError, match="from_step 0 first"):
        Replay([{"from_step": 2, "params": {}}])
    assert math.isfinite(rows[1]["from_step"])


def test_pb2_records_each_members_improvement_per_step_with_its_hyperparameters():
    pb2 = _started(PB2(perturbation_interval=2, seed=0))
    pb2.decide(_report(0, 1, 10.0, lr=0.1))
    pb2.decide(_report(0, 3, 6.0, lr=0.1))
    assert pb2.records == [({"lr": 0.1}, 2.0)]  # minimizing: 4 better over 2 steps


def test_pb2_explores_where_its_gp_saw_the_fastest_improvement():
    pb2 = _started(PB2(perturbation_interval=1, seed=0))
    assert pb2.explore({"lr": 0.5}, LR)["lr"] in (0.6, 0.4)  # no records yet: PBT's perturbation
    for lr in (0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0):  # improvement peaks at lr = 0.03
        pb2.records.append(({"lr": lr}, math.exp(-(math.log10(lr / 0.03) ** 2))))
    suggested = [pb2.explore({"lr": 1.0}, LR)["lr"] for _ in range(5)]
    assert all(1e-3 <= lr <= 1.0 for lr in suggested)
    assert statistics.median(abs(math.log10(lr / 0.03)) for lr in suggested) < 0.5  # near the peak, not at 1.0


def test_a_member_that_just_exploited_is_no_donor_until_it_checkpoints_again():
    pbt = _started(PBT(perturbation_interval=5, resample_probability=0.0, seed=0), n_trials=4)
    for number, value in [(2, 3.0), (1, 2.0), (0, 1.0)]:
        assert pbt.decide(_report(number, 4, value, member=number)) == CONTINUE
    assert pbt.decide(_report(3, 4, 4.0, member=3)).donor == 0  # the worst copies the best ...
    assert pbt.decide(_report(0, 9, 1.5, member=0)) == CONTINUE
    decision = pbt.decide(_report(2, 9, 3.5, member=2))
    # ... and is top-ranked on the donor's score, but its own (losing) checkpoint is never copied
    assert decision == CONTINUE or decision.donor != 3
