"""Data sent once: ``Scheduler.put(obj)`` returns a ``Handle`` that any number of jobs take in place of ``obj``.

::

    caller: sched.put(obj)                                            worker (first job that takes the handle)
      pickle 5: large buffers ──write──> /dev/shm/<prefix>h<random>   map each segment read-only (MAP_SHARED)
                in-band pickle ─write──> /dev/shm/<prefix>h<random>   pickle.loads(in-band, buffers=maps)
      Handle(token, segment names)                                    cache[token] = obj
    submit(f, handle) ─ the handle pickles as (token, names): a few hundred bytes ─> later jobs: cache[token]

**Once.** ``put`` pickles the object and writes it into shared memory once. A job's arguments carry the
handle's token and segment names only. A worker maps the segments read-only and shared (every worker reads
the same pages: the machine holds one copy, whatever the number of workers), unpickles the object once, and
keeps it for its later jobs: a numpy array arrives as a read-only view of the segment, no copy at all.

**Until when.** The segments go with ``handle.release()``, with the handle itself (garbage-collected: a queued
or running job holds its handle through its arguments, so that is once none refers to it), or with the
scheduler (``close()``, or its ``Reaper`` if its process is killed: the names carry the scheduler's prefix, as
every segment of ``_data.shm``). A worker lets go of its copy at its next job once the segments are gone.

**Errors.** An object that cannot be pickled is refused by ``put``; a handle of another scheduler, or one
already released, by ``submit``/``add_job`` (``check``); a worker that cannot map the segments (released while
its job was queued) fails that job with a ``JobError`` that says so.

Without shared memory (/dev/shm missing or full), the handle carries the pickle itself: it travels with each
job, and each worker process still unpickles it once.

**Delivered by the backend.** A backend whose workers cannot map this machine's shared memory (Dask) takes the
data over instead (``put(..., carried=False)``, then the backend's ``share``): the handle then pickles as its
token alone, and the backend sees that each worker gets the data once before its first job that takes it. On
Dask per task, one ``client.scatter`` per Dask worker (``_dask/shared.py``): the Dask worker holds the object,
lent to the jobs that take it (``lent``); to a resident worker, one DATA frame with the pickle per
connection (``deliver``), unpickled by the first job that takes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import pickle
import stat
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from . import shm as _shm
from .pickling import dumps as _checked_dumps

HANDLE = _shm.HANDLE

_seen = threading.local()  # the handles pickled meanwhile in this thread (``collecting``)
live = 0  # Handle objects in this process: jobs are looked at for handles only while some exist
_lock = threading.Lock()


class Handle:
    """Data sent once (``Scheduler.put``): pass it in any job's arguments, at any depth; the job gets the object.

    Attributes:
        nbytes: the size of the pickled object (in shared memory, or carried along without it).
        digest: the content digest that journal keys use for this handle (computed once, at ``put``, when
            the scheduler has a journal; else on first use).
    """

    __slots__ = ("token", "nbytes", "_wire", "_names", "_held", "_digest", "_owner", "_finalizer", "__weakref__")

    def __init__(self, token: str, wire: tuple[Any, ...], names: tuple[str, ...], nbytes: int, owner: Any,
                 digest: str | None, held: list[Any] | None = None) -> None:
        global live
        self.token = token
        self.nbytes = nbytes
        self._wire = wire
        self._names = names
        # Delivered by the backend: what it delivers (the pickle, or a Dask future), let go on release.
        self._held: list[Any] = held if held is not None else []
        self._digest = digest
        self._owner = weakref.ref(owner)
        self._finalizer = weakref.finalize(self, _drop, names, self._held)
        with _lock:
            live += 1
        weakref.finalize(self, _gone)  # a released handle still counts: submit must be able to refuse it

    @property
    def released(self) -> bool:
        """Whether ``release()`` (or the scheduler's ``close()``) has let the data go."""
        return not self._finalizer.alive or (bool(self._names) and not os.path.exists(
            os.path.join(_shm.SHM_DIR, self._names[0])))

    def release(self) -> None:
        """Let the data go now: its shared memory is removed, and workers drop their copy at their next job.

        Jobs still queued with this handle fail with a ``JobError`` when they run. Idempotent.
        """
        self._finalizer()

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = _digest_of(self._read())
        return self._digest

    def _read(self) -> list[Any]:
        """The pickle's parts as this process can read them (for a digest computed after ``put``)."""
        if self._names:
            return _map(self._names, self._wire[1], _shm.SHM_DIR)
        return [self._wire[2]]

    def __reduce__(self) -> tuple[Any, ...]:
        seen = getattr(_seen, "list", None)
        if seen is not None:
            seen.append(self)
        return _resolve, (self.token, self._wire)

    def __repr__(self) -> str:
        state = "released" if self.released else f"{self.nbytes} bytes"
        return f"<jobsched.Handle {self.token[:8]} {state}>"


def _drop(names: tuple[str, ...], held: list[Any]) -> None:
    for name in names:
        _shm._unlink(name)
    for item in held:
        release = getattr(item, "release", None)  # copies on Dask: they leave the cluster
        if release is not None:
            with contextlib.suppress(Exception):  # its client is gone, and the data with it
                release()
    held.clear()


def _gone() -> None:
    global live
    with _lock:
        live -= 1


def _digest_of(parts: list[Any]) -> str:
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        h.update(memoryview(part).cast("B"))
    return h.hexdigest()


def put(obj: Any, area: _shm.Area | None, owner: Any, digest: bool, carried: bool = True) -> Handle:
    """Pickle ``obj`` once into shared memory (``area``) and return its handle.

    Without ``area`` (or when it is full), the handle carries the pickle itself; with ``carried=False`` it
    holds it for the backend to deliver (its digest is then computed here: nothing else can read it later).

    Raises:
        TypeError: ``obj`` cannot be pickled (the message names the culprit).
    """
    data = _shm._dumps_or_none(_shm.wrap(obj))
    if data is None:
        _checked_dumps(obj, "put: the object")  # raises the TypeError that names the culprit
        raise TypeError("put: the object cannot be pickled")  # pragma: no cover
    inband, buffers = (data, []) if isinstance(data, bytes) else (data.inband, data.buffers)
    parts: list[Any] = [pb.raw() for pb in buffers] + [inband]
    nbytes = sum(memoryview(p).nbytes for p in parts)
    token = os.urandom(16).hex()
    key = _digest_of(parts) if digest or not carried else None
    if not carried:
        return Handle(token, ((), (), None), (), nbytes, owner, key,
                      [inband if isinstance(data, bytes) else data.inline()])
    if area is not None and area.enabled:
        try:
            body = _shm._write(area.prefix, HANDLE, _shm.OutOfBand(b"", [pickle.PickleBuffer(p) for p in parts], obj))
        except OSError:  # /dev/shm full: the pickle travels with the handle
            pass
        else:
            segments, _ = _shm._parse(body)
            names = tuple(name for name, _, _ in segments)
            sizes = tuple(size for _, _, size in segments)
            return Handle(token, (names, sizes, None), names, nbytes, owner, key)
    whole = inband if isinstance(data, bytes) else data.inline()
    return Handle(token, ((), (), whole), (), nbytes, owner, key)


def held(handle: Handle) -> Any:
    """What a handle delivered by its backend holds (its pickle, or its copies on Dask); None once released."""
    return handle._held[0] if handle._held else None


def hold(handle: Handle, item: Any) -> None:
    """The backend keeps ``item`` instead (the data's copies on Dask); ``item.release()`` goes with the handle."""
    handle._held[:] = [item]


@contextlib.contextmanager
def collecting() -> Iterator[list[Handle]]:
    """Collect the handles pickled in this thread meanwhile (a job's arguments are pickled inside)."""
    outer = getattr(_seen, "list", None)
    seen: list[Handle] = []
    _seen.list = seen
    try:
        yield seen
    finally:
        _seen.list = outer
        if outer is not None:
            outer.extend(seen)


def check(handles: tuple[Handle, ...], owner: Any, what: str) -> None:
    """Refuse a job whose arguments hold a handle of another scheduler, or one already released.

    Raises:
        ValueError: the handle cannot serve this scheduler's jobs (the message says why and what to do).
    """
    for h in handles:
        if h._owner() is not owner:
            raise ValueError(f"{what}: {h!r} was made by another scheduler's put(); its data lives in that "
                             "scheduler's shared memory. Call put() on this scheduler")
        if h.released:
            raise ValueError(f"{what}: {h!r} was released (handle.release(), or its scheduler closed); call "
                             "put() again")


# ---------------------------------------------------------------------------------------------- in a worker

_cache: dict[str, Any] = {}  # token -> the object, unpickled once per process
_cache_names: dict[str, str] = {}  # token -> its first segment: gone once the handle is released
_delivered: dict[str, bytes] = {}  # token -> the pickle a resident worker received (DATA), not unpickled yet
_lending = threading.local()  # ``objects``: token -> the object a Dask worker holds, during one job


@contextlib.contextmanager
def lent(objects: dict[str, Any]) -> Iterator[None]:
    """A job on a Dask worker: its handles resolve to ``objects`` (what Dask scattered), during the job only."""
    outer = getattr(_lending, "objects", None)
    _lending.objects = objects
    try:
        yield
    finally:
        _lending.objects = outer


def deliver(token: str, pickled: bytes) -> None:
    """A resident worker received a handle's pickle (DATA); empty: the handle was released, forget it."""
    if pickled:
        _delivered[token] = pickled
    else:
        _delivered.pop(token, None)
        _cache.pop(token, None)


def _resolve(token: str, wire: tuple[Any, ...]) -> Any:
    """Unpickling a handle in a worker: the object, from this process's cache, or mapped and unpickled once."""
    obj = _cache.get(token, _cache)
    if obj is not _cache:
        return obj
    names, sizes, whole = wire
    if whole is not None:
        obj = pickle.loads(whole)
    elif not names:  # delivered by the backend
        lending = getattr(_lending, "objects", None)
        if lending is not None and token in lending:
            return lending[token]  # the Dask worker keeps it; so does this process's cache not
        pickled = _delivered.pop(token, None)
        if pickled is None:
            raise RuntimeError(f"the shared data of handle {token[:8]} did not reach this worker (pid "
                               f"{os.getpid()}). Was it released (handle.release(), or the scheduler closed) while "
                               "this job was queued?")
        obj = pickle.loads(pickled)
    else:
        try:
            maps = _map(names, sizes, _shm.SHM_DIR)
        except OSError as exc:
            raise RuntimeError(f"the shared data of handle {token[:8]} cannot be mapped in this worker "
                               f"(pid {os.getpid()}): {exc}. Was it released (handle.release(), or the scheduler "
                               "closed) while this job was queued?") from None
        obj = pickle.loads(maps[-1], buffers=maps[:-1])
        _cache_names[token] = names[0]
    _cache[token] = obj
    return obj


def _map(names: tuple[str, ...], sizes: tuple[int, ...], where: str) -> list[memoryview]:
    """Map each named segment read-only and shared, after the checks ``_data.shm`` makes of every segment."""
    prefix = _shm._peer_prefix or next((p for p in _shm._accepted if names and names[0].startswith(p)), None)
    maps = []
    for name, size in zip(names, sizes, strict=True):
        _shm.check_name(name, prefix)
        if not name.startswith(f"{prefix}{HANDLE}"):
            raise PermissionError(f"shared-memory segment {name!r} is not a handle's; it is not mapped")
        fd = os.open(os.path.join(where, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077 or st.st_size != size:
                raise PermissionError(f"shared-memory segment {name!r} is not a private file of {size} bytes owned "
                                      "by this user; it is not mapped")
            maps.append(memoryview(mmap.mmap(fd, size, access=mmap.ACCESS_READ)) if size else memoryview(b""))
        finally:
            os.close(fd)
    return maps


def forget_released() -> None:
    """Drop the cached objects whose handles were released (their segments are gone): a worker, between jobs."""
    for token, name in list(_cache_names.items()):
        if not os.path.exists(os.path.join(_shm.SHM_DIR, name)):
            del _cache_names[token]
            _cache.pop(token, None)

