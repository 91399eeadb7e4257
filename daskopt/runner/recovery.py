"""Resume a study a dead driver left behind, and count what it holds.

Trials left RUNNING by a driver that died are marked FAIL (``fail_reason`` says so) and their parameters
re-enqueued; a resumed run goes on until the study holds ``n_trials`` outcomes (``daskopt.attributes``).
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from daskopt import attributes
from daskopt.attributes import FAIL_REASON, requeue
from daskopt.optuna_access import set_trial_user_attr, stored_trial_id


def recover_interrupted(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a dead driver as FAIL and re-enqueue their parameters."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        set_trial_user_attr(study, stored_trial_id(trial), FAIL_REASON, "interrupted: the driver stopped")
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        requeue(study, trial.number, trial.params, trial.user_attrs)
    return len(stale)


def outcomes(study: optuna.Study) -> int:
    """Finished trials of ``study`` that count toward ``n_trials`` (see :func:`daskopt.attributes.is_outcome`)."""
    return attributes.outcomes(study.get_trials(deepcopy=False))
