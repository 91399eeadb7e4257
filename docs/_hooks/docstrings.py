"""A griffe extension for the API reference: daskopt's docstrings in Markdown.

The docstrings name other objects with Sphinx roles (``:class:`~daskopt.errors.ObjectiveError```), which
Markdown would print as they are. Each role becomes a code span, linked to its entry in the API reference
when it names something ``daskopt`` exports (``daskopt.ObjectiveError``), plain otherwise; ``~`` keeps only
the last name, as in Sphinx. The docstrings themselves stay as they are.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

try:
    from griffe import Extension
except ImportError:  # markdown_roles alone, as tests/test_docs_site.py uses it, needs no griffe
    Extension = object  # type: ignore[assignment,misc]

ROOT = Path(__file__).resolve().parents[2]
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|exc|data|obj|const):`(~?)([^`<]+?)\s*(?:<([^>`]+)>)?`")


def exported(root: Path = ROOT) -> dict[str, str]:
    """Every spelling of a name ``daskopt`` exports (``ObjectiveError``, ``daskopt.ObjectiveError``,
    ``daskopt.errors.ObjectiveError``) -> its reference entry (``daskopt.ObjectiveError``)."""
    tree = ast.parse((root / "daskopt" / "__init__.py").read_text(encoding="utf-8"))
    names: dict[str, str] = {}
    for node in ast.walk(tree):  # the imports sit under ``if TYPE_CHECKING:`` (the package imports lazily)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("daskopt"):
            for alias in node.names:
                public = alias.asname or alias.name
                if not public.startswith("_"):
                    entry = f"daskopt.{public}"
                    names.update({public: entry, entry: entry, f"{node.module}.{alias.name}": entry})
    return names


def markdown_roles(text: str, names: dict[str, str]) -> str:
    """``text`` with its Sphinx roles as Markdown code spans, linked where ``names`` knows the target."""

    def replace(match: re.Match[str]) -> str:
        tilde, shown, target = match.group(1), match.group(2).strip(), match.group(3)
        target = (target or shown).strip()
        if not match.group(3) and tilde:
            shown = shown.rsplit(".", 1)[-1]
        entry = names.get(target)
        return f"[`{shown}`][{entry}]" if entry else f"`{shown}`"

    return ROLE.sub(replace, text)


class SphinxRoles(Extension):
    """Rewrites every docstring of the loaded objects with ``markdown_roles``."""

    def __init__(self) -> None:
        super().__init__()
        self.names = exported()

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_roles(obj.docstring.value, self.names)
