"""Trial schedulers: deciders beside Optuna's pruners that pause, resume and clone trials.

Pass one to :func:`daskopt.optimize` as ``scheduler=``, or name it in a study file's ``[scheduler]``
section. They need trials that checkpoint (``trial.save_checkpoint(state, step)`` before
``trial.report(value, step)``; see :mod:`daskopt.trial.checkpoints`) and a checkpoint folder.
"""

from daskopt.schedulers.base import CONTINUE, PRUNE, SUSPEND, Exploit, Report, Scheduler
from daskopt.schedulers.pb2 import PB2
from daskopt.schedulers.pbt import PBT, Replay, schedule
from daskopt.schedulers.promotion import PromotionASHA, PromotionHyperband

__all__ = [
    "CONTINUE",
    "PB2",
    "PBT",
    "PRUNE",
    "SUSPEND",
    "Exploit",
    "PromotionASHA",
    "PromotionHyperband",
    "Replay",
    "Report",
    "Scheduler",
    "schedule",
]
