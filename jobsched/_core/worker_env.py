"""``Scheduler(worker_env=...)``: the environment variables of each worker slot, checked once, read per start.

A slot's variables are laid over the scheduler's environment when its process starts (spawned, or forked by
the zygote: ``_local.zygote``), and again for each replacement of that slot: a worker that is recycled or
dies comes back with the same ``CUDA_VISIBLE_DEVICES``. Pure: nothing here starts a process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

WorkerEnv = Callable[[int], Mapping[str, Any]] | Sequence[Mapping[str, Any]]


def _checked(index: int, env: object) -> dict[str, str]:
    """``env`` as ``{str: str}``; numbers are turned into text (``CUDA_VISIBLE_DEVICES=0``)."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise TypeError(f"worker_env for worker {index} is a {type(env).__name__}; it must be a dict of "
                        "environment variables, e.g. {'CUDA_VISIBLE_DEVICES': '0'}")
    out: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise TypeError(f"worker_env for worker {index}: {name!r} is not an environment variable name")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TypeError(f"worker_env for worker {index}: {name}={value!r} must be a str (or a number)")
        text = str(value)
        if "\0" in text:
            raise TypeError(f"worker_env for worker {index}: the value of {name} holds a NUL byte")
        out[name] = text
    return out


def env_table(worker_env: WorkerEnv | None) -> Callable[[int], dict[str, str]] | None:
    """Turn ``worker_env=`` into ``slot index -> {name: value}`` (None: no slot has variables of its own).

    A list is checked now; a callable's answer is checked each time a worker starts (its error then says
    which worker, and the start fails as a bad command would).

    Raises:
        TypeError: ``worker_env`` is neither a callable nor a list of dicts, or a dict in it is malformed.
    """
    if worker_env is None:
        return None
    if callable(worker_env):
        fn = worker_env
        return lambda index: _checked(index, fn(index))
    if isinstance(worker_env, (str, bytes, Mapping)) or not isinstance(worker_env, Sequence):
        raise TypeError(f"Scheduler: worker_env must be a callable index -> dict or a list of dicts (one per "
                        f"worker), got {type(worker_env).__name__}; for the same variables in every worker, "
                        "set them in os.environ before start()")
    table = [_checked(i, env) for i, env in enumerate(worker_env)]
    return lambda index: table[index] if index < len(table) else {}
