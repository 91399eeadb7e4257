"""The ``daskopt run`` machinery, one job per module: opening the storage (:mod:`.storage`), resuming after
a dead driver and counting outcomes (:mod:`.recovery`), the objective (:mod:`.objective`), the run itself
(:mod:`.run`) and the output files (:mod:`.outputs`)."""

from daskopt.runner.objective import make_objective
from daskopt.runner.outputs import best_summary, check_output_dir, write_outputs
from daskopt.runner.recovery import outcomes, recover_interrupted
from daskopt.runner.run import RunReport, run_failed, run_study
from daskopt.runner.storage import open_study

__all__ = [
    "RunReport",
    "best_summary",
    "check_output_dir",
    "make_objective",
    "open_study",
    "outcomes",
    "recover_interrupted",
    "run_failed",
    "run_study",
    "write_outputs",
]
