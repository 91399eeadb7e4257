"""The torch_digits study from Python: TPE + ASHA over epochs, on CPU worker processes or on GPUs.

python examples/torch_digits/run.py                      # CPU: 2 worker processes, 40 trials
python examples/torch_digits/run.py --gpu --trials-per-gpu 4 --n-trials 200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna
from dask.distributed import Client, LocalCluster

import daskopt

sys.path.insert(0, str(Path(__file__).parent))
from digits_cnn import objective  # noqa: E402


def gpu_cluster(trials_per_gpu: int) -> LocalCluster:
    """``trials_per_gpu`` single-thread worker processes pinned to each GPU, each offering ``GPU_SLOT=1``."""
    from daskopt.gpu.cluster import PinnedGPUCluster, local_devices

    return PinnedGPUCluster(local_devices(), trials_per_gpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=40)
    parser.add_argument("--gpu", action="store_true", help="run on this machine's GPUs")
    parser.add_argument("--trials-per-gpu", type=int, default=4)
    parser.add_argument("--gpu-memory-fraction", type=float, default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="torch_digits",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=8),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )
    if args.gpu:
        cluster = gpu_cluster(args.trials_per_gpu)
        gpu_options = {"resources": daskopt.Resources(gpus_per_trial=1, gpu_memory_fraction=args.gpu_memory_fraction)}
    else:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True)
        gpu_options = {}
    with cluster, Client(cluster) as client:
        print(f"Dask dashboard: {client.dashboard_link}")
        daskopt.optimize(study, objective, n_trials=args.n_trials, client=client, **gpu_options)
    counts = {s.name: n for s in optuna.trial.TrialState if (n := sum(t.state == s for t in study.trials))}
    print(f"trials by state: {counts}")
    print(f"best validation accuracy {study.best_value:.4f} with {study.best_params}")


if __name__ == "__main__":
    main()
