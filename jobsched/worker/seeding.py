"""Inside a job: its seed (``jobsched.job_seed()``), a generator from it (``jobsched.job_rng()``), and the
seeding of ``random`` and numpy's global state before each job of a scheduler that has a ``seed``.

The seed comes with the job (JOB_SEED frames, see ``_local.wire``; the Dask backend passes it along). Only jobs
of a seeded scheduler pay for seeding: ``seed=None`` leaves the worker's random state alone, as in
``multiprocessing``'s pools (each worker process has its own). numpy is seeded only if the job's code, or the
worker's, has already imported it: seeding never imports numpy.

What a job pays is the two Mersenne Twisters' initialisation, which no shortcut can skip: ``random``'s
(``init_by_array``, about 1,900 dependent steps in C) and numpy's legacy one (624 steps). Everything around them
is kept off the path: ``random``'s C seeder is called directly (what ``random.seed(int)`` does, without its
Python-level type checks), and numpy's seeder is looked up once per numpy module.
``benchmarks/seeding.py`` prints the cost per job.
"""

from __future__ import annotations

import _random as _c_random
import random as _random
import sys
from typing import Any

_current: int | None = None  # the running job's seed (None: no seed, or not in a job)
# The instance behind random's module-level functions (Any: gauss_next is not in its stubs).
_random_state: Any = getattr(_random.seed, "__self__")  # noqa: B009
# random.seed(n) for an int n is the C seeder plus a reset of gauss_next: called directly, it skips the
# Python-level checks of Random.seed (about a tenth of the cost) and gives the same state.
_seed_mt = _c_random.Random.seed

_numpy_seeded = False  # numpy's global state has the running job's seed
_numpy_seeder: tuple[Any, Any] | None = None  # (the numpy module, its numpy.random.seed), looked up once


def apply(seed: int | None) -> None:
    """Make ``seed`` the running job's seed; seed ``random`` and, if imported, numpy's legacy global state."""
    global _current, _numpy_seeded
    _current = seed
    _numpy_seeded = False
    if seed is None:
        return
    _seed_mt(_random_state, seed)
    _random_state.gauss_next = None
    loaded()


def loaded() -> None:
    """The job's function and data are unpickled: seed numpy now if that imported it (its module's
    ``import numpy``, on a worker's first job), so that the job's first draw does not depend on the worker."""
    global _numpy_seeded, _numpy_seeder
    seed = _current
    if seed is None or _numpy_seeded:
        return
    np = sys.modules.get("numpy")
    if np is not None:
        seeder = _numpy_seeder
        if seeder is None or seeder[0] is not np:
            seeder = _numpy_seeder = (np, np.random.seed)  # np.random imports numpy.random, once
        # The legacy seeder takes 32 bits: fold the 64-bit seed rather than drop half of it.
        seeder[1]((seed ^ (seed >> 32)) & 0xFFFFFFFF)
        _numpy_seeded = True


def job_seed() -> int:
    """Return the running job's seed (see ``Scheduler(seed=...)``).

    Raises:
        RuntimeError: not inside a job of a scheduler with a ``seed`` (the message says how to give one).
    """
    if _current is None:
        raise RuntimeError("job_seed(): no seed for this job; it runs only inside a job of a scheduler made with "
                           "a seed: Scheduler(seed=12345), Executor(seed=12345) or %jobsched start --seed 12345")
    return _current


def job_rng() -> Any:
    """Return a fresh ``numpy.random.Generator`` for the running job, from ``SeedSequence(job_seed())``.

    Each call returns a new generator that starts at the same point: make one per job and draw from it.

    Raises:
        RuntimeError: not inside a seeded job (see ``job_seed``).
        ImportError: numpy is not installed.
    """
    seed = job_seed()
    try:
        import numpy as np
    except ImportError as exc:
        raise ImportError(f"job_rng() needs numpy ({exc}): pip install numpy, or use random.Random(job_seed())"
                          ) from exc
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
