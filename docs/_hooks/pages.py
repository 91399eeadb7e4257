"""MkDocs hooks of the daskopt site: the pages whose text lives elsewhere in the repository.

- README.md is cut at its ``## `` headings into the home page and the guides (``README_PAGES``);
- each ``examples/<name>/README.md`` becomes the tutorial ``examples/<name>.md``, each
  ``deploy/<name>/README.md`` the deployment guide ``deploy/<name>.md``;
- ``benchmarks/RESULTS.md`` becomes ``benchmarks.md``.

Their links (and those of docs/*.md) are written for the repository, where GitHub renders them. Here each
one is pointed at the site page that shows its target; an image outside docs/ is copied into the site; a
link to a file the site does not show (a study file, a script, a log) keeps only its text.

``problems()`` lists whatever would drift silently (a README section no page shows, a generated page
missing from the nav, a public name missing from the API reference); the build stops on it, and
tests/test_docs_site.py runs it without building.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# README.md's "## " sections, page by page, in the page's order; None is the text above the first section.
# A page made of sections starts with the first one's heading as its title.
README_PAGES: dict[str, tuple[str | None, ...]] = {
    "index.md": (None, "Quickstart"),
    "guide/study-file.md": ("Use it from the shell: one study file",),
    "guide/python.md": ("Use it from Python",),
    "guide/schedulers.md": ("Schedulers: trials that pause, resume and clone",),
    "guide/optuna-compatibility.md": ("Optuna compatibility",),
    "guide/wandb.md": ("Weights & Biases",),
    "guide/dashboard.md": ("Live dashboard",),
    "guide/how-it-works.md": ("How it works",),
    "guide/connections.md": ("Where it runs: which connections it needs",),
    "guide/failures.md": ("Failure behaviour",),
    "development.md": ("Development", "Layout"),
}
# Folders whose <name>/README.md files become the pages <folder>/<name>.md.
README_FOLDERS = ("examples", "deploy")
# Other repository files shown as one page each.
FILE_PAGES = {"benchmarks/RESULTS.md": "benchmarks.md"}
REFERENCE_PAGE = "reference.md"
IMAGE_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp"}
ASSETS = "assets"  # where images from outside docs/ are copied

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"(!?)\[([^\]]*)\]\(\s*([^)\s]+)(\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class SiteError(Exception):
    """The repository's documentation and the site's layout disagree."""


@dataclass
class Page:
    """A generated page: its place on the site, the repository file it comes from, its Markdown."""

    uri: str
    origin: str
    markdown: str
    images: dict[str, str] = field(default_factory=dict)  # site path -> repository path


# ---- Markdown helpers ------------------------------------------------------------------------------


def _blocks(text: str) -> Iterator[tuple[bool, str]]:
    """``text`` as consecutive (inside a fenced code block?, lines) pieces, line ends kept."""
    piece: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        match = FENCE.match(line)
        if fence is None and match:
            if piece:
                yield False, "".join(piece)
            piece, fence = [line], match.group(1)
        elif fence is not None:
            piece.append(line)
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                yield True, "".join(piece)
                piece, fence = [], None
        else:
            piece.append(line)
    if piece:
        yield fence is not None, "".join(piece)


def _code_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) ranges of the inline code spans of ``text`` (a run of n backticks closes at the next)."""
    spans, opened = [], None
    for run in re.finditer(r"`+", text):
        if opened is None:
            opened = run
        elif len(run.group()) == len(opened.group()):
            spans.append((opened.start(), run.end()))
            opened = None
    return spans


def slugify(heading: str) -> str:
    """The anchor Python-Markdown's toc gives a plain heading (and GitHub, for the headings used here)."""
    text = re.sub(r"[`*_]", "", heading)
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def headings(markdown: str) -> list[tuple[int, str]]:
    """(level, text) of every ATX heading outside fenced code."""
    found = []
    for fenced, block in _blocks(markdown):
        if not fenced:
            found += [(len(m.group(1)), m.group(2)) for m in map(HEADING.match, block.splitlines()) if m]
    return found


def _promote(markdown: str) -> str:
    """Every heading one level up (``## A`` becomes ``# A``), fenced code untouched."""
    out = []
    for fenced, block in _blocks(markdown):
        out.append(block if fenced else re.sub(r"(?m)^#(#{1,5}\s)", r"\1", block))
    return "".join(out)


# ---- the generated pages ---------------------------------------------------------------------------


def readme_sections(text: str) -> list[tuple[str | None, str]]:
    """README.md cut before each level-2 heading: (heading or None for the top, its Markdown)."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for fenced, block in _blocks(text):
        for line in block.splitlines(keepends=True):
            match = None if fenced else HEADING.match(line)
            if match and len(match.group(1)) == 2:
                sections.append((match.group(2), []))
            sections[-1][1].append(line)
    return [(heading, "".join(lines)) for heading, lines in sections]


def readme_pages(text: str) -> dict[str, str]:
    """README.md's Markdown page by page (``README_PAGES``); a section no page names is an error."""
    sections = dict(readme_sections(text))
    placed = [heading for names in README_PAGES.values() for heading in names]
    unplaced = [heading for heading in sections if heading not in placed]
    missing = [heading for heading in placed if heading not in sections]
    if unplaced or missing:
        raise SiteError(
            "README.md and README_PAGES in docs/_hooks/pages.py disagree:"
            + "".join(f" the section '## {h}' is on no page of the site;" for h in unplaced)
            + "".join(f" '{h}' is no section of README.md;" for h in missing)
        )
    pages = {}
    for uri, names in README_PAGES.items():
        parts = [sections[name] for name in names]
        if names[0] is not None:
            parts[0] = _promote(parts[0])
        pages[uri] = "\n".join(part.rstrip("\n") + "\n" for part in parts)
    return pages


def folder_readmes(root: Path = ROOT) -> dict[str, str]:
    """``examples/<name>.md`` -> ``examples/<name>/README.md`` for every example that has one (and so for
    every folder of ``README_FOLDERS``)."""
    return {
        f"{folder}/{path.parent.name}.md": path.relative_to(root).as_posix()
        for folder in README_FOLDERS
        for path in sorted((root / folder).glob("*/README.md"))
    }


def docs_files(root: Path = ROOT) -> set[str]:
    """The docs/ files the site shows (scripts and these hooks stay out, as ``exclude_docs`` says)."""
    docs = root / "docs"
    return {
        path.relative_to(docs).as_posix()
        for path in docs.rglob("*")
        if path.is_file() and path.suffix != ".py" and "_hooks" not in path.relative_to(docs).parts
    }


@dataclass
class Site:
    """Where each repository path is shown on the site, and the generated pages."""

    root: Path = ROOT
    pages: dict[str, Page] = field(default_factory=dict)
    by_origin: dict[str, str] = field(default_factory=dict)  # repository path -> page
    readme_anchors: dict[str, str] = field(default_factory=dict)  # README heading anchor -> page
    shown: set[str] = field(default_factory=set)  # docs/ files on the site

    @classmethod
    def load(cls, root: Path = ROOT) -> Site:
        site = cls(root=root, shown=docs_files(root))
        readme = (root / "README.md").read_text(encoding="utf-8")
        sources = {uri: ("README.md", text) for uri, text in readme_pages(readme).items()}
        for uri, origin in folder_readmes(root).items():
            sources[uri] = (origin, (root / origin).read_text(encoding="utf-8"))
        for origin, uri in FILE_PAGES.items():
            if (root / origin).is_file():
                sources[uri] = (origin, (root / origin).read_text(encoding="utf-8"))
        clashes = sorted(set(sources) & site.shown)
        if clashes:
            raise SiteError(f"docs/ has files where the site generates pages: {', '.join(clashes)}")
        for uri, (origin, text) in sources.items():
            site.pages[uri] = Page(uri, origin, text)
            if origin != "README.md":
                site.by_origin[origin] = uri
            else:
                for _, heading in headings(text):
                    site.readme_anchors.setdefault(slugify(heading), uri)
        site.by_origin["README.md"] = "index.md"
        for page in site.pages.values():
            page.markdown = site.rewrite(page.markdown, page.origin, page.uri, page.images)
        return site

    def locate(self, repo_path: str, anchor: str) -> str | None:
        """The site path that shows ``repo_path`` (and, for README.md, its ``anchor``), or None."""
        if repo_path == "README.md" and anchor in self.readme_anchors:
            return self.readme_anchors[anchor]
        if repo_path in self.by_origin:
            return self.by_origin[repo_path]
        if f"{repo_path}/README.md" in self.by_origin:
            return self.by_origin[f"{repo_path}/README.md"]
        if repo_path.startswith("docs/") and repo_path[5:] in self.shown:
            return repo_path[5:]
        return None

    def rewrite(self, markdown: str, origin: str, uri: str, images: dict[str, str] | None = None) -> str:
        """``markdown`` (from the repository file ``origin``, shown as page ``uri``) with site links.

        Links to pages become docs-relative (``/gpu.md#install``; mkdocs checks and relativizes them).
        Images outside docs/ are recorded in ``images`` for copying, or become their text without it.
        """
        out = []
        for fenced, block in _blocks(markdown):
            if fenced:
                out.append(block)
                continue
            spans = _code_spans(block)

            def replace(match: re.Match[str], spans: list[tuple[int, int]] = spans) -> str:
                if any(start <= match.start() < end for start, end in spans):
                    return match.group()
                bang, text, target, title = match.groups()
                new = self._target(target, origin, uri, bool(bang), images)
                if new is None:
                    return text
                return f"{bang}[{text}]({new}{title or ''})"

            out.append(LINK.sub(replace, block))
        return "".join(out)

    def _target(self, target: str, origin: str, uri: str, image: bool, images: dict[str, str] | None) -> str | None:
        if SCHEME.match(target) or target.startswith("/"):
            return target
        path, _, anchor = target.partition("#")
        if not path:  # within the file: README.md's sections are on several pages
            page = self.readme_anchors.get(anchor) if origin == "README.md" else None
            return target if page in (None, uri) else f"/{page}#{anchor}"
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(origin), path))
        if repo_path.startswith("../"):
            return None
        page = self.locate(repo_path, anchor)
        if page is not None:
            return f"/{page}" + (f"#{anchor}" if anchor else "")
        if image and images is not None and Path(repo_path).suffix.lower() in IMAGE_SUFFIXES:
            if (self.root / repo_path).is_file():
                images[f"{ASSETS}/{repo_path}"] = repo_path
                return f"/{ASSETS}/{repo_path}"
        return None  # a file the site does not show: keep the text


# ---- what must not drift ---------------------------------------------------------------------------


def nav_pages(nav: Iterable[Any] | None) -> list[str]:
    """Every page path in an mkdocs ``nav`` (strings, ``{title: path}`` and nested sections)."""
    found: list[str] = []
    for entry in nav or ():
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, list):
                found += nav_pages(value)
    return found


def public_names(root: Path = ROOT) -> list[str]:
    """``daskopt.__all__``, read from the source without importing it."""
    tree = ast.parse((root / "daskopt" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise SiteError("daskopt/__init__.py has no __all__")


def problems(site: Site, nav: Iterable[Any] | None) -> list[str]:
    """What the site would miss without a word: generated or docs/ pages outside the nav, public names
    without a ``::: daskopt.<name>`` block in the API reference."""
    listed = set(nav_pages(nav))
    found = []
    for uri in sorted(set(site.pages) | {p for p in site.shown if p.endswith(".md")}):
        if uri not in listed:
            origin = site.pages[uri].origin if uri in site.pages else f"docs/{uri}"
            found.append(f"{uri} (from {origin}) is not in the nav of mkdocs.yml")
    reference = (site.root / "docs" / REFERENCE_PAGE).read_text(encoding="utf-8")
    blocks = set(re.findall(r"(?m)^:::\s*(\S+)", reference))
    for name in public_names(site.root):
        if name == "__version__":
            if "__version__" not in reference:
                found.append(f"daskopt.__version__ is not mentioned in docs/{REFERENCE_PAGE}")
        elif f"daskopt.{name}" not in blocks:
            found.append(f"daskopt.{name} (in daskopt.__all__) has no '::: daskopt.{name}' in docs/{REFERENCE_PAGE}")
    return found


# ---- the MkDocs events -----------------------------------------------------------------------------

_site: Site | None = None


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    global _site
    try:
        _site = Site.load(ROOT)
    except SiteError as error:
        raise PluginError(str(error)) from error
    found = problems(_site, config.nav)
    if found:
        raise PluginError("the site would drift from the repository:\n  " + "\n  ".join(found))
    for page in _site.pages.values():
        files.append(File.generated(config, page.uri, content=page.markdown))
        for uri, repo_path in page.images.items():
            if files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(ROOT / repo_path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    uri = page.file.src_uri
    if _site is None or uri in _site.pages:  # generated pages were rewritten when they were made
        return markdown
    return _site.rewrite(markdown, f"docs/{uri}", uri)
