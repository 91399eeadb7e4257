"""Sampler, pruner and storage from their specs: every name builds, every mistake names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optuna import pruners, samplers
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage

from daskopt.errors import SpecError
from daskopt.factory import PRUNERS, SAMPLERS, grid_search_space, make_pruner, make_sampler, make_storage
from daskopt.spec import PrunerSection, SamplerSection

SPACE: dict[str, BaseDistribution] = {
    "x": FloatDistribution(0.0, 1.0, step=0.5),
    "n": IntDistribution(1, 5, step=2),
    "c": CategoricalDistribution(("a", "b")),
}

SAMPLER_CLASSES = {
    "tpe": samplers.TPESampler,
    "random": samplers.RandomSampler,
    "grid": samplers.GridSampler,
    "cmaes": samplers.CmaEsSampler,
    "gp": samplers.GPSampler,
    "qmc": samplers.QMCSampler,
    "nsgaii": samplers.NSGAIISampler,
    "nsgaiii": samplers.NSGAIIISampler,
    "bruteforce": samplers.BruteForceSampler,
}

#: name -> (options it needs, class built)
PRUNER_CASES: dict[str, tuple[dict[str, Any], type[pruners.BasePruner]]] = {
    "none": ({}, pruners.NopPruner),
    "median": ({}, pruners.MedianPruner),
    "percentile": ({"percentile": 25.0}, pruners.PercentilePruner),
    "asha": ({}, pruners.SuccessiveHalvingPruner),
    "successive_halving": ({}, pruners.SuccessiveHalvingPruner),
    "hyperband": ({}, pruners.HyperbandPruner),
    "wilcoxon": ({}, pruners.WilcoxonPruner),
    "threshold": ({"upper": 1.0}, pruners.ThresholdPruner),
    "patient": ({"patience": 3, "n_warmup_steps": 2}, pruners.PatientPruner),
}


def test_tables_cover_the_documented_names() -> None:
    assert set(SAMPLERS) == set(SAMPLER_CLASSES)
    assert set(PRUNERS) == set(PRUNER_CASES)


@pytest.mark.parametrize("name", SAMPLER_CLASSES)
def test_every_sampler_builds(name: str) -> None:
    sampler = make_sampler(SamplerSection(name=name, options={"seed": 0}), SPACE)
    assert type(sampler) is SAMPLER_CLASSES[name]


@pytest.mark.parametrize("name", PRUNER_CASES)
def test_every_pruner_builds(name: str) -> None:
    options, expected = PRUNER_CASES[name]
    assert type(make_pruner(PrunerSection(name=name, options=options))) is expected


def test_grid_search_space_lists_every_value() -> None:
    assert grid_search_space(SPACE) == {"x": [0.0, 0.5, 1.0], "n": [1, 3, 5], "c": ["a", "b"]}


def test_grid_search_space_needs_a_step_for_floats() -> None:
    with pytest.raises(SpecError, match="needs a step for 'lr'") as caught:
        grid_search_space({"lr": FloatDistribution(0.0, 1.0)})
    assert caught.value.key == "space.lr.step"


def test_grid_search_space_option_replaces_the_declared_space() -> None:
    sampler = make_sampler(SamplerSection(name="grid", options={"search_space": {"x": [1, 2]}}), {})
    assert isinstance(sampler, samplers.GridSampler)


@pytest.mark.parametrize(
    ("make", "key", "fragment"),
    [
        (lambda: make_sampler(SamplerSection(name="TPE"), {}), "sampler.name", "did you mean 'tpe'?"),
        (lambda: make_pruner(PrunerSection(name="hyperbnd")), "pruner.name", "valid names: none, median"),
        (
            lambda: make_sampler(SamplerSection(options={"n_startup_trails": 3}), {}),
            "sampler.options.n_startup_trails",
            "did you mean 'n_startup_trials'?",
        ),
        (
            lambda: make_pruner(PrunerSection(name="none", options={"patience": 2})),
            "pruner.options.patience",
            "there are no valid options",
        ),
        (
            lambda: make_pruner(PrunerSection(name="patient")),
            "pruner.options.patience",
            "pruner 'patient' needs option 'patience'",
        ),
        (
            lambda: make_pruner(PrunerSection(name="percentile", options={"percentile": 150})),
            "pruner.options",
            "percentile rejected options",
        ),
        (lambda: make_sampler(SamplerSection(name="grid"), {}), "sampler.options.search_space", "needs parameters"),
    ],
)
def test_mistakes_name_their_key(make: Any, key: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        make()
    assert caught.value.key == key
    assert fragment in str(caught.value)


def test_memory_storage_is_none() -> None:
    assert make_storage("memory") is None


def test_journal_storage_creates_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(make_storage("journal:runs/s.journal"), JournalStorage)
    assert (tmp_path / "runs").is_dir()


@pytest.mark.parametrize(
    ("url", "expected"),
    [("sqlite:///db/s.db", "sqlite:///{root}/db/s.db"), ("postgresql://u@h/db", "postgresql://u@h/db")],
)
def test_database_storage_is_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert make_storage(url) == expected.format(root=tmp_path.resolve())


def test_unknown_storage_names_the_key() -> None:
    with pytest.raises(SpecError, match=r"^storage\.url: got \"redis://h\"; expected \"journal:PATH\""):
        make_storage("redis://h")
