"""Fixed start points run several times with different seeds (the seeds' ablation workflow).

``repeats=N`` turns every enqueued configuration into N trials with user attributes ``repeat`` (0..N-1)
and ``seed`` (``seed_base + repeat``). Expanded trials are marked, so running the same study again
(resume) does not expand them a second time. The loop turns pruning off for them: a repeat exists to
measure the variance of a full run.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState


def expand_repeats(study: optuna.Study, repeats: int, seed_base: int) -> int:
    """Expand the study's WAITING trials; returns how many trials were added."""
    if repeats < 1:
        return 0
    added = 0
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if "repeat" in trial.user_attrs:
            continue
        params = dict(trial.system_attrs.get("fixed_params", {}))
        storage.set_trial_user_attr(trial._trial_id, "repeat", 0)
        storage.set_trial_user_attr(trial._trial_id, "seed", seed_base)
        for repeat in range(1, repeats):
            attrs = {**trial.user_attrs, "repeat": repeat, "seed": seed_base + repeat}
            study.enqueue_trial(params, user_attrs=attrs)
            added += 1
    return added
