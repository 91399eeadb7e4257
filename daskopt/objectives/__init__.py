"""Objectives daskopt runs for the user: command lines (a program per trial, results on stdout)."""

from __future__ import annotations

from daskopt.objectives.command import CommandFailed, CommandObjective

__all__ = ["CommandFailed", "CommandObjective"]
