"""The pbt_digits study from Python: PBT over learning rate, momentum and weight decay, then a replay of
the winner's schedule.

python examples/pbt_digits/run.py                 # 2 worker processes, a population of 8
python examples/pbt_digits/run.py --population 4 --no-replay
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import optuna
from dask.distributed import Client, LocalCluster

import daskopt
from daskopt.schedulers import PBT, Replay, schedule

sys.path.insert(0, str(Path(__file__).parent))
from pbt_digits import EPOCHS, objective  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--no-replay", action="store_true", help="skip replaying the winner's schedule")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="pbt_digits",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),  # the initial population
        pruner=optuna.pruners.NopPruner(),  # the scheduler decides alone
    )
    pbt = PBT(perturbation_interval=2, synchronous=True, last_step=EPOCHS - 1, seed=0)
    with (
        tempfile.TemporaryDirectory() as checkpoints,  # a folder every worker reaches
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        tracking = daskopt.Tracking(checkpoint_dir=checkpoints)
        daskopt.optimize(study, objective, n_trials=args.population, client=client, scheduler=pbt, tracking=tracking)
        counts = {s.name: n for s in optuna.trial.TrialState if (n := sum(t.state == s for t in study.trials))}
        print(f"trials by state: {counts} (a PRUNED trial is a stretch its member went on from)")
        best = study.best_trial
        rows = schedule(study, best.number)
        print(f"best validation accuracy {best.value:.4f}, member {best.user_attrs.get('member', best.number)}")
        print("its schedule:\n" + "\n".join(f"  {json.dumps(row)}" for row in rows))
        if not args.no_replay:  # the schedule alone, run again as one trial: the same accuracy
            replay = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
            tracking = daskopt.Tracking(checkpoint_dir=Path(checkpoints) / "replay")
            daskopt.optimize(replay, objective, n_trials=1, client=client, scheduler=Replay(rows), tracking=tracking)
            print(f"replayed: validation accuracy {replay.best_value:.4f}")


if __name__ == "__main__":
    main()
