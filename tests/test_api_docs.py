"""The README's API section against the code: every argument of ``optimize`` and every field of its
settings objects, with its default, is documented, and nothing documented is gone."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import daskopt
from daskopt.settings import SETTINGS_TYPES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _api_section() -> str:
    start = README.index("`daskopt.optimize(study, objective, *,")
    return README[start : README.index("`daskopt.from_study(", start)]


def test_the_signature_line_and_the_table_list_the_arguments_of_optimize():
    section = _api_section()
    signature_line = section[: section.index("`:")]
    listed = re.findall(r"\b(\w+)\b", signature_line.split("*,", 1)[1])
    rows = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
    expected = [name for name in inspect.signature(daskopt.optimize).parameters if name not in ("study", "objective")]
    assert listed == expected
    assert rows == expected


def test_optimize_keeps_a_small_signature():
    # Optuna's own arguments and the settings objects, + dashboard, + scheduler (a decider beside the pruner),
    # + elastic (a settings object that is off unless given)
    assert len(inspect.signature(daskopt.optimize).parameters) <= 12 + len(SETTINGS_TYPES) + 3


@pytest.mark.parametrize(
    "cls", [*SETTINGS_TYPES.values(), daskopt.Dashboard, daskopt.Elastic, daskopt.Timeout], ids=lambda c: c.__name__
)
def test_each_settings_object_is_documented_with_its_fields_and_defaults(cls):
    if cls is daskopt.Timeout:
        assert "`daskopt.Timeout(seconds, hard=False)`" in README
        return
    match = re.search(rf"`daskopt\.{cls.__name__}\(([^`]*)\)`", README)
    assert match, f"daskopt.{cls.__name__}(...) is not shown in the README"
    documented = {}
    for part in match.group(1).split(", "):
        name, _, default = part.partition("=")
        documented[name] = ast.literal_eval(default)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if cls is daskopt.Dashboard:  # the README shows the two that users set
        fields = {name: fields[name] for name in documented}
    assert list(documented) == list(fields)
    for name, field in fields.items():
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        assert documented[name] == default, f"{cls.__name__}.{name}"
