"""``daskopt``'s public names: imported on first use (PEP 562), each one where ``__all__`` says it is."""

from __future__ import annotations

import subprocess
import sys

import daskopt


def test_every_exported_name_resolves_and_the_lists_agree():
    assert set(daskopt.__all__) == {*daskopt._HOMES, "__version__"}
    for name in daskopt.__all__:
        assert getattr(daskopt, name) is not None
    assert set(daskopt.__all__) <= set(dir(daskopt))


def test_an_unknown_name_is_an_attribute_error():
    try:
        daskopt.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("daskopt.no_such_name resolved")


def test_importing_daskopt_imports_neither_dask_nor_optuna():
    """What keeps ``daskopt --help`` and bad input fast: the heavy imports wait for a name that needs them."""
    code = "import sys, daskopt; print(sorted(m for m in ('distributed', 'optuna', 'dask') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
