"""The checkpoint folders a trial writes and starts from (no cluster)."""

from __future__ import annotations

import pytest

from daskopt.trial import checkpoints
from daskopt.trial.checkpoints import CheckpointError


def test_a_checkpoint_appears_only_when_complete(tmp_path):
    with checkpoints.writing(tmp_path, 3) as folder:
        (folder / "weights").write_text("w")
        assert checkpoints.steps(tmp_path) == []  # half written: not there yet
    assert checkpoints.steps(tmp_path) == [3]
    assert (tmp_path / "step-00000003" / "weights").read_text() == "w"


def test_an_error_while_writing_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), checkpoints.writing(tmp_path, 1):
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_the_newest_are_kept_and_the_one_started_from_is_never_removed(tmp_path):
    with checkpoints.writing(tmp_path, 0):
        pass
    pinned = tmp_path / "step-00000000"
    for step in range(1, 6):
        with checkpoints.writing(tmp_path, step, keep=2, pinned=pinned) as folder:
            checkpoints.save_state(folder, {"step": step})
    assert checkpoints.steps(tmp_path) == [0, 4, 5]


def test_a_fresh_checkpoint_at_a_decision_step_is_kept_a_while_for_a_clone_that_may_read_it(tmp_path):
    for step in range(9):
        with checkpoints.writing(tmp_path, step, keep=2, keep_every=3, grace_s=60):
            pass
    assert checkpoints.steps(tmp_path) == [2, 5, 7, 8]  # steps 2 and 5 end an interval of 3
    with checkpoints.writing(tmp_path, 9, keep=2, keep_every=3, grace_s=0):
        pass
    assert checkpoints.steps(tmp_path) == [8, 9]


def test_the_same_step_again_replaces_it(tmp_path):
    for value in ("a", "b"):
        with checkpoints.writing(tmp_path, 2) as folder:
            checkpoints.save_state(folder, value)
    assert checkpoints.load_state(tmp_path / "step-00000002") == "b"


@pytest.mark.parametrize("step", [-1, 1.5, "3", True])
def test_a_bad_step_is_refused(tmp_path, step):
    with pytest.raises(TypeError, match="non-negative int"), checkpoints.writing(tmp_path, step):
        pass


def test_resolve_names_the_folder_a_trial_starts_from(tmp_path):
    assert checkpoints.resolve(None) is None
    assert checkpoints.resolve([str(tmp_path / "nothing"), None]) is None  # a retry with no checkpoint yet
    for step in (2, 7):
        with checkpoints.writing(tmp_path, step):
            pass
    assert checkpoints.resolve([str(tmp_path), None]) == (tmp_path / "step-00000007", 7)
    assert checkpoints.resolve([str(tmp_path), 2]) == (tmp_path / "step-00000002", 2)
    # a retry whose attempt last reported step 6: step 7's checkpoint has no report, so it starts at 2
    assert checkpoints.resolve([str(tmp_path), None, 6]) == (tmp_path / "step-00000002", 2)
    assert checkpoints.resolve([str(tmp_path), None, 1]) is None
    with pytest.raises(CheckpointError, match=r"checkpoint missing: .*step-00000005 \(step 5\)"):
        checkpoints.resolve([str(tmp_path), 5])


def test_a_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    with checkpoints.writing(tmp_path, 1) as folder:
        (folder / checkpoints.STATE_FILE).write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="checkpoint corrupt: .*state.pkl"):
        checkpoints.load_state(tmp_path / "step-00000001")
    with checkpoints.writing(tmp_path, 2):
        pass
    with pytest.raises(CheckpointError, match="has no state.pkl"):
        checkpoints.load_state(tmp_path / "step-00000002")
