"""A stand-in training program for a command-line objective (any language works the same way).

It takes its hyperparameters as arguments, "trains" for ``--epochs`` epochs on a synthetic loss curve,
and prints one ``daskopt: {...}`` line per epoch; daskopt reads them as they arrive, asks the study's
pruner, and stops the whole process group (SIGTERM, then SIGKILL) when the trial is pruned. Only the
standard library is used, so any ``python3`` runs it. See docs/command-protocol.md.

    python3 train.py --lr 0.01 --hidden 64 --dropout 0.1 --optimizer adam
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import time


def report(**message: float | int) -> None:
    """One protocol line; flushed at once so the pruner sees it while the program runs."""
    print("daskopt: " + json.dumps(message), flush=True)


def on_sigterm(signum: int, frame: object) -> None:
    """Pruned (or the study is stopping): this is where a real program would save a checkpoint."""
    print(f"received signal {signum}, stopping early", file=sys.stderr, flush=True)
    sys.exit(128 + signum)


def val_loss(epoch: int, args: argparse.Namespace, rng: random.Random) -> float:
    """A plausible learning curve: a floor set by the configuration, approached at a rate set by lr."""
    best_lr = 0.02 if args.optimizer == "sgd" else 0.003
    distance = math.log10(args.lr / best_lr) ** 2  # 0 at the best learning rate
    floor = 0.25 + 0.3 * distance + 0.4 * abs(args.dropout - 0.15) + 0.05 * abs(math.log2(args.hidden / 128))
    rate = 0.35 / (1.0 + distance)
    return floor + 2.0 * math.exp(-rate * (epoch + 1)) + rng.gauss(0.0, 0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--dropout", type=float, required=True)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--epoch-seconds", type=float, default=0.05)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)

    rng = random.Random(int(os.environ.get("DASKOPT_TRIAL_NUMBER", "0")))
    print(f"training with {vars(args)}")  # ordinary output: kept in the trial's stdout log, otherwise ignored
    loss = math.inf
    for epoch in range(args.epochs):
        time.sleep(args.epoch_seconds)  # the "work" of one epoch
        loss = val_loss(epoch, args, rng)
        report(step=epoch, val_loss=round(loss, 5), train_loss=round(loss * 0.9, 5))
    report(val_loss=round(loss, 5))  # the final result (without it, the last report would be used)


if __name__ == "__main__":
    main()
