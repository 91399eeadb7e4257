"""The tables of ``study.toml`` as frozen pydantic models, and :class:`StudySpec`, the whole file.

Defaults that depend on the study name (storage, output folder, W&B project) are filled in before
validation, and relative paths are resolved against the study file's folder (the ``base_dir`` validation
context), so a loaded spec means the same thing whatever directory ``daskopt`` was started from.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, ValidationInfo, field_validator, model_validator

from daskopt.spec.base import Section, invalid, key_error, show
from daskopt.spec.cluster import ClusterSection
from daskopt.spec.fields import Duration, PositiveDuration, ResolvedPath, StorageUrl, StrTuple
from daskopt.spec.params import ParamSpec

Direction = Literal["minimize", "maximize"]


class StudySection(Section):
    """``[study]``: what is optimized and when to stop. ``directions`` is always set, ``direction`` only
    when the file used that spelling."""

    name: Annotated[str, Field(min_length=1)]
    direction: Direction | None = None
    directions: Annotated[tuple[Direction, ...], Field(min_length=1, strict=False)] = ("minimize",)
    n_trials: PositiveInt | None = None
    timeout: PositiveDuration | None = None
    hard_timeout: bool = False  # at timeout, stop and re-enqueue running trials (else they finish)
    report_last_n: PositiveInt | None = None
    repeats: NonNegativeInt = 0
    seed_base: int = 0
    max_retries: NonNegativeInt = 0
    fail_fast: NonNegativeInt = 5  # stop when the first this-many outcomes are one same error; 0: never

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        """Let consumers read ``directions`` only, whichever spelling the file used."""
        if isinstance(data, dict) and "direction" in data:
            if "directions" in data:
                message = "got both direction and directions; keep direction (one objective) or directions"
                raise key_error(("directions",), message, data["directions"])
            return {**data, "directions": [data["direction"]]}
        return data


class ObjectiveSection(Section):
    """``[objective]``: a Python callable or a command line, run in ``workdir`` (default: the file's folder).

    ``command`` is normalized for ``subprocess``: a tuple of arguments, or one string when ``shell`` is true.
    """

    callable: str | None = None
    shell: bool = False
    command: str | tuple[str, ...] | None = None
    metric: Annotated[str, Field(min_length=1)] = "value"
    trial_timeout: PositiveDuration | None = None
    grace_period: Duration = 10.0
    workdir: ResolvedPath = Field(default=Path("."), validate_default=True)

    @field_validator("callable")
    @classmethod
    def _module_function(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", value):
            raise invalid(f'got {show(value)}; expected "module:function", e.g. "train:objective"')
        return value

    @field_validator("command", mode="plain")
    @classmethod
    def _argv_or_shell_line(cls, value: Any, info: ValidationInfo) -> str | tuple[str, ...]:
        shell = info.data.get("shell", False)
        if isinstance(value, str) and value.strip():
            try:
                return value if shell else tuple(shlex.split(value))
            except ValueError as err:
                raise invalid(f"got {show(value)}, which cannot be split into arguments ({err})") from None
        if isinstance(value, (list, tuple)) and value and all(isinstance(part, str) for part in value):
            if shell:
                raise invalid("got a list with shell = true; give one command string for the shell")
            return tuple(value)
        raise invalid(f'got {show(value)}; expected a command string or a list of strings, e.g. ["python", "t.py"]')

    @model_validator(mode="after")
    def _exactly_one(self) -> ObjectiveSection:
        if self.callable is None and self.command is None:
            message = 'missing; set callable = "module:function" or command = ["python", "train.py"]'
            raise key_error((), message, None)
        if self.callable is not None and self.command is not None:
            raise key_error(("command",), "got both callable and command; keep one of them", self.command)
        if self.shell and self.command is None:
            raise key_error(("shell",), "got shell = true for a callable; shell applies to command only", True)
        return self


class SamplerSection(Section):
    """``[sampler]``: an Optuna sampler by name; ``options`` are its constructor's keyword arguments."""

    name: str = "tpe"
    options: dict[str, Any] = Field(default_factory=dict)


class PrunerSection(Section):
    """``[pruner]``: an Optuna pruner by name; ``options`` are its constructor's keyword arguments."""

    name: str = "none"
    options: dict[str, Any] = Field(default_factory=dict)


class SchedulerSection(Section):
    """``[scheduler]``: a trial scheduler by name (``asha-promotion``, ``hyperband-promotion``, ``pbt``,
    ``pb2``); ``options`` are its constructor's keyword arguments. It decides instead of ``[pruner]``."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class ElasticSection(Section):
    """``[elastic]``: elastic trials (``daskopt.Elastic``): replicas that change while a trial runs. On
    ``local`` the cluster is one worker offering ``[cluster] n_workers`` replica slots (default: the CPUs);
    on ``local-cuda``, one worker owning every GPU."""

    min_replicas: PositiveInt = 1
    max_replicas: PositiveInt = 8
    initial_batch: PositiveInt | None = None
    max_batch: PositiveInt | None = None
    max_per_replica_batch: PositiveInt | None = None
    lr_rule: Literal["adascale", "linear", "sqrt", "none"] = "sqrt"
    restart_s: Duration = 10.0
    min_interval_s: Duration = 30.0

    @model_validator(mode="after")
    def _limits(self) -> ElasticSection:
        if self.max_replicas < self.min_replicas:
            raise key_error(("max_replicas",), f"got {self.max_replicas}; expected >= min_replicas", self.max_replicas)
        if self.max_batch is not None and self.initial_batch is not None and self.max_batch < self.initial_batch:
            raise key_error(("max_batch",), f"got {self.max_batch}; expected >= initial_batch", self.max_batch)
        if self.restart_s < 0 or self.min_interval_s < 0:
            raise key_error((), "restart_s and min_interval_s must be >= 0", None)
        return self


class StorageSection(Section):
    """``[storage]``: where the Optuna study lives (default ``journal:<study name>.journal``)."""

    url: StorageUrl


class OutputSection(Section):
    """``[output]``: the folder for logs and artifacts (default ``runs/<study name>``)."""

    dir: ResolvedPath


class WandbSection(Section):
    """``[wandb]``: Weights & Biases logging, one run per trial (project defaults to the study name)."""

    project: Annotated[str, Field(min_length=1)]
    entity: str | None = None
    mode: Literal["online", "offline", "disabled"] | None = None
    tags: StrTuple = ()


class DashboardSection(Section):
    """``[dashboard]``: the live Bokeh page; port 0 picks a free port."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0


class StudySpec(Section):
    """A whole study file, validated. Cross-table checks that need Optuna are done by ``spec_from_dict``."""

    key_noun: ClassVar[str] = "section"

    study: StudySection
    objective: ObjectiveSection
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    sampler: SamplerSection = SamplerSection()
    pruner: PrunerSection = PrunerSection()
    scheduler: SchedulerSection | None = None
    elastic: ElasticSection | None = None
    enqueue: Annotated[tuple[dict[str, Any], ...], Field(strict=False)] = ()
    cluster: ClusterSection = ClusterSection()
    storage: StorageSection
    output: OutputSection
    wandb: WandbSection
    dashboard: DashboardSection = DashboardSection()

    @model_validator(mode="after")
    def _elastic_alone(self) -> StudySpec:
        if self.elastic is not None and self.scheduler is not None:
            message = "got [elastic] beside [scheduler]; elastic trials and a scheduler cannot be combined yet"
            raise key_error(("elastic",), message, None)
        if self.elastic is not None and self.cluster.gpus_per_trial > 1:
            message = "got gpus_per_trial with [elastic]; elastic trials size themselves (min_replicas..max_replicas)"
            raise key_error(("cluster", "gpus_per_trial"), message, self.cluster.gpus_per_trial)
        return self

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_name(cls, data: Any) -> Any:
        """Fill the defaults derived from ``study.name``; without a valid name, its own error comes first."""
        study = data.get("study") if isinstance(data, dict) else None
        name = study.get("name") if isinstance(study, dict) else None
        if not isinstance(name, str):
            return data
        filled = dict(data)
        for section, key, default in (
            ("storage", "url", f"journal:{name}.journal"),
            ("output", "dir", f"runs/{name}"),
            ("wandb", "project", name),
        ):
            table = filled.get(section, {})
            if isinstance(table, dict) and key not in table:
                filled[section] = {**table, key: default}
        return filled
