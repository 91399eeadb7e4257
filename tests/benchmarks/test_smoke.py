"""Every benchmark runs in its tiniest setting, so none can rot. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("module", ["benchmarks.engine"])
def test_benchmark_prints_its_result_line(module):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    name = module.split(".")[-1]
    assert last.startswith(f"RESULT {name} ")
    fields = dict(item.split("=", 1) for item in last.split()[2:])
    assert float(fields["trials_per_s"]) > 0 and float(fields["baseline_trials_per_s"]) > 0
