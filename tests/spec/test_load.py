"""study.toml -> StudySpec: good files give the expected objects, every bad one a single precise line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from daskopt.errors import SpecError
from daskopt.factory import make_scheduler
from daskopt.schedulers import PromotionASHA
from daskopt.spec import (
    CategoricalParam,
    FloatParam,
    IntParam,
    StudySpec,
    load_spec,
    parse_duration,
    spec_from_dict,
)

OBJECTIVE = 'callable = "train:objective"'


def study_toml(study: str = "", objective: str | None = OBJECTIVE, rest: str = "", top: str = "") -> str:
    """A study file from its parts; ``top`` holds keys that must come before the first table."""
    parts = [top, '[study]\nname = "demo"', study]
    if objective is not None:
        parts += ["[objective]", objective]
    return "\n".join([*parts, rest]) + "\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, **parts: str | None) -> StudySpec:
    return load_spec(write(tmp_path, study_toml(**parts)))  # type: ignore[arg-type]


# --- bad files: (parts of the file, key path, fragment of the message) ---------------------------------

SPACE = "[space]\n"
BAD_FILES = [
    (dict(rest="[sampeler]"), "sampeler", "did you mean 'sampler'?"),
    (dict(study="n_trials = 0"), "study.n_trials", "got 0; expected greater than 0"),
    (dict(study='n_trials = "5"'), "study.n_trials", 'got "5"; expected a valid integer'),
    (dict(study='direction = "max"'), "study.direction", "expected 'minimize' or 'maximize'"),
    (dict(study='direction = "minimize"\ndirections = ["maximize"]'), "study.directions", "both direction and"),
    (dict(study="directions = []"), "study.directions", "at least 1 item"),
    (dict(study='timeout = "5 minutes"'), "study.timeout", 'expected a duration such as "90s"'),
    (dict(study="timeout = 0"), "study.timeout", "expected greater than 0"),
    (dict(study="repeats = -1"), "study.repeats", "expected greater than or equal to 0"),
    (dict(study="seed = 1"), "study.seed", "did you mean 'seed_base'?"),
    (dict(objective=None), "objective", "missing required section [objective]"),
    (dict(objective=""), "objective", 'set callable = "module:function" or command'),
    (dict(objective='callable = "train.objective"'), "objective.callable", 'expected "module:function"'),
    (dict(objective=OBJECTIVE + '\ncommand = "run"'), "objective.command", "both callable and command"),
    (dict(objective="command = 5"), "objective.command", "expected a command string or a list of strings"),
    (dict(objective='command = "python \'unclosed"'), "objective.command", "cannot be split into arguments"),
    (dict(objective=OBJECTIVE + "\nshell = true"), "objective.shell", "shell applies to command only"),
    (dict(objective='command = ["ls", "-l"]\nshell = true'), "objective.command", "got a list with shell = true"),
    (dict(objective=OBJECTIVE + '\nmetrc = "loss"'), "objective.metrc", "did you mean 'metric'?"),
    (dict(objective=OBJECTIVE + '\ngrace_period = "soon"'), "objective.grace_period", "expected a duration"),
    (dict(rest=SPACE + 'lr = { type = "float", low = 0.0, high = 1.0, log = true }'), "space.lr.low", "needs low > 0"),
    (dict(rest=SPACE + 'lr = { type = "float", low = 1.0, high = 1.0 }'), "space.lr.high", "expected high > low"),
    (
        dict(rest=SPACE + 'lr = { type = "float", low = 0.1, high = 1.0, log = true, step = 0.1 }'),
        "space.lr.step",
        "a log scale takes no step",
    ),
    (dict(rest=SPACE + 'lr = { type = "float", low = -inf, high = 1.0 }'), "space.lr.low", "finite number"),
    (dict(rest=SPACE + 'n = { type = "int", low = 1.5, high = 4 }'), "space.n.low", "expected a valid integer"),
    (dict(rest=SPACE + 'n = { type = "int", low = 1, high = 4, step = 0 }'), "space.n.step", "greater than 0"),
    (dict(rest=SPACE + 'c = { type = "categorical", choices = [] }'), "space.c.choices", "at least one choice"),
    (dict(rest=SPACE + 'c = { type = "choice", choices = [[1]] }'), "space.c.choices", "at choices[0]"),
    (dict(rest=SPACE + 'x = { type = "flaot", low = 0.0, high = 1.0 }'), "space.x.type", "did you mean 'float'?"),
    (dict(rest=SPACE + "x = { low = 0.0, high = 1.0 }"), "space.x.type", "missing required key 'type'"),
    (dict(rest=SPACE + 'x = { type = "loguniform", low = 0.1, high = 1.0, log = false }'), "space.x.log", "log = true"),
    (dict(rest=SPACE + 'x = { type = "float", lo = 0.0, high = 1.0 }'), "space.x.lo", "did you mean 'low'?"),
    (dict(rest=SPACE + 'x = { type = "float", high = 1.0 }'), "space.x.low", "missing required key 'low'"),
    (dict(rest=SPACE + "x = 3"), "space.x", "expected a table such as"),
    (
        dict(rest=SPACE + 'x = { type = "int", low = 0, high = 3 }\n[[enqueue]]\nx = 5'),
        "enqueue[0].x",
        "got 5; expected an integer in [0, 3]",
    ),
    (dict(rest=SPACE + 'x = { type = "int", low = 0, high = 3 }\n[[enqueue]]\ny = 1'), "enqueue[0].y", "unknown"),
    (dict(rest='[cluster]\nkind = "address"'), "cluster.address", 'kind = "address" needs address'),
    (dict(rest='[cluster]\nkind = "address"\naddress = "h:8786"'), "cluster.address", '"tcp://host:port"'),
    (dict(rest='[cluster]\naddress = "tcp://h:8786"'), "cluster.address", 'set kind = "address"'),
    (dict(rest='[cluster]\nkind = "k8s"'), "cluster.kind", "'local', 'local-cuda', 'address' or 'slurm'"),
    (dict(rest="[cluster]\ntrials_per_gpu = 2\ngpus_per_trial = 2"), "cluster.gpus_per_trial", "one of them to 1"),
    (dict(rest="[cluster.adapt]\nminimum = 3\nmaximum = 2"), "cluster.adapt.maximum", "maximum >= minimum"),
    (dict(rest='[cluster.slurm]\nqueue = "gpu"'), "cluster.slurm", 'set kind = "slurm"'),
    (dict(rest='[cluster.security]\nca_file = "ca.pem"'), "cluster.security.cert_file", "missing required key"),
    (dict(rest="[cluster]\nworker_nice = 20"), "cluster.worker_nice", "less than or equal to 19"),
    (dict(rest="[cluster]\nworker_nice = -1"), "cluster.worker_nice", "greater than or equal to 0"),
    (dict(rest='[storage]\nurl = "redis://h"'), "storage.url", '"journal:PATH", "sqlite:///PATH"'),
    (dict(rest='[storage]\nurl = "journal:"'), "storage.url", "expected a file path after 'journal:'"),
    (dict(rest='[wandb]\nmode = "on"'), "wandb.mode", "expected 'online', 'offline' or 'disabled'"),
    (dict(rest='[wandb]\ntags = ["a", 1]'), "wandb.tags[1]", "got 1; expected a valid string"),
    (dict(rest="[dashboard]\nport = 70000"), "dashboard.port", "less than or equal to 65535"),
    (dict(top='sampler = "tpe"'), "sampler", 'got "tpe"; expected a table'),
    (dict(rest='[sampler]\nname = "tpee"'), "sampler.name", "did you mean 'tpe'? valid names: tpe, random"),
    (
        dict(rest="[sampler.options]\nn_startup_trails = 3"),
        "sampler.options.n_startup_trails",
        "did you mean 'n_startup_trials'?",
    ),
    (dict(rest='[pruner]\nname = "percentile"'), "pruner.options.percentile", "needs option 'percentile'"),
    (
        dict(rest='[pruner]\nname = "percentile"\noptions = { percentile = 150 }'),
        "pruner.options",
        "Percentile must be between 0 and 100",
    ),
    (
        dict(rest='[sampler]\nname = "grid"\n' + SPACE + 'x = { type = "float", low = 0.0, high = 1.0 }'),
        "space.x.step",
        "the grid sampler needs a step",
    ),
    (
        dict(rest='[scheduler]\nname = "asha"'),
        "scheduler.name",
        "unknown scheduler 'asha'; valid names: asha-promotion, hyperband-promotion",
    ),
    (dict(rest="[scheduler]\noptions = { max_resource = 9 }"), "scheduler.name", "missing required key 'name'"),
    (
        dict(rest='[scheduler]\nname = "asha-promotion"\noptions = { max_resource = 9, eta = 3 }'),
        "scheduler.options.eta",
        "scheduler 'asha-promotion' takes no option 'eta'; valid options: max_resource, min_resource",
    ),
    (
        dict(rest='[scheduler]\nname = "asha-promotion"\noptions = { max_resorce = 9 }'),
        "scheduler.options.max_resorce",
        "did you mean 'max_resource'?",
    ),
    (
        dict(rest='[scheduler]\nname = "hyperband-promotion"\noptions = { min_resource = 2 }'),
        "scheduler.options.max_resource",
        "needs option 'max_resource' in [scheduler.options]",
    ),
    (
        dict(rest='[scheduler]\nname = "asha-promotion"\noptions = { max_resource = 9, reduction_factor = 1 }'),
        "scheduler.options",
        "reduction_factor must be an int >= 2, got 1",
    ),
    (
        dict(rest='[scheduler]\nname = "asha-promotion"\noptions = { max_resource = 9, min_resource = 10 }'),
        "scheduler.options",
        "min_resource (10) must be at most max_resource (9)",
    ),
    (
        dict(rest='[scheduler]\nname = "asha-promotion"\noptions = { max_resource = 9 }\n[pruner]\nname = "median"'),
        "scheduler",
        "[scheduler] 'asha-promotion' and [pruner] 'median' would both decide when trials stop",
    ),
    (dict(rest="[elastic]\nmin_replicas = 4\nmax_replicas = 2"), "elastic.max_replicas", "expected >= min_replicas"),
    (dict(rest='[elastic]\nlr_rule = "cubic"'), "elastic.lr_rule", "'adascale', 'linear', 'sqrt' or 'none'"),
    (dict(rest="[elastic]\nmax_replica = 2"), "elastic.max_replica", "did you mean 'max_replicas'?"),
    (
        dict(rest='[elastic]\n[scheduler]\nname = "asha-promotion"\noptions = { max_resource = 9 }'),
        "elastic",
        "cannot be combined yet",
    ),
    (dict(rest="[elastic]\n[cluster]\ngpus_per_trial = 2"), "cluster.gpus_per_trial", "elastic trials size themselves"),
]


@pytest.mark.parametrize(("parts", "key", "fragment"), BAD_FILES, ids=[case[1] for case in BAD_FILES])
def test_bad_file_names_file_key_and_problem(tmp_path: Path, parts: dict[str, str], key: str, fragment: str) -> None:
    path = write(tmp_path, study_toml(**parts))  # type: ignore[arg-type]
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_study_name_is_reported_before_the_defaults_it_feeds(tmp_path: Path) -> None:
    path = write(tmp_path, "[study]\ndirection = 'maximize'\n[objective]\n" + OBJECTIVE)
    with pytest.raises(SpecError, match=r"study\.name: missing required key 'name' in \[study\]$"):
        load_spec(path)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[study]\nname = "demo"\nn_trials = \n')
    with pytest.raises(SpecError, match=rf"^{path}:3: invalid TOML: .* \(column \d+\)$"):
        load_spec(path)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "absent.toml")


# --- good files ---------------------------------------------------------------------------------------


def test_minimal_file_gets_defaults_relative_to_its_folder(tmp_path: Path) -> None:
    spec = load(tmp_path)
    assert spec.study.directions == ("minimize",)
    assert (spec.sampler.name, spec.pruner.name, spec.cluster.kind) == ("tpe", "none", "local")
    assert spec.storage.url == f"journal:{tmp_path.resolve() / 'demo.journal'}"
    assert spec.output.dir == tmp_path.resolve() / "runs" / "demo"
    assert spec.objective.workdir == tmp_path.resolve()
    assert spec.wandb.project == "demo"
    assert (spec.dashboard.port, spec.objective.grace_period, spec.objective.metric) == (0, 10.0, "value")


def test_full_file_loads_every_section(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        study='directions = ["minimize", "maximize"]\nn_trials = 50\ntimeout = "1h30m"\nrepeats = 2',
        objective='command = ["python", "train.py"]\nmetric = "loss"\ntrial_timeout = "20m"\nworkdir = "src"',
        rest="\n".join(
            [
                '[sampler]\nname = "nsgaii"\noptions = { population_size = 10, seed = 1 }',
                '[pruner]\nname = "median"\noptions = { n_warmup_steps = 2 }',
                '[cluster]\nkind = "address"\naddress = "tls://sched:8786"',
                '[cluster.security]\nca_file = "tls/ca.pem"\ncert_file = "/etc/cert.pem"',
                '[storage]\nurl = "sqlite:///db/study.db"',
                '[output]\ndir = "out"',
                '[wandb]\nproject = "p"\nmode = "offline"\ntags = ["a"]',
                "[dashboard]\nenabled = false\nport = 9000",
            ]
        ),
    )
    root = tmp_path.resolve()
    assert (spec.study.directions, spec.study.n_trials, spec.study.timeout) == (("minimize", "maximize"), 50, 5400)
    assert spec.objective.command == ("python", "train.py")
    assert (spec.objective.trial_timeout, spec.objective.workdir) == (1200, root / "src")
    assert spec.sampler.options == {"population_size": 10, "seed": 1}
    assert spec.cluster.address == "tls://sched:8786"
    assert spec.cluster.security is not None
    assert spec.cluster.security.ca_file == root / "tls" / "ca.pem"
    assert spec.cluster.security.cert_file == Path("/etc/cert.pem")
    assert spec.storage.url == f"sqlite:///{root / 'db' / 'study.db'}"
    assert spec.output.dir == root / "out"
    assert (spec.wandb.project, spec.wandb.mode, spec.wandb.tags) == ("p", "offline", ("a",))
    assert (spec.dashboard.enabled, spec.dashboard.port) == (False, 9000)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('{ type = "float", low = 0.0, high = 1.0 }', FloatParam(low=0.0, high=1.0)),
        ('{ type = "uniform", low = 0, high = 2 }', FloatParam(low=0.0, high=2.0)),
        ('{ type = "loguniform", low = 1e-5, high = 0.1 }', FloatParam(low=1e-5, high=0.1, log=True)),
        ('{ type = "float", low = 0.0, high = 1.0, step = 0.25 }', FloatParam(low=0.0, high=1.0, step=0.25)),
        ('{ type = "int", low = 1, high = 64, log = true }', IntParam(low=1, high=64, log=True)),
        ('{ type = "int", low = 0, high = 10, step = 2 }', IntParam(low=0, high=10, step=2)),
        ('{ type = "categorical", choices = ["a", 1, true] }', CategoricalParam(choices=("a", 1, True))),
        ('{ type = "choice", choices = [0.5] }', CategoricalParam(choices=(0.5,))),
    ],
)
def test_parameter_spellings(tmp_path: Path, table: str, expected: FloatParam | IntParam | CategoricalParam) -> None:
    assert load(tmp_path, rest=f"[space]\nx = {table}").space == {"x": expected}


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ('command = "python train.py --fast"', ("python", "train.py", "--fast")),
        ('command = ["python", "train.py"]', ("python", "train.py")),
        ('command = "python train.py | tee log"\nshell = true', "python train.py | tee log"),
    ],
)
def test_command_is_argv_or_one_shell_line(tmp_path: Path, objective: str, expected: object) -> None:
    assert load(tmp_path, objective=objective).objective.command == expected


@pytest.mark.parametrize(
    ("study", "expected"),
    [
        ("", ("minimize",)),
        ('direction = "maximize"', ("maximize",)),
        ('directions = ["maximize", "minimize"]', ("maximize", "minimize")),
    ],
)
def test_directions_is_always_set(tmp_path: Path, study: str, expected: tuple[str, ...]) -> None:
    assert load(tmp_path, study=study).study.directions == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("memory", "memory"),
        ("journal:/abs/s.journal", "journal:/abs/s.journal"),
        ("journal:j/s.journal", "journal:{root}/j/s.journal"),
        ("sqlite:///s.db", "sqlite:///{root}/s.db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("mysql://u@h/db", "mysql://u@h/db"),
    ],
)
def test_storage_urls(tmp_path: Path, url: str, expected: str) -> None:
    spec = load(tmp_path, rest=f'[storage]\nurl = "{url}"')
    assert spec.storage.url == expected.format(root=tmp_path.resolve())


@pytest.mark.parametrize("pruner", ["", '[pruner]\nname = "none"'], ids=["no-pruner", "pruner-none"])
def test_scheduler_section_loads_and_builds(tmp_path: Path, pruner: str) -> None:
    rest = '[scheduler]\nname = "asha-promotion"\noptions = { max_resource = 9, reduction_factor = 3 }\n' + pruner
    spec = load(tmp_path, rest=rest)
    assert spec.scheduler is not None
    assert spec.scheduler.name == "asha-promotion"
    assert spec.scheduler.options == {"max_resource": 9, "reduction_factor": 3}
    scheduler = make_scheduler(spec.scheduler, spec.pruner)
    assert isinstance(scheduler, PromotionASHA)
    assert (scheduler.max_resource, scheduler.reduction_factor, scheduler.rungs.steps) == (9, 3, [1, 3])
    assert load(tmp_path).scheduler is None  # no section: no scheduler, the pruner decides


def test_enqueued_rows_inside_the_space_load(tmp_path: Path) -> None:
    rest = '[space]\nx = { type = "int", low = 0, high = 3 }\ny = { type = "float", low = 0.0, high = 1.0 }'
    spec = load(tmp_path, rest=rest + "\n[[enqueue]]\nx = 2\n[[enqueue]]\nx = 1\ny = 0.5")
    assert spec.enqueue == ({"x": 2}, {"x": 1, "y": 0.5})


def test_spec_is_frozen(tmp_path: Path) -> None:
    spec = load(tmp_path)
    with pytest.raises(ValidationError):
        spec.study.n_trials = 3  # type: ignore[misc]


def test_spec_from_dict_resolves_paths_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = spec_from_dict({"study": {"name": "d"}, "objective": {"callable": "m:f"}})
    assert spec.output.dir == tmp_path.resolve() / "runs" / "d"


def test_spec_from_dict_errors_name_the_source() -> None:
    with pytest.raises(SpecError, match=r"^<dict>: study: missing required section \[study\]$"):
        spec_from_dict({"objective": {"callable": "m:f"}})


# --- durations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90), ("20m", 1200), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), ("500ms", 0.5), ("1d", 86400)]
    + [("1h 30m", 5400), (45, 45), (2.5, 2.5), (0, 0)],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["90", "", "1h30", "5 minutes", "-5s", -1, math.inf, True, [1], None])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(SpecError, match="expected a duration"):
        parse_duration(value)


def test_an_elastic_section_becomes_the_elastic_settings(tmp_path: Path) -> None:
    from daskopt.runner.run import settings_from_spec

    spec = load(
        tmp_path, rest='[elastic]\nmax_replicas = 4\ninitial_batch = 64\nlr_rule = "adascale"\nrestart_s = "5s"'
    )
    elastic = settings_from_spec(spec, tmp_path)["elastic"]
    assert (elastic.max_replicas, elastic.initial_batch, elastic.lr_rule, elastic.restart_s) == (4, 64, "adascale", 5.0)
    assert settings_from_spec(load(tmp_path), tmp_path)["elastic"] is None
