"""An elastic trial whose replicas span two hosts: each host a network namespace with one worker offering one
``GPU_SLOT``, the driver in a third (tests/network/layout.py, routed).

The trial grows to 2 replicas, which no single host has room for, so its ranks run on both hosts: rank 0
beside the objective on one, rank 1 in a part task on the other (daskopt/elastic/parts.py), joined by gloo
over the veths with the first host's address as ``MASTER_ADDR``. It stays one Optuna trial and ends with
the losses of an unresized run (tests/elastic/training.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest

from tests.elastic.training import reference
from tests.network.layout import Layout, requires_netns

pytest.importorskip("torch")
pytestmark = [pytest.mark.slow, requires_netns]

DRIVER = Path(__file__).with_name("driver.py")
LONG = {"lr": 0.05, "steps": 40, "sleep_s": 0.05}
SHORT = {"lr": 0.01, "steps": 2, "sleep_s": 0.05}
ELASTIC = {"max_replicas": 2, "initial_batch": 16, "max_batch": 16, "min_interval_s": 0, "restart_s": 0}
OBJECTIVE = "from tests.elastic.training import elastic_objective as objective\n"
SPANNED = """
import sys
from distributed import Client
with Client(sys.argv[1], timeout=30) as client:
    started = client.run_on_scheduler(
        lambda dask_scheduler: [str(e[0]) for e in dask_scheduler.transition_log if e[2] == "processing"]
    )
    print(sum("-part-" in key for key in started))
"""


def test_a_trial_whose_replicas_span_two_hosts(tmp_path: Path) -> None:
    with Layout(
        tmp_path, routed=True, n_workers=1, nthreads=2, worker_hosts=2, worker_args=["--resources", "GPU_SLOT=1"]
    ) as layout:
        layout.wait_for_workers()
        (tmp_path / "obj.py").write_text(OBJECTIVE)
        settings = {
            "folder": str(tmp_path),
            "scheduler": layout.scheduler_address_for_client,
            "n_trials": 2,
            "channel": "auto",
            "enqueue": [LONG, SHORT],
            "elastic": ELASTIC,
            "checkpoint_dir": str(tmp_path / "checkpoints"),
        }
        driver = layout.run_in_client(
            [sys.executable, str(DRIVER), json.dumps(settings)], timeout=300, capture_output=True, text=True
        )
        assert driver.returncode == 0, f"{driver.stderr[-3000:]}\n{layout.logs()}"
        assert json.loads((tmp_path / "result.json").read_text())["outcome"] == "ok", driver.stderr[-3000:]
        spanned = layout.run_in_client(
            [sys.executable, "-c", SPANNED, layout.scheduler_address_for_client],
            timeout=60,
            capture_output=True,
            text=True,
        )
        assert spanned.returncode == 0, spanned.stderr
        assert int(spanned.stdout.strip()) >= 1  # a part task ran: rank 1 on the other host
    backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.journal"))
    study = optuna.load_study(study_name="netns", storage=optuna.storages.JournalStorage(backend))
    trial = study.trials[0]
    assert trial.state.name == "COMPLETE", trial.user_attrs
    assert 2 in [replicas for _, replicas in trial.user_attrs["replicas"]], trial.user_attrs
    expected = reference(LONG["lr"], LONG["steps"])
    assert trial.value == pytest.approx(expected[-1], rel=1e-9)
    assert sorted(trial.intermediate_values) == list(range(LONG["steps"]))
    for step, value in trial.intermediate_values.items():
        assert value == pytest.approx(expected[step], rel=1e-9)
    assert study.trials[1].state.name == "COMPLETE"
