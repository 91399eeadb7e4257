"""The trial as a process started by ``integrations.torch.launch`` sees it: :class:`LaunchedTrial`.

The ranks of a multi-GPU (or elastic) trial hold the model, so they write its checkpoints and measure its
step times; the trial's handle lives in the task that launched them. A rank gets the trial's facts in its
environment (its number, parameters, checkpoint folders, elastic placement) and sends what the loop
must hear (reports, completed checkpoints, profiles) to the launching task through its pipe, which
forwards them in order. Rank 0 speaks for the trial; other ranks' calls are accepted and do nothing, so
the same training function runs on every rank unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daskopt.elastic.placement import Placement
from daskopt.integrations._launch import TRIAL_ENV, send
from daskopt.integrations.scratch import scratch_folder
from daskopt.trial import checkpoints


class LaunchedTrial:
    """A trial's stand-in inside one launched rank: ``report``, ``checkpoint``, ``save_checkpoint`` /
    ``load_checkpoint``, ``restore_dir`` / ``resume_step``, ``profile`` and ``elastic``, as on the handle.
    Works with :func:`daskopt.integrations.torch.save_checkpoint` and ``restore_checkpoint``."""

    def __init__(self, facts: dict[str, Any], rank: int, world_size: int) -> None:
        self.number: int = facts["number"]
        self.params: dict[str, Any] = facts.get("params", {})
        self.rank, self.world_size = rank, world_size
        self.elastic = Placement.from_wire(facts.get("elastic"))
        self._checkpoint_dir = facts.get("checkpoint_dir")
        self._keep_every = facts.get("keep_every")
        restore = facts.get("restore")
        self._restore = None if restore is None else (Path(restore[0]), int(restore[1]))

    @property
    def restore_dir(self) -> Path | None:
        return None if self._restore is None else self._restore[0]

    @property
    def resume_step(self) -> int | None:
        return None if self._restore is None else self._restore[1]

    def report(self, value: float, step: int) -> None:
        if self.rank == 0:
            send({"step": int(step), "value": float(value)})

    def should_prune(self) -> bool:
        """Always False here: the launching task stops the ranks when the trial is pruned or resized."""
        return False

    @contextmanager
    def checkpoint(self, step: int) -> Iterator[Path]:
        """Rank 0: a folder that becomes the trial's checkpoint of ``step`` (the loop is told). Other ranks
        get a scratch folder, removed afterwards: their state is rank 0's (data-parallel replicas)."""
        if self._checkpoint_dir is None:
            raise AttributeError("trial.checkpoint: this study has no checkpoint folder (pass checkpoint_dir=)")
        if self.rank != 0:
            with scratch_folder("rank") as scratch:
                yield scratch
            return
        root = Path(self._checkpoint_dir)
        with checkpoints.writing(root, step, pinned=self.restore_dir, keep_every=self._keep_every) as folder:
            yield folder
        send({"checkpoint": int(step)})

    def save_checkpoint(self, state: Any, step: int) -> None:
        with self.checkpoint(step) as folder:
            checkpoints.save_state(folder, state)

    def load_checkpoint(self) -> Any:
        folder = self.restore_dir
        return None if folder is None else checkpoints.load_state(folder)

    def profile(
        self,
        seconds_per_step: float,
        *,
        batch: int | None = None,
        noise_scale: float | None = None,
        remaining_steps: int | None = None,
    ) -> None:
        """Rank 0: the elastic allocator's measurements (see ``TrialHandle.profile``)."""
        if self.rank == 0:
            options = {"batch": batch, "noise_scale": noise_scale, "remaining_steps": remaining_steps}
            send({"profile": [float(seconds_per_step), options]})


def launched_trial() -> LaunchedTrial:
    """The trial this rank belongs to; raises outside a process that ``launch(..., trial=trial)`` started."""
    facts = os.environ.get(TRIAL_ENV)
    if facts is None:
        raise RuntimeError(
            "launched_trial() works in processes started by daskopt.integrations.torch.launch(fn, trial=trial)"
        )
    return LaunchedTrial(json.loads(facts), int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
