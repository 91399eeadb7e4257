"""Pickle an objective so that any worker can load it, and load it there with a clear error if it cannot.

cloudpickle ships a function by reference (``module.name``) when its module was imported from a file,
and by value only for ``__main__``. A worker that cannot import that module (a file loaded with
``importlib``, a module next to a notebook, a script's sibling file on a remote cluster) then fails to
load the objective. So every module the objective may reach that is not part of an installed
distribution (nor the standard library) is pickled by value for this one call; what is installed
travels by reference as before, since workers run the same environment. If pickling by value fails (a
module-level lock or open file referenced by the objective), the plain by-reference pickle is used.

Lazy module objects (``optuna.integration``, ``optuna_integration``: subclasses of ``ModuleType``) are
pickled as "import this module by name", which cloudpickle does only for plain modules.
"""

from __future__ import annotations

import collections
import functools
import importlib
import importlib.metadata
import io
import pickle
import site
import sys
import sysconfig
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

_registry_lock = threading.Lock()


def _code_keeping_its_file(code: types.CodeType) -> Any:
    """cloudpickle's reduction of a code object pickled by value, with the real file name put back:
    cloudpickle writes "<dynamic-code>", so a failed trial's traceback named no file and showed no source."""
    assert _CLOUDPICKLE_CODE_REDUCE is not None  # only installed when cloudpickle has it
    constructor, args = _CLOUDPICKLE_CODE_REDUCE(code)
    if _DYNAMIC in args:
        at = args.index(_DYNAMIC)
        args = (*args[:at], code.co_filename, *args[at + 1 :])
    return constructor, args


_DYNAMIC = "<dynamic-code>"
_CLOUDPICKLE_CODE_REDUCE = getattr(getattr(cloudpickle, "cloudpickle", None), "_code_reduce", None)


class _Pickler(cloudpickle.Pickler):
    if _CLOUDPICKLE_CODE_REDUCE is not None:
        dispatch_table = collections.ChainMap(
            {types.CodeType: _code_keeping_its_file}, cloudpickle.Pickler.dispatch_table
        )

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType) and type(obj) is not types.ModuleType and obj.__name__ in sys.modules:
            return importlib.import_module, (obj.__name__,)
        if isinstance(obj, _LRU_CACHE_WRAPPER) and _travels_by_value(getattr(obj, "__module__", None)):
            parameters = obj.cache_parameters()
            return _cached, (obj.__wrapped__, parameters["maxsize"], parameters["typed"])
        return super().reducer_override(obj)


# A function under @functools.cache / @lru_cache is a C object that pickle can only name by reference
# (module.name); in a module that travels by value the worker has no such module to look it up in.
_LRU_CACHE_WRAPPER = type(functools.lru_cache(maxsize=None)(len))


def _travels_by_value(module: str | None) -> bool:
    """Whether ``module``'s functions are pickled by value here: ``__main__``, or registered (or a parent is)."""
    if not module:
        return False
    if module == "__main__":
        return True
    registered = cloudpickle.list_registry_pickle_by_value()
    parts = module.split(".")
    return any(".".join(parts[:i]) in registered for i in range(1, len(parts) + 1))


def _cached(function: Callable[..., Any], maxsize: int | None, typed: bool) -> Any:
    """The cached function again, on the worker, with an empty cache of the same size."""
    return functools.lru_cache(maxsize=maxsize, typed=typed)(function)


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.DEFAULT_PROTOCOL).dump(obj)
    return buffer.getvalue()


def dumps_objective(objective: Any) -> bytes:
    """The objective's pickle, with the modules workers may lack pickled by value."""
    with _registry_lock:  # the by-value registry is global: one call at a time changes it
        registered = set(cloudpickle.list_registry_pickle_by_value())
        added = [m for m in local_modules() if m.__name__ not in registered]
        for module in added:
            cloudpickle.register_pickle_by_value(module)
        try:
            return _dumps(objective)
        except Exception:
            pass  # by value reached something that cannot be pickled: by reference, as cloudpickle does
        finally:
            for module in added:
                cloudpickle.unregister_pickle_by_value(module)
    return _dumps(objective)


def local_modules() -> list[types.ModuleType]:
    """Imported modules from files that belong to no installed distribution and not to the stdlib."""
    installed = _installed_top_levels()
    modules = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name == "__main__" or name.partition(".")[0] in installed:
            continue
        if not _installed_file(path):
            modules.append(module)
    return modules


@functools.cache
def _installed_file(path: str) -> bool:
    """Whether ``path`` lies below the stdlib or a site-packages folder (cached: resolving is the cost)."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        return True  # unreadable: leave it to pickling by reference
    return any(resolved.is_relative_to(root) for root in _installed_roots())


@functools.cache
def _installed_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    folders = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    folders.update(site.getsitepackages())
    folders.add(site.getusersitepackages())
    return tuple(Path(folder).resolve() for folder in folders if folder)


def _installed_top_levels() -> frozenset[str]:
    """Top-level import names of installed distributions (editable installs included), read again when
    a site-packages folder changes (a notebook may install a package between two studies)."""
    stamps = []
    for root in _installed_roots():
        try:
            stamps.append(root.stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return _top_levels(tuple(stamps))


@functools.lru_cache(maxsize=1)
def _top_levels(stamps: tuple[int, ...]) -> frozenset[str]:
    """The names ``importlib.metadata.packages_distributions()`` gives, read without its ``stat`` of
    every installed file (0.03 s against 0.26-0.6 s with 170 distributions, and this runs in the first
    call's wall time): a distribution's ``top_level.txt``, else the ``.py`` paths of its ``RECORD``."""
    names: set[str] = set()
    for dist in importlib.metadata.distributions():
        listed = dist.read_text("top_level.txt")
        if listed is not None:
            names.update(line.strip() for line in listed.splitlines())
            continue
        for line in (dist.read_text("RECORD") or "").splitlines():
            path = line.split(",", 1)[0]
            if path.endswith(".py"):
                head, slash, _ = path.partition("/")
                names.add(head if slash else path[:-3])
    names.discard("")
    return frozenset(names)


def load_objective(payload: bytes) -> Callable[..., Any]:
    """Unpickle an objective on a worker; any failure becomes :class:`ObjectiveLoadError`."""
    try:
        objective = cloudpickle.loads(payload)
    except Exception as exc:
        raise ObjectiveLoadError(
            f"the objective could not be loaded on the worker: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(objective):
        raise ObjectiveLoadError(f"the objective loaded on the worker is a {type(objective).__name__}, not callable")
    return objective  # type: ignore[no-any-return]


class ObjectiveLoadError(Exception):
    """The objective's pickle could not be loaded on a worker (a module the worker lacks, say). The same
    text on every worker, so ``fail_fast`` sees one repeated error."""
