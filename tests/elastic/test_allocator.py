"""The goodput model and the elastic allocator, on known step-time models and noise scales (no cluster)."""

from __future__ import annotations

import math

import pytest

from daskopt.elastic.allocator import ElasticTrial, allocate, plan
from daskopt.elastic.goodput import Goodput, GradientNoiseScale, StepTimeModel, efficiency


def _model(alpha, beta, alpha_sync=0.0, beta_sync=0.0):
    model = StepTimeModel()
    for g in (1, 2, 4):
        for m in (16, 32, 64):
            sync = alpha_sync + beta_sync * (g - 2) if g > 1 else 0.0
            model.observe(g, m, alpha + beta * m + sync)
    return model


def test_the_step_time_model_recovers_its_coefficients():
    model = _model(0.01, 0.001, 0.02, 0.005)
    assert (model.alpha, model.beta, model.alpha_sync, model.beta_sync) == pytest.approx((0.01, 0.001, 0.02, 0.005))
    assert model.seconds(8, 32) == pytest.approx(0.01 + 0.032 + 0.02 + 0.03)


def test_before_several_replicas_were_seen_synchronisation_is_free():
    model = StepTimeModel()
    model.observe(1, 32, 0.05)
    model.observe(1, 64, 0.09)
    assert model.seconds(4, 32) == pytest.approx(model.seconds(1, 32))


def test_the_noise_scale_is_recovered_from_two_batch_sizes():
    grad_sq, trace = 4.0, 800.0  # phi = 200 examples
    noise = GradientNoiseScale()
    for _ in range(20):
        noise.observe(16, grad_sq + trace / 16, 128, grad_sq + trace / 128)
    assert noise.value == pytest.approx(200.0)


def test_efficiency_falls_with_the_batch_faster_when_gradients_are_less_noisy():
    assert efficiency(None, 512, 64) == 1.0
    assert efficiency(1000.0, 512, 64) > efficiency(10.0, 512, 64)
    assert efficiency(10.0, 64, 64) == 1.0


def _goodput(phi, alpha_sync=0.0, beta_sync=0.0):
    goodput = Goodput(initial_batch=64, max_per_replica_batch=256, steps=_model(0.005, 0.0005, alpha_sync, beta_sync))
    if phi is not None:
        for _ in range(5):
            goodput.noise.observe(16, 1.0 + phi / 16, 128, 1.0 + phi / 128)
    return goodput


def test_the_batch_grows_with_the_replicas_only_where_the_noise_scale_allows():
    noisy, clean = _goodput(phi=5000.0), _goodput(phi=10.0)
    assert noisy.best(4)[1] > noisy.best(1)[1]
    assert clean.best(4)[1] <= clean.best(1)[1] * 4
    assert noisy.speedup(4) > clean.speedup(4) > 0


def test_slots_go_where_they_speed_a_trial_up_most():
    scales = ElasticTrial(0, _goodput(phi=5000.0), min_replicas=1, max_replicas=8, replicas=1)
    stalls = ElasticTrial(1, _goodput(phi=5000.0, alpha_sync=0.5), min_replicas=1, max_replicas=8, replicas=1)
    given = allocate({0: scales, 1: stalls}, slots=6)
    assert given[0] > given[1] >= 1 and sum(given.values()) <= 6


def test_minimums_maximums_and_no_preemption():
    running = ElasticTrial(5, _goodput(phi=5000.0), min_replicas=2, max_replicas=3, replicas=2)
    waiting = ElasticTrial(1, _goodput(phi=5000.0), min_replicas=4, max_replicas=4)  # older, but cannot fit
    given = allocate({5: running, 1: waiting}, slots=5)
    assert given == {5: 3, 1: 0}


def test_a_resize_must_pay_for_its_restart():
    trial = ElasticTrial(0, _goodput(phi=5000.0), min_replicas=1, max_replicas=4, replicas=1, remaining_s=1.0)
    assert plan({0: trial}, slots=4, restart_s=30.0, now=0.0) == {}  # a second left: no restart pays
    trial.remaining_s = 3600.0
    assert plan({0: trial}, slots=4, restart_s=30.0, now=0.0) == {0: 4}
    trial.changed_at = -5.0
    assert plan({0: trial}, slots=4, restart_s=30.0, now=0.0, min_interval_s=60.0) == {}


def test_a_waiting_trial_starts_when_its_minimum_is_free():
    running = ElasticTrial(0, _goodput(phi=10.0, alpha_sync=1.0), min_replicas=1, max_replicas=1, replicas=1)
    waiting = ElasticTrial(1, _goodput(phi=5000.0), min_replicas=2, max_replicas=4)
    assert plan({0: running, 1: waiting}, slots=4, restart_s=30.0, now=0.0) == {1: 3}
    assert math.isfinite(waiting.goodput.speedup(3))


def test_a_trial_is_given_at_most_twice_the_replicas_it_has_measured():
    trial = ElasticTrial(0, Goodput(initial_batch=64, max_per_replica_batch=64), min_replicas=1, max_replicas=8)
    assert allocate({0: trial}, slots=8) == {0: 1}  # nothing measured: its minimum
    trial.goodput.steps.observe(1, 64, 0.1)
    assert allocate({0: trial}, slots=8) == {0: 2}
    trial.goodput.steps.observe(2, 32, 0.05)
    assert allocate({0: trial}, slots=8) == {0: 4}


def test_after_one_multi_replica_size_synchronisation_is_assumed_to_grow_with_each_replica():
    model = StepTimeModel()
    model.observe(1, 64, 1.0)
    model.observe(2, 32, 0.9)  # two replicas barely help: 0.4 s of the step is synchronisation
    assert model.seconds(3, 64 / 3) > model.seconds(2, 32)  # so a third replica is not expected to help


def test_equal_trials_do_not_trade_slots():
    goodput = _goodput(phi=5000.0)
    holder = ElasticTrial(0, goodput, min_replicas=1, max_replicas=8, replicas=1)
    grown = ElasticTrial(1, goodput, min_replicas=1, max_replicas=8, replicas=2)
    assert plan({0: holder, 1: grown}, slots=3, restart_s=0.0, now=0.0) == {}


def test_a_grow_that_does_not_pay_leaves_the_slot_to_one_that_does():
    goodput = _goodput(phi=5000.0)
    ending = ElasticTrial(0, goodput, min_replicas=1, max_replicas=8, replicas=1, remaining_s=1.0)
    long = ElasticTrial(1, goodput, min_replicas=1, max_replicas=8, replicas=1, remaining_s=3600.0)
    assert plan({0: ending, 1: long}, slots=3, restart_s=30.0, now=0.0) == {1: 2}
