"""benchmarks/gpu_check.sh on a machine without a CUDA GPU: it checks the imports, looks for a GPU, says in
one line that there is none and exits 0 (on a GPU machine it would run the GPU steps: skipped there)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gpu import HAS_CUDA

ROOT = Path(__file__).resolve().parents[2]
NO_GPU_LINE = "gpu_check: no CUDA GPU found (nvidia-smi/torch.cuda): nothing to measure"

pytestmark = [
    pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present: gpu_check.sh would run the GPU steps"),
    pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash, timeout"),
    pytest.mark.timeout(60),
]


def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--no-install"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert NO_GPU_LINE in done.stdout.splitlines(), output
    assert "gpu_check: imports ok: dask " in done.stdout, output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["gpu.log", "install.log", "results.txt"], files
    results = (out / "results.txt").read_text()
    assert "RESULT gpu_check gpus=0" in results and "RESULT gpu_check_install status=ok" in results
