"""Exceptions raised by mslesion.

The library never prints or exits: it raises one of these, and the CLI turns
them into a one-line message and an exit code.
"""
from __future__ import annotations

from pathlib import Path


class MslesionError(Exception):
    """Base class of every error mslesion raises on purpose."""


class InputError(MslesionError):
    """A user-supplied file or value is unusable. Names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class OutputError(MslesionError):
    """An output location cannot be written."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ModelError(MslesionError):
    """A model folder is missing, corrupt or does not match its card."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ResourceError(MslesionError):
    """The work would need more memory or another resource than allowed."""
