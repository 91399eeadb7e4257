"""A trial's checkpoints on disk: what lets the loop suspend, resume and clone a trial.

The contract is kept small. A checkpoint is a folder ``step-<k>`` in the trial's ``checkpoint_dir`` (a
folder all workers reach), written under a temporary name and renamed when complete, so a reader never
sees half of one and a worker killed mid-write leaves nothing that looks finished. After each one the
loop is told the step (``CHECKPOINT``), and only then may a scheduler pause the trial at that step or
hand its state to another trial. The newest ``keep`` folders stay and older ones are removed, never the
one this trial started from; under PBT a checkpoint at a decision step (every ``keep_every`` steps) stays
until it is ``GRACE_S`` old, since a clone may still be on its way to read the one its donor had when it was
chosen while the donor writes a checkpoint every few milliseconds.

Where a trial starts from is the loop's call, sent with the assignment as ``restore = [folder, step]``:
its own folder and the step it was paused at (a resume), another trial's (a PBT exploit), or step
``None``, the newest complete checkpoint in its own folder (a retry after its worker died), no newer than
the attempt's last report when a third entry says which (a checkpoint written just before a crash, whose
report never arrived, would leave a hole in the trial's curve).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATE_FILE = "state.pkl"  # what save_checkpoint writes in a checkpoint folder
KEEP = 3  # checkpoints kept per trial: a PBT donor's newest may be read while it writes the next ...
GRACE_S = 120.0  # ... and one at a PBT decision step is not removed before it is this old
_STEP = re.compile(r"^step-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint a trial was to start from is missing or cannot be read: that trial fails, the rest go on."""


def folder_name(step: int) -> str:
    return f"step-{step:08d}"


def steps(root: Path) -> list[int]:
    """The steps of the complete checkpoints in ``root``, ascending."""
    if not root.is_dir():
        return []
    found = (_STEP.match(entry.name) for entry in root.iterdir())
    return sorted(int(match.group(1)) for match in found if match is not None)


@contextmanager
def writing(
    root: Path,
    step: int,
    keep: int = KEEP,
    pinned: Path | None = None,
    keep_every: int | None = None,
    grace_s: float = GRACE_S,
) -> Iterator[Path]:
    """A fresh folder to write step ``step``'s checkpoint into; complete (renamed) when the block ends
    without an error, and then the oldest beyond ``keep`` are removed: never ``pinned``, and one at a step
    ``s`` with ``(s + 1) % keep_every == 0`` only once it is ``grace_s`` old."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise TypeError(f"checkpoint step must be a non-negative int, got {step!r}")
    root.mkdir(parents=True, exist_ok=True)
    temporary = root / f".tmp-{folder_name(step)}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    final = root / folder_name(step)
    if final.exists():  # the step again (a retry re-ran it): the newer state wins
        shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)
    os.utime(final)  # its age counts from now
    cutoff = time.time() - grace_s
    for old in steps(root)[:-keep] if keep > 0 else []:
        path = root / folder_name(old)
        if pinned is not None and path.resolve() == pinned.resolve():
            continue
        if keep_every and (old + 1) % keep_every == 0 and _mtime(path) > cutoff:
            continue  # a PBT donor's checkpoint at a decision step: a clone may be about to read it
        shutil.rmtree(path, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


def save_state(folder: Path, state: Any) -> None:
    with open(folder / STATE_FILE, "wb") as file:
        pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)


def resolve(restore: list[Any] | None) -> tuple[Path, int] | None:
    """The checkpoint folder and step a trial starts from, or ``None`` (from scratch).

    Raises :class:`CheckpointError` when the loop named a checkpoint that is not there."""
    if not restore:
        return None
    root, step = Path(restore[0]), restore[1]
    if step is None:  # a retry: the newest complete checkpoint its attempts left (at or below a bound), if any
        bound = restore[2] if len(restore) > 2 else None
        found = [s for s in steps(root) if bound is None or s <= bound]
        return (root / folder_name(found[-1]), found[-1]) if found else None
    folder = root / folder_name(int(step))
    if not folder.is_dir():
        raise CheckpointError(
            f"checkpoint missing: {folder} (step {step}) is not there; was the checkpoint folder removed, or "
            "is it not shared by all workers?"
        )
    return folder, int(step)


def load_state(folder: Path) -> Any:
    """What :func:`save_state` wrote in ``folder``."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint has no {STATE_FILE}: {folder} (written with trial.checkpoint()?)")
    try:
        with open(path, "rb") as file:
            return pickle.load(file)
    except Exception as exc:
        raise CheckpointError(f"checkpoint corrupt: {path}: {type(exc).__name__}: {exc}") from None
