"""Field types for the study file's string forms: durations, paths and storage URLs.

Each converts at validation time (``"1h30m"`` -> ``5400.0``, ``"runs/x"`` -> an absolute path), so code
reading a spec never parses a string again. Relative paths are taken from the ``base_dir`` validation
context: the study file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo

from daskopt.errors import SpecError
from daskopt.spec.base import base_dir, invalid, show
from daskopt.spec.values import parse_duration, resolve_path, resolve_storage_url


def _seconds(value: Any) -> float:
    try:
        return parse_duration(value)
    except SpecError as err:
        raise invalid(err.detail) from None


def _path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path) or (isinstance(value, str) and value):
        return resolve_path(str(value), base_dir(info))
    raise invalid(f"got {show(value)}; expected a path string")


def _storage_url(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise invalid(f"got {show(value)}; expected a storage URL string")
    try:
        return resolve_storage_url(value, base_dir(info))
    except SpecError as err:
        raise invalid(err.detail) from None


StorageUrl = Annotated[str, BeforeValidator(_storage_url)]
Duration = Annotated[float, BeforeValidator(_seconds)]
PositiveDuration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
ResolvedPath = Annotated[Path, BeforeValidator(_path)]
StrTuple = Annotated[tuple[str, ...], Field(strict=False)]
