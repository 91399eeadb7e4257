"""Resume a study a dead driver left behind, and count what it holds.

Trials left RUNNING by a driver that died are marked FAIL (``fail_reason`` says so) and their parameters
re-enqueued; a resumed run goes on until the study holds ``n_trials`` outcomes (``daskopt.attributes``).
Each new attempt starts from its predecessor's checkpoint: a trial that was paused (``suspended``) from the
step it was paused at, and stays paused until its scheduler resumes it; any other from its newest one.
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
        paused = trial.user_attrs.get(attributes.PAUSED_AT) if trial.user_attrs.get(attributes.SUSPENDED) else None
        reason = "interrupted: the driver stopped" + (f" (paused at step {paused[-1]})" if paused else "")
        set_trial_user_attr(study, stored_trial_id(trial), FAIL_REASON, reason)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        requeue(study, trial.number, trial.params, trial.user_attrs, restore_step=paused[-1] if paused else None)
    return len(stale)


def outcomes(study: optuna.Study) -> int:
    """Finished trials of ``study`` that count toward ``n_trials`` (see :func:`daskopt.attributes.is_outcome`)."""
    return attributes.outcomes(study.get_trials(deepcopy=False))
