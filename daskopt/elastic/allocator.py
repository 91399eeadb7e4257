"""Which trial gets how many replicas: the elastic allocator, run in the engine loop (the one decider).

Each elastic trial has a goodput model (:mod:`daskopt.elastic.goodput`) and limits ``min_replicas ..
max_replicas``; the cluster has ``slots`` replica slots (``GPU_SLOT`` units). The allocator hands slots
out greedily by marginal speedup: every running trial keeps at least its minimum, then each waiting trial
gets its minimum in order of arrival while slots last (one that cannot waits), then each further slot goes to
the trial whose speedup grows most by one more replica, relative to what it has (``speedup(g + 1) /
speedup(g)``, so a trial that scales well gains slots and one that does not releases them). This
maximises the sum of speedups one slot at a time, the objective Pollux's fitness reduces to with
fairness exponent 1; it is exact when speedups are concave in the replicas, as measured ones are.

A change of a running trial's replicas is a checkpoint and a restart, which costs ``restart_s`` of its
time, so a proposal is applied only where the trial's gain over the time it has left pays for it:
``(new_speedup / old_speedup - 1) × remaining_s > restart_s`` (and never more often than once per
``min_interval_s``); otherwise the trial keeps what it has, and the slots it would have taken stay with
the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from daskopt.elastic.goodput import Goodput

HOLD_BONUS = 1.2


@dataclass
class ElasticTrial:
    """What the allocator knows of one trial."""

    number: int
    goodput: Goodput
    min_replicas: int = 1
    max_replicas: int = 1
    replicas: int = 0  # what it runs with now (0: waiting)
    remaining_s: float | None = None  # its estimated time left at its current speed (None: unknown, long)
    changed_at: float = -float("inf")  # when its allocation last changed (time.monotonic())


def reach(trial: ElasticTrial) -> int:
    """The most replicas ``trial`` may get now: at most twice the largest size it has measured (its minimum
    before it measured any), so its model is never trusted far beyond what it has seen (Pollux's rule)."""
    seen = max((g for g, _, _ in trial.goodput.steps.observations), default=0)
    return max(trial.min_replicas, min(trial.max_replicas, 2 * seen))


def allocate(trials: Mapping[int, ElasticTrial], slots: int, fixed: Mapping[int, int] | None = None) -> dict[int, int]:
    """The replicas each trial should have (0: waits), ignoring restart costs (see :func:`plan`); ``fixed``
    trials keep the replicas given there. A slot a trial holds counts its gain ``HOLD_BONUS`` times: it
    moves to another trial only for a clearly larger gain, since a move is two restarts (and at equal
    gains trials would trade slots back and forth)."""
    fixed = fixed or {}
    given: dict[int, int] = {}
    free = slots - sum(fixed.values())
    # running trials keep at least their minimum (no preemption), then waiting ones in order of arrival
    for number in sorted(trials, key=lambda n: (trials[n].replicas == 0, n)):
        if number in fixed:
            continue
        trial = trials[number]
        if trial.min_replicas <= free:
            given[number] = trial.min_replicas
            free -= trial.min_replicas
        else:
            given[number] = 0
    while free > 0:
        best, key = None, (1.0 + 1e-9, False)
        for number, g in given.items():
            trial = trials[number]
            if g == 0 or g >= reach(trial):
                continue
            ratio = trial.goodput.speedup(g + 1) / trial.goodput.speedup(g)
            holds = trial.replicas > g
            candidate = (ratio * HOLD_BONUS if holds and ratio > 1 else ratio, holds)
            if candidate[0] > key[0] + 1e-9 or (abs(candidate[0] - key[0]) <= 1e-9 and candidate[1] > key[1]):
                best, key = number, candidate
        if best is None:
            break
        given[best] += 1
        free -= 1
    return {**given, **fixed}


def plan(
    trials: Mapping[int, ElasticTrial], slots: int, restart_s: float, now: float, min_interval_s: float = 0.0
) -> dict[int, int]:
    """The changes worth making now: ``{trial: new replicas}`` for running trials whose gain pays for a
    restart, and for waiting trials that can start; every other trial keeps its replicas.

    A running trial that may not change yet (``min_interval_s``) or whose proposed grow does not pay is
    held at its size and the rest allocated again, so the slots it would have taken go to the next
    trial that gains from them."""
    fixed: dict[int, int] = {}
    while True:
        target = allocate(trials, slots, fixed)
        held = {
            number: trial.replicas
            for number, trial in trials.items()
            if number not in fixed
            and trial.replicas > 0
            and target[number] != trial.replicas
            and (
                now - trial.changed_at < min_interval_s
                or (target[number] > trial.replicas and not _pays(trial, target[number], restart_s))
            )
        }
        if not held:
            break
        fixed.update(held)
    changes: dict[int, int] = {}
    used = sum(t.replicas for t in trials.values())
    for number, trial in sorted(trials.items(), key=lambda item: _gain(item[1], target[item[0]]), reverse=True):
        new = target[number]
        if new == trial.replicas:
            continue
        if used - trial.replicas + new > slots:
            continue  # the slots it would take are not free yet (a shrink elsewhere must land first)
        changes[number] = new
        used += new - trial.replicas
    return changes


def _gain(trial: ElasticTrial, new: int) -> float:
    if trial.replicas == 0 or new == 0:
        return 0.0
    return trial.goodput.speedup(new) / trial.goodput.speedup(trial.replicas)


def _pays(trial: ElasticTrial, new: int, restart_s: float) -> bool:
    """Whether growing ``trial`` to ``new`` replicas saves more of its remaining time than a restart costs."""
    if trial.remaining_s is None:
        return True
    ratio = trial.goodput.speedup(new) / trial.goodput.speedup(trial.replicas)
    saved = trial.remaining_s * (1 - 1 / ratio)
    return saved > restart_s
