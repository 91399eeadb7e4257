"""deploy/slurm without SLURM: the sbatch script's syntax and contents, a real run of it with a stand-in
``srun`` (real ``dask scheduler``, ``dask worker`` and ``daskopt run`` processes), the dask-jobqueue
settings, and (only where dask-jobqueue is installed) the job script SLURMCluster renders from them."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from daskopt.errors import SpecError
from daskopt.runner import open_study, outcomes
from daskopt.spec import load_spec
from tests.studyfiles import live_processes, write_study

SLURM = Path(__file__).resolve().parents[2] / "deploy" / "slurm"
SBATCH = SLURM / "daskopt.sbatch"
BIN = Path(sys.executable).parent  # the environment's dask and daskopt commands

FAKE_SRUN = """#!/usr/bin/env bash
# Stand-in for srun on one node: drop the options, run the command once.
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
exec "$@"
"""


def sbatch_directives() -> dict[str, str]:
    """``#SBATCH --key=value`` lines of the script's header, as ``{"--key": "value"}``."""
    found = {}
    for line in SBATCH.read_text().splitlines():
        if line.startswith("#SBATCH"):
            key, _, value = line.removeprefix("#SBATCH").strip().partition("=")
            found[key] = value
    return found


def test_sbatch_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_sbatch_header_asks_for_gpu_nodes() -> None:
    directives = sbatch_directives()
    for key in ("--job-name", "--nodes", "--ntasks-per-node", "--gpus-per-node", "--time", "--output"):
        assert key in directives, f"missing #SBATCH {key}"
    assert directives["--ntasks-per-node"] == "1"  # one worker launcher per node
    assert directives["--signal"].startswith("B:USR1@")  # the warning the script turns into Ctrl-C
    lines = SBATCH.read_text().splitlines()
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    assert all(not line.startswith("#SBATCH") for line in lines[first_command:]), "sbatch ignores late #SBATCH"


@pytest.mark.parametrize(
    "pattern",
    [
        r"dask scheduler --scheduler-file",
        r"dask cuda worker --scheduler-file",
        r"dask worker --scheduler-file",
        r'--resources "GPU_SLOT=\$TRIALS_PER_GPU"',
        r'--resources "GPU_SLOT=\$SLOTS"',
        r"srun --nodes=",
        r"wait_for_workers",
        r'daskopt run "\$STUDY_FILE" --address "\$ADDRESS"',
        r"trap cleanup EXIT",
    ],
)
def test_sbatch_runs_the_expected_commands(pattern: str) -> None:
    assert re.search(pattern, SBATCH.read_text()), pattern


def test_sbatch_uses_no_machine_specific_paths() -> None:
    text = SBATCH.read_text()
    assert "/work/" not in text and "/home/" not in text and "/root" not in text


@pytest.fixture
def fake_allocation(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder with a stand-in ``srun`` and the environment one node of an allocation would have."""
    if not (BIN / "dask").exists() or not (BIN / "daskopt").exists():
        pytest.skip("the dask and daskopt commands are not installed next to this Python")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text(FAKE_SRUN)
    (bindir / "srun").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_GPUS_ON_NODE": "2",
        "SLURM_SUBMIT_DIR": str(tmp_path),
        "DASKOPT_ENV": str(tmp_path / "no-env"),  # nothing to activate: the commands are on PATH
        "TMPDIR": str(tmp_path),
        "SCHEDULER_PORT": "0",
        "DASHBOARD_PORT": "0",
        "WANDB_MODE": "disabled",
    }
    return tmp_path, env


def wait_gone(marker: str, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := live_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.slow
def test_sbatch_runs_a_study_and_tears_down(fake_allocation: tuple[Path, dict[str, str]]) -> None:
    folder, env = fake_allocation
    study_file = write_study(folder, name="sbatch", n_trials=4, sleep=0.1, cluster="")
    proc = subprocess.run(
        ["bash", str(SBATCH), str(study_file)], cwd=folder, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "daskopt run exited with 0" in proc.stdout
    assert "starting one `dask worker` per node" in proc.stderr or "dask cuda worker" in proc.stderr
    assert outcomes(open_study(load_spec(study_file), create=False)) == 4
    scheduler_file = folder / ".daskopt" / "4242" / "scheduler.json"
    assert not scheduler_file.exists()
    if Path("/proc").is_dir():
        assert not wait_gone(str(scheduler_file)), "a scheduler or worker outlived the script"


def completed(study_file: Path) -> int:
    """Completed trials of the study, 0 while it does not exist yet."""
    spec = load_spec(study_file)
    if not Path(spec.storage.url.removeprefix("journal:")).exists():
        return 0
    try:
        study = open_study(spec, create=False)
    except SpecError:
        return 0
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


@pytest.mark.slow
def test_sbatch_time_limit_warning_stops_the_study(fake_allocation: tuple[Path, dict[str, str]]) -> None:
    """Slurm's ``--signal=B:USR1@...`` reaches daskopt as Ctrl-C: exit 130, nothing left RUNNING, the trials
    cut short re-enqueued for the next allocation."""
    folder, env = fake_allocation
    study_file = write_study(folder, name="sbatch", n_trials=200, sleep=0.5, cluster="")
    log = (folder / "out.txt").open("w+")
    script = subprocess.Popen(["bash", str(SBATCH), str(study_file)], cwd=folder, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and script.poll() is None and not completed(study_file):
            time.sleep(0.3)
        assert script.poll() is None, "the script ended before the study ran"
        script.send_signal(signal.SIGUSR1)
        returncode = script.wait(timeout=120)
    finally:
        if script.poll() is None:
            script.kill()
    log.seek(0)
    output = log.read()
    assert returncode == 130, output[-3000:]
    assert "time limit near: stopping the study" in output
    study = open_study(load_spec(study_file), create=False)
    assert 0 < outcomes(study) < 200
    assert "RUNNING" not in {t.state.name for t in study.trials}  # cut short: re-enqueued for the next allocation
    waiting = [t for t in study.trials if t.state.name == "WAITING"]
    assert all(
        study.trials[t.user_attrs["retry_of"]].user_attrs["fail_reason"].startswith("interrupted") for t in waiting
    )
    if Path("/proc").is_dir():
        assert not wait_gone(str(folder / ".daskopt" / "4242")), "a scheduler or worker outlived the script"


def test_jobqueue_yaml_matches_the_study_file() -> None:
    """Both ways of configuring dask-jobqueue describe the same job: threads = GPU slots."""
    config = yaml.safe_load((SLURM / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    slurm = load_spec(SLURM / "study-jobqueue.toml").cluster.slurm
    assert slurm is not None
    for key in ("cores", "memory", "processes", "walltime", "queue"):
        assert config[key] == slurm[key], key
    assert config["job-extra-directives"][0] == slurm["job_extra_directives"][0]
    assert config["worker-extra-args"] == slurm["worker_extra_args"] == ["--resources", f"GPU_SLOT={slurm['cores']}"]
    assert config["processes"] == 1


def test_jobqueue_study_renders_a_slurm_job_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jobqueue = pytest.importorskip("dask_jobqueue")
    monkeypatch.chdir(tmp_path)  # log_directory is created relative to the current folder
    options = dict(load_spec(SLURM / "study-jobqueue.toml").cluster.slurm or {})
    jobs = options.pop("jobs")
    assert jobs >= 1
    with jobqueue.SLURMCluster(**options, scheduler_options={"dashboard_address": ":0"}) as cluster:
        script = cluster.job_script()
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    for expected in ("-p gpu", "-A my-project", "--cpus-per-task=32", "-t 04:00:00", "--gpus-per-node=4"):
        assert any(expected in line for line in header), (expected, header)
    command = script.strip().splitlines()[-1]
    assert "--nthreads 4" in command and "--resources GPU_SLOT=4" in command
    assert "source $SLURM_SUBMIT_DIR/.venv/bin/activate" in script
    assert shlex.split(command)[1:3] == ["-m", "distributed.cli.dask_worker"]


def test_slurm_readme_inline_table_is_valid(tmp_path: Path) -> None:
    """The one-line ``[cluster]`` example in the README loads as a study's cluster section."""
    readme = (SLURM / "README.md").read_text()
    block = re.search(r"```toml\n(\[cluster\]\nkind = \"slurm\"\nslurm = .*?)```", readme, re.S)
    assert block, "the README's [cluster] example is missing"
    shutil.copy(SLURM / "objective.py", tmp_path)
    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "x"\n[objective]\ncallable = "objective:objective"\n' + block.group(1))
    slurm = load_spec(study).cluster.slurm
    assert slurm is not None and slurm["jobs"] == 4 and slurm["worker_extra_args"] == ["--resources", "GPU_SLOT=4"]
