"""The messages exchanged between a running trial and the engine loop.

Messages travel as msgpack arrays ``[KIND, *fields]`` rather than pickles: the loop never unpickles
anything a worker sends, and a short array costs a few microseconds to encode. The table below is the
whole protocol; both ends import their kind constants from here so they cannot drift apart.

Trial -> loop
    ``[HELLO, token, task_id, has_objective, worker, pid]``   a task wants a trial (again, when chaining)
    ``[REPORT, step, value]``                                  fire-and-forget intermediate value
    ``[SUGGEST, request_id, name, distribution_json]``         define-by-run parameter
    ``[PARAM, name]``                                          fire-and-forget: took ``joint[name]``
    ``[ATTR, key, value, kind]``                               ``kind``: USER_ATTR, CONSTRAINT or SYSTEM_ATTR
    ``[PRUNE, request]``                                       ``should_prune()``: decide on the reports so far
    ``[HEARTBEAT]``                                            the task is alive
    ``[FINISH, state, values, error]``                         ``error`` is an :class:`ErrorInfo` dict
    ``[PROBE, token]``                                         can this worker reach the loop? (answer: STOP)
    ``[WARN, key, text]``                                      fire-and-forget: the loop warns once per key
    ``[CHECKPOINT, step]``                                     fire-and-forget: step's checkpoint is complete
    ``[RESTORED, step]``                                       started from its newest checkpoint, of ``step``
    ``[PROFILE, replicas, batch, seconds, noise, remaining]``  fire-and-forget (elastic trials): seconds per
                                                               step at ``replicas`` and total ``batch``, the
                                                               gradient noise scale, steps left (or None)

Loop -> trial
    ``[ASSIGN, assignment_dict]``     the trial to run (see :class:`Assignment`)
    ``[STOP]``                        no trial for this task; return at once
    ``[DECISION, request, prune, action]``  the answer to ``PRUNE``, on every report sent before it;
                                      ``action`` (optional) says a scheduler's ``prune`` is a SUSPEND
                                      (the trial is paused, to be resumed) or an EXPLOIT (it goes on
                                      as a clone of a better trial): the objective stops either way
    ``[VALUE, request_id, value]``    answer to ``SUGGEST``
    ``[REFUSED, request_id, error]``  ``SUGGEST`` failed in the loop (an incompatible distribution, the
                                      sampler raised): ``error`` is an :class:`ErrorInfo` dict
    ``[CANCEL, reason]``              the loop has ended this trial (study timeout, trial timeout, Ctrl-C)

A worker process's link (:mod:`daskopt.trial.link`) starts with ``[MUX]``; after it, every frame either way
is ``[channel, message]``, each channel speaking the protocol above (``message`` ``None``: closed).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, TypedDict

from daskopt.errors import LoopSideError, first_line

MAX_TRACEBACK = 8000  # characters of a failed trial's traceback kept (its end, where the error is)

HELLO = 1
REPORT = 2
SUGGEST = 3
ATTR = 4
HEARTBEAT = 5
FINISH = 6
PARAM = 7
PRUNE = 8
PROBE = 9
WARN = 16
CHECKPOINT = 17
RESTORED = 18
PROFILE = 19
MUX = 20

ASSIGN = 10
STOP = 11
DECISION = 12
VALUE = 13
REFUSED = 14
CANCEL = 15

COMPLETE = "COMPLETE"
PRUNED = "PRUNED"
FAIL = "FAIL"
SUSPENDED = "SUSPENDED"  # a FINISH state: paused at its last checkpoint, to be resumed

# the action of a DECISION that stops the objective without ending the trial
SUSPEND = "suspend"
EXPLOIT = "exploit"

# what an ATTR message sets
USER_ATTR = 0
CONSTRAINT = 1
SYSTEM_ATTR = 2


class ErrorInfo(TypedDict):
    """Why a trial failed, as the trial saw it: enough to decide ``catch`` without the exception object."""

    type: str  # qualified name of the exception type, e.g. "builtins.ValueError"
    mro: list[str]  # qualified names of every class in its MRO, to match ``catch`` by subclass
    message: str  # one line for the trial's ``fail_reason`` user attribute
    traceback: str


@dataclass(frozen=True)
class Assignment:
    """Everything a task needs to run one trial, sent once in the ``ASSIGN`` message.

    ``params`` holds the values of a declared search space (sampled in the loop at ask time), so those
    ``suggest_*`` calls cost no round trip. ``joint`` holds the sampler's joint (relative) sample of a
    define-by-run trial, ``name -> [distribution_json, value]``: a ``suggest_*`` whose distribution equals
    the one sampled takes its value locally and tells the loop with a ``PARAM`` message, which the loop
    records through Optuna's own ``suggest_*`` (which returns the same joint value). ``objective`` carries
    the cloudpickled objective only when the worker process does not have it cached yet.
    """

    number: int
    params: dict[str, Any]
    distributions: dict[str, str]  # name -> optuna distribution JSON, for declared parameters
    user_attrs: dict[str, Any]
    n_objectives: int
    datetime_start: str  # ISO format
    report_last_n: int | None = None
    prune_enabled: bool = True
    heartbeat_s: float = 5.0
    chain_below_s: float = 0.0
    checkpoint_dir: str | None = None  # shared folder of this trial (and of its retries)
    joint: dict[str, list[Any]] = field(default_factory=dict)  # name -> [distribution_json, value]
    restore: list[Any] | None = (
        None  # [checkpoint folder, step or None(, bound)]: where it starts (trial/checkpoints.py)
    )
    keep_every: int | None = None  # checkpoints at these decision steps are kept a while for clones (PBT)
    elastic: list[Any] | None = None  # [replicas, total batch or None, lr scale]: an elastic trial's stretch
    tracking: dict[str, Any] | None = None  # plain logger settings (daskopt.tracking.trial_loggers)
    objective: bytes | None = field(default=None, repr=False)
    trial_id: int = -1  # the storage's id of the trial (``trial._trial_id``, for storage calls on this trial)
    study: dict[str, Any] = field(default_factory=dict)  # read-only facts for ``trial.study`` (StudyFacts)

    def to_wire(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Assignment:
        return cls(**data)


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class: the key used to match remote exceptions against ``catch``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def caught(error: ErrorInfo, catch: tuple[type[BaseException], ...]) -> bool:
    """Whether ``catch`` names the class of ``error`` or one of its bases (``Study.optimize``'s ``catch``)."""
    names = set(error["mro"])
    return any(qualified_name(cls) in names for cls in catch)


def error_info(exc: BaseException) -> ErrorInfo:
    """Describe an exception so the loop can record it and match it against ``catch`` (an objective's, on
    its worker; a pruner's, in the loop)."""
    text = "".join(traceback.format_exception(exc))
    if isinstance(exc, LoopSideError):  # the loop's exception decides, with both tracebacks kept
        loop: Any = exc.info
        both = f"{loop['traceback']}\nRaised in the objective as:\n{text}"
        return {
            "type": loop["type"],
            "mro": loop["mro"],
            "message": loop["message"],
            "traceback": both[-MAX_TRACEBACK:],
        }
    first = first_line(exc)
    name = type(exc).__name__
    return {
        "type": qualified_name(type(exc)),
        "mro": [qualified_name(cls) for cls in type(exc).__mro__],
        "message": f"{name}: {first}" if first else name,
        "traceback": text[-MAX_TRACEBACK:],
    }
