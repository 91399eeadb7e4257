"""Trials request integer GPU slots and land where the workers' layout says, checked on CPU stand-ins."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import optuna
import pytest

import daskopt
from daskopt.engine.slots import cluster_slots
from daskopt.errors import ClusterError, SpecError
from daskopt.gpu import GpuObjective, prepare
from daskopt.gpu import trial as gpu_trial
from daskopt.objectives.command import CommandObjective
from daskopt.runner import run_study
from daskopt.spec import load_spec
from tests.conftest import states
from tests.integrations import objectives


def overlapping(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[optuna.trial.FrozenTrial, ...]]:
    """Pairs of trials whose running intervals overlap."""
    pairs = []
    for a, b in itertools.combinations(trials, 2):
        (a0, a1), (b0, b1) = a.user_attrs["interval"], b.user_attrs["interval"]
        if a0 < b1 and b0 < a1:
            pairs.append((a, b))
    return pairs


def test_processes_layout_packs_k_trials_per_gpu_each_in_its_own_process(pinned_client):
    assert cluster_slots(pinned_client, resources={"GPU_SLOT": 1}) == 4
    study = optuna.create_study()
    daskopt.optimize(
        study,
        objectives.gpu_probe,
        n_trials=8,
        client=pinned_client,
        resources={"gpus_per_trial": 1, "gpu_memory_fraction": 0.25},
    )
    assert states(study) == {"COMPLETE": 8}
    trials = study.trials
    for t in trials:
        assert t.user_attrs["devices"] == [t.user_attrs["visible"].split(",")[0]]  # its worker's GPU, cuda:0
        assert t.user_attrs["ordinals"] == [0]
        assert t.user_attrs["trials_per_process"] == 1 and t.user_attrs["process_fraction"] == 0.25
    by_gpu = {d: [t for t in trials if t.user_attrs["devices"] == [d]] for d in ("0", "1")}
    assert all(by_gpu.values()), "both GPUs got trials"
    assert objectives.most_at_once(trials) >= 3, "4 slots: trials ran side by side"
    for on_gpu in by_gpu.values():
        assert objectives.most_at_once(on_gpu) <= 2, "never more than trials_per_gpu on one GPU"
    for a, b in overlapping(trials):
        assert a.user_attrs["pid"] != b.user_attrs["pid"], "packed trials run in separate processes"


def test_threads_layout_shares_one_process_so_the_cap_covers_its_trials(threads_client):
    assert cluster_slots(threads_client, resources={"GPU_SLOT": 1}) == 2
    study = optuna.create_study()
    daskopt.optimize(
        study,
        objectives.gpu_probe,
        n_trials=4,
        client=threads_client,
        resources={"gpus_per_trial": 1, "gpu_memory_fraction": 0.25},
    )
    assert states(study) == {"COMPLETE": 4}
    for t in study.trials:
        assert t.user_attrs["devices"] == ["3"]
        assert t.user_attrs["trials_per_process"] == 2
        assert t.user_attrs["process_fraction"] == 0.5  # per process: 2 trials x 0.25
    assert len({t.user_attrs["pid"] for t in study.trials}) == 1
    assert objectives.most_at_once(study.trials) == 2


def test_multi_gpu_trials_hold_disjoint_gpus_of_their_worker(multi_client):
    assert cluster_slots(multi_client, resources={"GPU_SLOT": 2}) == 2
    study = optuna.create_study()
    daskopt.optimize(study, objectives.gpu_probe, n_trials=6, client=multi_client, resources={"gpus_per_trial": 2})
    assert states(study) == {"COMPLETE": 6}
    for t in study.trials:
        assert len(t.user_attrs["devices"]) == 2
        assert set(t.user_attrs["devices"]) <= {"0", "1", "2", "3"}
        assert t.user_attrs["devices"] == [str(i) for i in t.user_attrs["ordinals"]]
    pairs = overlapping(study.trials)
    assert pairs, "two 2-GPU trials ran at once on the 4-GPU worker"
    for a, b in pairs:
        assert not set(a.user_attrs["devices"]) & set(b.user_attrs["devices"])


def test_a_gpu_request_no_worker_can_serve_is_refused(client):
    study = optuna.create_study()
    with pytest.raises(ClusterError, match="GPU_SLOT"):
        daskopt.optimize(study, objectives.gpu_probe, n_trials=2, client=client, resources={"gpus_per_trial": 1})
    assert not study.trials


def test_prepare_adds_the_slot_request_and_wraps_only_when_asked():
    def objective(trial):
        return 0.0

    assert prepare(objective, None) == (objective, None)
    wrapped, resources = prepare(objective, {"MEM": 1}, gpus_per_trial=2)
    assert resources == {"MEM": 1, "GPU_SLOT": 2}
    assert isinstance(wrapped, GpuObjective) and wrapped.gpus_per_trial == 2
    wrapped, resources = prepare(objective, None, gpu_memory_fraction=0.5)
    assert resources is None and wrapped.memory_fraction == 0.5  # a cap alone requests nothing
    with pytest.raises(ValueError, match="gpu_memory_fraction"):
        prepare(objective, None, gpu_memory_fraction=1.5)
    with pytest.raises(ValueError, match="gpus_per_trial"):
        prepare(objective, None, gpus_per_trial=0)


def test_memory_cap_is_set_per_process_times_the_trials_sharing_it(monkeypatch):
    torch = pytest.importorskip("torch")
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: calls.append((f, d)))
    monkeypatch.setattr(gpu_trial, "_worker_slots", lambda: (4.0, 4))  # threads packing: 4 trials per process
    monkeypatch.setattr(gpu_trial, "_capped", {})
    for name in gpu_trial.ALLOC_ENVS:
        monkeypatch.setenv(name, "")  # so that monkeypatch restores the variable after the wrapper set it
        monkeypatch.delenv(name)
    wrapped = GpuObjective(lambda trial: gpu_trial.current(), memory_fraction=0.2)
    assignment = wrapped(None)
    assert calls == [(0.8, 0)]
    assert assignment.process_fraction == 0.8 and assignment.memory_fraction == 0.2
    import os

    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    wrapped(None)
    assert calls == [(0.8, 0)], "set once per process and device"
    assert gpu_trial.current() is None, "the assignment lives only while the trial runs"


def test_a_command_objective_gets_its_gpus_and_share_in_its_environment(tmp_path):
    (tmp_path / "echo_gpus.py").write_text(
        "import json, os\n"
        "devices = os.environ['CUDA_VISIBLE_DEVICES'].split(',')\n"
        "share = float(os.environ['DASKOPT_GPU_MEMORY_FRACTION'])\n"
        "print('daskopt: ' + json.dumps({'value': 100 * len(devices) + share}))\n"
    )
    command = CommandObjective([sys.executable, "echo_gpus.py"], space_names=[], workdir=tmp_path)
    wrapped, _ = prepare(command, None, gpus_per_trial=1, gpu_memory_fraction=0.3)
    assert wrapped.starts_processes, "no CUDA context in the worker for a program's trial"
    study = optuna.create_study()
    study.optimize(wrapped, n_trials=1)
    assert study.best_value == pytest.approx(100.3)


def write_study(folder: Path, cluster: str) -> Path:
    path = folder / "study.toml"
    path.write_text(
        '[study]\nname = "gpu"\nn_trials = 2\n[objective]\ncallable = "tests.integrations.objectives:gpu_probe"\n'
        f"[dashboard]\nenabled = false\n[cluster]\n{cluster}\n"
    )
    return path


@pytest.mark.parametrize(
    ("cluster", "key", "words"),
    [
        ("gpu_memory_fraction = 1.5", "cluster.gpu_memory_fraction", "1"),
        ("gpu_memory_fraction = 0", "cluster.gpu_memory_fraction", "0"),
        ('packing = "threads"', "cluster.packing", 'kind = "local-cuda" only'),
        ('kind = "local-cuda"\npacking = "fibers"', "cluster.packing", "processes"),
        ("gpu = false\ngpus_per_trial = 2", "cluster.gpus_per_trial", "gpu = false"),
    ],
)
def test_gpu_keys_are_checked_with_their_key_path(tmp_path, cluster, key, words):
    with pytest.raises(SpecError) as info:
        load_spec(write_study(tmp_path, cluster))
    assert info.value.key == key and words in str(info.value)
    assert "\n" not in str(info.value)


def test_which_studies_request_gpu_slots(tmp_path):
    def uses(cluster: str) -> bool:
        return load_spec(write_study(tmp_path, cluster)).cluster.uses_gpu

    assert uses('kind = "local-cuda"') and not uses('kind = "local-cuda"\ngpu = false')
    assert not uses('kind = "local"') and uses('kind = "local"\ngpu = true')
    assert uses('kind = "address"\naddress = "tcp://h:8786"\ngpus_per_trial = 2')


def test_run_study_requests_gpu_slots_when_the_file_says_trials_use_gpus(tmp_path):
    spec = load_spec(write_study(tmp_path, 'kind = "local"\nn_workers = 1\ngpu = true'))
    with pytest.raises(ClusterError, match="GPU_SLOT=1"):
        run_study(spec)
