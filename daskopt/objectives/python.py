"""Load a ``module:function`` objective named in a study file.

The module is looked up next to the study file first (``objective.workdir``), then on ``sys.path``. A
module found only next to the study file is pickled by value, so workers that cannot import it (another
machine, another working directory) still receive the function.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

from daskopt.errors import SpecError

KEY = "objective.callable"


def load_callable(target: str, workdir: Path) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    folder = str(workdir)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise SpecError(
            f"cannot import module {module_name!r} (looked in {folder} and on sys.path): {type(exc).__name__}: {exc}",
            key=KEY,
        ) from None
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise SpecError(
                f"module {module_name!r} has no attribute {attribute!r}; its callables: {', '.join(names) or 'none'}",
                key=KEY,
            )
        value = getattr(value, part)
    if not callable(value):
        raise SpecError(f"{target!r} is a {type(value).__name__}, not a function of one trial", key=KEY)
    module_file = getattr(module, "__file__", None)
    if module_file and Path(module_file).resolve().is_relative_to(workdir.resolve()):
        cloudpickle.register_pickle_by_value(module)
    return value  # type: ignore[no-any-return]
