"""The study file: ``study.toml`` -> validated, frozen :class:`StudySpec` (no Dask involved).

Every user error is a :class:`~daskopt.errors.SpecError` whose message names the file and the TOML key
path (``study.toml: space.lr.low: ...``), so the CLI can print it as it is.
"""

from __future__ import annotations

from daskopt.spec.cluster import AdaptSection, ClusterSection, SecuritySection
from daskopt.spec.load import load_spec, parse_duration, spec_from_dict
from daskopt.spec.models import (
    DashboardSection,
    ObjectiveSection,
    OutputSection,
    PrunerSection,
    SamplerSection,
    StorageSection,
    StudySection,
    StudySpec,
    WandbSection,
)
from daskopt.spec.params import CategoricalParam, FloatParam, IntParam, Param

__all__ = [
    "AdaptSection",
    "CategoricalParam",
    "ClusterSection",
    "DashboardSection",
    "FloatParam",
    "IntParam",
    "ObjectiveSection",
    "OutputSection",
    "Param",
    "PrunerSection",
    "SamplerSection",
    "SecuritySection",
    "StorageSection",
    "StudySection",
    "StudySpec",
    "WandbSection",
    "load_spec",
    "parse_duration",
    "spec_from_dict",
]
