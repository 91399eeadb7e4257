"""daskopt: asynchronous, distributed hyperparameter optimization on Dask, driven by Optuna."""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daskopt.api import DistributedStudy, from_study, optimize
    from daskopt.errors import (
        ChannelUnreachable,
        ClusterError,
        DaskoptError,
        ObjectiveError,
        SchedulerLost,
        SpecError,
    )
    from daskopt.settings import Dashboard, Elastic, Failures, Resources, Timeout, Tracking, TrialOptions
    from daskopt.trial.handle import TrialHandle
    from daskopt.worker_priority import lower_worker_priority

# Where each public name lives. They are imported on first use (PEP 562), so ``import daskopt`` and the
# ``daskopt`` command stay light until something needs Dask and Optuna: the CLI answers bad input and
# ``--help`` without importing them, and a trial task's worker imports only the trial side.
_HOMES = {
    "DistributedStudy": "daskopt.api",
    "from_study": "daskopt.api",
    "optimize": "daskopt.api",
    "ChannelUnreachable": "daskopt.errors",
    "ClusterError": "daskopt.errors",
    "DaskoptError": "daskopt.errors",
    "ObjectiveError": "daskopt.errors",
    "SchedulerLost": "daskopt.errors",
    "SpecError": "daskopt.errors",
    "Dashboard": "daskopt.settings",
    "Elastic": "daskopt.settings",
    "Failures": "daskopt.settings",
    "Resources": "daskopt.settings",
    "Timeout": "daskopt.settings",
    "Tracking": "daskopt.settings",
    "TrialOptions": "daskopt.settings",
    "TrialHandle": "daskopt.trial.handle",
    "lower_worker_priority": "daskopt.worker_priority",
}

try:  # the version lives in pyproject.toml only
    __version__ = _metadata.version("daskopt")
except _metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'daskopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


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
