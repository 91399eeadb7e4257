"""What a trial on a worker sees of its study and storage: ``trial.study`` and ``trial.storage``.

The study, its sampler and its storage live in the engine loop on the client; a worker never touches
storage (DESIGN principle 1). Yet published objectives and integration callbacks read a few things
through the trial: the LightGBM/XGBoost pruning callbacks check ``trial.study.direction``, and
``optuna.terminator.report_cross_validation_scores`` writes a system attribute with
``trial.storage.set_trial_system_attr(trial._trial_id, ...)``. These views answer what needs no storage
access (facts read once when the call starts) and forward this trial's own attribute writes to the loop;
anything else raises an ``AttributeError`` that names what is not available inside a trial.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.study import StudyDirection

_WHY = "the study lives in the engine loop on the client, and trials never read its storage"


def study_facts(study: optuna.Study) -> dict[str, Any]:
    """The read-only facts of ``study`` that travel with each assignment (plain, msgpack-able values)."""
    facts = {
        "study_name": study.study_name,
        "directions": [direction.name for direction in study.directions],
        "user_attrs": study.user_attrs,
    }
    if hasattr(type(study), "system_attrs"):  # Optuna < 5 offers them on the study (deprecated)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            facts["system_attrs"] = getattr(study, "system_attrs")  # noqa: B009 (absent in Optuna 5)
    return facts


class StudyView:
    """``trial.study`` inside a daskopt trial: name, direction(s) and attributes, read-only."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self._facts = facts
        self._directions = [StudyDirection[name] for name in facts.get("directions", ["MINIMIZE"])]

    @property
    def study_name(self) -> str:
        return str(self._facts.get("study_name", ""))

    @property
    def directions(self) -> list[StudyDirection]:
        return list(self._directions)

    @property
    def direction(self) -> StudyDirection:
        if len(self._directions) > 1:
            raise RuntimeError(
                "A single direction cannot be retrieved from a multi-objective study. Consider using "
                "Study.directions to retrieve a list containing all directions."
            )
        return self._directions[0]

    @property
    def user_attrs(self) -> dict[str, Any]:
        """The study's user attributes as they were when the call started (a copy)."""
        return copy.deepcopy(self._facts.get("user_attrs", {}))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "system_attrs" and name in self._facts:  # only where the Optuna in use has them
            return copy.deepcopy(self._facts[name])
        raise AttributeError(
            f"trial.study.{name} is not available inside a daskopt trial ({_WHY}); inside a trial, "
            "trial.study offers study_name, direction, directions and user_attrs. Read "
            "anything else before optimize() and close over it, or use a callback (it runs on the client)"
        )

    def __repr__(self) -> str:
        return f"<daskopt StudyView {self.study_name!r}>"


# (key, value) -> None: sends one attribute write of this trial to the loop
AttrWriter = Callable[[str, Any], None]


class TrialStorageView:
    """``trial.storage`` inside a daskopt trial: this trial's attribute writes, sent to the loop."""

    def __init__(self, trial_id: int, set_user_attr: AttrWriter, set_system_attr: AttrWriter) -> None:
        self._trial_id = trial_id
        self._set_user_attr = set_user_attr
        self._set_system_attr = set_system_attr

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._check(trial_id, "set_trial_user_attr")
        self._set_user_attr(key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._check(trial_id, "set_trial_system_attr")
        self._set_system_attr(key, value)

    def _check(self, trial_id: int, method: str) -> None:
        if trial_id != self._trial_id:
            raise ValueError(
                f"trial.storage.{method}: a daskopt trial may write only its own attributes (trial id "
                f"{self._trial_id}), got trial id {trial_id}"
            )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"trial.storage.{name} is not available inside a daskopt trial ({_WHY}); inside a trial, "
            "trial.storage offers set_trial_user_attr and set_trial_system_attr for the trial itself"
        )

    def __repr__(self) -> str:
        return f"<daskopt TrialStorageView trial_id={self._trial_id}>"
