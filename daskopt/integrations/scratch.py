"""Scratch folders of launched trials (their payload, report pipe and results), and the ones left behind.

A launched trial's folder is removed when its launch ends, but a worker killed with SIGKILL (the OOM
killer, a scheduler's ``kill -9``, a test) runs no clean-up, and its folders stayed in the temporary
directory for good. Each folder's name now carries the pid of the process that made it
(``daskopt-launch-<pid>-...``), and making a folder first removes those of the same kind whose process is
gone and that were last changed over ``STALE_S`` ago; a process does so once per kind (a restarted worker
is a new process). The age keeps a folder safe when its pid cannot be checked from here (another pid
namespace sharing the temporary directory); folders of other users are left alone (no permission).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

STALE_S = 600.0
_swept: set[tuple[int, str]] = set()  # (pid, kind): a process sweeps once per kind (a fork is a new pid)


@contextlib.contextmanager
def scratch_folder(kind: str) -> Iterator[Path]:
    """A new folder ``daskopt-<kind>-<pid>-...`` in the temporary directory, removed afterwards. The
    process's first folder of a kind sweeps that kind's leftovers (ranks make one per checkpoint)."""
    if (os.getpid(), kind) not in _swept:
        _swept.add((os.getpid(), kind))
        sweep(kind)
    folder = Path(tempfile.mkdtemp(prefix=f"daskopt-{kind}-{os.getpid()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep(kind: str, root: str | None = None, stale_s: float = STALE_S) -> list[Path]:
    """Remove this kind's folders whose process is gone and that nothing changed for ``stale_s`` seconds;
    returns the ones removed. Never raises: a folder that cannot be read or removed is left."""
    pattern = re.compile(rf"daskopt-{re.escape(kind)}-(\d+)-")
    removed: list[Path] = []
    try:
        entries = list(Path(root or tempfile.gettempdir()).iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            if now - entry.stat().st_mtime < stale_s or not entry.is_dir():
                continue
        except OSError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if os.name != "posix":  # elsewhere signal 0 is no probe (launches need POSIX pipes anyway)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process (alive), or no such pid number
        return True
    return True
