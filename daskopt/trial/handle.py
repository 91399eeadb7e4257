"""The trial object an objective receives on the worker: a drop-in for ``optuna.Trial``.

It subclasses :class:`optuna.trial.BaseTrial`, so objectives written for plain Optuna (and type checks
against ``BaseTrial``) work unmodified. Every decision still happens in the engine loop:

- ``suggest_*`` of a parameter of the declared search space returns the value the loop sampled at ask
  time (no round trip); so does a define-by-run parameter that the sampler's joint sample (TPE
  multivariate, GP, CMA-ES) already holds for the same distribution (the loop is told, not asked); any
  other parameter is one round trip to the same ``optuna.Trial`` in the loop, so multivariate samplers
  still sample jointly.
- ``report`` is fire-and-forget. ``should_prune()`` asks the loop, which runs the study's pruner on every
  report sent before the question (as Optuna does: the pruner runs only when asked, on the latest report,
  whatever order the steps came in), and waits for that one answer.
- ``trial.study`` and ``trial.storage`` answer what needs no storage access (:mod:`.study_view`).
- ``log(metrics, step)`` (not in ``optuna.Trial``) records extra metrics with the trial's loggers (its W&B
  run); ``report`` values go to them too. Logging never talks to the loop.
- When the loop cancels the trial (study timeout, trial timeout, Ctrl-C), ``should_prune()`` returns
  ``True`` so a well-behaved objective stops at its next check.
"""

from __future__ import annotations

import datetime
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, overload

import msgpack
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.trial import BaseTrial

from daskopt.elastic.placement import Placement
from daskopt.errors import LoopSideError
from daskopt.optuna_access import contains
from daskopt.protocol import events
from daskopt.protocol.framing import ChannelClosed
from daskopt.tracking.base import TrialLogger
from daskopt.trial import checkpoints
from daskopt.trial.connection import LoopChannel
from daskopt.trial.study_view import StudyView, TrialStorageView

_NO_LOGGER = TrialLogger()


class TrialHandle(BaseTrial):
    """An ``optuna.Trial``-compatible handle bound to one running trial."""

    def __init__(self, conn: LoopChannel, assignment: events.Assignment, tracker: TrialLogger | None = None) -> None:
        self._conn = conn
        self._tracker = tracker or _NO_LOGGER
        self._assignment = assignment
        self._number = assignment.number
        self._declared = {name: json_to_distribution(d) for name, d in assignment.distributions.items()}
        self._sampled = dict(assignment.params)
        self._joint = assignment.joint
        self._params: dict[str, Any] = {}
        self._distributions: dict[str, BaseDistribution] = {}
        self._user_attrs: dict[str, Any] = dict(assignment.user_attrs)
        self._constraints: dict[str, float] = {}
        self._system_attrs: dict[str, Any] = {}
        self._reported: dict[int, float] = {}
        self._prune_requests = 0
        self._decision: tuple[int, bool] | None = None  # (request, prune) of the latest answer
        self._replies: dict[int, list[Any]] = {}
        self._next_request = 0
        self.cancelled: str | None = None
        self.stop_action: str | None = None  # SUSPEND or EXPLOIT: a scheduler's prune that does not end the trial
        self._elastic = Placement.from_wire(assignment.elastic)
        self._restore = checkpoints.resolve(assignment.restore)  # fails the trial at once if it is missing
        if self._restore is not None and assignment.restore and assignment.restore[1] is None:
            conn.send([events.RESTORED, self._restore[1]])  # the newest one: the loop carries the reports to it
        self._datetime_start = datetime.datetime.fromisoformat(assignment.datetime_start)
        self._trial_id = assignment.trial_id  # read by Optuna helpers that write through trial.storage
        self._study = StudyView(assignment.study)
        self._storage = TrialStorageView(
            assignment.trial_id,
            set_user_attr=self.set_user_attr,
            set_system_attr=self._write_system_attr,
        )

    # ----------------------------------------------------------------------------------- suggest
    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return float(self._suggest(name, FloatDistribution(low, high, log=log, step=step)))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return int(self._suggest(name, IntDistribution(low, high, log=log, step=step)))

    @overload
    def suggest_categorical(self, name: str, choices: Sequence[None]) -> None: ...
    @overload
    def suggest_categorical(self, name: str, choices: Sequence[bool]) -> bool: ...
    @overload
    def suggest_categorical(self, name: str, choices: Sequence[int]) -> int: ...
    @overload
    def suggest_categorical(self, name: str, choices: Sequence[float]) -> float: ...
    @overload
    def suggest_categorical(self, name: str, choices: Sequence[str]) -> str: ...
    @overload
    def suggest_categorical(self, name: str, choices: Sequence[CategoricalChoiceType]) -> CategoricalChoiceType: ...

    def suggest_categorical(self, name: str, choices: Sequence[CategoricalChoiceType]) -> CategoricalChoiceType:
        return self._suggest(name, CategoricalDistribution(choices))  # type: ignore[no-any-return]

    def suggest_uniform(self, name: str, low: float, high: float) -> float:
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name: str, low: float, high: float) -> float:
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name: str, low: float, high: float, q: float) -> float:
        return self.suggest_float(name, low, high, step=q)

    def _suggest(self, name: str, distribution: BaseDistribution) -> Any:
        if name in self._params:
            check_distribution_compatibility(self._distributions[name], distribution)
            return self._params[name]
        if name in self._sampled:
            value = self._sampled[name]
            declared = self._declared.get(name, distribution)
            check_distribution_compatibility(declared, distribution)
            if not contains(distribution, value):
                raise ValueError(
                    f"parameter {name!r} was sampled as {value!r} from the declared {declared}, which "
                    f"lies outside the objective's {distribution}; make the two agree"
                )
            if declared != distribution:  # inside both, so it runs; but the declared range is what is searched
                text = (
                    f"parameter {name!r}: the declared search space has {declared}, the objective suggests "
                    f"{distribution}; the declared one is sampled (make the two agree to silence this)"
                )
                self._conn.send([events.WARN, f"range:{name}", text])
        elif self._takes_joint(name, distribution):
            value = self._joint[name][1]
            self._conn.send([events.PARAM, name])  # the loop records it; no answer to wait for
        else:
            value = self._request_suggestion(name, distribution)
        self._params[name] = value
        self._distributions[name] = distribution
        return value

    def _takes_joint(self, name: str, distribution: BaseDistribution) -> bool:
        """Whether the loop's ``suggest_*`` would return the joint value: the same distribution, inside it."""
        entry = self._joint.get(name)
        if entry is None or json_to_distribution(entry[0]) != distribution:
            return False
        return contains(distribution, entry[1])

    def _request_suggestion(self, name: str, distribution: BaseDistribution) -> Any:
        request = self._next_request
        self._next_request += 1
        self._conn.send([events.SUGGEST, request, name, distribution_to_json(distribution)])
        while request not in self._replies:
            if self.cancelled is not None:  # the loop ended this trial; its answer will never come
                raise optuna.TrialPruned(f"cancelled: {self.cancelled}")
            self._dispatch(self._conn.receive())
        kind, _, payload = self._replies.pop(request)
        if kind == events.REFUSED:  # the sampler's own error, as Optuna raises it from suggest_*
            raise LoopSideError(f"suggesting {name!r} failed in the engine loop", payload)
        return payload

    # --------------------------------------------------------------------------- report / prune
    def report(self, value: float, step: int) -> None:
        if self._assignment.n_objectives > 1:
            raise NotImplementedError("Trial.report is not supported for multi-objective optimization.")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"report() value must be a float, got {value!r} ({type(value).__name__})") from None
        try:
            step = int(step)  # any int-like step, as Optuna accepts (numpy integers included)
        except (TypeError, ValueError):
            raise TypeError(f"report() step must be an int, got {step!r} ({type(step).__name__})") from None
        if step < 0:
            raise ValueError(f"report() step must be non-negative, got {step}")
        if step in self._reported:
            warnings.warn(f"The reported value is ignored because this step={step} is already reported.", stacklevel=2)
            return  # Optuna keeps the first value reported for a step
        self._reported[step] = value
        self._tracker.report(value, step)
        if self.cancelled is not None:
            return
        try:
            self._conn.send([events.REPORT, step, value])
            self._drain()
        except ChannelClosed:
            self.cancelled = "the engine loop is gone"

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record extra metrics (``{"train_loss": 0.3}``) at ``step`` in the trial's loggers (its W&B run).

        They are not sent to the study; ``step`` ``None`` is the logger's current step.
        """
        if not isinstance(metrics, Mapping):
            raise TypeError(f"log() metrics must be a dict of name -> value, got {type(metrics).__name__}")
        if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
            raise TypeError(f"log() step must be a non-negative int or None, got {step!r}")
        self._tracker.log(metrics, step)

    def should_prune(self) -> bool:
        if self._assignment.n_objectives > 1:
            raise NotImplementedError("Trial.should_prune is not supported for multi-objective optimization.")
        if self.cancelled is not None:
            return True
        try:
            if not self._assignment.prune_enabled:
                self._drain()  # nothing to decide, but a cancel may be waiting
                return self.cancelled is not None
            self._prune_requests += 1
            request = self._prune_requests
            self._conn.send([events.PRUNE, request])
            while self.cancelled is None and (self._decision is None or self._decision[0] < request):
                self._dispatch(self._conn.receive())
        except ChannelClosed:
            self.cancelled = "the engine loop is gone"
        if self.cancelled is not None:
            return True
        assert self._decision is not None
        return self._decision[1]

    def _drain(self) -> None:
        """Take in whatever the loop already pushed (decisions, a cancel) without waiting."""
        while (message := self._conn.receive(timeout=0)) is not None:
            self._dispatch(message)

    def _dispatch(self, message: list[Any] | None) -> None:
        if message is None:
            return
        kind = message[0]
        if kind == events.DECISION:
            if self._decision is None or message[1] >= self._decision[0]:
                self._decision = (message[1], bool(message[2]))
                self.stop_action = message[3] if len(message) > 3 and message[2] else None
        elif kind in (events.VALUE, events.REFUSED):
            self._replies[message[1]] = message
        elif kind == events.CANCEL:
            self.cancelled = str(message[1])

    # -------------------------------------------------------------------------------- attributes
    def set_user_attr(self, key: str, value: Any) -> None:
        self._send_attr(key, value, events.USER_ATTR)
        self._user_attrs[key] = value

    def set_constraint(self, key: str, value: float) -> None:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"constraint {key!r} must be a float, got {type(value).__name__}") from None
        if math.isnan(number):
            raise ValueError(f"Attempted to set a constraint for {key!r}, but NaN is not allowed.")
        if key in self._constraints:
            return
        self._send_attr(key, number, events.CONSTRAINT)
        self._constraints[key] = number

    def _send_attr(self, key: str, value: Any, kind: int) -> None:
        try:
            self._conn.send([events.ATTR, key, value, kind])
        except (TypeError, ValueError, msgpack.PackException) as exc:
            raise TypeError(
                f"attribute {key!r} must be JSON-like (numbers, strings, lists, dicts), got "
                f"{type(value).__name__}: {exc}"
            ) from None
        except ChannelClosed:
            pass

    def set_system_attr(self, key: str, value: Any) -> None:
        """A system attribute of this trial (on the trial in Optuna < 5; ``trial.storage`` writes them in all)."""
        self._write_system_attr(key, value)

    def _write_system_attr(self, key: str, value: Any) -> None:
        self._send_attr(key, value, events.SYSTEM_ATTR)
        self._system_attrs[key] = value

    @property
    def system_attrs(self) -> dict[str, Any]:
        """The system attributes this trial set (not those the loop's sampler keeps in storage)."""
        return dict(self._system_attrs)

    @property
    def constraints(self) -> dict[str, float]:
        return dict(self._constraints)

    @property
    def params(self) -> dict[str, Any]:
        return {**self._sampled, **self._params}

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {**self._declared, **self._distributions}

    @property
    def user_attrs(self) -> dict[str, Any]:
        return dict(self._user_attrs)

    @property
    def datetime_start(self) -> datetime.datetime | None:
        return self._datetime_start

    @property
    def number(self) -> int:
        return self._number

    @property
    def checkpoint_dir(self) -> Path:
        """This trial's folder for checkpoints (created on first use). A retry of a lost trial gets the
        folder of the attempt it replaces, so training can resume where that attempt died."""
        if self._assignment.checkpoint_dir is None:
            raise AttributeError(
                "trial.checkpoint_dir is not configured: pass checkpoint_dir= to daskopt.optimize (a folder all "
                "workers can reach); study files use <output dir>/checkpoints"
            )
        path = Path(self._assignment.checkpoint_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------------------- checkpoints
    @contextmanager
    def checkpoint(self, step: int) -> Iterator[Path]:
        """A folder to write the trial's state at ``step`` into (any files); when the block ends it becomes
        the trial's checkpoint for ``step`` and the loop is told, so schedulers may pause the trial there
        and resume it later on any worker, or start another trial from it. Call it before
        ``report(value, step)``."""
        keep_every = self._assignment.keep_every
        with checkpoints.writing(self.checkpoint_dir, step, pinned=self.restore_dir, keep_every=keep_every) as folder:
            yield folder
        if self.cancelled is None:
            try:
                self._conn.send([events.CHECKPOINT, step])
            except ChannelClosed:
                self.cancelled = "the engine loop is gone"

    def save_checkpoint(self, state: Any, step: int) -> None:
        """Save ``state`` (anything picklable: a dict of arrays, counters, an RNG state) as the checkpoint of
        ``step``; :meth:`load_checkpoint` returns it when the trial resumes."""
        with self.checkpoint(step) as folder:
            checkpoints.save_state(folder, state)

    def load_checkpoint(self) -> Any:
        """The state this trial resumes from (saved by :meth:`save_checkpoint` at :attr:`resume_step`), or
        ``None`` when it starts from scratch. It is the trial's own state after a pause or a lost worker, or
        the state of a better trial that a PBT exploit copies."""
        folder = self.restore_dir
        return None if folder is None else checkpoints.load_state(folder)

    @property
    def restore_dir(self) -> Path | None:
        """The checkpoint folder this trial starts from (for checkpoints written with :meth:`checkpoint`), or
        ``None``."""
        return None if self._restore is None else self._restore[0]

    @property
    def resume_step(self) -> int | None:
        """The step of the checkpoint this trial starts from (continue at the next one), or ``None``."""
        return None if self._restore is None else self._restore[1]

    # --------------------------------------------------------------------------- elastic trials
    @property
    def elastic(self) -> Placement | None:
        """An elastic trial's replicas, total batch and learning-rate factor for this stretch (``None``
        outside elastic studies): run ``elastic.replicas`` processes (``launch`` does by default), split
        ``elastic.batch_size`` among them, scale the learning rate by ``elastic.lr_scale``."""
        return self._elastic

    def profile(
        self,
        seconds_per_step: float,
        *,
        batch: int | None = None,
        noise_scale: float | None = None,
        remaining_steps: int | None = None,
    ) -> None:
        """Tell the elastic allocator how fast this trial trains: the mean seconds of one optimisation step
        at its current replicas and total ``batch`` (default: ``elastic.batch_size``), the gradient noise
        scale if measured (``integrations.torch.NoiseScaleMeter``) and the steps it has left, if known.
        Outside an elastic study this does nothing."""
        if self._elastic is None or self.cancelled is not None:
            return
        if not (isinstance(seconds_per_step, (int, float)) and seconds_per_step > 0):
            raise ValueError(f"profile() seconds_per_step must be a positive number, got {seconds_per_step!r}")
        batch = batch if batch is not None else self._elastic.batch_size
        if batch is None or batch < 1:
            raise ValueError("profile() needs the total batch: pass batch= (the study sets no initial_batch)")
        noise = None if noise_scale is None else float(noise_scale)
        message: list[Any] = [events.PROFILE, self._elastic.replicas, int(batch), float(seconds_per_step)]
        message += [noise, None if remaining_steps is None else int(remaining_steps)]
        try:
            self._conn.send(message)
        except ChannelClosed:
            self.cancelled = "the engine loop is gone"

    def _launch_facts(self) -> dict[str, Any]:
        """What processes this trial starts (``integrations.torch.launch``) need to act as it: see
        ``integrations.torch.launched_trial``."""
        restore = self._restore
        return {
            "number": self._number,
            "params": self.params,
            "checkpoint_dir": self._assignment.checkpoint_dir,
            "restore": None if restore is None else [str(restore[0]), restore[1]],
            "keep_every": self._assignment.keep_every,
            "elastic": self._assignment.elastic,
        }

    def _checkpointed(self, step: int) -> None:
        """A checkpoint of ``step`` was completed by another process of this trial (a launched rank)."""
        if self.cancelled is None:
            try:
                self._conn.send([events.CHECKPOINT, int(step)])
            except ChannelClosed:
                self.cancelled = "the engine loop is gone"

    @property
    def reported_values(self) -> list[float]:
        """Reported intermediate values in step order (used for ``report_last_n``)."""
        return [self._reported[step] for step in sorted(self._reported)]

    @property
    def study(self) -> StudyView:
        """The study's name, direction(s) and attributes, read-only (see :mod:`daskopt.trial.study_view`)."""
        return self._study

    @property
    def storage(self) -> TrialStorageView:
        """Writes of this trial's own attributes, sent to the loop (see :mod:`daskopt.trial.study_view`)."""
        return self._storage


# The handle offers what the installed Optuna's Trial offers: system attributes up to Optuna 4 (abstract in
# its BaseTrial), constraints from Optuna 5.
for _name in ("system_attrs", "set_system_attr", "constraints", "set_constraint"):
    if not hasattr(optuna.trial.Trial, _name):
        delattr(TrialHandle, _name)
