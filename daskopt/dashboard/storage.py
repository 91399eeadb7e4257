"""Open a stored study for ``daskopt dashboard``: a study file's storage, or a storage URL.

Read-only use: unlike ``daskopt run`` it never creates a storage file, a study, or a folder, and a
storage holding several studies needs the name (the error lists them).
"""

from __future__ import annotations

from pathlib import Path

import optuna

from daskopt.errors import SpecError
from daskopt.spec.values import resolve_storage_url


def open_storage_study(storage_url: str, study_name: str | None = None) -> optuna.Study:
    """The study ``study_name`` in ``storage_url`` (``journal:PATH``, ``sqlite:///PATH``, or a database URL)."""
    url = resolve_storage_url(storage_url, Path.cwd())
    if url == "memory":
        raise SpecError("got 'memory'; an in-memory study lives only in its own process: give a journal or database")
    for prefix in ("journal:", "sqlite:///"):
        path = Path(url.removeprefix(prefix))
        if url.startswith(prefix) and not path.is_file():
            raise SpecError(f"no such storage file: {path}; check the path (or run the study first)")
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage: optuna.storages.BaseStorage = JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    else:
        storage = optuna.storages.get_storage(url)
    names = sorted(study.study_name for study in storage.get_all_studies())
    if study_name is None:
        if len(names) != 1:
            found = ", ".join(names) if names else "none"
            raise SpecError(f"the storage holds {len(names)} studies ({found}); choose one with --study NAME")
        study_name = names[0]
    elif study_name not in names:
        raise SpecError(f"no study named {study_name!r} in {storage_url}; it holds: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=storage)
