"""daskopt: asynchronous, distributed hyperparameter optimization on Dask, driven by Optuna."""

from __future__ import annotations

from importlib import metadata as _metadata

from daskopt.api import DistributedStudy, from_study, optimize
from daskopt.errors import ChannelUnreachable, ClusterError, DaskoptError, ObjectiveError, SchedulerLost, SpecError
from daskopt.settings import Dashboard, Elastic, Failures, Resources, Timeout, Tracking, TrialOptions
from daskopt.trial.handle import TrialHandle
from daskopt.worker_priority import lower_worker_priority

try:  # the version lives in pyproject.toml only
    __version__ = _metadata.version("daskopt")
except _metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

__all__ = [
    "ChannelUnreachable",
    "ClusterError",
    "Dashboard",
    "DaskoptError",
    "DistributedStudy",
    "Elastic",
    "Failures",
    "ObjectiveError",
    "Resources",
    "SchedulerLost",
    "SpecError",
    "Timeout",
    "Tracking",
    "TrialHandle",
    "TrialOptions",
    "__version__",
    "from_study",
    "lower_worker_priority",
    "optimize",
]
