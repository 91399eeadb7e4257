"""result_throughput: intermediate reports per second the loop absorbs, with pruning decisions, none lost.

Concurrent trials (2 workers × 2 threads) report as fast as they can, N steps each, in two shapes:

- ``prune``: ``report`` then ``should_prune()`` every step (each trial waits for every decision);
- ``report``: ``report`` only (fire-and-forget; the loop still decides once per received batch).

The study has a ``MedianPruner(n_startup_trials=1)`` and every trial reports the same curve, so once a
trial has completed each decision is computed in full (scanning the completed trials at that step) but
never prunes. Throughput = reports stored / wall time of the call (a trial is told, hence all its reports
absorbed, before the call returns). Afterwards the storage is counted: the sum of ``len(intermediate_values)``
must equal the reports sent. Baseline: optuna-distributed 0.7, fewer steps (each report is a queue put
through the scheduler). Ray Tune's documentation puts its own limit near 500 results/s.

Rows: daskopt on the direct channel, daskopt with ``channel="relay"`` (through the scheduler), the baseline.
Targets: ≥ 5,000 reports/s on 2 cores direct; ≥ 3,000/s relayed with a decision per report.
"""

from __future__ import annotations

import functools
from typing import Any

import optuna

from benchmarks.common import Settings, dask_cluster, interleaved, medians, ratio, run_daskopt, run_optuna_distributed
from benchmarks.objectives import report_loop

NAME = "result_throughput"
DESCRIPTION = "intermediate reports/s absorbed by the loop (with pruning decisions), none lost"
SHAPES = {"prune": True, "report": False}


def _study() -> optuna.Study:
    return optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )


def count(study: optuna.Study, n_trials: int, n_steps: int, wall_s: float) -> dict[str, Any]:
    """Reports stored vs sent, and the rate."""
    trials = study.get_trials(deepcopy=False)
    stored = sum(len(t.intermediate_values) for t in trials)
    sent = n_trials * n_steps
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    return {
        "reports_per_s": stored / wall_s,
        "stored": stored,
        "lost": sent - stored,
        "complete": complete,
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "wall_s": wall_s,
    }


def run(settings: Settings) -> dict[str, Any]:
    n_steps, n_trials, od_steps, od_trials = settings.pick(
        smoke=(100, 4, 20, 4), quick=(2000, 8, 200, 4), full=(2000, 16, 500, 8)
    )
    repeats = settings.reps()
    fields: dict[str, Any] = {}
    with dask_cluster(2, 2) as client:
        concurrent = sum(client.nthreads().values())
        run_daskopt(client, _study(), functools.partial(report_loop, n_steps=5, prune_each_step=True), n_trials=4)
        for shape, prune_each_step in SHAPES.items():
            print(
                f" shape={shape}: {concurrent} concurrent; daskopt {n_trials} trials × {n_steps} steps, "
                f"optuna-distributed {od_trials} × {od_steps}",
                flush=True,
            )
            ours_objective = functools.partial(report_loop, n_steps=n_steps, prune_each_step=prune_each_step)
            od_objective = functools.partial(report_loop, n_steps=od_steps, prune_each_step=prune_each_step)

            def ours(objective: Any = ours_objective, channel: str = "direct") -> dict[str, Any]:
                study = _study()
                wall = run_daskopt(client, study, objective, n_trials=n_trials, channel=channel)
                return count(study, n_trials, n_steps, wall)

            def relayed(objective: Any = ours_objective) -> dict[str, Any]:
                return ours(objective, "relay")

            def optuna_distributed(objective: Any = od_objective) -> dict[str, Any]:
                study = _study()
                return count(study, od_trials, od_steps, run_optuna_distributed(client, study, objective, od_trials))

            runs = interleaved(
                repeats, {"daskopt": ours, "daskopt (relay)": relayed, "optuna-distributed": optuna_distributed}
            )
            lost = sum(run["lost"] for name in ("daskopt", "daskopt (relay)") for run in runs[name])
            pruned = sum(run["pruned"] for run in runs["daskopt"])
            m = {name: medians(results) for name, results in runs.items()}
            fields.update(
                {
                    f"{shape}_reports_per_s": m["daskopt"]["reports_per_s"],
                    f"{shape}_relay_reports_per_s": m["daskopt (relay)"]["reports_per_s"],
                    f"{shape}_od_reports_per_s": m["optuna-distributed"]["reports_per_s"],
                    f"{shape}_vs_od": ratio(m["daskopt"]["reports_per_s"], m["optuna-distributed"]["reports_per_s"]),
                    f"{shape}_lost": lost,
                    f"{shape}_pruned": pruned,
                }
            )
    fields["target_5000_per_s"] = min(fields["prune_reports_per_s"], fields["report_reports_per_s"]) >= 5000
    fields["relay_target_3000_per_s"] = fields["prune_relay_reports_per_s"] >= 3000
    fields["no_report_lost"] = fields["prune_lost"] == 0 and fields["report_lost"] == 0
    fields["concurrent"] = concurrent
    fields["steps"] = n_steps
    fields["repeats"] = repeats
    return fields
