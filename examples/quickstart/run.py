"""Quickstart from Python: 60 trials of the digits classifier on a local 2-process Dask cluster.

python examples/quickstart/run.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
from dask.distributed import Client, LocalCluster

import daskopt

sys.path.insert(0, str(Path(__file__).parent))
from digits import objective  # noqa: E402


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="quickstart",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3),
    )
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
        print(f"Dask dashboard: {client.dashboard_link}")
        daskopt.optimize(study, objective, n_trials=60, client=client)
    counts = {s.name: n for s in optuna.trial.TrialState if (n := sum(t.state == s for t in study.trials))}
    print(f"trials by state: {counts}")
    print(f"best validation accuracy {study.best_value:.4f} with {study.best_params}")


if __name__ == "__main__":
    main()
