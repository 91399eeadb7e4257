"""Pickling the objective without a cluster: what a fresh process (standing in for a worker that lacks the
objective's module) can load."""

from __future__ import annotations

import functools
import subprocess
import sys

from daskopt.shipping import dumps_objective

LOAD = """
import sys, cloudpickle
objective = cloudpickle.loads(sys.stdin.buffer.read())
print(objective(None), objective.__closure__[0].cell_contents.cache_parameters())
"""


def _double(n: int) -> int:
    return 2 * n


def test_a_cached_helper_of_a_script_is_rebuilt_in_a_process_without_the_script():
    """A helper under ``lru_cache`` in a script (``__main__``) travels by value with the objective, as the
    script's plain functions do, instead of by a name the worker's ``__main__`` does not have."""
    helper = functools.lru_cache(maxsize=3, typed=True)(_double)
    helper.__module__ = "__main__"  # as if defined in the script that calls optimize()
    helper.__wrapped__.__module__ = "__main__"

    def objective(trial: object) -> int:
        return helper(21)

    try:
        payload = dumps_objective(objective)
    finally:
        _double.__module__ = __name__
    done = subprocess.run([sys.executable, "-c", LOAD], input=payload, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split(maxsplit=1) == ["42", "{'maxsize': 3, 'typed': True}\n"]
