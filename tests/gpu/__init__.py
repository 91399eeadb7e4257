"""Tests that need a CUDA GPU (marker ``gpu``); they skip cleanly on machines without one."""

from __future__ import annotations

import importlib.util

import pytest


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


HAS_CUDA = _cuda()
HAS_DASK_CUDA = importlib.util.find_spec("dask_cuda") is not None

needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="needs torch with a CUDA GPU")]
needs_dask_cuda = pytest.mark.skipif(not HAS_DASK_CUDA, reason="needs dask-cuda: pip install 'daskopt[cuda]'")
