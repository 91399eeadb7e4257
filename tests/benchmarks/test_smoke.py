"""Every benchmark runs in its tiniest setting, so none can rot. No timing is asserted.

One ``python -m benchmarks all engine --smoke`` process runs them all (sharing one cluster per shape, which
is most of the time saved), then each benchmark's ``RESULT`` line is checked on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.__main__ import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 600  # ~1-2 min on two cores; pytest-timeout counts the module fixture against the first test
pytestmark = pytest.mark.timeout(SMOKE_TIMEOUT_S + 120)

# Fields each RESULT line must carry, with a positive value (rates, latencies, sizes) or a fixed one.
POSITIVE = {
    "engine": ["trials_per_s", "baseline_trials_per_s"],
    "overhead": [
        "random_trials_per_s",
        "random_od_trials_per_s",
        "random_dask_storage_trials_per_s",
        "random_n_jobs_trials_per_s",
        "raw_dask_tasks_per_s",
        "tpe_trials_per_s",
    ],
    "prune_latency": ["p50_ms", "p99_ms", "relay_p50_ms", "od_p50_ms", "dask_storage_p50_ms"],
    "result_throughput": [
        "prune_reports_per_s",
        "prune_relay_reports_per_s",
        "report_reports_per_s",
        "prune_od_reports_per_s",
    ],
    "wandb_overhead": ["offline_wall_s", "disabled_wall_s", "offline_runs"],
    "relay_cost": ["frames", "relay_reports", "tasks_per_s_idle", "tasks_per_s_relay", "scheduler_cpu_s_relay"],
    "bookkeeping": ["minimum_s", "n_trials"],
    "slow_sampler": ["slow_gap_ms_median", "slow_ask_ms"],
    "anytime": ["daskopt_asha_regret", "daskopt_tpe_regret", "optuna_distributed_regret", "daskopt_asha_trials"],
    "promotion": ["regret_ratio", "promotion_regret", "stopping_regret", "promotion_trials", "stopping_trials"],
    "pbt": ["speedup_vs_tpe_asha", "daskopt_pbt_t_target_s", "tpe_asha_trials", "dask_dispatch_ms", "ckpt_write_ms"],
    "suspend_resume": ["pause_resume_ms", "dispatch_ms", "checkpoint_io_ms", "ratio"],
    "launch_start": ["zygote_ms", "subprocess_ms", "speedup", "first_zygote_ms"],
    "elastic": ["elastic_mean_jct_s", "best_fixed_mean_jct_s", "one_slot_mean_jct_s", "spread_mean_jct_s"],
    "elastic_digits": ["elastic_mean_jct_s", "best_fixed_mean_jct_s", "elastic_accuracy", "best_fixed_accuracy"],
    "pbt_digits": ["pbt_val_acc", "tpe_asha_val_acc", "pbt_epochs", "tpe_asha_epochs", "pbt_trials"],
    "scale": ["total_s", "ms_per_trial_300", "nop_ms_per_trial_300", "n_jobs_ms_per_trial_300"],
    "concurrency": [
        "ratio_8",
        "p99_ms_8",
        "ratio_8_nice19",
        "p99_ms_8_nice19",
        "ratio_8_own_core",
        "p99_ms_8_own_core",
    ],
    "hundred_k": ["total_s", "ms_per_trial_600", "resume_s", "dashboard_update_ms", "optuna_ms_per_trial_600"],
}
EXACT = {
    "result_throughput": {"prune_lost": "0", "report_lost": "0", "no_report_lost": "yes"},
    "concurrency": {"lost_8": "0", "lost_8_nice19": "0", "lost_8_own_core": "0", "lost_8_own_core_nice19": "0"},
    "promotion": {"mismatched_reports": "0", "repeated_epochs": "0"},
}


# The smoke run in two processes at once: a benchmark's smoke run leaves about half of two cores idle
# (sleeping trials, process starts): two halves took 148 s where one process took 182-211 s. Balanced by
# their measured smoke times (~90 s each on two cores).
TORCH_HEAVY = ("anytime", "elastic", "elastic_digits", "launch_start", "pbt_digits")
HALVES = (TORCH_HEAVY, tuple(name for name in (*BENCHMARKS, "engine") if name not in TORCH_HEAVY))


def _collect(process: subprocess.Popen[str], deadline: float) -> str:
    """What one smoke process printed; one that runs past ``deadline`` is killed, keeping what it printed
    (its finished benchmarks still count)."""
    try:
        stdout, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        return stdout
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, _ = process.communicate()
        return f"timed out after {SMOKE_TIMEOUT_S}s\n{stdout}"


@pytest.fixture(scope="module")
def smoke_output() -> tuple[dict[str, dict[str, str]], str]:
    """Every RESULT line by benchmark name, and the run's output (a failed benchmark only fails its test)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks", *half, "--smoke"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for half in HALVES
    ]
    deadline = time.monotonic() + SMOKE_TIMEOUT_S
    output = "".join(_collect(process, deadline) for process in processes)
    results = {}
    for line in output.splitlines():
        if line.startswith("RESULT "):
            _, name, *items = line.split()
            results[name] = dict(item.split("=", 1) for item in items)
    return results, output


@pytest.mark.slow
@pytest.mark.parametrize("name", [*BENCHMARKS, "engine"])
def test_benchmark_prints_its_result_line(smoke_output, name):
    results, output = smoke_output
    assert name in results, f"no RESULT {name} line; output:\n{_section(output, name)}"
    fields = results[name]
    for key in POSITIVE[name]:
        assert float(fields[key]) > 0, (key, fields)
    for key, value in EXACT.get(name, {}).items():
        assert fields[key] == value, (key, fields)


def _section(output: str, name: str) -> str:
    """The part of the output from ``== name`` on (or its tail), for the failure message."""
    start = output.find(f"== {name} (")
    return output[start : start + 6000] if start >= 0 else output[-6000:]


def test_every_benchmark_is_checked():
    assert set(POSITIVE) == {*BENCHMARKS, "engine"}
    assert sorted(HALVES[0] + HALVES[1]) == sorted({*BENCHMARKS, "engine"})


def _run_gpu_packing(*args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "benchmarks.gpu_packing", "--quick", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout.strip().splitlines()


@pytest.mark.slow
def test_gpu_packing_measures_on_a_gpu_and_says_so_without_one():
    """benchmarks/gpu_packing.py needs a CUDA GPU and dask-cuda; elsewhere it exits 0 with one line."""
    from benchmarks.gpu_packing import gpu_missing

    last = _run_gpu_packing()[-1]
    if gpu_missing() is not None:
        assert last.startswith("gpu_packing: no CUDA GPU to measure on ("), last
        return
    assert last.startswith("RESULT gpu_packing "), last
    fields = dict(item.split("=", 1) for item in last.split()[2:])
    assert int(fields["k"]) >= 1 and float(fields["speedup_vs_k1"]) > 0 and "util_k1" in fields


@pytest.mark.slow
def test_gpu_packing_cpu_mode_compares_threads_and_processes():
    pytest.importorskip("torch")
    last = _run_gpu_packing("--cpu")[-1]
    assert last.startswith("RESULT gpu_packing_cpu "), last
    fields = dict(item.split("=", 1) for item in last.split()[2:])
    assert set(fields) == {"overhead_threads_k2_speedup", "overhead_processes_k2_speedup"}  # --quick: one size
    assert all(float(value) > 0 for value in fields.values())
