"""GPU packing: trials per hour and GPU utilization with k = 1, 2, 4, 8 trials per GPU (the digits CNN).

On one GPU (the first one visible), for each k: a ``local-cuda`` cluster with ``trials_per_gpu = k``,
the CNN of ``examples/torch_digits`` at a fixed number of epochs (no pruning, the same random
configurations for every k), trials per hour and the mean GPU utilization sampled with NVML every
0.2 s. Last line::

    RESULT gpu_packing k=<best k> speedup_vs_k1=<x> util_k1=<%> util_best=<%> layout=<processes|threads> ...

Without a CUDA GPU (or without torch / dask-cuda) it says so and exits 0.

``--cpu`` instead measures, on the CPU, what decides between k *threads* in one worker process and k
worker *processes* per GPU: the throughput of k concurrent training loops of the same CNN as threads of
one process vs as processes (``torch.set_num_threads(1)`` each), for the example's size and for a tiny
size whose steps are nearly all Python and dispatch overhead, as the CPU side of a small model on a GPU
is; then the same end to end, the example's trials through daskopt on CPU clusters shaped like the two
layouts. Rates are the best of interleaved rounds (load from elsewhere only lowers a rate). Last line
``RESULT gpu_packing_cpu ...``.

    python -m benchmarks.gpu_packing [--quick] [--epochs 10] [--trials 32] [--ks 1,2,4,8] [--layout processes]
    python -m benchmarks.gpu_packing --cpu [--seconds 3] [--rounds 5] [--rounds-e2e 2] [--cpu-ks 1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import multiprocessing
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "torch_digits"


def _digits() -> Any:
    """The example's module (``digits_cnn``), shipped to workers by value."""
    import cloudpickle

    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    import digits_cnn

    cloudpickle.register_pickle_by_value(digits_cnn)
    return digits_cnn


# ------------------------------------------------------------------------------------------- GPU mode
def gpu_missing() -> str | None:
    """Why the GPU benchmark cannot run here, or ``None``."""
    for module, extra in (("torch", "torch"), ("dask_cuda", "cuda")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'daskopt[{extra}]')"
    import torch

    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    return None


class UtilizationSampler:
    """Samples one GPU's utilization (%) with NVML on a thread; ``mean`` over the samples taken."""

    def __init__(self, device_index: int, interval: float = 0.2) -> None:
        self.samples: list[float] = []
        self._index = device_index
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)

    def __enter__(self) -> UtilizationSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            import pynvml
        except ImportError:
            return
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(self._index)
            while not self._stop.wait(self._interval):
                self.samples.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        finally:
            pynvml.nvmlShutdown()

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples) if self.samples else float("nan")


def fixed_epochs(trial: Any, epochs: int) -> float:
    digits = _digits()
    return float(digits.train(digits.suggest(trial), epochs, seed=trial.number))


def timed_study(client: Any, k: int, epochs: int, n_trials: int, during: Any = None) -> tuple[float, int]:
    """Warm every slot up (imports, CUDA contexts), then time ``n_trials`` trials inside ``during``:
    (wall seconds, trials completed)."""
    import optuna

    import daskopt

    options: dict[str, Any] = {"client": client, "show_progress_bar": False, "resources": {"gpus_per_trial": 1}}
    warm = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    daskopt.optimize(warm, functools.partial(fixed_epochs, epochs=1), n_trials=k, **options)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    with during or contextlib.nullcontext():
        started = time.perf_counter()
        daskopt.optimize(study, functools.partial(fixed_epochs, epochs=epochs), n_trials=n_trials, **options)
        wall = time.perf_counter() - started
    return wall, sum(t.state.name == "COMPLETE" for t in study.trials)


def run_packing(k: int, layout: str, epochs: int, n_trials: int) -> dict[str, float]:
    from daskopt.cluster import open_client
    from daskopt.spec.cluster import ClusterSection

    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    spec = ClusterSection.model_validate(
        {"kind": "local-cuda", "n_workers": 1, "trials_per_gpu": k, **({"packing": layout} if k > 1 else {})}
    )
    sampler = UtilizationSampler(int(first) if first.isdigit() else 0)
    with open_client(spec) as client:
        wall, done = timed_study(client, k, epochs, n_trials, during=sampler)
    return {"trials_per_h": done / wall * 3600, "util": sampler.mean, "wall_s": wall, "complete": done}


def gpu_main(args: argparse.Namespace) -> None:
    reason = gpu_missing()
    if reason:
        print(f"gpu_packing: no CUDA GPU to measure on ({reason}); nothing measured")
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ks = [1, 2] if args.quick else [int(k) for k in args.ks.split(",")]
    epochs, n_trials = (2, 4) if args.quick else (args.epochs, args.trials)
    results: dict[int, dict[str, float]] = {}
    for k in ks:
        results[k] = run_packing(k, args.layout, epochs, n_trials)
        r = results[k]
        print(
            f"k={k} layout={args.layout}: {r['trials_per_h']:.0f} trials/h, GPU util {r['util']:.0f}%, "
            f"{r['complete']:.0f} trials in {r['wall_s']:.1f}s",
            flush=True,
        )
    best = max(results, key=lambda k: results[k]["trials_per_h"])
    base = results[min(results)]
    print(
        f"RESULT gpu_packing k={best} speedup_vs_k1={results[best]['trials_per_h'] / base['trials_per_h']:.2f} "
        f"util_k1={base['util']:.1f} util_best={results[best]['util']:.1f} layout={args.layout} "
        f"trials_per_h_best={results[best]['trials_per_h']:.0f} epochs={epochs}"
    )


# ------------------------------------------------------------------------------------------- CPU mode
SIZES = {"example": (16, 64), "overhead": (2, 4)}  # (width, batch): the example's size; nearly no compute


def _steps(seconds: float, width: int, batch: int, ready: Any, start: Any, out: Any) -> None:
    """Say ``ready``, train for ``seconds`` once ``start`` is set, put (optimizer steps, CPU seconds) in ``out``."""
    import torch

    digits = _digits()
    torch.set_num_threads(1)
    x, _, y, _ = (torch.from_numpy(a) for a in digits._arrays())
    model = digits.build_model(width, 0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    loss_fn(model(x[:batch]), y[:batch]).backward()  # first-call costs before the clock
    ready.put(True)
    start.wait()
    steps, i = 0, 0
    cpu = time.thread_time()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        index = slice(i, i + batch)
        i = (i + batch) % (len(x) - batch)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x[index]), y[index]).backward()
        optimizer.step()
        steps += 1
    out.put((steps, time.thread_time() - cpu))


def _as_threads(k: int, seconds: float, width: int, batch: int) -> tuple[float, float]:
    """k loops as threads of this process: (steps/s summed, cores busy = CPU seconds / wall seconds)."""
    ready, start, out = queue.Queue(), threading.Event(), queue.Queue()  # type: ignore[var-annotated]
    workers = [threading.Thread(target=_steps, args=(seconds, width, batch, ready, start, out)) for _ in range(k)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get()
    start.set()
    for w in workers:
        w.join()
    return _rates([out.get() for _ in workers], seconds)


def _as_processes(k: int, seconds: float, width: int, batch: int) -> tuple[float, float]:
    """k loops as processes of one thread each: (steps/s summed, cores busy)."""
    context = multiprocessing.get_context("spawn")
    ready, start, out = context.Queue(), context.Event(), context.Queue()
    workers = [context.Process(target=_steps, args=(seconds, width, batch, ready, start, out)) for _ in range(k)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get()  # imports and first step done everywhere before the clock starts
    start.set()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    return _rates(results, seconds)


def _rates(results: list[tuple[int, float]], seconds: float) -> tuple[float, float]:
    return sum(steps for steps, _ in results) / seconds, sum(cpu for _, cpu in results) / seconds


def cpu_trials_per_hour(layout: str, k: int, epochs: int, n_trials: int) -> float:
    """The example's trials per hour through daskopt on a CPU cluster shaped like a local-cuda layout."""
    from distributed import Client, LocalCluster

    shape = (
        {"n_workers": 1, "threads_per_worker": k} if layout == "threads" else {"n_workers": k, "threads_per_worker": 1}
    )
    slots = {"GPU_SLOT": k if layout == "threads" else 1}
    with (
        LocalCluster(processes=True, resources=slots, dashboard_address=":0", silence_logs=40, **shape) as cluster,
        Client(cluster) as client,
    ):
        wall, done = timed_study(client, k, epochs, n_trials)
    return done / wall * 3600


def cpu_main(args: argparse.Namespace) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ks = [1, 2] if args.quick else [int(k) for k in args.cpu_ks.split(",")]
    seconds, rounds = (0.5, 1) if args.quick else (args.seconds, args.rounds)
    print(
        f"CPU cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}. Steps/s summed over k concurrent "
        f"training loops, best of {rounds} interleaved rounds (other load only lowers a rate), and the cores "
        "they kept busy (median)"
    )
    scaling: dict[tuple[str, str], float] = {}
    sizes = {"overhead": SIZES["overhead"]} if args.quick else SIZES
    for size, (width, batch) in sizes.items():
        rates: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for _ in range(rounds):  # interleaved, so load from elsewhere hits both layouts alike
            for k in ks:
                rates.setdefault(("threads", k), []).append(_as_threads(k, seconds, width, batch))
                rates.setdefault(("processes", k), []).append(_as_processes(k, seconds, width, batch))
        for layout in ("threads", "processes"):
            best = {k: max(rate for rate, _ in rates[(layout, k)]) for k in ks}
            line = [
                f"k={k} {best[k]:.0f} steps/s ({best[k] / best[1]:.2f}x, "
                f"{statistics.median(cores for _, cores in rates[(layout, k)]):.2f} cores)"
                for k in ks
            ]
            scaling[(size, layout)] = best[max(ks)] / best[1]
            print(f"{size:8s} width={width} batch={batch} {layout:9s}: " + ", ".join(line), flush=True)
    if not args.quick:  # the same, end to end: the example's trials through daskopt, both layouts
        top = max(ks)
        hourly: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds_e2e):  # k = 1 is the same cluster for both layouts: one shared baseline
            hourly.setdefault(("single", 1), []).append(cpu_trials_per_hour("processes", 1, 4, 6 * top))
            for layout in ("threads", "processes"):
                hourly.setdefault((layout, top), []).append(cpu_trials_per_hour(layout, top, 4, 6 * top))
        best1 = max(hourly[("single", 1)])
        line = [f"k=1 {best1:.0f}"]
        for layout in ("threads", "processes"):
            best = max(hourly[(layout, top)])
            scaling[("trials", layout)] = best / best1
            line.append(f"k={top} {layout} {best:.0f} ({best / best1:.2f}x)")
        print("trials   through daskopt, 4 epochs, trials/h: " + ", ".join(line), flush=True)
    print(
        "RESULT gpu_packing_cpu "
        + " ".join(f"{size}_{layout}_k{max(ks)}_speedup={value:.2f}" for (size, layout), value in scaling.items())
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting for smoke tests")
    parser.add_argument("--cpu", action="store_true", help="threads vs processes on the CPU (no GPU needed)")
    parser.add_argument("--ks", default="1,2,4,8", help="trials per GPU to compare")
    parser.add_argument("--layout", choices=["processes", "threads"], default="processes")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=32, help="trials per k (the same configurations)")
    parser.add_argument("--seconds", type=float, default=3.0, help="--cpu: seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="--cpu: repetitions (median)")
    parser.add_argument("--cpu-ks", default="1,2", help="--cpu: concurrent loops to compare (<= cores)")
    parser.add_argument("--rounds-e2e", type=int, default=2, help="--cpu: repetitions of the end-to-end study")
    args = parser.parse_args(argv)
    cpu_main(args) if args.cpu else gpu_main(args)


if __name__ == "__main__":
    main()
