"""wandb_overhead: what offline W&B logging adds to the quickstart study's wall time.

``daskopt run examples/quickstart/study.toml`` as ``make demo`` runs it, on a fresh copy of the example
each time (no stored study), with ``WANDB_MODE=disabled`` (the baseline) and ``WANDB_MODE=offline``
(what the demo does), alternating. Wall time of the whole command, so W&B's start-up in each worker
process and the study run in the driver count.

Target: offline W&B adds at most 15% to the quickstart's wall time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Settings, medians

NAME = "wandb_overhead"
DESCRIPTION = "quickstart wall time with offline W&B vs without"


def _quickstart(mode: str, n_trials: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        shutil.copytree(
            ROOT / "examples" / "quickstart",
            Path(folder) / "quickstart",
            ignore=shutil.ignore_patterns("runs", "*.journal", "__pycache__"),
        )
        env = {**os.environ, "WANDB_MODE": mode}
        command = [sys.executable, "-m", "daskopt.cli", "run", "quickstart/study.toml", "--n-trials", str(n_trials)]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"quickstart with WANDB_MODE={mode} failed:\n{done.stderr[-2000:]}")
        runs = len(list(Path(folder).rglob("offline-run-*")))
        return {"wall_s": wall, "wandb_runs": runs}


def run(settings: Settings) -> dict[str, Any]:
    n_trials = settings.pick(smoke=6, quick=60, full=60)
    repeats = settings.reps()
    runs: dict[str, list[dict[str, Any]]] = {"disabled": [], "offline": []}
    for i in range(repeats):
        for mode in runs:
            runs[mode].append(_quickstart(mode, n_trials))
            print(f"  {mode} run {i + 1}/{repeats}: wall_s={runs[mode][-1]['wall_s']:.2f}", flush=True)
    m = {mode: medians(results) for mode, results in runs.items()}
    overhead = m["offline"]["wall_s"] / m["disabled"]["wall_s"] - 1
    return {
        "offline_wall_s": m["offline"]["wall_s"],
        "disabled_wall_s": m["disabled"]["wall_s"],
        "overhead_pct": 100 * overhead,
        "offline_runs": int(m["offline"]["wandb_runs"]),
        "target_15pct": overhead <= 0.15,
        "n_trials": n_trials,
        "repeats": repeats,
    }
