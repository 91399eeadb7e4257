"""Launch scratch folders: named after their process, removed after use, and swept once their process is
gone (a SIGKILLed worker runs no clean-up)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from daskopt.integrations import scratch
from daskopt.integrations.scratch import STALE_S, scratch_folder, sweep

pytestmark = pytest.mark.skipif(os.name != "posix", reason="launches are POSIX-only")


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(scratch, "_swept", set())  # as in a process that made no folder yet
    return tmp_path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _folder(root: Path, name: str, age_s: float) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "payload.pkl").write_bytes(b"x")
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def test_only_old_folders_of_gone_processes_of_that_kind_are_swept(temp_root: Path) -> None:
    dead = _dead_pid()
    stale = _folder(temp_root, f"daskopt-launch-{dead}-abc", STALE_S + 60)
    recent = _folder(temp_root, f"daskopt-launch-{dead}-def", 5)  # its pid may live in another namespace
    alive = _folder(temp_root, f"daskopt-launch-{os.getpid()}-ghi", STALE_S + 60)
    other_kind = _folder(temp_root, f"daskopt-part-{dead}-jkl", STALE_S + 60)
    unnamed = _folder(temp_root, "daskopt-launch-old_style", STALE_S + 60)  # before names carried a pid

    assert sweep("launch") == [stale]
    assert not stale.exists()
    assert all(folder.exists() for folder in (recent, alive, other_kind, unnamed))


def test_a_folder_is_named_after_its_process_and_removed_after_use_even_on_error(temp_root: Path) -> None:
    with pytest.raises(RuntimeError), scratch_folder("rank") as folder:
        assert folder.parent == temp_root
        assert folder.name.startswith(f"daskopt-rank-{os.getpid()}-")
        (folder / "state").write_text("x")
        raise RuntimeError("the trial failed")
    assert not folder.exists()


def test_a_killed_process_leaves_its_folder_and_the_next_launch_sweeps_it(temp_root: Path) -> None:
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import os, signal, tempfile, sys
                tempfile.tempdir = sys.argv[1]
                from daskopt.integrations.scratch import scratch_folder
                with scratch_folder("launch") as folder:
                    (folder / "payload.pkl").write_bytes(b"x")
                    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would: no clean-up runs
                """
            ),
            str(temp_root),
        ],
        check=False,
    )
    assert killed.returncode == -9
    (left,) = temp_root.iterdir()
    assert left.name.startswith("daskopt-launch-")
    then = time.time() - STALE_S - 1
    os.utime(left, (then, then))

    with scratch_folder("launch") as folder:
        assert [p.name for p in temp_root.iterdir()] == [folder.name]
    assert list(temp_root.iterdir()) == []

    _folder(temp_root, left.name, STALE_S + 60)  # the same process sweeps once per kind, not per folder
    with scratch_folder("launch"):
        pass
    assert [p.name for p in temp_root.iterdir()] == [left.name]
