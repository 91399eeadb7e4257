"""``[cluster]``: where trials run, and the checks that keep its keys consistent with its ``kind``.

Checks on one key against another are field validators (fields validate in declaration order), so a
mistake is reported at the key to change, e.g. ``cluster.address``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, NonNegativeInt, PositiveInt, ValidationInfo, field_validator, model_validator

from daskopt.spec.base import Section, invalid, key_error, show
from daskopt.spec.fields import PositiveDuration, ResolvedPath


class AdaptSection(Section):
    """``[cluster.adapt]``: let Dask scale the worker count between ``minimum`` and ``maximum``."""

    minimum: NonNegativeInt = 0
    maximum: PositiveInt

    @field_validator("maximum")
    @classmethod
    def _not_below_minimum(cls, maximum: int, info: ValidationInfo) -> int:
        minimum = info.data.get("minimum", 0)
        if maximum < minimum:
            raise invalid(f"got maximum = {maximum} with minimum = {minimum}; expected maximum >= minimum")
        return maximum


class SecuritySection(Section):
    """``[cluster.security]``: TLS files for the scheduler connection (``key_file`` when not in the cert)."""

    ca_file: ResolvedPath
    cert_file: ResolvedPath
    key_file: ResolvedPath | None = None


class ClusterSection(Section):
    """``[cluster]``: where trials run. ``slurm`` is passed to ``dask_jobqueue.SLURMCluster``."""

    kind: Literal["local", "local-cuda", "address", "slurm"] = "local"
    n_workers: PositiveInt | None = None
    threads_per_worker: PositiveInt = 1
    address: str | None = None
    connect_timeout: PositiveDuration = 15.0
    scheduler_grace: PositiveDuration = 20.0
    channel: Literal["auto", "direct", "relay"] = "auto"  # how trials reach the driver (optimize's channel)
    trials_per_gpu: PositiveInt = 1
    gpus_per_trial: PositiveInt = 1
    gpu: bool | None = None  # trials request GPU_SLOT; default: true for local-cuda or gpus_per_trial > 1
    gpu_memory_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    packing: Literal["processes", "threads"] | None = None  # local-cuda with trials_per_gpu > 1; docs/gpu.md
    slurm: dict[str, Any] | None = None
    # the workers' nice value (0-19, below the driver's loop); default: 10 for clusters daskopt starts on this
    # machine (local, local-cuda), 0 (unchanged) for address and slurm; daskopt/worker_priority.py
    worker_nice: Annotated[int, Field(ge=0, le=19)] | None = None
    adapt: AdaptSection | None = None
    security: SecuritySection | None = None

    @field_validator("address")
    @classmethod
    def _scheduler_address(cls, address: str, info: ValidationInfo) -> str:
        if info.data.get("kind") != "address":
            raise invalid('got an address with kind != "address"; set kind = "address" or remove address')
        parts = urlsplit(address)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
            raise invalid(f'got {show(address)}; expected "tcp://host:port" or "tls://host:port"')
        return address

    @field_validator("slurm")
    @classmethod
    def _only_for_slurm(cls, slurm: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("kind") != "slurm":
            raise invalid('got a [cluster.slurm] table with kind != "slurm"; set kind = "slurm" or remove it')
        return slurm

    @field_validator("gpus_per_trial")
    @classmethod
    def _share_or_span(cls, gpus: int, info: ValidationInfo) -> int:
        shared = info.data.get("trials_per_gpu", 1)
        if gpus > 1 and shared > 1:
            raise invalid(f"got gpus_per_trial = {gpus} with trials_per_gpu = {shared}; set one of them to 1")
        return gpus

    @model_validator(mode="after")
    def _address_given(self) -> ClusterSection:
        if self.kind == "address" and self.address is None:
            raise key_error(("address",), 'missing; kind = "address" needs address = "tcp://host:8786"', None)
        return self

    @model_validator(mode="after")
    def _gpu_keys_agree(self) -> ClusterSection:
        if self.gpu is False and self.gpus_per_trial > 1:
            message = f"got gpus_per_trial = {self.gpus_per_trial} with gpu = false; remove gpu or set it to true"
            raise key_error(("gpus_per_trial",), message, self.gpus_per_trial)
        if self.packing is not None and self.kind != "local-cuda":
            message = f'got packing with kind = "{self.kind}"; packing applies to kind = "local-cuda" only'
            raise key_error(("packing",), message, self.packing)
        return self

    @property
    def uses_gpu(self) -> bool:
        """Whether each trial requests ``GPU_SLOT = gpus_per_trial`` (see :mod:`daskopt.gpu`)."""
        if self.gpu is not None:
            return self.gpu
        return self.kind == "local-cuda" or self.gpus_per_trial > 1
