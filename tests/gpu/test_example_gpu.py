"""The torch_digits example on GPUs: study-gpu.toml (local-cuda, 4 trials per GPU, 20% memory each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.example_checks import run_example
from tests.gpu import needs_cuda, needs_dask_cuda

pytestmark = [*needs_cuda, needs_dask_cuda, pytest.mark.slow]


def test_torch_digits_on_gpus(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    spec, study = run_example("torch_digits", tmp_path, n_trials=8, study_file="study-gpu.toml")
    assert spec.cluster.kind == "local-cuda" and spec.cluster.uses_gpu
    assert study.best_value > 0.8
