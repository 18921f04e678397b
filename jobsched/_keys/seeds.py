"""Per-job seeds: one 64-bit seed per job, from the run's seed ``S`` and the job's key.

``Scheduler(seed=S)`` gives each job ``job_seed(S, key)``: 63 bits of BLAKE2b over ``S`` and the
job's key. The key is the job's journal key when there is a journal, the ``key=`` given to ``add_job`` /
``submit`` otherwise, and else the key the journal would derive from the job's content (its function's code
and its arguments, or its data: see ``_keys.derive``). So a job's seed depends on what the job is, never on
when it was submitted, which worker ran it, how many workers there were, whether it was retried after a
crash or resumed from a journal. Two jobs with the same content get the same seed: give replicas a
distinct ``key=`` or a replicate number among their arguments.
"""

from __future__ import annotations

import hashlib
import operator

SEED_BITS = 63


def check_seed(where: str, seed: object) -> int | None:
    """Return ``seed`` as an int (None stays None); refuse anything else with a message that says the fix."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        try:
            seed = operator.index(seed)  # type: ignore[arg-type]  # numpy integers; TypeError otherwise
        except TypeError:
            raise TypeError(f"{where}: seed must be an int or None, got {type(seed).__name__} ({seed!r}); "
                            "pass e.g. seed=12345") from None
    if seed < 0:
        raise ValueError(f"{where}: seed must be >= 0, got {seed}; pass e.g. seed=12345")
    return int(seed)


def job_seed(seed: int, key: str) -> int:
    """Return the seed of the job named ``key`` in a run seeded with ``seed``: an int in [0, 2**63).

    63 bits, so that the journal stores it as a SQLite INTEGER (signed 64-bit).
    """
    # The hash of the run's seed is taken once and copied for each job (a run has one seed): the same
    # digest as hashing the seed and the key afresh, at about half the cost.
    prefix = _prefixes.get(seed)
    if prefix is None:
        prefix = hashlib.blake2b(digest_size=8)
        prefix.update(seed.to_bytes((seed.bit_length() + 8) // 8, "big"))
        prefix.update(b"\0")
        if len(_prefixes) >= _PREFIXES_MAX:
            _prefixes.clear()
        _prefixes[seed] = prefix
    h = prefix.copy()
    h.update(key.encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "big") >> 1


_prefixes: dict[int, hashlib.blake2b] = {}  # run seed -> the hash state after it (job_seed)
_PREFIXES_MAX = 64
