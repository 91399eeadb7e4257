"""Helpers for training code inside trials; each submodule imports its framework when first used.

- :mod:`daskopt.integrations.torch`: the trial's device, seeding, per-epoch reporting with pruning, and
  multi-GPU trials (``torch.distributed``). Needs ``pip install 'daskopt[torch]'``.
"""
