"""Read back what wandb 0.31 wrote for offline runs, to check it in tests.

Offline runs keep everything (config, history, summary) in ``run-<id>.wandb`` only: ``files/`` holds no
``config.yaml`` or ``wandb-summary.json`` until ``wandb sync``. That file is a LevelDB-style log: a 7-byte
header (``:W&B``, 2-byte key, version), then 32 KiB blocks of records, each with a 7-byte header (CRC32C,
little-endian length, type FULL/FIRST/MIDDLE/LAST) carrying a serialized ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    folder: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None

    def metric(self, name: str) -> dict[int, Any]:
        """``{step: value}`` of one history metric."""
        return {row["_step"]: row[name] for row in self.history if name in row}


def offline_runs(root: Path, count: int | None = None, timeout: float = 60.0) -> list[OfflineRun]:
    """Every offline run under ``root/wandb``, waiting (up to ``timeout``) until there are ``count`` of
    them, each with its exit record: wandb-core writes the file a few ms after ``run.finish()`` returns."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [read_run(folder) for folder in sorted((root / "wandb").glob("offline-run-*"))]
        complete = all(run.exit_code is not None for run in runs) and (count is None or len(runs) >= count)
        if complete or time.monotonic() > deadline:
            return runs
        time.sleep(0.05)


def read_run(folder: Path) -> OfflineRun:
    run = OfflineRun(folder)
    for record in _records(*folder.glob("run-*.wandb")):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.name, run.group, run.job_type = record.run.display_name, record.run.run_group, record.run.job_type
            _apply(run.config, record.run.config.update)
        elif kind == "config":
            _apply(run.config, record.config.update)
        elif kind == "history":
            row: dict[str, Any] = {}
            _apply(row, record.history.item)
            run.history.append(row)
        elif kind == "summary":
            _apply(run.summary, record.summary.update)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    return run


def _apply(target: dict[str, Any], items: Any) -> None:
    for item in items:
        keys = list(item.nested_key) or [item.key]
        if item.key and item.nested_key:
            keys = [item.key, *item.nested_key]
        node = target
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = json.loads(item.value_json)


def _records(*paths: Path) -> Iterator[Any]:
    """The records of the run's transaction log; nothing while it is not yet written."""
    from wandb.proto import wandb_internal_pb2

    data = paths[0].read_bytes() if paths else b""
    if data[:4] != b":W&B":
        return
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0:
            pos += left
            continue
        pending += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            if pos > len(data):
                return  # a record still being written
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record
