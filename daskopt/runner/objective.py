"""The objective a study file names: a ``module:function`` or a command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from daskopt.errors import SpecError
from daskopt.objectives.python import load_callable
from daskopt.spec import StudySpec


def make_objective(spec: StudySpec) -> Callable[..., Any]:
    section = spec.objective
    if section.callable:
        return load_callable(section.callable, Path(section.workdir))
    from daskopt.objectives.command import CommandObjective

    if section.command is None:  # the spec guarantees one of the two; say so rather than assume
        raise SpecError("set callable or command", key="objective")
    return CommandObjective(
        section.command,
        space_names=list(spec.space),
        metric=section.metric,
        shell=section.shell,
        workdir=section.workdir,
        grace_period=section.grace_period,
        log_dir=Path(spec.output.dir) / "logs",
    )
