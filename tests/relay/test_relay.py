"""The trial channel relayed through the scheduler, on a real LocalCluster: the same outcomes as the direct
channel, compared in the same test. (Layouts where workers really cannot reach the client are in
tests/network.)"""

from __future__ import annotations

import logging
import struct
import threading

import optuna
import pytest

import daskopt
from daskopt.relay.scheduler_plugin import Frames
from tests import trial_objectives as objectives
from tests.conftest import states


def _run(
    client,
    channel: str,
    objective=objectives.quadratic,
    n_trials: int = 16,
    n_concurrent: int = 2,
    study: optuna.Study | None = None,
    **kwargs,
) -> optuna.Study:
    study = study or optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    )
    daskopt.optimize(
        study,
        objective,
        n_trials=n_trials,
        n_concurrent=n_concurrent,
        client=client,
        channel=channel,
        show_progress_bar=False,
        **kwargs,
    )
    return study


def test_relay_gives_the_direct_channels_outcomes(client, caplog):
    """One trial at a time with a seeded sampler: trial for trial the same parameters; both prune, and the counts
    are exact. Reports, prune questions, define-by-run suggests and attributes all cross the relay."""
    with caplog.at_level(logging.INFO, logger="daskopt"):
        relayed = _run(client, "relay", objectives.define_by_run_with_attrs, n_concurrent=1)
    assert "trial channel: relayed through the scheduler" in caplog.text
    direct = _run(client, "direct", objectives.define_by_run_with_attrs, n_concurrent=1)
    for study in (relayed, direct):
        assert sum(states(study).values()) == 16 and set(states(study)) <= {"COMPLETE", "PRUNED"}
        assert all(t.user_attrs.get("seen") == t.number for t in study.trials)
    assert [t.params for t in relayed.trials] == [t.params for t in direct.trials]
    assert [t.state for t in relayed.trials] == [t.state for t in direct.trials]


def test_auto_chooses_direct_when_workers_reach_the_client(client, caplog):
    with caplog.at_level(logging.INFO, logger="daskopt"):
        study = _run(client, "auto", n_trials=4)
    assert "trial channel: direct to 127.0.0.1:" in caplog.text
    assert "2 of 2 workers reached it" in caplog.text
    assert sum(states(study).values()) == 4


def test_two_studies_share_the_relay_at_once(client):
    """One plugin per scheduler, one route per call: concurrent studies do not see each other's trials."""
    studies: list[optuna.Study] = []

    def run() -> None:
        studies.append(_run(client, "relay", n_trials=8))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(studies) == 2
    for study in studies:
        assert sum(states(study).values()) == 8
        assert all(t.state.is_finished() for t in study.trials)


@pytest.mark.parametrize("channel", ["relay", "direct"])
def test_objective_error_reaches_the_caller_over_either_path(client, channel):
    with pytest.raises(daskopt.ObjectiveError, match="ValueError"):
        _run(client, channel, objectives.raises_on_odd, n_trials=3, catch=())


@pytest.mark.slow  # make test-fast leaves it out; make test runs it
def test_hung_objective_is_restarted_through_the_relay_too(client):
    from tests.engine.test_worker_loss import test_hung_objective_past_trial_timeout_gets_its_worker_restarted as hung

    hung(client, channel="relay")


def test_bad_channel_is_one_clear_error(client):
    with pytest.raises(ValueError, match="channel must be 'auto' or 'direct' or 'relay', got 'tcp'"):
        daskopt.optimize(optuna.create_study(), objectives.quadratic, n_trials=1, client=client, channel="tcp")


# --------------------------------------------------------------------------- the raw frame protocol
class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_frames_hold_writes_until_the_peer_is_ready_and_split_any_chunking():
    received: list[bytes] = []
    frames = Frames(received.extend, lambda: None)
    frames.transport = _Transport()  # type: ignore[assignment]
    frames.write(_frame(b"early"))
    assert frames.transport.written == []  # the peer has not left its comm yet
    stream = _frame(b"") + _frame(b"one") + _frame(b"two")
    for i in range(len(stream)):  # one byte at a time: frames still come out whole and in order
        frames.data_received(stream[i : i + 1])
    assert received == [b"one", b"two"]
    assert frames.transport.written == [_frame(b"early")]


def _refuse_direct_connections() -> None:
    """On a worker: every direct connection to a loop is refused (the probe, a plain asyncio connect, still
    gets through), as for a worker that joined after the probe behind a firewall."""
    import daskopt.trial.paths as paths

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    paths.__dict__.setdefault("_real_connect", paths._connect)
    paths._connect = refuse  # type: ignore[assignment]


def _allow_direct_connections() -> None:
    import daskopt.trial.paths as paths

    paths._connect = paths.__dict__.pop("_real_connect", paths._connect)  # type: ignore[assignment]


def test_a_task_that_cannot_reach_the_loop_ends_a_direct_call_with_the_reason(client):
    """A forced direct channel, and tasks that cannot connect although the probe did: the call stops with
    one line naming the address, the reason and the setting, instead of resubmitting tasks forever."""
    client.run(_refuse_direct_connections)
    try:
        study = optuna.create_study()
        with pytest.raises(daskopt.ChannelUnreachable) as raised:
            _run(client, "direct", n_trials=4, study=study)
    finally:
        client.run(_allow_direct_connections)
    message = str(raised.value)
    assert message.startswith("a worker cannot reach this client at 127.0.0.1:") and "\n" not in message
    assert "(connection refused)" in message and 'set channel = "auto" (or "relay")' in message
    assert all(t.state.is_finished() for t in study.trials)
