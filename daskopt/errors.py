"""Exceptions raised by daskopt.

Every error a user can cause by their input is a :class:`DaskoptError` whose message is one line that
says what was received, what was expected and how to fix it. The CLI prints that line and exits 2.
"""

from __future__ import annotations


class DaskoptError(Exception):
    """Base class of every error daskopt raises on purpose."""


class SpecError(DaskoptError):
    """A study file (or a Python argument mirroring one) is invalid.

    ``source`` names the file and ``key`` the TOML key path (``space.lr.low``) when known; ``str(err)``
    is the complete one-line message, ready to print.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.source = source
        self.key = key
        self.detail = message
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ObjectiveError(DaskoptError):
    """An objective raised an exception that the study was asked not to catch.

    Raised by :func:`daskopt.optimize` in the client process; the exception itself happened on a worker,
    so it carries the remote type name and traceback text instead of the original object.
    """

    def __init__(self, trial_number: int, type_name: str, message: str, traceback_text: str) -> None:
        self.trial_number = trial_number
        self.type_name = type_name
        self.remote_traceback = traceback_text
        super().__init__(f"trial {trial_number} raised {message}")  # the message starts with the type's name


class LoopSideError(ValueError):
    """Raised in an objective for work the engine loop did for it and failed at: a define-by-run
    ``suggest_*`` whose sampler raised there. To the objective it is a ``ValueError``; the trial's
    ``fail_reason``, its traceback and ``catch`` see the loop's own exception (``info``), as they would in
    Optuna, where the sampler runs inside the objective."""

    def __init__(self, context: str, info: dict[str, object]) -> None:
        super().__init__(f"{context}: {info['message']}")
        self.info = info


class ClusterError(DaskoptError):
    """The cluster cannot run the study (unreachable scheduler, no workers, unknown resources)."""


class ChannelUnreachable(ClusterError):
    """No path for the trial channel: workers cannot reach this client and the relay is off or failed."""


class SchedulerLost(DaskoptError):
    """The scheduler went away mid-study. Finished trials are stored; running ones were marked cancelled."""


def first_line(exc: BaseException, default: str = "", limit: int = 500) -> str:
    """The first line of ``str(exc)`` (``default`` when empty), at most ``limit`` characters: what a
    one-line error message quotes of an exception."""
    return (str(exc).strip().splitlines() or [default])[0][:limit]
