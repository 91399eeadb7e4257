"""The order in which the loop handles what trials send: prune questions are answered before the trial ends
and task starts of the same moment are handled, and a task's own messages keep their order.

The engine runs here without a cluster: its connections are recorders, its study is a real in-memory
Optuna study with a real ``MedianPruner``.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from daskopt.engine.config import EngineConfig
from daskopt.engine.loop import Engine
from daskopt.engine.state import TaskState, TrialRun
from daskopt.protocol import events


class Recorder:
    """A task's connection as the loop sees it: what the loop sends is appended to a shared log."""

    def __init__(self, name: str, log: list[tuple[str, list[Any]]]) -> None:
        self.name = name
        self.log = log
        self.state: Any = None
        self.closed = False

    def send(self, message: list[Any]) -> None:
        self.log.append((self.name, message))

    def close(self) -> None:
        self.closed = True


class NoTasks:
    """The task pool of a loop that needs none: every trial here is already running."""

    outstanding = 1_000_000

    def submit(self, count: int) -> None:
        raise AssertionError("no task should be submitted")


def _objective(trial: optuna.Trial) -> float:
    return 0.0


def _engine(study: optuna.Study) -> Engine:
    client = SimpleNamespace(scheduler=SimpleNamespace(address="tcp://127.0.0.1:8786"))
    config = EngineConfig(n_concurrent=2, n_trials=2, show_progress=False, channel="direct", channel_host="127.0.0.1")
    engine = Engine(study, _objective, client, config)  # type: ignore[arg-type]
    engine._pool = NoTasks()  # type: ignore[assignment]
    engine._done = asyncio.get_running_loop().create_future()
    return engine


def _running(engine: Engine, conn: Recorder) -> TrialRun:
    """A trial that the loop assigned to ``conn``'s task."""
    run = TrialRun(trial=engine.study.ask(), params={}, user_attrs={})
    run.prune_enabled = True
    conn.state = TaskState(task_id=run.number, worker="tcp://w", pid=1, has_objective=True)
    conn.state.run, run.conn = run, conn
    engine.running[run.number] = run
    return run


async def _settled() -> None:
    for _ in range(20):  # the queue is worked through in slices between reads
        await asyncio.sleep(0)


@pytest.fixture
def study() -> optuna.Study:
    return optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0))


def test_a_prune_question_is_answered_before_a_trial_end_that_came_first(study):
    async def scenario() -> None:
        log: list[tuple[str, list[Any]]] = []
        engine = _engine(study)
        ending, asking = Recorder("ending", log), Recorder("asking", log)
        ended, running = _running(engine, ending), _running(engine, asking)
        engine._on_messages(ending, [[events.REPORT, 0, 1.0], [events.FINISH, events.COMPLETE, [1.0], None]])
        engine._on_messages(asking, [[events.REPORT, 0, 2.0], [events.PRUNE, 1]])
        # in the same turn of the event loop: the question is answered, the end waits in the queue
        assert log == [("asking", [events.DECISION, 1, False])]
        assert study.trials[ended.number].state == TrialState.RUNNING
        assert study.trials[ended.number].intermediate_values == {0: 1.0}  # what came before the end: at once
        await _settled()
        assert study.trials[ended.number].state == TrialState.COMPLETE
        assert study.trials[running.number].state == TrialState.RUNNING
        assert not engine._later and not engine._behind

    asyncio.run(scenario())


def test_messages_behind_a_queued_one_keep_their_order(study):
    """A report sent after a task's queued message is handled after it, not before (its trial's
    intermediate values and its answers stay in the order the task sent them)."""

    async def scenario() -> None:
        log: list[tuple[str, list[Any]]] = []
        engine = _engine(study)
        conn = Recorder("task", log)
        run = _running(engine, conn)
        engine._on_messages(conn, [[events.HELLO, engine._token, 0, True, "tcp://w", 1]])  # queued
        engine._on_messages(conn, [[events.REPORT, 0, 3.0], [events.PRUNE, 1]])
        assert log == [] and study.trials[run.number].intermediate_values == {}
        await _settled()
        assert study.trials[run.number].intermediate_values == {0: 3.0}
        assert log == [("task", [events.DECISION, 1, False])]

    asyncio.run(scenario())


def test_a_connection_that_closes_after_a_queued_end_loses_no_trial(study):
    async def scenario() -> None:
        engine = _engine(study)
        conn = Recorder("task", [])
        run = _running(engine, conn)
        engine._on_messages(conn, [[events.FINISH, events.COMPLETE, [0.5], None]])
        engine._on_closed(conn)  # the task ended right after: its FINISH was not handled yet
        await _settled()
        trial = study.trials[run.number]
        assert trial.state == TrialState.COMPLETE and trial.value == 0.5
        assert engine.counts.finished == 1

    asyncio.run(scenario())


def test_a_stop_handles_queued_ends_first(study):
    """Ctrl-C with trial ends still queued: those trials finished, so they are told as finished, not
    enqueued again as interrupted."""

    async def scenario() -> None:
        engine = _engine(study)
        finished, still = Recorder("finished", []), Recorder("still", [])
        done, running = _running(engine, finished), _running(engine, still)
        engine._on_messages(finished, [[events.FINISH, events.COMPLETE, [0.25], None]])
        engine._stop("Ctrl-C", running="fail")
        assert study.trials[done.number].state == TrialState.COMPLETE
        assert study.trials[running.number].state == TrialState.FAIL

    asyncio.run(scenario())
