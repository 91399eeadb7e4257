"""daskopt: asynchronous, distributed hyperparameter optimization on Dask, driven by Optuna."""

from __future__ import annotations

from daskopt.api import DistributedStudy, from_study, optimize
from daskopt.errors import ClusterError, DaskoptError, ObjectiveError, SchedulerLost, SpecError
from daskopt.trial.handle import TrialHandle

__version__ = "0.1.0"

__all__ = [
    "ClusterError",
    "DaskoptError",
    "DistributedStudy",
    "ObjectiveError",
    "SchedulerLost",
    "SpecError",
    "TrialHandle",
    "__version__",
    "from_study",
    "optimize",
]
