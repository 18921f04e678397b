"""Jobs for tests/test_tags.py: what a worker sees of its own environment (importable by workers)."""

from __future__ import annotations

import os


def env_of(name: str) -> tuple[str | None, int]:
    """The value of ``name`` in this worker's environment, and the worker's pid."""
    return os.environ.get(name), os.getpid()
