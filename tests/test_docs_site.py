"""The documentation site keeps up with the repository, checked without building it (``make docs`` builds).

docs/_hooks/pages.py makes the site's pages from README.md, the example and deploy READMEs and
benchmarks/RESULTS.md; here its own drift check runs on the checkout (every README section on a page,
every generated page and docs/*.md in the nav of mkdocs.yml, every name of ``daskopt.__all__`` in the API
reference), and its link rewriting and the docstring role conversion are pinned on small inputs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"daskopt_docs_{name}", ROOT / "docs" / "_hooks" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


pages = _load("pages")
docstrings = _load("docstrings")


@pytest.fixture(scope="module")
def site() -> object:
    return pages.Site.load(ROOT)


def test_every_readme_example_and_public_name_is_on_the_site(site: object) -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    assert pages.problems(site, nav) == []
    listed = set(pages.nav_pages(nav))
    for readme in sorted(ROOT.glob("examples/*/README.md")):
        assert f"examples/{readme.parent.name}.md" in listed
    assert {"architecture.md", "command-protocol.md", "gpu.md", "reference.md", "guide/failures.md"} <= listed


def test_the_failure_table_is_on_its_page(site: object) -> None:
    text = site.pages["guide/failures.md"].markdown
    assert text.startswith("# Failure behaviour\n")
    assert "| what happens | outcome |" in text


def test_problems_name_what_is_missing(site: object) -> None:
    found = pages.problems(site, [{"Home": "index.md"}])
    assert any(p.startswith("examples/torch_digits.md (from examples/torch_digits/README.md)") for p in found)
    assert any(p.startswith("gpu.md (from docs/gpu.md)") for p in found)


def test_a_readme_section_on_no_page_stops_the_build() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    with pytest.raises(pages.SiteError, match="'## Changelog' is on no page"):
        pages.readme_pages(readme + "\n## Changelog\n\nNew.\n")
    # a "## " line inside fenced code is no section
    assert pages.readme_pages(readme + "\n```bash\n## not a heading\n```\n")


def test_links_point_at_the_pages_that_show_their_targets(site: object) -> None:
    text = (
        "[gpu](docs/gpu.md#install), [ex](examples/torch_digits), [where](#where-it-runs-which-connections-it-needs),"
        " [top](#quickstart), [file](examples/quickstart/study.toml), [web](https://optuna.org),"
        " ![shot](docs/dashboard.png), `[code](docs/gpu.md)`\n\n```\n[fenced](docs/gpu.md)\n```\n"
    )
    assert site.rewrite(text, "README.md", "index.md") == (
        "[gpu](/gpu.md#install), [ex](/examples/torch_digits.md), [where](/guide/connections.md#where-it-runs-which"
        "-connections-it-needs), [top](#quickstart), file, [web](https://optuna.org), ![shot](/dashboard.png),"
        " `[code](docs/gpu.md)`\n\n```\n[fenced](docs/gpu.md)\n```\n"
    )
    # from an example's folder, relative paths resolve against it; images outside docs/ are copied
    images: dict[str, str] = {}
    assert site.rewrite(
        "[p](../../docs/command-protocol.md) ![a](../../benchmarks/anytime.png)",
        "examples/command_pruning/README.md",
        "examples/command_pruning.md",
        images,
    ) == ("[p](/command-protocol.md) ![a](/assets/benchmarks/anytime.png)")
    assert images == {"assets/benchmarks/anytime.png": "benchmarks/anytime.png"}


def test_sphinx_roles_become_markdown() -> None:
    names = docstrings.exported(ROOT)
    text = ":class:`~daskopt.errors.ObjectiveError`, :func:`optimize`, :mod:`daskopt.settings`, :meth:`~a.B.c`"
    assert docstrings.markdown_roles(text, names) == (
        "[`ObjectiveError`][daskopt.ObjectiveError], [`optimize`][daskopt.optimize], `daskopt.settings`, `c`"
    )
