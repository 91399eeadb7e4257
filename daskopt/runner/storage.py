"""Open the study a study file names, in its storage: created, loaded, or refused with a one-line error.

A study that already holds trials gets its seeded sampler's seed offset by their number, so resuming never
replays the points the stored trials already tried.
"""

from __future__ import annotations

import shlex
from typing import Any

import optuna

from daskopt.errors import SpecError, first_line
from daskopt.factory import make_pruner, make_sampler, make_storage, storage_file
from daskopt.space import to_distributions
from daskopt.spec import StudySpec


def open_study(spec: StudySpec, *, create: bool) -> optuna.Study:
    """The study the file names, created if ``create``; its directions must match the file's.

    Whatever the storage itself refuses (a database driver not installed, a server that does not answer,
    a file that is not a journal) is a :class:`SpecError` on ``storage.url``: one line, not a traceback.
    """
    try:
        return _open_study(spec, create=create)
    except (SpecError, KeyboardInterrupt):
        raise
    except Exception as exc:
        first = first_line(exc, type(exc).__name__, limit=300)
        raise SpecError(f"cannot open {spec.storage.url}: {type(exc).__name__}: {first}", key="storage.url") from None


def _open_study(spec: StudySpec, *, create: bool) -> optuna.Study:
    file = storage_file(spec.storage.url)
    if not create and file is not None and not file.exists():  # reading must not create the file
        raise SpecError(f"{file} does not exist; start the study with `daskopt run`", key="storage.url")
    storage = make_storage(spec.storage.url)
    distributions = to_distributions(spec.space)
    sampler, pruner = make_sampler(spec.sampler, distributions), make_pruner(spec.pruner)
    name = spec.study.name
    if not create:
        if storage is None:
            raise SpecError(
                "an in-memory study does not outlive its run; use a journal or database url", key="storage.url"
            )
        try:
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            raise SpecError(
                f"no study named {name!r} in {spec.storage.url}; start it with `daskopt run`", key="study.name"
            ) from None
    directions = list(spec.study.directions)
    study: optuna.Study | None = None
    if storage is not None:  # load first: Optuna's journal storage appends a create record even when the
        try:  # study exists, and a refused run (directions below) must leave the storage as it was
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            pass
    if study is not None:
        study.sampler = _resumed_sampler(spec, distributions, len(study.get_trials(deepcopy=False)))
    if study is None:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=directions,
            load_if_exists=True,
        )
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise SpecError(
            f"the stored study {name!r} optimizes {stored}, the file says {directions}; "
            "use a new study name or storage to change directions",
            key="study.direction",
        )
    return study


def _resumed_sampler(spec: StudySpec, distributions: Any, n_stored: int) -> optuna.samplers.BaseSampler:
    """The file's sampler for a study that already holds trials. A seeded sampler rebuilt with the same seed
    would restart its random stream and propose stored points again, so its seed is offset by the number of
    stored trials: still reproducible, never a replay."""
    seed = spec.sampler.options.get("seed")
    if n_stored == 0 or not isinstance(seed, int):
        return make_sampler(spec.sampler, distributions)
    section = spec.sampler.model_copy(update={"options": {**spec.sampler.options, "seed": seed + n_stored}})
    return make_sampler(section, distributions)


def open_elsewhere(url: str, name: str) -> list[str]:
    """How to open this study outside daskopt: the ``optuna-dashboard`` command and the Python line.

    The URL a study file uses (``journal:/path``) is daskopt's own spelling; neither Optuna nor
    optuna-dashboard reads it, so the lines spell the storage their way."""
    file = storage_file(url)
    if url.startswith("journal:") and file is not None:
        storage = f"optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend({str(file)!r}))"
        dashboard = f"optuna-dashboard {shlex.quote(str(file))}"
    elif url == "memory" or url.startswith("memory"):
        return []
    else:
        storage, dashboard = repr(url), f"optuna-dashboard {shlex.quote(url)}"
    return [
        f"daskopt: browse it with: {dashboard}",
        f"daskopt: open it in Python: optuna.load_study(study_name={name!r}, storage={storage})",
    ]
