"""Worker CPU / memory / GPU readings for the summary, gathered off the event loop.

``Client.scheduler_info()`` on a synchronous client waits for a scheduler round trip, and NVML calls can
take milliseconds, so both run on the dashboard's helper thread (see :class:`~daskopt.dashboard.base.
Background`). Workers report GPU metrics themselves when they have NVML; the driver's own GPUs are read
with ``pynvml`` (from ``nvidia-ml-py``) when it is installed. Anything missing is skipped, not an error.
"""

from __future__ import annotations

from typing import Any

COLUMNS = ("worker", "threads", "cpu", "memory", "gpu")


def readings(client: Any) -> dict[str, Any]:
    """One row per worker (when a client is given), then one per GPU of this (driver) process's host."""
    rows: dict[str, Any] = {name: [] for name in COLUMNS}
    for row in worker_rows(client) + driver_gpu_rows():
        for name in COLUMNS:
            rows[name].append(row.get(name, ""))
    return rows


def worker_rows(client: Any) -> list[dict[str, object]]:
    if client is None or getattr(client, "asynchronous", False) or getattr(client, "status", "") != "running":
        return []  # an asynchronous client's cache has no per-worker data
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    rows = []
    for address, info in sorted(workers.items()):
        metrics = info.get("metrics", {})
        limit = info.get("memory_limit") or 0
        row: dict[str, object] = {
            "worker": str(info.get("name", address)),
            "threads": info.get("nthreads", ""),
            "cpu": f"{metrics.get('cpu', 0):.0f} %",
            "memory": _memory(metrics.get("memory"), limit),
        }
        if "gpu_utilization" in metrics:
            total = metrics.get("gpu-memory-total", 0)
            row["gpu"] = f"{metrics['gpu_utilization'] or 0:.0f} %, {_memory(metrics.get('gpu_memory_used'), total)}"
        rows.append(row)
    return rows


def driver_gpu_rows() -> list[dict[str, object]]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
        rows: list[dict[str, object]] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            use = pynvml.nvmlDeviceGetUtilizationRates(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            rows.append({"worker": f"driver GPU {index}", "gpu": f"{use.gpu} %, {_memory(memory.used, memory.total)}"})
        return rows
    except Exception:  # no driver, no device, permission: the page just shows no GPU rows
        return []


def _memory(used: float | None, limit: float) -> str:
    if used is None:
        return ""
    gib = 2**30
    return f"{used / gib:.1f} / {limit / gib:.1f} GiB" if limit else f"{used / gib:.1f} GiB"
