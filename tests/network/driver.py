"""A study driver run inside a layout's client namespace (``python driver.py '<json settings>'``).

It connects to the scheduler, runs ``daskopt.optimize`` over ``obj.objective`` (written into the work
folder by the test) with a journal storage in that folder, and writes ``result.json``: how the call ended
and how long it took. The test reads the storage itself. Optional settings: ``enqueue`` (points run first),
``elastic`` and ``checkpoint_dir`` (elastic trials).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import optuna
from distributed import Client

import daskopt


def main() -> None:
    settings = json.loads(sys.argv[1])
    folder = Path(settings["folder"])
    sys.path.insert(0, str(folder))
    import obj  # written by the test

    backend = optuna.storages.journal.JournalFileBackend(str(folder / "study.journal"))
    study = optuna.create_study(
        study_name="netns",
        storage=optuna.storages.JournalStorage(backend),
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
        load_if_exists=True,
    )
    for point in settings.get("enqueue", []):
        study.enqueue_trial(point)
    extra = {}
    if settings.get("elastic") is not None:
        extra = {"elastic": settings["elastic"], "tracking": {"checkpoint_dir": settings["checkpoint_dir"]}}
    started = time.monotonic()
    outcome = "ok"
    with Client(settings["scheduler"], timeout=30) as client:
        try:
            daskopt.optimize(
                study,
                obj.objective,
                n_trials=settings["n_trials"],
                client=client,
                channel=settings["channel"],
                failures=settings.get("failures"),
                show_progress_bar=True,  # the channel line goes to stderr
                **extra,
            )
        except daskopt.DaskoptError as err:
            outcome = f"{type(err).__name__}: {err}"
    (folder / "result.json").write_text(json.dumps({"outcome": outcome, "elapsed_s": time.monotonic() - started}))


if __name__ == "__main__":
    main()
