"""hundred_k: 100,000 trials in one journal-stored study: flat per-trial cost, bounded driver memory, a quick
resume of the finished study, and a dashboard that keeps up.

A trivial objective (one declared float, returned as the value), random sampler, journal storage, a 2-worker
x 1-thread ``LocalCluster``. Measured in one run:

- per-trial wall time over the 1,000 trials ending at 1k, 10k, 50k and 100k (``--quick``: 20k in all) and
  its growth, last window over first; target: flat within +/-25%;
- driver RSS: peak growth over the call, sampled every 50 ms; target: under 2 GB;
- ``daskopt run`` on the finished study (a resume with nothing left to do), as a user runs it; target < 30 s;
- a dashboard update (the Bokeh page, as served) on the 100k-trial study: the first, then one after 10 new
  trials; target < 50 ms for the later ones;
- baseline, same run: plain Optuna ``study.optimize`` on a journal for the first 10,000 trials (``--quick``:
  5,000), the same objective and sampler: its per-trial cost at 1k and at the end;
- the garbage collector's full collections during each call (``scale.Recorder``): how many, the longest
  (every thread of the driver waits for it) and their sum. Plain Optuna's run in the same process after
  daskopt's, with the 100,000-trial study still in memory, shows what a full collection costs there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import FloatDistribution

from benchmarks.common import Settings, dask_cluster, ratio, run_daskopt
from benchmarks.scale import Recorder

NAME = "hundred_k"
DESCRIPTION = "100,000 trials in a journal: per-trial cost, driver RSS, resume time, dashboard update"
SPACE = {"x": FloatDistribution(0.0, 1.0)}
WINDOW = 1000


def trivial(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0.0, 1.0)


def journal(path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def _label(mark: int) -> str:
    return f"{mark // 1000}k" if mark >= 1000 else str(mark)


def _window_ms(wall: list[float], end: int) -> float:
    end = min(end, len(wall)) - 1
    start = max(0, end - WINDOW)
    return 1e3 * (wall[end] - wall[start]) / (end - start)


def _resume_s(folder: Path, n_trials: int) -> tuple[float, str]:
    """``daskopt run`` on the stored study: nothing left to do."""
    study_file = folder / "study.toml"
    study_file.write_text(
        textwrap.dedent(f"""\
        [study]
        name = "hundred-k"
        direction = "minimize"
        n_trials = {n_trials}
        [objective]
        callable = "bench_objective:trivial"
        [space.x]
        type = "float"
        low = 0.0
        high = 1.0
        [sampler]
        name = "random"
        [storage]
        url = "journal:{folder / "study.journal"}"
        [cluster]
        kind = "local"
        n_workers = 1
        """)
    )
    (folder / "bench_objective.py").write_text("def trivial(trial):\n    return trial.suggest_float('x', 0.0, 1.0)\n")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "daskopt.cli", "run", str(study_file)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"resume failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return took, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


def _dashboard_ms(study: optuna.Study) -> tuple[float, float]:
    """The served page's update on the whole study: the first (reads everything), then after 10 new trials."""
    from bokeh.document import Document

    from daskopt.dashboard.page import Page
    from daskopt.dashboard.snapshot import SnapshotBuilder

    page = Page(SnapshotBuilder(study))
    Document().add_root(page.root)
    started = time.perf_counter()
    page.update()
    first = time.perf_counter() - started
    for _ in range(10):
        trial = study.ask(fixed_distributions=SPACE)
        study.tell(trial, trial.params["x"])
    started = time.perf_counter()
    page.update()
    return 1e3 * first, 1e3 * (time.perf_counter() - started)


def run(settings: Settings) -> dict[str, Any]:
    n_trials = settings.pick(smoke=600, quick=20_000, full=100_000)
    n_baseline = settings.pick(smoke=600, quick=5000, full=10_000)
    marks = [m for m in (1000, 10_000, 50_000, 100_000) if m <= n_trials]
    if not marks or marks[-1] != n_trials:
        marks.append(n_trials)
    fields: dict[str, Any] = {"n_trials": n_trials}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with dask_cluster(2, 1) as client:
            study = optuna.create_study(
                study_name="hundred-k",
                storage=journal(folder / "study.journal"),
                sampler=optuna.samplers.RandomSampler(seed=0),
            )
            with Recorder() as recorder:
                run_daskopt(client, study, trivial, n_trials=n_trials, search_space=SPACE, callbacks=[recorder])
        assert len(recorder.wall) == n_trials, f"{len(recorder.wall)} of {n_trials} trials ended"
        fields["total_s"] = recorder.wall[-1] - recorder.t0
        fields["trials_per_s"] = n_trials / fields["total_s"]
        for mark in marks:
            fields[f"ms_per_trial_{_label(mark)}"] = _window_ms(recorder.wall, mark)
        fields["growth_last_vs_first"] = ratio(
            fields[f"ms_per_trial_{_label(marks[-1])}"], fields[f"ms_per_trial_{_label(marks[0])}"]
        )
        fields["driver_rss_mb"] = (recorder.rss_peak - recorder.rss_before) / 2**20
        fields.update(recorder.gc_fields())
        print(f"  daskopt: {fields['total_s']:.1f}s, {fields['driver_rss_mb']:.0f} MB driver RSS growth", flush=True)

        fields["resume_s"], last_line = _resume_s(folder, n_trials)
        print(f"  resume: {fields['resume_s']:.1f}s ({last_line})", flush=True)

        fields["dashboard_first_ms"], fields["dashboard_update_ms"] = _dashboard_ms(study)
        print(
            f"  dashboard: first update {fields['dashboard_first_ms']:.0f} ms, "
            f"then {fields['dashboard_update_ms']:.1f} ms",
            flush=True,
        )

        baseline = optuna.create_study(
            storage=journal(folder / "baseline.journal"), sampler=optuna.samplers.RandomSampler(seed=0)
        )
        with Recorder() as plain:
            baseline.optimize(trivial, n_trials=n_baseline, callbacks=[plain])
        first = min(1000, n_baseline)
        fields[f"optuna_ms_per_trial_{_label(first)}"] = _window_ms(plain.wall, first)
        fields[f"optuna_ms_per_trial_{_label(n_baseline)}"] = _window_ms(plain.wall, n_baseline)
        fields.update(plain.gc_fields("optuna_"))
        fields["optuna_growth"] = ratio(
            fields[f"optuna_ms_per_trial_{_label(n_baseline)}"], fields[f"optuna_ms_per_trial_{_label(first)}"]
        )
    return fields


if __name__ == "__main__":
    from benchmarks.common import quiet

    quiet()
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    print(run(Settings(mode=mode)))
