"""relay_cost: what relaying trials through the scheduler costs the scheduler, per message and for the
rest of its work.

The scheduler runs in its own process (``SubprocessCluster``, 2 workers × 2 threads), so its CPU time can
be read alone. Phases, in one run:

- ``idle``: a second client maps trivial tasks: the scheduler's task rate with nothing else running;
- ``direct`` and ``relay``: the same map while 4 trials report and ask ``should_prune()`` as fast as they
  can for ``seconds`` (the heaviest channel load), on the direct channel and then through the relay.

Per message: the scheduler's CPU seconds over the relay phase minus the direct phase (same study, same
map), divided by the frames the relay plugin carried. For other work: the map's tasks/s in each phase.
On 2 cores every phase competes for CPU with the study itself; relay vs direct isolates the relay.

This is also the relay's real layout (a scheduler that is not the driver's process: in-process schedulers
are reached directly), so the phases report reports/s with a decision per report, and a latency phase
times ``should_prune()`` inside trials (4 at once, 10 ms of work per step) on both channels.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

import optuna
import psutil
from distributed import Client
from distributed.deploy.subprocess import SubprocessCluster

from benchmarks.common import Settings, medians, run_daskopt
from benchmarks.objectives import busy_reporter, stepping_objective
from benchmarks.prune_latency import latencies

NAME = "relay_cost"
DESCRIPTION = "scheduler CPU per relayed frame, and the scheduler's task rate while trials are relayed"


def _inc(x: int) -> int:
    return x + 1


def _task_rate(address: str, n_tasks: int) -> float:
    """Trivial tasks per second through the scheduler, from a second client."""
    with Client(address) as other:
        start = time.perf_counter()
        other.gather(other.map(_inc, range(n_tasks), pure=False))
        return n_tasks / (time.perf_counter() - start)


def _relayed_frames(client: Client) -> int:
    from daskopt.relay.scheduler_plugin import PLUGIN_NAME

    def frames(dask_scheduler: Any) -> int:
        plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
        return 0 if plugin is None else int(plugin.frames)

    return int(client.run_on_scheduler(frames))


def _phase(client: Client, scheduler: psutil.Process, channel: str, seconds: float, n_tasks: int) -> dict[str, Any]:
    """The busy study on ``channel``, with the task map in its middle; the scheduler's CPU over the study."""
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    objective = functools.partial(busy_reporter, seconds=seconds)
    frames_before, cpu_before = _relayed_frames(client), sum(scheduler.cpu_times()[:2])
    runner = threading.Thread(
        target=run_daskopt, args=(client, study, objective), kwargs={"n_trials": 4, "channel": channel}
    )
    runner.start()
    time.sleep(min(1.0, seconds / 4))
    rate = _task_rate(client.scheduler.address, n_tasks)
    runner.join()
    cpu = sum(scheduler.cpu_times()[:2]) - cpu_before
    reports = sum(len(t.intermediate_values) for t in study.trials)
    return {
        "tasks_per_s": rate,
        "scheduler_cpu_s": cpu,
        "frames": _relayed_frames(client) - frames_before,
        "reports": reports,
        "reports_per_s": reports / seconds,
    }


def _latency(client: Client, channel: str, n_trials: int) -> dict[str, Any]:
    """``should_prune()`` p50/p99 inside 4 concurrent trials of 40 steps of 10 ms (as prune_latency)."""
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5))
    objective = functools.partial(stepping_objective, n_steps=40, step_s=0.01)
    return latencies(study, run_daskopt(client, study, objective, n_trials=n_trials, channel=channel))


def _brief(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


def run(settings: Settings) -> dict[str, Any]:
    seconds, n_tasks = settings.pick(smoke=(2.0, 100), quick=(6.0, 600), full=(10.0, 1000))
    repeats = settings.reps()
    n_latency = settings.pick(smoke=8, quick=24, full=60)
    runs: dict[str, list[dict[str, Any]]] = {"idle": [], "direct": [], "relay": [], "direct_rtt": [], "relay_rtt": []}
    with (
        SubprocessCluster(n_workers=2, threads_per_worker=2, dashboard_address=":0", silence_logs=40) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        scheduler = psutil.Process(client.run_on_scheduler(lambda: __import__("os").getpid()))
        run_daskopt(
            client, optuna.create_study(), functools.partial(busy_reporter, seconds=0.2), n_trials=4, channel="relay"
        )
        for i in range(repeats):
            runs["idle"].append({"tasks_per_s": _task_rate(client.scheduler.address, n_tasks)})
            for channel in ("direct", "relay"):
                runs[channel].append(_phase(client, scheduler, channel, seconds, n_tasks))
                runs[f"{channel}_rtt"].append(_latency(client, channel, n_latency))
            print(f" run {i}: " + "; ".join(f"{k} {_brief(v[-1])}" for k, v in runs.items()), flush=True)
    m = {name: medians(results) for name, results in runs.items()}
    relay, direct = m["relay"], m["direct"]
    extra_cpu = relay["scheduler_cpu_s"] - direct["scheduler_cpu_s"]
    return {
        "cpu_us_per_frame": 1e6 * extra_cpu / relay["frames"] if relay["frames"] else float("nan"),
        "frames": int(relay["frames"]),
        "relay_reports": int(relay["reports"]),
        "direct_reports": int(direct["reports"]),
        "scheduler_cpu_s_relay": relay["scheduler_cpu_s"],
        "scheduler_cpu_s_direct": direct["scheduler_cpu_s"],
        "tasks_per_s_idle": m["idle"]["tasks_per_s"],
        "tasks_per_s_direct": direct["tasks_per_s"],
        "tasks_per_s_relay": relay["tasks_per_s"],
        "relay_reports_per_s": relay["reports_per_s"],
        "direct_reports_per_s": direct["reports_per_s"],
        "relay_p50_ms": m["relay_rtt"]["p50_ms"],
        "relay_p99_ms": m["relay_rtt"]["p99_ms"],
        "direct_p50_ms": m["direct_rtt"]["p50_ms"],
        "direct_p99_ms": m["direct_rtt"]["p99_ms"],
        "repeats": repeats,
    }
