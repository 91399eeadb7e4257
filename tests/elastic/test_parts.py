"""Where a stretch's replicas go when no worker has room for them, and the pieces its parts meet with
(no cluster here: tests/engine/test_elastic.py and tests/network/test_elastic_hosts.py run them)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from daskopt.elastic import parts
from daskopt.elastic.placement import Placement
from daskopt.engine.elastic import ElasticTrials, Stretch
from daskopt.settings import Elastic


def _run(number: int) -> Any:
    return SimpleNamespace(number=number, user_attrs={})


def _trials(offered: dict[str, int], refresh: Any = None) -> ElasticTrials:
    return ElasticTrials(Elastic(max_replicas=16), offered, refresh)


def test_max_replicas_is_capped_by_the_cluster_not_by_one_worker() -> None:
    assert _trials({"a": 2, "b": 2, "c": 1}).max_replicas == 5
    assert ElasticTrials(Elastic(max_replicas=3), {"a": 2, "b": 2}).max_replicas == 3


def test_a_stretch_that_fits_one_worker_is_left_to_dask() -> None:
    trials = _trials({"a": 4, "b": 2})
    assert trials.split(_run(0), 2) == Stretch(((None, 2),), None)
    assert trials.split(_run(0), 4) == Stretch(((None, 4),), None)


def test_a_stretch_no_worker_fits_goes_to_the_fewest_workers_most_room_first() -> None:
    trials = _trials({"a": 1, "b": 3, "c": 2})
    stretch = trials.split(_run(7), 5)
    assert stretch.parts == (("b", 3), ("c", 2))
    assert stretch.group is not None and "-7-" in stretch.group
    trials.submitted(0, _run(7), 5, stretch)
    other = trials.split(_run(8), 1)  # only "a" has room left, and one fits there: Dask places it
    assert other.parts == ((None, 1),)


def test_room_counts_the_other_trials_stretches_once_they_are_placed() -> None:
    trials = _trials({"a": 2, "b": 2})
    first = trials.split(_run(0), 2)
    trials.submitted(0, _run(0), 2, first)
    trials.began(
        SimpleNamespace(
            number=0, user_attrs={}, trial=SimpleNamespace(set_user_attr=lambda *_: None), checkpoint_step=None
        ),
        2,
        "a",
    )
    assert trials.stretches[0].parts == (("a", 2),)  # where Dask put it, learnt at HELLO
    assert trials.split(_run(1), 2).parts == ((None, 2),)  # "b" still has room for 2
    assert trials.split(_run(1), 3).parts[0] == ("b", 2)  # 3 do not fit what is left: "b" first


def test_a_split_reads_the_workers_again_so_no_part_waits_for_one_that_left() -> None:
    now = {"b": 1, "c": 1}  # "a" left, "c" joined
    trials = _trials({"a": 1, "b": 1}, refresh=lambda: now)
    assert trials.split(_run(0), 2).parts == (("b", 1), ("c", 1))


def test_a_group_ends_when_its_stretch_and_its_parts_have() -> None:
    trials = _trials({"a": 1, "b": 1})
    run = _run(3)
    stretch = trials.split(run, 2)
    trials.submitted(10, run, 2, stretch)
    trials.part_submitted(11, run, stretch.group)
    assert trials.part_over(11) is None  # the stretch still runs
    assert trials.stretch_over(run) == ([], stretch.group)
    assert not trials._groups

    stretch = trials.split(run, 2)
    trials.submitted(12, run, 2, stretch)
    trials.part_submitted(13, run, stretch.group)
    assert trials.stretch_over(run) == ([13], None)  # its part is cancelled; its variables wait for it
    assert trials.part_over(13) == stretch.group


def test_placement_names_the_group_and_the_objective_tasks_share() -> None:
    trials = _trials({"a": 2, "b": 1})
    run = _run(0)
    trials.submitted(0, run, 3, trials.split(run, 3))
    placement = trials.placement(run, 3)
    assert (placement.replicas, placement.local_replicas) == (3, 2) and placement.group
    assert Placement.from_wire(placement.to_wire()) == placement
    assert Placement.from_wire([2, None, 1.0]) == Placement(2)  # a stretch on one worker, as before


@pytest.mark.parametrize(
    ("failure", "lost"),
    [
        ("launch: rank 0 of 2 raised RuntimeError: [gloo/transport/tcp/pair.cc:534] Connection closed by peer", True),
        ("launch: rank 1 of 2 raised RuntimeError: Connection reset by peer", True),
        ("launch: rank 1 of 2 raised ValueError: bad batch", False),
        ("launch: rank 1 of 2 was killed by signal 9 before finishing", False),
    ],
)
def test_a_lost_peer_is_told_from_a_rank_s_own_failure(failure: str, lost: bool) -> None:
    assert parts.lost_peer(failure) is lost


def test_ranks_of_a_part_count_from_its_first_rank_and_bind_to_the_worker_s_interface() -> None:
    envs = parts.group_env(world=5, local=2, first_rank=3, master=("10.0.0.1", 1234), ip="127.0.0.1")
    assert [(e["RANK"], e["LOCAL_RANK"]) for e in envs] == [("3", "0"), ("4", "1")]
    assert {e["WORLD_SIZE"] for e in envs} == {"5"} and {e["LOCAL_WORLD_SIZE"] for e in envs} == {"2"}
    assert {(e["MASTER_ADDR"], e["MASTER_PORT"]) for e in envs} == {("10.0.0.1", "1234")}
    assert parts.interface_of("127.0.0.1") == "lo"
    assert parts.interface_of("192.0.2.77") is None  # an address no interface here holds


# ------------------------------------------------------------------------- a part's task on a worker
@pytest.fixture(scope="module")
def part_client() -> Any:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, resources={"GPU_SLOT": 1}, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client


def _executing(dask_worker: Any) -> int:
    return len(dask_worker.state.executing)


def _wait_idle(client: Any, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(client.run(_executing).values()) == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the part's task still runs")


def test_a_part_whose_trial_stops_before_launching_ends(part_client: Any) -> None:
    """The objective returned without calling launch (or failed first): its task sets the group's stop."""
    from distributed import Variable

    group = "daskopt-replicas-test-stop"
    future = part_client.submit(parts.run_part, group, 1, 1, 2, resources={"GPU_SLOT": 1}, pure=False)
    Variable(f"{group}-stop", client=part_client).set(True)
    assert future.result(timeout=30) == "stopped"


def test_a_part_cancelled_by_the_loop_gives_its_slot_back(part_client: Any) -> None:
    """Dask cannot interrupt a running task: the part sees its key cancelled and returns, freeing its
    thread and its slot for the next stretch."""
    import time

    future = part_client.submit(parts.run_part, "daskopt-replicas-test-cancel", 1, 1, 2, resources={"GPU_SLOT": 1})
    deadline = time.monotonic() + 30
    while sum(part_client.run(_executing).values()) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    part_client.cancel([future])
    _wait_idle(part_client)
    after = part_client.submit(lambda: "ran", resources={"GPU_SLOT": 1}, pure=False)
    assert after.result(timeout=30) == "ran"
