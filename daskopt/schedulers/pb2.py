"""PB2 (Parker-Holder et al., "Provably Efficient Online Hyperparameter Optimization with Population-Based
Bandits", 2020): PBT whose explore step is chosen by a Gaussian-process bandit instead of random
perturbations, so a small population still explores well.

Every decision of a member records how fast its score improved over its last interval (per step, with the
hyperparameters it ran with). When a member exploits, its new numeric hyperparameters are the ones a GP
fitted to the most recent of these records suggests, inside their distributions: Optuna's own
``GPSampler`` (a maintained GP with log expected improvement, which needs torch and scipy) is asked once
on an in-memory study that holds the records. Only the newest ``window`` records are used, PB2's way of
following a reward that changes as training goes on; categorical hyperparameters are perturbed as PBT
does. Until two records exist, explore is PBT's.

The GP fit runs in the engine loop at each exploit: tens of milliseconds with a window of a few dozen
records, during which the loop answers no other trial.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from daskopt.schedulers.base import Decision, Report
from daskopt.schedulers.pbt import PBT, _clip

logger = logging.getLogger("daskopt")
EXTRA_HINT = "pip install 'daskopt[torch]' (PB2 uses Optuna's GPSampler, which needs torch and scipy)"


class PB2(PBT):
    """PBT with a GP-bandit explore step (see the module docstring). Arguments as :class:`PBT`'s, plus
    ``window``: the newest improvement records the GP is fitted to."""

    name = "pb2"

    def __init__(
        self,
        perturbation_interval: int,
        quantile_fraction: float = 0.25,
        hyperparameters: Sequence[str] | None = None,
        synchronous: bool = False,
        last_step: int | None = None,
        window: int = 64,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            perturbation_interval,
            quantile_fraction=quantile_fraction,
            resample_probability=0.0,
            hyperparameters=hyperparameters,
            synchronous=synchronous,
            last_step=last_step,
            seed=seed,
        )
        if not isinstance(window, int) or isinstance(window, bool) or window < 2:
            raise ValueError(f"daskopt.schedulers.PB2: window must be an int >= 2, got {window!r}")
        try:
            import scipy  # noqa: F401
            import torch  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"daskopt.schedulers.PB2 needs {exc.name}: {EXTRA_HINT}") from None
        self.window = window
        self.records: list[tuple[dict[str, Any], float]] = []  # (hyperparameters, improvement per step)

    def decide(self, report: Report) -> Decision:
        member = self.members.get(report.member)
        before = None if member is None else (member.progress, member.score, member.params)
        decision = super().decide(report)
        member = self.members[report.member]
        if before is not None and before[2] is not None and not math.isnan(before[1]):
            progress, score, params = before[0], before[1], dict(before[2])
            if member.progress > progress and math.isfinite(report.value) and math.isfinite(score):
                gain = (report.value - score) if self.maximize else (score - report.value)
                self.records.append((params, gain / (member.progress - progress)))
                del self.records[: -self.window]
        return decision

    def explore(self, params: dict[str, Any], distributions: Mapping[str, BaseDistribution]) -> dict[str, Any]:
        names = self.hyperparameters if self.hyperparameters is not None else tuple(params)
        numeric = {
            n: distributions[n] for n in names if isinstance(distributions.get(n), (FloatDistribution, IntDistribution))
        }
        usable = [(p, gain) for p, gain in self.records if all(n in p for n in numeric)]
        if len(usable) < 2 or not numeric:
            return super().explore(params, distributions)
        others = {n: distributions[n] for n in names if n not in numeric and n in distributions}
        explored = super().explore(dict(params), others) if others else dict(params)
        explored.update(self._suggest(numeric, usable))
        return {n: _clip(v, distributions[n]) if n in distributions else v for n, v in explored.items()}

    def _suggest(
        self, space: dict[str, BaseDistribution], records: list[tuple[dict[str, Any], float]]
    ) -> dict[str, Any]:
        """Ask a GP fitted to ``records`` (hyperparameters -> improvement) for the next hyperparameters."""
        sampler = optuna.samplers.GPSampler(seed=self.rng.randrange(2**31), n_startup_trials=0)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the inner study is ours, not the user's
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study = optuna.create_study(direction="maximize", sampler=sampler)
                study.add_trials(
                    optuna.trial.create_trial(
                        params={n: _clip(p[n], d) for n, d in space.items()}, distributions=space, value=gain
                    )
                    for p, gain in records
                )
                return dict(study.ask(space).params)
        finally:
            optuna.logging.set_verbosity(verbosity)
