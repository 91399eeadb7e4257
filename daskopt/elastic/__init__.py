"""Elastic trials: the replicas and batch size of a running trial change with what it gains from them.

This package holds the loop's decision: each trial's goodput model (:mod:`.goodput`, after Pollux /
AdaptDL) and the allocator that hands out replica slots by marginal speedup with a restart penalty
(:mod:`.allocator`). Resizes are checkpoint-restarts through the scheduler machinery
(:mod:`daskopt.engine.movable`).
"""
