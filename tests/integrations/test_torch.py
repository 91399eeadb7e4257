"""daskopt.integrations.torch on the CPU: device, seeding, per-epoch pruning, and multi-process trials (gloo)."""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import optuna
import pytest

import daskopt
from tests.conftest import states
from tests.integrations import objectives

torch = pytest.importorskip("torch")
from daskopt.integrations import torch as integration  # noqa: E402


class RecordingTrial:
    """The two calls ``launch`` makes on a trial, with a pruner that stops after ``prune_after`` reports."""

    def __init__(self, prune_after: int | None = None) -> None:
        self.reports: list[tuple[int, float]] = []
        self.prune_after = prune_after

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.prune_after is not None and len(self.reports) >= self.prune_after


def test_a_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'daskopt\[torch\]'"):
        integration.device()


def test_device_is_the_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert integration.device().type == expected


def test_seed_everything_repeats_every_generator():
    def draws() -> tuple[float, float, list[float]]:
        import numpy

        return random.random(), float(numpy.random.rand()), torch.rand(3).tolist()

    integration.seed_everything(7)
    first = draws()
    integration.seed_everything(7)
    assert draws() == first
    assert os.environ["PYTHONHASHSEED"] == "7"
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    integration.seed_everything(8, deterministic=False)
    assert draws() != first
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    integration.seed_everything(0)  # leave the process deterministic for other tests


def test_epoch_reporter_reports_and_prunes_under_plain_optuna():
    def objective(trial: optuna.Trial) -> float:
        reporter = integration.EpochReporter(trial)
        for epoch in range(5):
            reporter.step(epoch, trial.suggest_float("x", 0, 1) if epoch else 0.1)
        return reporter.values[-1]

    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.5))
    study.enqueue_trial({"x": 0.2})
    study.enqueue_trial({"x": 0.7})
    study.optimize(objective, n_trials=2)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert study.trials[0].intermediate_values == {0: 0.1, 1: 0.2, 2: 0.2, 3: 0.2, 4: 0.2}
    assert study.trials[1].intermediate_values == {0: 0.1, 1: 0.7}


def test_distributed_env_describes_one_single_node_group():
    envs = integration.distributed_env(2)
    assert [e["RANK"] for e in envs] == ["0", "1"] and [e["LOCAL_RANK"] for e in envs] == ["0", "1"]
    assert {e["WORLD_SIZE"] for e in envs} == {"2"} and {e["MASTER_ADDR"] for e in envs} == {"127.0.0.1"}
    assert len({e["MASTER_PORT"] for e in envs}) == 1 and int(envs[0]["MASTER_PORT"]) > 0
    assert "CUDA_VISIBLE_DEVICES" not in envs[0]  # outside a GPU trial the GPUs are left as they are


@pytest.mark.slow
def test_launch_runs_two_gloo_ranks_and_returns_rank_0s_result():
    trial = RecordingTrial()
    result = integration.launch(objectives.rank_sum, 2, args=(1.5,), trial=trial)
    assert result["sum"] == pytest.approx(1.5 * (1 + 2)) and result["world"] == 2
    assert [seen["rank"] for seen in result["ranks"]] == [0, 1]
    assert trial.reports == [(0, pytest.approx(4.5))]


@pytest.mark.slow
def test_a_failing_rank_fails_the_call_and_stops_the_others():
    with pytest.raises(RuntimeError, match="rank 1 of 2 raised ValueError: rank one gives up"):
        integration.launch(objectives.rank_fails, 2, timeout=120)


@pytest.mark.slow
def test_a_pruned_trial_stops_its_ranks(tmp_path):
    trial = RecordingTrial(prune_after=2)
    with pytest.raises(optuna.TrialPruned):
        integration.launch(objectives.rank_reports_forever, 2, args=(str(tmp_path),), trial=trial, timeout=120)
    pids = [int((tmp_path / f"pid-{rank}").read_text()) for rank in range(2)]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert [step for step, _ in trial.reports[:2]] == [0, 1]


@pytest.mark.slow
def test_a_two_gpu_trial_launches_its_ranks_through_daskopt(multi_client):
    """gpus_per_trial = 2 on the CPU stand-in of a 4-GPU node: each trial's 2 gloo ranks see its 2 GPUs."""
    study = optuna.create_study(direction="maximize")
    daskopt.optimize(
        study, objectives.distributed_objective, n_trials=2, client=multi_client, resources={"gpus_per_trial": 2}
    )
    assert states(study) == {"COMPLETE": 2}
    for trial in study.trials:
        assert trial.value == pytest.approx(3 * trial.params["scale"])  # all_reduce of scale * (1 + 2), rank 0
        assert trial.intermediate_values == {0: pytest.approx(trial.value)}  # reported by rank 0
        visible = ",".join(trial.user_attrs["devices"])
        assert [r["visible"] for r in trial.user_attrs["ranks"]] == [visible, visible]


def test_checkpoints_let_a_paused_trial_resume_where_it_stopped(client, tmp_path):
    from daskopt.schedulers import PromotionASHA

    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    for lr in (0.03, 0.003, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.02):  # the first is paused, then promoted
        study.enqueue_trial({"lr": lr})
    daskopt.optimize(
        study,
        objectives.torch_regression,
        n_trials=9,
        n_concurrent=2,
        client=client,
        scheduler=PromotionASHA(max_resource=objectives.TORCH_EPOCHS - 1),
        tracking={"checkpoint_dir": tmp_path},
        show_progress_bar=False,
    )
    resumed = [t for t in study.trials if t.user_attrs.get("paused_at") and max(t.intermediate_values) > 1]
    assert resumed, "no trial was paused and resumed"
    plain = optuna.create_study(pruner=optuna.pruners.NopPruner())
    for trial in study.trials:
        plain.enqueue_trial(trial.params)
    plain.optimize(objectives.torch_regression, n_trials=len(study.trials))  # plain Optuna: no pauses
    for ours, theirs in zip(study.trials, plain.trials, strict=True):
        # every epoch, before and after a pause (on whichever worker), is what an unpaused run computes
        assert ours.intermediate_values == pytest.approx(
            {step: theirs.intermediate_values[step] for step in ours.intermediate_values}, rel=1e-6
        )
        if ours.state.name == "COMPLETE":
            assert ours.user_attrs["epochs_run"] == objectives.TORCH_EPOCHS  # no epoch trained twice
            assert ours.value == pytest.approx(theirs.value, rel=1e-6)


def test_restore_without_a_checkpoint_starts_from_scratch_and_a_plain_trial_saves_nothing():
    model = torch.nn.Linear(2, 1)
    trial = optuna.create_study().ask()
    assert integration.save_checkpoint(trial, 0, model) is False
    assert integration.restore_checkpoint(trial, model) == (0, {})


def test_the_noise_scale_meter_agrees_with_per_example_gradients():
    """Linear regression with noisy targets: per-example gradients give the true noise scale at the start
    point; the meter, fed micro-batches through accumulation, must land near it."""
    generator = torch.Generator().manual_seed(0)
    n, dim = 4096, 8
    x = torch.randn(n, dim, generator=generator)
    y = x @ torch.ones(dim) + 3.0 * torch.randn(n, generator=generator)
    model = torch.nn.Linear(dim, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    per_example = -2 * (y.unsqueeze(1) * x)  # d/dw (w.x - y)^2 at w = 0
    mean = per_example.mean(0)
    true_phi = float(per_example.var(0, unbiased=True).sum() / mean.pow(2).sum())
    meter = integration.NoiseScaleMeter(model, smoothing=0.98)
    k, b = 4, 32
    for _ in range(200):
        rows = torch.randint(0, n, (k * b,), generator=generator)
        model.zero_grad()
        for i in range(k):
            batch = rows[i * b : (i + 1) * b]
            loss = torch.nn.functional.mse_loss(model(x[batch]).squeeze(1), y[batch], reduction="mean") / k
            loss.backward()
            meter.micro_step(b)
        meter.step()  # no optimizer step: the gradient noise is measured at one point
    assert meter.value == pytest.approx(true_phi, rel=0.3)


def test_averaged_gradients_are_the_full_batch_gradient_and_measure_the_noise_scale():
    """Two gloo ranks: the mean of their gradients is the gradient of their union, and the noise scale
    from their own gradients against the mean lands near the true one (per-example gradients at the
    start point, as in the meter's test; the weights are never updated)."""
    result = integration.launch(objectives.rank_averages_gradients, 2, args=(300,), timeout=120)
    assert result["world"] == 2 and result["matches"]
    generator = torch.Generator().manual_seed(0)
    n, dim = 4096, 8
    x = torch.randn(n, dim, generator=generator)
    y = x @ torch.ones(dim) + 3.0 * torch.randn(n, generator=generator)
    per_example = -2 * (y.unsqueeze(1) * x)
    true_phi = float(per_example.var(0, unbiased=True).sum() / per_example.mean(0).pow(2).sum())
    assert result["phi"] == pytest.approx(true_phi, rel=0.35)


def test_a_master_port_taken_before_rank_0_listens_is_replaced(tmp_path):
    """The port is free when picked and taken before rank 0 binds it (by a busy gloo group's connections,
    say): the ranks start again on another port instead of failing the trial."""
    import socket

    from daskopt.integrations._launch import run_ranks

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = [taken.getsockname()[1], integration.free_port()]
    picked: list[int] = []

    def envs() -> list[dict[str, str]]:
        picked.append(ports[len(picked)])
        return integration.distributed_env(2, port=picked[-1])

    try:
        result = run_ranks(objectives.rank_sum, (1.0,), envs, trial=None, backend=None, init=True, timeout=120)
    finally:
        taken.close()
    assert picked == ports and result["sum"] == 3.0


def test_ranks_are_forked_by_one_zygote_per_process(monkeypatch):
    first = integration.launch(objectives.rank_parent, 2, init_process_group=False, timeout=120)
    second = integration.launch(objectives.rank_parent, 2, init_process_group=False, timeout=120)
    assert first["ppid"] == second["ppid"] != os.getpid()  # the zygote, kept between launches
    assert first["pid"] != second["pid"]
    monkeypatch.setenv("DASKOPT_LAUNCH_ZYGOTE", "0")
    assert integration.launch(objectives.rank_parent, 1, init_process_group=False, timeout=120)["ppid"] == os.getpid()


def test_ranks_die_with_their_zygote_and_the_launch_says_so(tmp_path):
    import signal
    import threading

    from daskopt.integrations import _zygote

    errors: list[BaseException] = []

    def run() -> None:
        try:
            integration.launch(
                objectives.rank_waits_for, 2, args=(str(tmp_path),), init_process_group=False, timeout=120
            )
        except BaseException as exc:  # checked below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("rank-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _zygote._zygote is not None
    os.kill(_zygote._zygote._proc.pid, signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive()
    assert errors and "killed by signal 9" in str(errors[0]), errors
    for path in tmp_path.glob("rank-*"):  # no rank outlives its zygote
        pid = int(path.read_text())
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    assert integration.launch(objectives.rank_parent, 1, init_process_group=False, timeout=120)  # a new zygote


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
