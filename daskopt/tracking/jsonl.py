"""The study's event stream as JSON lines: ``<output_dir>/events.jsonl``, written by the driver.

One object per line, appended (a resumed study continues the same file)::

    {"event": "study_start", "time": ..., "study": "demo"}
    {"event": "trial_start", "time": ..., "number": 3, "params": {...}, "worker": "tcp://..."}
    {"event": "trial_end", "time": ..., "number": 3, "state": "COMPLETE", "value": 0.12, "params": {...},
     "worker": "tcp://...", "datetime_start": "...", "datetime_complete": "...", "duration_s": 1.5}
    {"event": "study_end", "time": ..., "study": "demo", "n_trials": 40}

``time`` is the driver's wall clock (ISO 8601, UTC). ``trial_end`` has ``values`` instead of ``value``
for several objectives, and ``fail_reason`` / ``retry_of`` / ``attempt`` when the trial has them. Numbers
that JSON cannot hold (NaN, infinities) are written as strings. The file stays open and every line is
flushed, so a tail of the file is always the study's state up to the last event (~10 µs a line).
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import IO, Any

import optuna

from daskopt import attributes
from daskopt.tracking.base import StudyLogger

FILENAME = "events.jsonl"


class JsonlStudyLogger(StudyLogger):
    """Appends the study's events to ``<output_dir>/events.jsonl``."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / FILENAME
        self._file: IO[str] | None = None

    def study_start(self, study: optuna.Study) -> None:
        self._write({"event": "study_start", "study": study.study_name})

    def trial_started(self, study: optuna.Study, number: int, params: dict[str, Any], worker: str) -> None:
        self._write({"event": "trial_start", "number": number, "params": params, "worker": worker})

    def trial_finished(self, study: optuna.Study, frozen: optuna.trial.FrozenTrial, worker: str) -> None:
        record: dict[str, Any] = {"event": "trial_end", "number": frozen.number, "state": frozen.state.name}
        if len(study.directions) == 1:
            record["value"] = frozen.value
        else:
            record["values"] = frozen.values
        duration = frozen.duration
        record.update(
            params=frozen.params,
            worker=worker,
            datetime_start=_iso(frozen.datetime_start),
            datetime_complete=_iso(frozen.datetime_complete),
            duration_s=duration.total_seconds() if duration is not None else None,
        )
        for key in (attributes.FAIL_REASON, attributes.RETRY_OF, attributes.ATTEMPT):
            if key in frozen.user_attrs:
                record[key] = frozen.user_attrs[key]
        self._write(record)

    def study_end(self, study: optuna.Study) -> None:
        try:
            n_trials = len(study.get_trials(deepcopy=False))
            self._write({"event": "study_end", "study": study.study_name, "n_trials": n_trials})
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        now = datetime.datetime.now(datetime.UTC).isoformat()
        line = json.dumps({"event": record.pop("event"), "time": now, **_jsonable(record)}, default=str)
        self._file.write(line + "\n")
        self._file.flush()


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as strings ("nan", "inf", "-inf"): strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
