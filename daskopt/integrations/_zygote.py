"""A process per worker that has imported torch once and forks the ranks of launched trials.

Starting a rank as a new Python costs its interpreter and ``import torch``: seconds on a busy machine, paid
by every multi-GPU trial at its start and by every resize of an elastic trial. The zygote pays them once
per worker process; a rank is then a ``fork()`` of it (milliseconds), which runs
:func:`daskopt.integrations._launch.main` as a rank started with ``subprocess`` would.

Safety of the fork: the zygote imports torch and nothing runs in it (no CUDA context, no thread pool: it
never computes), so each child initialises CUDA and its threads itself, with its own environment
(``CUDA_VISIBLE_DEVICES`` is read at CUDA's initialisation; ``OMP_NUM_THREADS``, read by OpenMP when torch
was imported, is applied with ``torch.set_num_threads``).

Protocol: requests come on the zygote's stdin as JSON lines (``{"id", "folder", "rank", "env", "cwd"}``);
answers (``{"id", "pid"}`` or ``{"id", "error"}``) and exits (``{"exit": pid, "code": c}``) go out on a
pipe of their own, so a rank keeps the worker's stdout and stderr. The zygote ends when its stdin closes
(its worker is gone, however it died); its children get SIGKILL when it ends (``PR_SET_PDEATHSIG``, set
by each rank), as ranks started with ``subprocess`` die with their trial's thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ENV = "DASKOPT_LAUNCH_ZYGOTE"  # "0": start every rank with subprocess instead
_START_S = 60.0  # the longest wait for a zygote's first answer (its torch import)


class RankProcess:
    """A rank forked by the zygote, with the part of ``subprocess.Popen`` that launch uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done = threading.Event()

    def _exited(self, code: int) -> None:
        self.returncode = code
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"rank {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def _signal(self, number: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class Zygote:
    """The parent's handle on one zygote process: spawns ranks and learns when they exit."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        command = [sys.executable, "-m", "daskopt.integrations._zygote", str(write_fd)]
        path = os.pathsep.join(p for p in sys.path if p)
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            pass_fds=(write_fd,),
            env={**os.environ, "PYTHONPATH": path},
        )
        os.close(write_fd)
        self._answers = os.fdopen(read_fd, "rb")
        self._lock = threading.Lock()
        self._replies: dict[int, dict[str, Any]] = {}
        self._ranks: dict[int, RankProcess] = {}
        self._early: dict[int, int] = {}  # exits heard before their spawn's answer was read
        self._cond = threading.Condition(self._lock)
        self._ids = 0
        threading.Thread(target=self._read, name="daskopt-zygote", daemon=True).start()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def _read(self) -> None:
        for line in self._answers:
            message = json.loads(line)
            with self._cond:
                if "exit" in message:
                    rank = self._ranks.pop(message["exit"], None)
                    if rank is None:
                        self._early[message["exit"]] = message["code"]
                    else:
                        rank._exited(message["code"])
                else:
                    self._replies[message["id"]] = message
                self._cond.notify_all()
        with self._cond:  # the zygote is gone: so are its children (PDEATHSIG)
            for rank in self._ranks.values():
                rank._exited(-signal.SIGKILL)
            self._ranks.clear()
            self._cond.notify_all()

    def spawn(self, folder: Path, rank: int, env: dict[str, str]) -> RankProcess:
        with self._cond:
            self._ids += 1
            request = {"id": self._ids, "folder": str(folder), "rank": rank, "env": env, "cwd": os.getcwd()}
            assert self._proc.stdin is not None
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
            deadline = time.monotonic() + _START_S
            while request["id"] not in self._replies:
                if not self.alive or not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise RuntimeError("the launch zygote did not answer")
            reply = self._replies.pop(request["id"])
            if "error" in reply:
                raise RuntimeError(f"the launch zygote could not fork a rank: {reply['error']}")
            process = RankProcess(reply["pid"])
            if process.pid in self._early:
                process._exited(self._early.pop(process.pid))
            else:
                self._ranks[process.pid] = process
            return process


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()


def spawn(folder: Path, rank: int, env: dict[str, str]) -> RankProcess | None:
    """A rank forked by this worker's zygote (started on first use), or ``None`` where there is none to use
    (not Linux, turned off with ``DASKOPT_LAUNCH_ZYGOTE=0``, or it could not start)."""
    global _zygote
    if not sys.platform.startswith("linux") or os.environ.get(ENV, "1") == "0":
        return None
    with _zygote_lock:
        if _zygote is None or not _zygote.alive:
            try:
                _zygote = Zygote()
            except OSError:
                return None
        zygote = _zygote
    try:
        return zygote.spawn(folder, rank, env)
    except (RuntimeError, OSError, BrokenPipeError):
        return None


# ------------------------------------------------------------------------------------------ zygote side
def _serve(answers: int) -> None:
    import torch  # noqa: F401  (the point of the zygote: imported once, shared by every fork)
    import torch.distributed  # noqa: F401

    from daskopt.integrations import _launch  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    stdin = sys.stdin.buffer
    pending = b""
    while True:
        ready, _, _ = select.select([stdin], [], [], 0.05)
        if ready:
            chunk = os.read(stdin.fileno(), 65536)
            if not chunk:
                return  # the worker is gone
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    _fork(json.loads(line), answers)
        _reap(answers)


def _reap(answers: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _write(answers, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _write(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


def _fork(request: dict[str, Any], answers: int) -> None:
    try:
        pid = os.fork()
    except OSError as exc:
        _write(answers, {"id": request["id"], "error": str(exc)})
        return
    if pid:
        _write(answers, {"id": request["id"], "pid": pid})
        return
    code = 1
    try:  # the rank
        os.close(answers)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        env = request["env"]
        os.environ.clear()
        os.environ.update(env)
        sys.path[:0] = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
        os.chdir(request["cwd"])
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if env.get("OMP_NUM_THREADS", "").isdigit():
            import torch

            torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
        from daskopt.integrations._launch import main

        code = main(Path(request["folder"]), int(request["rank"]))
    except BaseException:  # noqa: BLE001  (a rank must never return into the zygote's loop)
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
    # Its worker is gone: end now, and the ranks with it (PDEATHSIG). A normal interpreter exit finalizes
    # torch first, 0.5 s on an idle machine and seconds on a loaded one, during which a dead worker's ranks
    # went on training with their group (a collective with them still succeeded).
    os._exit(0)
