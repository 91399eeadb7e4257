"""``study.toml`` -> :class:`StudySpec`, every failure as one :class:`SpecError` line naming file and key.

Pydantic reports every problem with a location; a person fixing a file wants the first one, at its TOML
key path (``space.lr.low``), with what was received and what was expected. Checks that need Optuna
(enqueued values, sampler and pruner options) run here too, so a file that loads can be run.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optuna.exceptions import ExperimentalWarning
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from daskopt.errors import SpecError
from daskopt.spec.base import ERROR_TYPE, show
from daskopt.spec.models import StudySpec
from daskopt.spec.values import parse_duration

__all__ = ["load_spec", "parse_duration", "spec_from_dict"]

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TABLE_ERRORS = {"model_type", "model_attributes_type", "dict_type"}
_INT64 = (-(2**63), 2**63 - 1)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a TOML bare key; any other key is written quoted


def load_spec(path: str | os.PathLike[str]) -> StudySpec:
    """Read and validate the study file at ``path``; relative paths in it are taken from its folder."""
    source = str(path)
    data = _read_toml(Path(path), source)
    _check_integers(data, (), source)
    return spec_from_dict(data, source=source, base_dir=Path(path).parent)


def spec_from_dict(data: Mapping[str, Any], source: str = "<dict>", base_dir: Path | None = None) -> StudySpec:
    """Validate ``data`` (a parsed study file); ``base_dir`` (default: the current one) anchors relative paths."""
    context = {"base_dir": (base_dir or Path.cwd()).resolve()}
    try:
        spec = StudySpec.model_validate(data, context=context)
    except ValidationError as err:
        raise _first_error(err, source) from err
    _check_buildable(spec, source)
    return spec


def _read_toml(path: Path, source: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such file; expected the path of a study.toml", source=source) from None
    except OSError as err:
        raise SpecError(f"cannot read it ({err.strerror}); expected a readable study.toml", source=source) from None
    except UnicodeDecodeError as err:
        raise SpecError(f"not UTF-8 ({err.reason} at byte {err.start}); save it as UTF-8", source=source) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        position = _TOML_POSITION.search(message)
        if position is None:
            raise SpecError(f"invalid TOML: {message}", source=source) from None
        line, column = position.groups()
        detail = f"invalid TOML: {message[: position.start()]} (column {column})"
        raise SpecError(detail, source=f"{source}:{line}") from None


def _check_integers(node: Any, loc: tuple[int | str, ...], source: str) -> None:
    """TOML integers are 64-bit, but ``tomllib`` reads any size; a larger one would overflow float
    arithmetic deep inside Optuna (``OverflowError``), so it is refused here, at its key."""
    if isinstance(node, int) and not isinstance(node, bool) and not _INT64[0] <= node <= _INT64[1]:
        detail = f"got {show(node)}; expected an integer of at most 64 bits (TOML's range)"
        raise SpecError(detail, source=source, key=_key_path(loc) or None)
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        _check_integers(child, (*loc, key), source)


def _first_error(err: ValidationError, source: str) -> SpecError:
    """Pydantic's first error as one line; later ones are often consequences of the first."""
    first = err.errors(include_url=False)[0]
    return SpecError(_describe(first), source=source, key=_key_path(first["loc"]) or None)


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``("enqueue", 0, "lr")`` -> ``enqueue[0].lr``: the way the key is written in TOML terms."""
    path = ""
    for part in loc:
        if isinstance(part, str) and not _BARE_KEY.fullmatch(part):
            part = json.dumps(part)  # quoted as TOML writes such a key; escapes line breaks and controls
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


def _describe(error: ErrorDetails) -> str:
    """What was wrong: our own checks already say it; pydantic's messages get the received value added."""
    loc, kind, message = error["loc"], error["type"], error["msg"]
    if kind == ERROR_TYPE:
        return message
    if kind == "missing":
        if len(loc) == 1:
            return f"missing required section [{loc[0]}]"
        return f"missing required key {loc[-1]!r} in [{_key_path(loc[:-1])}]"
    if kind in _TABLE_ERRORS:
        return f"got {show(error['input'])}; expected a table"
    expected = message.removeprefix("Input should be ")
    if expected == message:
        return f"got {show(error['input'])}: {message[:1].lower()}{message[1:]}"
    return f"got {show(error['input'])}; expected {expected}"


@contextmanager
def _located(source: str, prefix: str = "") -> Iterator[None]:
    """Re-raise a :class:`SpecError` from code that knows neither the file nor the enclosing key."""
    try:
        yield
    except SpecError as err:
        key = prefix + err.key if err.key else prefix.rstrip(".") or None
        raise SpecError(err.detail, source=source, key=key) from err


def _check_buildable(spec: StudySpec, source: str) -> None:
    """Enqueued values fit the space, and the sampler and pruner accept their options."""
    # Both modules build on this package: importing them at the top would be circular.
    from daskopt.factory import make_pruner, make_sampler, make_scheduler
    from daskopt.space import check_enqueued, to_distributions

    distributions = to_distributions(spec.space)
    for index, row in enumerate(spec.enqueue):
        with _located(source, f"enqueue[{index}]."):
            check_enqueued(row, distributions)
    with _located(source), warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        make_sampler(spec.sampler, distributions)
        make_pruner(spec.pruner)
        make_scheduler(spec.scheduler, spec.pruner)
