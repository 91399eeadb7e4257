"""Run the benchmarks: ``python -m benchmarks all [--quick|--smoke]`` or ``python -m benchmarks <name> ...``.

Each benchmark runs daskopt and its baselines in this process tree on the same cluster, several
repetitions, prints one line per run and ends with ``RESULT <name> key=value ...`` (medians, ratios).
``all`` runs them in the order below and exits non-zero if any failed (the others still run).
``engine`` is the original daskopt-vs-optuna-distributed comparison (``overhead`` extends it); it is not
part of ``all`` but can be named alongside it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
import traceback
from collections.abc import Sequence

from benchmarks.common import Settings, emit, machine, quiet, shared_clusters, versions

BENCHMARKS = (
    "overhead",
    "prune_latency",
    "result_throughput",
    "relay_cost",
    "wandb_overhead",
    "bookkeeping",
    "slow_sampler",
    "anytime",
    "promotion",
    "pbt",
    "pbt_digits",
    "suspend_resume",
    "elastic",
    "elastic_digits",
    "launch_start",
    "scale",
    "concurrency",
    "hundred_k",
)


def _run_engine(settings: Settings) -> None:
    from benchmarks import engine

    argv = [] if settings.mode == "full" else ["--quick"]
    if settings.repeats is not None:
        argv += ["--repeats", str(settings.repeats)]
    engine.main(argv)  # prints its own RESULT line


def run_one(name: str, settings: Settings) -> bool:
    """Run one benchmark and print its RESULT line; ``False`` if it raised."""
    print(f"== {name} ({settings.mode}) ==", flush=True)
    t0 = time.perf_counter()
    try:
        if name == "engine":
            _run_engine(settings)
        else:
            module = importlib.import_module(f"benchmarks.{name}")
            emit(name, module.run(settings))
    except Exception:
        traceback.print_exc()
        print(f"FAILED {name} after {time.perf_counter() - t0:.1f}s", flush=True)
        return False
    print(f"== {name} took {time.perf_counter() - t0:.1f}s ==", flush=True)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", metavar="NAME", help=f"all, engine, or any of: {', '.join(BENCHMARKS)}")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes: the whole suite in a few minutes")
    size.add_argument("--smoke", action="store_true", help="tiniest sizes: checks that every benchmark still runs")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (default depends on the mode)")
    args = parser.parse_args(argv)

    names: list[str] = []
    for name in args.names:
        expanded = list(BENCHMARKS) if name == "all" else [name]
        for item in expanded:
            if item not in (*BENCHMARKS, "engine"):
                parser.error(f"unknown benchmark {item!r}; choose from all, engine, {', '.join(BENCHMARKS)}")
            if item not in names:
                names.append(item)
    settings = Settings(mode="smoke" if args.smoke else "quick" if args.quick else "full", repeats=args.repeats)
    quiet()
    print(f"# {versions()}; {machine()}", flush=True)
    # The smoke run shares one cluster per shape across benchmarks: starting clusters is most of its time.
    sharing = shared_clusters() if settings.mode == "smoke" else contextlib.nullcontext()
    failed = []
    with sharing:
        for name in names:
            if not run_one(name, settings):
                failed.append(name)
    if failed:
        print(f"FAILED: {' '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
