"""Every code block of README.md and of the example READMEs runs as written.

Each block is found by its fence. Python blocks run as scripts; where a block says ``# your code``, a tiny
stand-in for that function is defined first (``STAND_INS``). Shell blocks run line by line; a line that
cannot run here (``make test`` inside the test suite, a GPU, a page that serves until stopped, an install)
must be listed in ``NOT_RUN`` with the reason, so a new block cannot slip past this test unnoticed.
Everything runs in a copy of ``examples/`` (paths in the blocks are relative to the repository root), in
file order, so a block that reads what an earlier one wrote (the ablation's trials.csv) finds it.
A synopsis line names "your study file" as ``study.toml``: it runs against the quickstart's.

After each example's ``daskopt run examples/<name>/study.toml``, the study it stored is checked for what
the example is meant to show (tests/example_checks.py).

Where a README states how long a command takes (``STATED``), the time it took here is printed beside the
statement at the end of the run, so a drifting number shows in every CI log; it is not asserted, since a
shared machine's timings vary (benchmarks/ holds the measured claims).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.example_checks import CHECKS, check_example

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "examples").glob("*/README.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
YOUR_STUDY = "examples/quickstart/study.toml"
EXAMPLE_RUN = re.compile(r"daskopt run (examples/(\w+)/study\.toml)")  # then tests/example_checks.py checks it

STAND_INS = {  # "# your code" functions, by name: the smallest thing that returns what the block expects
    "train_one_epoch": "import math\n\ndef train_one_epoch(lr):\n    return 1.0 - abs(math.log10(lr) + 3.0) / 10.0\n",
}
NOT_RUN = {  # shell lines this test does not run, and why
    "make demo": "runs `daskopt run examples/quickstart/study.toml`, which the first Quickstart line below runs",
    "make test": "the test suite itself",
    "daskopt dashboard study.toml": "serves until stopped; tests/dashboard drives the page in Chromium",
    "daskopt dashboard journal:runs/x.journal": "serves until stopped; tests/dashboard covers it",
    "pip install -e '.[torch]'": "the test environment has the extra installed",
    "pip install -e '.[torch,cuda]'": "needs a GPU; benchmarks/gpu_check.sh runs the GPU lines on one",
    "daskopt run examples/torch_digits/study-gpu.toml": "needs a GPU (benchmarks/gpu_check.sh)",
    "python examples/torch_digits/run.py --gpu --trials-per-gpu 4 --gpu-memory-fraction 0.2 --n-trials 200": (
        "needs a GPU (benchmarks/gpu_check.sh)"
    ),
}

STATED = {  # commands whose README gives their duration, and what it says
    "daskopt run study.toml": "README's Quickstart: the quickstart study takes 15 s on a 2-core VM",
    "daskopt run examples/command_pruning/study.toml": "its README: about 10 s on 2 local workers",
    "daskopt run examples/torch_digits/study.toml": "its README: ~30-60 s on 2 CPU workers",
    "daskopt run examples/ablation_repeats/study.toml": "its README: a few seconds on a laptop",
    "daskopt run examples/pbt_digits/study.toml": "its README: a population of 8 on 2 CPU workers, ~1 min",
    "daskopt run examples/elastic_digits/study.toml": "its README: 2 trials on 4 replica slots, ~30 s on 2 cores",
}


@dataclass(frozen=True)
class Block:
    file: Path
    line: int
    language: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for path in FILES:
        text = path.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) in ("python", "bash"):
                line = text.count("\n", 0, match.start()) + 1
                found.append(Block(path, line, match.group(1), match.group(2)))
    return found


def commands(block: Block) -> list[str]:
    """The command lines of a shell block, comments stripped, synopsis options (``[--x N]``) dropped."""
    lines = []
    for raw in block.text.splitlines():
        line = raw.split("  #", 1)[0].split(" #", 1)[0].strip() if "#" in raw else raw.strip()
        if line:
            lines.append(re.sub(r"\s*\[--[^\]]*\]", "", line))
    return lines


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the examples (no stored studies or runs), where every block runs."""
    folder = tmp_path_factory.mktemp("readme")
    ignore = shutil.ignore_patterns("runs", "*.journal", "__pycache__")
    shutil.copytree(ROOT / "examples", folder / "examples", ignore=ignore)
    return folder


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["WANDB_MODE"] = os.environ.get("WANDB_MODE", "disabled")  # W&B runs are tested in tests/tracking
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_block_is_found_and_every_shell_line_is_run_or_explained():
    found = blocks()
    assert {b.file.name for b in found} >= {"README.md"} and len(found) >= 8
    lines = {line for b in found if b.language == "bash" for line in commands(b)}
    unexplained = {line for line in lines if line not in NOT_RUN and not line.startswith(("daskopt ", "python "))}
    assert not unexplained, f"shell lines neither run nor listed in NOT_RUN: {sorted(unexplained)}"
    assert set(NOT_RUN) <= lines, f"NOT_RUN lists lines no README has any more: {sorted(set(NOT_RUN) - lines)}"
    assert set(STATED) <= lines - set(NOT_RUN), f"STATED names lines not run: {sorted(set(STATED) - lines)}"


@pytest.mark.slow
@pytest.mark.timeout(900)  # every block of README.md and the example READMEs, in order: a few minutes in all
def test_blocks_run_as_written(workdir, request):
    ran = 0
    took: dict[str, float] = {}
    checked: set[str] = set()
    for block in blocks():
        if block.language == "python":
            _run_python(block, workdir)
            ran += 1
            continue
        for line in commands(block):
            if line in NOT_RUN:
                continue
            args = shlex.split(line.replace(" study.toml", f" {YOUR_STUDY}"))
            args[0] = sys.executable if args[0] == "python" else args[0]
            started = time.monotonic()
            done = _run(args, workdir)
            took.setdefault(line, time.monotonic() - started)  # the first run: a later one may resume the study
            assert done.returncode == 0, f"{block.name}: `{line}` exited {done.returncode}\n{done.stderr[-3000:]}"
            ran += 1
            if (example := EXAMPLE_RUN.fullmatch(shlex.join(args[:3]))) and len(args) == 3:
                check_example(example.group(2), workdir / example.group(1))  # what the example is for
                checked.add(example.group(2))
    assert ran >= 10
    assert checked == set(CHECKS), f"examples whose README run was not checked: {sorted(set(CHECKS) - checked)}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for line, stated in STATED.items():
        message = f"README timing: `{line}` took {took[line]:.1f} s here; {stated}"
        reporter.write_line(message) if reporter is not None else print(message)


def _run_python(block: Block, workdir: Path) -> None:
    source = block.text
    if "# your code" in source:
        needed = [name for name in STAND_INS if re.search(rf"\b{name}\(", source)]
        assert needed, f"{block.name} says '# your code' but no stand-in matches it"
        source = "".join(STAND_INS[name] for name in needed) + "\n" + source
    script = workdir / f"block_{block.file.parent.name}_{block.line}.py"
    script.write_text(source)
    done = _run([sys.executable, str(script)], workdir)
    assert done.returncode == 0, f"{block.name} exited {done.returncode}\n{done.stderr[-3000:]}"
