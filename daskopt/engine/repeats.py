"""Fixed start points run several times with different seeds (the seeds' ablation workflow).

``repeats=N`` turns every enqueued configuration into N trials with user attributes ``repeat`` (0..N-1)
and ``seed`` (``seed_base + repeat``). Expanded trials are marked, so running the same study again
(resume) does not expand them a second time. The loop turns pruning off for them: a repeat exists to
measure the variance of a full run.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from daskopt.attributes import REPEAT, SEED
from daskopt.optuna_access import enqueued_params, set_trial_user_attr, stored_trial_id


def expand_repeats(study: optuna.Study, repeats: int, seed_base: int) -> int:
    """Expand the study's WAITING trials; returns how many trials were added."""
    if repeats < 1:
        return 0
    added = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if REPEAT in trial.user_attrs:
            continue
        params = enqueued_params(trial)
        set_trial_user_attr(study, stored_trial_id(trial), REPEAT, 0)
        set_trial_user_attr(study, stored_trial_id(trial), SEED, seed_base)
        for repeat in range(1, repeats):
            attrs = {**trial.user_attrs, REPEAT: repeat, SEED: seed_base + repeat}
            study.enqueue_trial(params, user_attrs=attrs)
            added += 1
    return added
