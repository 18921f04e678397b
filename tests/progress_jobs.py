"""A job with a tqdm bar (it travels by reference: this module is importable in the workers)."""

from __future__ import annotations

import os
import time


def tqdm_then_wait(path: str, total: int, desc: str, step: float = 0.05) -> int:
    """Iterate a tqdm bar of ``total`` items slowly, then hold the job open until ``path`` exists (at most 60 s)."""
    from tqdm import tqdm

    for _ in tqdm(range(total), desc=desc):
        time.sleep(step)
    deadline = time.monotonic() + 60.0
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return total
