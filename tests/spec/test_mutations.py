"""Mutated study files: ``daskopt run`` either accepts them or refuses them in one line, never a traceback,
and a refused file never writes to the study's existing storage.

A valid file is parsed, mutated (keys deleted, added, renamed; values replaced by other types, huge numbers,
unicode; whole sections deleted or replaced; the text itself cut or garbled), written back as TOML, and run
with ``--dry-run`` in-process (Click's runner, for speed). A few mutations are then run for real, as
subprocesses, against a storage that already holds finished trials: each must exit 2 and leave the storage
file byte-identical.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daskopt.cli import main

OBJECTIVE = "def objective(trial):\n    return trial.suggest_float('x', 0, 1)\n"

BASE_CALLABLE = """
[study]
name = "mut"
direction = "minimize"
n_trials = 4
timeout = "1h"
max_retries = 1
report_last_n = 2

[objective]
callable = "obj:objective"
trial_timeout = "30s"

[space]
x = { type = "float", low = 0.0, high = 1.0 }
lr = { type = "float", low = 1e-5, high = 1e-1, log = true }
n = { type = "int", low = 1, high = 8, step = 1 }
opt = { type = "categorical", choices = ["adam", "sgd"] }

[sampler]
name = "tpe"
options = { seed = 1, n_startup_trials = 3 }

[pruner]
name = "median"
options = { n_startup_trials = 2 }

[[enqueue]]
x = 0.5
lr = 0.01
n = 2
opt = "adam"

[cluster]
kind = "local"
n_workers = 2

[storage]
url = "journal:mut.journal"

[output]
dir = "runs/mut"

[wandb]
mode = "disabled"
tags = ["a", "b"]

[dashboard]
enabled = false
port = 0
"""

BASE_COMMAND = """
[study]
name = "cmd"
directions = ["minimize", "maximize"]
n_trials = 3

[objective]
command = ["python", "train.py", "--x={x}", "--c={c}"]
metric = "loss"
grace_period = "2s"

[space]
x = { type = "uniform", low = -1.0, high = 1.0 }
c = { type = "choice", choices = ["a", "b", 3, true] }

[cluster]
kind = "address"
address = "tcp://127.0.0.1:8786"
connect_timeout = "5s"

[cluster.security]
ca_file = "ca.pem"
cert_file = "cert.pem"
"""

BASES = [tomllib.loads(BASE_CALLABLE), tomllib.loads(BASE_COMMAND)]
KNOWN_KEYS = sorted({key for base in BASES for table in base.values() if isinstance(table, dict) for key in table})


# --- TOML out: enough of the format for any value a mutation makes --------------------------------------
def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def to_toml(doc: dict[str, Any]) -> str:
    """Top-level non-tables first (TOML requires it), then one ``[table]`` per table, inline values inside."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"\n[{_key(name)}]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# --- mutations ---------------------------------------------------------------------------------------------
INTERESTING = [
    "",
    " ",
    "tpe",
    "random",
    "grid",
    "gp",
    "median",
    "none",
    "journal:",
    "sqlite:///",
    "memory",
    "redis://x",
    "tcp://127.0.0.1:1",
    "tls://h:1",
    "h:8786",
    "address",
    "local",
    "slurm",
    "local-cuda",
    "maximize",
    "minimize",
    "float",
    "int",
    "categorical",
    "loguniform",
    "obj:objective",
    "obj:nope",
    "nope:objective",
    "1h30m",
    "0s",
    "-1s",
    "90",
    "nan",
    "inf",
    "💥",
    "\u202e",
    "naïve",
    "\x7f",
    "a\nb",
    "{x}",
    "{nope}",
    "~",
]
SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -1, 1, 2**63, -(2**63) - 1, 10**400, 65536]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e-320, 0.0, -0.0, 5e-324]),
    st.text(max_size=12),
    st.sampled_from(INTERESTING),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.one_of(st.text(min_size=1, max_size=6), st.sampled_from(KNOWN_KEYS)), SCALARS, max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, child in node.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def _parent(doc: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    return node


def _other_type(value: Any) -> list[Any]:
    """The same content, typed differently: what a person gets wrong when editing by hand."""
    swaps: list[Any] = [str(value), [value], {"value": value}]
    if isinstance(value, bool):
        swaps += [int(value), "true" if value else "false"]
    elif isinstance(value, (int, float)):
        if isinstance(value, int):
            swaps += [float(value) if abs(value) < 2**1000 else math.inf, -value, value * 10**30]
        else:
            swaps += [int(value) if math.isfinite(value) else 0, -value, value * 1e300]
    elif isinstance(value, str):
        swaps += [len(value), value == "", value.upper(), value + "\u0301"]
    elif isinstance(value, list):
        swaps += [value[0] if value else "", {str(i): v for i, v in enumerate(value)}, []]
    elif isinstance(value, dict):
        swaps += [list(value.values()), list(value), {}]
    return swaps


def mutate(data: st.DataObject, doc: dict[str, Any]) -> None:
    """One random edit of ``doc`` in place."""
    paths = list(_paths(doc))
    kind = data.draw(st.sampled_from(["delete", "replace", "swap", "add", "rename", "section"]))
    if kind == "section" or not paths:
        name = data.draw(st.sampled_from(sorted(doc))) if doc else "study"
        if doc and data.draw(st.booleans()):
            del doc[name]
        else:
            doc[name] = data.draw(VALUES)
        return
    path = data.draw(st.sampled_from(paths))
    parent, last = _parent(doc, path), path[-1]
    if kind == "delete":
        del parent[last]
    elif kind == "replace":
        parent[last] = data.draw(VALUES)
    elif kind == "swap":
        parent[last] = data.draw(st.sampled_from(_other_type(parent[last])))
    elif kind == "add":
        target = parent if isinstance(parent, dict) else doc
        key = data.draw(st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(KNOWN_KEYS)))
        target[key] = data.draw(VALUES)
    elif kind == "rename" and isinstance(parent, dict):
        suffix = data.draw(st.text(min_size=1, max_size=2))
        parent[f"{last}{suffix}"] = parent.pop(last)


def garble(data: st.DataObject, text: str) -> str:
    """A text-level edit: cut the file, drop or repeat a line, or insert characters anywhere."""
    kind = data.draw(st.sampled_from(["cut", "drop", "repeat", "insert"]))
    lines = text.splitlines(keepends=True)
    if kind == "cut":
        return text[: data.draw(st.integers(0, len(text)))]
    index = data.draw(st.integers(0, max(0, len(lines) - 1)))
    if kind == "drop":
        return "".join(lines[:index] + lines[index + 1 :])
    if kind == "repeat":
        return "".join(lines[: index + 1] + lines[index:])
    at = data.draw(st.integers(0, len(text)))
    return text[:at] + data.draw(st.text(min_size=1, max_size=4)) + text[at:]


# --- the in-process property ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mutations")
    (path / "obj.py").write_text(OBJECTIVE)
    return path


def check_one_line_or_ok(folder: Path, text: str) -> int:
    path = folder / "study.toml"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    saved_path = list(sys.path)
    try:
        result = CliRunner().invoke(main, ["run", str(path), "--dry-run"], catch_exceptions=True)
    finally:
        sys.path[:] = saved_path  # a mutated objective.workdir is put on sys.path; keep the test process clean
    shown = f"exit {result.exit_code}\n--- file ---\n{text}\n--- stderr ---\n{result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{shown}"
    )
    assert "Traceback" not in result.output, shown
    assert result.exit_code in (0, 2), shown
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1, shown
        assert lines[0].startswith("daskopt: error: "), shown
        assert str(path) in lines[0], shown
    else:
        assert result.stdout.lstrip().startswith("{"), shown
    return int(result.exit_code)


def test_the_unmutated_files_pass_the_dry_run(folder):
    for base in BASES:
        assert check_one_line_or_ok(folder, to_toml(base)) == 0


@settings(
    max_examples=int(os.environ.get("DASKOPT_MUTATION_EXAMPLES", "150")),  # more for a local bug hunt
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mutated_file_is_accepted_or_refused_in_one_line(folder, data):
    doc = json.loads(json.dumps(data.draw(st.sampled_from(BASES))))  # a deep copy
    for _ in range(data.draw(st.integers(1, 3))):
        mutate(data, doc)
    text = to_toml(doc)
    if data.draw(st.integers(0, 4)) == 0:
        text = garble(data, text)
    check_one_line_or_ok(folder, text)


EXTREMES = [10**400, -(10**400), 2**63, 1e308, -1e308, math.nan, math.inf, "", "a\nb", "\u2028", "x" * 5000, [], {}]


@pytest.mark.parametrize("base", [0, 1], ids=["callable", "command"])
def test_every_key_takes_every_extreme_value(folder, base):
    """Each key of each base file, set in turn to each extreme value: a systematic pass beside the random one."""
    for path in list(_paths(BASES[base])):
        for value in EXTREMES:
            doc = json.loads(json.dumps(BASES[base]))
            _parent(doc, path)[path[-1]] = value
            check_one_line_or_ok(folder, to_toml(doc))


# --- real runs against an existing storage ---------------------------------------------------------------
REAL_STUDY = """
[study]
name = "kept"
n_trials = 3

[objective]
callable = "obj:objective"

[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}

[storage]
url = "{url}"

[cluster]
kind = "local"
n_workers = 1

[dashboard]
enabled = false
"""


def _daskopt(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daskopt.cli", *args], cwd=folder, capture_output=True, text=True, timeout=120
    )


STORAGES = {"journal": "journal:kept.journal", "sqlite": "sqlite:///kept.db"}


@pytest.fixture(scope="module")
def finished_studies(tmp_path_factory) -> dict[str, tuple[Path, Path, str]]:
    """Per storage kind: a folder whose storage holds the file's study with 3 finished trials, the storage
    file, and the study file's text."""
    made = {}
    for kind, url in STORAGES.items():
        folder = tmp_path_factory.mktemp(f"kept-{kind}")
        (folder / "obj.py").write_text(OBJECTIVE)
        text = REAL_STUDY.format(url=url)
        (folder / "study.toml").write_text(text)
        path = folder / url.split(":", 1)[1].lstrip("/")
        if kind == "journal":
            storage: Any = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        else:
            storage = f"sqlite:///{path}"
        study = optuna.create_study(study_name="kept", storage=storage)
        study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
        made[kind] = (folder, path, text)
    return made


MUTATIONS = {
    "toml-syntax": lambda t: t.replace("[space]", "[space"),
    "bad-range": lambda t: t.replace("high = 1.0", "high = -1.0"),
    "unknown-key": lambda t: t.replace("n_trials = 3", "n_trials = 3\nn_trails = 5"),
    "type-swap": lambda t: t.replace("n_trials = 3", 'n_trials = "3"'),
    "missing-objective": lambda t: t.replace('callable = "obj:objective"', 'callable = "obj:nope"'),
    "sampler-option": lambda t: t + '\n[sampler]\nname = "tpe"\noptions = { n_startup_trails = 1 }\n',
    "direction-flipped": lambda t: t.replace("n_trials = 3", 'n_trials = 3\ndirection = "maximize"'),
    "unreachable-scheduler": lambda t: t.replace(
        'kind = "local"\nn_workers = 1', 'kind = "address"\naddress = "tcp://127.0.0.1:9"\nconnect_timeout = "1s"'
    ),
}


# Most refusals happen while the file is read, before any storage is opened: those run in-process (the same
# code path as the command, in milliseconds), one of them also as a process. A direction flip is found only
# once the storage is open, and an unreachable scheduler once the cluster is tried: processes, both kinds.
IN_PROCESS = ["bad-range", "missing-objective", "sampler-option", "toml-syntax", "type-swap", "unknown-key"]
CASES = [pytest.param("journal", m, False, id=f"journal-{m}") for m in IN_PROCESS] + [
    pytest.param(kind, mutation, True, id=f"{kind}-{mutation}-process", marks=pytest.mark.slow)
    for kind, mutation in [
        ("journal", "toml-syntax"),
        ("journal", "direction-flipped"),
        ("sqlite", "direction-flipped"),
        ("journal", "unreachable-scheduler"),
    ]
]


def _run_refused(folder: Path, as_process: bool) -> tuple[int, str]:
    if as_process:
        done = _daskopt(folder, "run", "bad.toml")
        return done.returncode, done.stderr
    saved_path = list(sys.path)
    try:
        result = CliRunner().invoke(main, ["run", str(folder / "bad.toml")], catch_exceptions=True)
    finally:
        sys.path[:] = saved_path
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return int(result.exit_code), result.stderr


@pytest.mark.parametrize(("kind", "mutation", "as_process"), CASES)
def test_refused_run_leaves_the_existing_storage_byte_identical(finished_studies, kind, mutation, as_process):
    folder, storage, text = finished_studies[kind]
    mutated = MUTATIONS[mutation](text)
    assert mutated != text
    before = storage.read_bytes()
    (folder / "bad.toml").write_text(mutated)
    code, stderr = _run_refused(folder, as_process)
    assert code == 2, stderr
    assert storage.read_bytes() == before, f"a refused run ({mutation}) wrote to the storage"
    # a run prints what it opens before it starts; the refusal is then the last line, and the only error
    errors = [line for line in stderr.splitlines() if line.startswith("daskopt: error: ")]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0], stderr
    assert "Traceback" not in stderr
    if mutation != "unreachable-scheduler":  # a cluster error is about the address, not a key of the file
        assert "bad.toml" in errors[0].removeprefix("daskopt: error: ").split(": ")[0], stderr
