"""Parsers for the string forms a study file uses: durations, paths and storage URLs.

They are plain functions raising :class:`~daskopt.errors.SpecError` (without a key: the caller knows which
key it parsed), so the models, the factory and Python callers share one definition of each form.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from daskopt.errors import SpecError
from daskopt.spec.base import show

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|d|h|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_FORMS = 'a duration such as "90s", "20m", "2h", "1h30m" or a number of seconds'

STORAGE_FORMS = '"journal:PATH", "sqlite:///PATH", "postgresql://...", "mysql://..." or "memory"'


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number of seconds, or a string of number+unit parts (ms, s, m, h, d)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SpecError(f"got {show(value)}; expected {_DURATION_FORMS}")
    if isinstance(value, str):
        text = value.replace(" ", "")
        if not _DURATION.fullmatch(text):
            raise SpecError(f"got {show(value)}; expected {_DURATION_FORMS}")
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond float range, e.g. timeout = 10**400
            seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise SpecError(f"got {show(value)}; expected a duration of zero or more seconds")
    return seconds


def resolve_path(text: str, base: Path) -> Path:
    """``text`` as an absolute path, relative paths taken from ``base`` (the study file's folder)."""
    path = Path(text).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def resolve_storage_url(url: str, base: Path) -> str:
    """``url`` checked against the accepted forms, with a relative journal or SQLite path made absolute.

    Absolute paths make the storage independent of the directory ``daskopt`` is started from.
    """
    for prefix in ("journal:", "sqlite:///"):
        if url.startswith(prefix):
            path = url.removeprefix(prefix)
            if not path:
                raise SpecError(f"got {show(url)}; expected a file path after {prefix!r}, e.g. {prefix}study.db")
            return prefix + str(resolve_path(path, base))
    scheme, separator, _ = url.partition("://")
    if url == "memory" or (separator and scheme.partition("+")[0] in ("postgresql", "mysql")):
        return url
    raise SpecError(f"got {show(url)}; expected {STORAGE_FORMS}")
