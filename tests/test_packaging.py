"""The sdist and the wheel hold what an install needs, and the installed wheel imports with its version.

Built the way ``python -m build`` builds them (the sdist from the checkout, the wheel from the unpacked
sdist), through setuptools' own build hooks, without build isolation or network: a few seconds.
``make dist`` does the real build and twine's metadata check.
"""

from __future__ import annotations

import site
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PYPROJECT["project"]["version"]


def _hook(hook: str, source: Path, out: Path) -> Path:
    """Run ``setuptools.build_meta.<hook>(out)`` in ``source``; the path of what it built."""
    pytest.importorskip("setuptools", minversion="77")  # pyproject.toml's [build-system]
    code = f"import sys, setuptools.build_meta as b; print(b.{hook}(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=source, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(the sdist, the folder it unpacks to, the wheel built from that folder)."""
    tmp = tmp_path_factory.mktemp("packaging")
    sdist = _hook("build_sdist", ROOT, tmp)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "unpacked", filter="data")
    unpacked = tmp / "unpacked" / f"daskopt-{VERSION}"
    wheel = _hook("build_wheel", unpacked, tmp / "wheel")
    return sdist, unpacked, wheel


def test_sdist_holds_the_package_readme_and_metadata(built: tuple[Path, Path, Path]) -> None:
    sdist, unpacked, _ = built
    assert sdist.name == f"daskopt-{VERSION}.tar.gz"
    files = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    wanted = {"README.md", "pyproject.toml", "PKG-INFO", "daskopt/__init__.py", "daskopt/py.typed"}
    wanted |= {p.name for p in ROOT.glob("LICEN[CS]E*")}
    assert wanted <= files, sorted(wanted - files)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "daskopt").rglob("*.py")}
    assert modules <= files, sorted(modules - files)
    assert not any(f.startswith("tests/") for f in files), "MANIFEST.in keeps the test suite out"
    metadata = (unpacked / "PKG-INFO").read_text(encoding="utf-8")
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "\nDescription-Content-Type: text/markdown\n" in metadata


def test_wheel_holds_the_package_and_the_command(built: tuple[Path, Path, Path]) -> None:
    _, unpacked, wheel = built
    assert wheel.name == f"daskopt-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"daskopt-{VERSION}.dist-info/entry_points.txt").decode()
    package = {p.relative_to(unpacked).as_posix() for p in (unpacked / "daskopt").rglob("*") if p.is_file()}
    assert package <= names, sorted(package - names)
    assert "daskopt = daskopt.cli:main" in entry_points


def test_installed_wheel_imports_with_its_version(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The wheel unpacked as an installer would, ahead of this environment's dependencies: without ``site``,
    the checkout's editable install (a .pth hook) is not on the path, so daskopt comes from the wheel."""
    *_, wheel = built
    target = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    path = [str(target), *site.getsitepackages()]
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "import daskopt, daskopt.cli\n"
        "print(daskopt.__version__); print(daskopt.__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, *path], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    version, location = done.stdout.split()
    assert version == VERSION
    assert Path(location).is_relative_to(target)
