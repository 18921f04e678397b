"""Large buffers travel through shared memory, not through the socket (pickle protocol 5, out of band).

::

    caller: add_job / submit                                   worker
      pickle.dumps(obj, 5, buffer_callback)  ─ a buffer ≥ THRESHOLD ─┐
      in-band pickle (small) ─────── JOB frame: SEGMENTS header ──────┼──> map each named segment
      os.write(buffer) -> /dev/shm/<prefix>a<random>  <───────────────┘    (MAP_PRIVATE: copy-on-write)
                                                                           pickle.loads(data, buffers=maps)
    scheduler: map (MAP_SHARED), unlink at once, loads <── RESULT frame ── os.write -> <prefix>w<i>g<g>-<random>
               or map the job's own segment again <──────────────── (an argument returned unchanged: its name)

**Why files in /dev/shm, written with ``write`` and read with ``mmap``.** A tmpfs file is what
``multiprocessing.shared_memory`` is underneath, without its resource tracker (a process of its own per
program that unlinks segments when *it* thinks they are unused, and warns about the others): here the
owner of each segment is explicit, so nothing needs tracking. The sender copies each buffer once with
``write`` (the kernel copies straight from the array into the file's pages, which are not counted in the
sender's memory, so a 100 MiB argument does not cost the scheduler another 100 MiB); the receiver maps the
file, so an array is backed by the segment itself: no copy at all on that side. memfd would need
``SCM_RIGHTS`` over a Unix socket (our wire is TCP) or ``/proc/<pid>/fd`` paths that ptrace rules may
refuse; a named file in /dev/shm has neither problem.

**Why one file, a little over 600 lines.** Writing, naming, mapping and removing a segment are one
protocol: who may unlink a name depends on who wrote it and how the other side mapped it, so the rules
below are kept beside the code that follows them.

**Who owns a segment, and when it goes.**

* A job's data: created in the caller's thread by ``add_job`` (that is the copy, a snapshot of the data as
  ``add_job`` pickles it), owned by the scheduler; the worker maps it copy-on-write (its writes are its own,
  so a retried job reads the same data) and never unlinks it. The scheduler unlinks it when the job is
  delivered (``release``).
* A result: created by the worker, named ``<prefix>w<index>g<generation>-…``; the scheduler maps it and
  unlinks it the moment it has it (it is then the only holder: the array may be written, MAP_SHARED), or
  unlinks it unread if the job was cancelled meanwhile (``discard``). If the worker dies mid-write, the
  scheduler removes that worker's names once its connection is drained (``sweep_worker``).
* A result that is an argument returned unchanged (or a contiguous slice of one) is not copied at all: the
  worker names the job's own data segment and where in it the buffer starts (``_reference``: its mapping is
  private, and /proc/self/pagemap says whether the job wrote to any of those pages). The scheduler maps that
  segment copy-on-write too (the worker may keep its mapping: neither side's writes reach the other) and
  accepts only the segments of that very job's data; ``release`` unlinks them as for any job.
* ``close()`` removes every name of the scheduler's prefix, and so does the collection of a scheduler dropped
  without ``close()``, or the interpreter's exit (a ``weakref.finalize``); if the scheduler's process is killed,
  its ``Reaper`` (``_local.processes``), started before the first segment is written, removes them as soon as it
  sees the process gone, and the next ``Scheduler`` started on this machine removes the segments of any
  scheduler whose process no longer exists.

**Security.** Segments are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600 and named
``jobsched-<pid>-<64 random bits>-<kind><128 random bits>``: unguessable, readable by this user only.
Names arrive only in authenticated frames, and the receiver maps a name only if it is a plain file name
(no separator) under the one prefix it accepts (a worker: its scheduler's, from ``JOBSCHED_SHM_PREFIX``),
and only a regular file of this user of exactly the announced size.

**What goes out of band:** every pickle-5 buffer of at least ``THRESHOLD`` bytes, anywhere in the object
(numpy arrays, pandas objects through their numpy blocks, anything exposing ``PickleBuffer``), and
``bytes`` / ``bytearray`` / ``memoryview`` at the top level of the job's arguments or result, or one level
inside a ``list``, ``tuple`` or ``dict`` there (the C pickler never lets those types be reduced otherwise).
A ``memoryview`` is picklable this way at any size. Where /dev/shm is missing (not Linux), or full,
everything travels in band, as before.
"""

from __future__ import annotations

import mmap
import os
import pickle
import re
import stat
import struct
import types
from collections.abc import Callable
from typing import Any

from .pickling import PROTOCOL, by_value

# Below this, a buffer stays in the pickle and travels on the socket. Measured over a real scheduler and
# worker (`python benchmarks/run.py --only shm_threshold`: one uint8 array there and back, shared memory
# forced on vs off, medians of 3 runs of interleaved blocks; 2-core VM, busy): on / off = 1.2-1.35 at
# 128 KiB, 0.8 at 160-256 KiB, 0.6-0.7 at 512 KiB, 0.5 from 1 MiB. The socket path steps up between 128 and
# 160 KiB. With 2 workers and 300 jobs of an argument each, shared memory gave 1.0-1.05x the jobs/s at
# 160 KiB, 1.35-2.1x at 256 KiB. So 256 KiB: past the crossover with a margin for a machine whose tmpfs
# pages cost more.
THRESHOLD = 256 << 10
SHM_DIR = "/dev/shm"
ENV_PREFIX = "JOBSCHED_SHM_PREFIX"

MAGIC = 0  # first byte of a body with segments; a pickle (protocol 2+) starts with 0x80
_COUNT = struct.Struct("!BH")  # MAGIC, number of segments
_SEGMENT = struct.Struct("!QQB")  # where the buffer starts in the segment, its size, name length; then the name
DATA = "a"  # the kind of a job's data segment: <prefix>a<random>; a worker's results are <prefix>w<i>g<g>-<random>
HANDLE = "h"  # the kind of a handle's segment (``put``, see ``_data.handles``): <prefix>h<random>
_NAME = re.compile(r"jobsched-[0-9]+-[0-9a-f]{16}-[0-9a-z]+-?[0-9a-f]{32}")
_STALE = re.compile(r"jobsched-([0-9]+)-[0-9a-f]{16}-")


def available() -> bool:
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK | os.X_OK)


# ---------------------------------------------------------------------------------------------- pickling


class OutOfBand:
    """A pickle whose large buffers are still the caller's memory (no copy yet): ``store`` writes them."""

    __slots__ = ("inband", "buffers", "obj")

    def __init__(self, inband: bytes, buffers: list[pickle.PickleBuffer], obj: Any) -> None:
        self.inband = inband
        self.buffers = buffers
        self.obj = obj

    def inline(self) -> bytes:
        """The whole pickle in band (a backend without shared memory, e.g. Dask)."""
        from .pickling import dumps

        return dumps(self.obj)


class ShmBody(bytes):
    """A frame body naming segments that its holder owns: ``release()`` unlinks them (idempotent)."""

    __slots__ = ()

    def release(self) -> None:
        for name, _, _ in _parse(self)[0]:
            _unlink(name)

    def names(self) -> frozenset[str]:
        return frozenset(name for name, _, _ in _parse(self)[0])


def _blob(kind: int, buf: Any) -> Any:
    """Rebuild a top-level bytes (0), bytearray (1) or memoryview (2) from its buffer."""
    if kind == 0:
        return bytes(buf)
    if kind == 1:
        return bytearray(buf)
    return memoryview(buf)


class _Blob:
    """Stands for a bytes-like value while pickling, so that its memory can go out of band."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: int, value: Any) -> None:
        self.kind, self.value = kind, value

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        view = memoryview(self.value)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        return _blob, (self.kind, pickle.PickleBuffer(view.cast("B") if view.ndim else view))


_BLOB_KINDS = {bytes: 0, bytearray: 1, memoryview: 2}


def _wrap(v: Any) -> Any:
    kind = _BLOB_KINDS.get(v.__class__)
    if kind is not None and (kind == 2 or len(v) >= THRESHOLD):
        return _Blob(kind, v)
    return v


def wrap(v: Any) -> Any:
    """Return ``v`` with large bytes-likes at its top level (or one container down) made out-of-band-able."""
    cls = v.__class__
    if cls in _BLOB_KINDS:
        return _wrap(v)
    kinds = _BLOB_KINDS
    if cls is tuple or cls is list:
        for x in v:  # a plain loop, not any(<generator>): this runs for every remote call
            if x.__class__ in kinds:
                items = [_wrap(x) for x in v]
                if any(a is not b for a, b in zip(items, v, strict=True)):
                    return cls(items)
                break
    elif cls is dict and v:
        for x in v.values():
            if x.__class__ in kinds:
                wrapped = {k: _wrap(x) for k, x in v.items()}
                if any(wrapped[k] is not x for k, x in v.items()):
                    return wrapped
                break
    return v


def dumps(obj: Any, what: str = "value") -> bytes | OutOfBand:
    """Pickle ``obj`` as ``_data.pickling.dumps`` does; buffers of ``THRESHOLD`` bytes or more stay out of band.

    Returns plain ``bytes`` (exactly ``_pickling.dumps(obj)``) when there is no such buffer.

    Raises:
        TypeError: ``obj`` cannot be pickled (the message names the culprit and ``what``).
    """
    data = _dumps_or_none(obj)
    if data is None:
        from .pickling import dumps as checked

        return checked(obj, what)  # raises the TypeError that names the culprit
    return data


# Values that never hold a buffer worth a segment: a job made only of these is pickled without a
# buffer_callback, which would make pickle.dumps about twice as slow (measured: 7 us vs 3.5 us for a small call).
PLAIN = frozenset({int, float, complex, bool, str, type(None), types.FunctionType, types.BuiltinFunctionType,
                   type})


def may_hold_buffers(v: Any, depth: int = 0) -> bool:
    """Whether ``v`` may hold a pickle-5 buffer of ``THRESHOLD`` bytes or more (False: certainly not)."""
    cls = v.__class__
    if cls in PLAIN:
        return False
    if cls is tuple or cls is list:
        items: Any = v
    elif cls is dict:
        items = v.values()
    else:
        kind = _BLOB_KINDS.get(cls)
        if kind is not None:
            return kind == 2 or len(v) >= THRESHOLD
        if cls.__name__ == "ndarray" and cls.__module__ == "numpy":  # the common large value, checked at once:
            return bool(v.nbytes >= THRESHOLD or v.dtype.hasobject)  # small: pickled 3 µs faster, no callback
        parts = getattr(v, "_jobsched_call_parts", None)  # a RemoteCall: its arguments
        if parts is None or depth:
            return True  # anything else (a DataFrame, an object): look while pickling
        items = parts()
    if depth > 2:
        return True
    plain = PLAIN  # plain elements inline, no call: this runs for every job
    return any(x.__class__ not in plain and may_hold_buffers(x, depth + 1) for x in items)


def _dumps_or_none(obj: Any) -> bytes | OutOfBand | None:
    if not may_hold_buffers(obj):
        try:
            data = pickle.dumps(obj, PROTOCOL)
        except Exception:
            data = b""
        if data and b"__main__" not in data:
            return data
    buffers: list[pickle.PickleBuffer] = []

    def keep(pb: pickle.PickleBuffer) -> bool:
        if memoryview(pb).nbytes < THRESHOLD:
            return True  # in band
        buffers.append(pb)
        return False

    try:
        data = pickle.dumps(obj, PROTOCOL, buffer_callback=keep)
    except Exception:
        data = b""
    if not data or b"__main__" in data:
        buffers.clear()
        try:
            data = by_value(obj, PROTOCOL, buffer_callback=keep)
        except Exception:
            return None
    if not buffers:
        return data
    return OutOfBand(data, buffers, obj)


def loads(body: Any, prefix: str | None = None) -> Any:
    """Unpickle a job's data in a worker; a body with segments maps them (copy-on-write)."""
    del _job_maps[:]  # a new job: only its own segments may be named in its result
    if not len(body) or body[0] != MAGIC:
        return pickle.loads(body)
    return _load(body, prefix if prefix is not None else _peer_prefix, mmap.ACCESS_COPY, unlink=False)


def is_oob(body: Any) -> bool:
    return bool(len(body)) and body[0] == MAGIC


# ---------------------------------------------------------------------------------------------- segments


def _parse(body: Any) -> tuple[list[tuple[str, int, int]], int]:
    """The segments a body names, as ``(name, offset, size)``, and where its in-band pickle starts."""
    view = memoryview(body)
    _, count = _COUNT.unpack_from(view, 0)
    pos = _COUNT.size
    out = []
    for _ in range(count):
        offset, size, n = _SEGMENT.unpack_from(view, pos)
        pos += _SEGMENT.size
        out.append((bytes(view[pos:pos + n]).decode("ascii"), offset, size))
        pos += n
    return out, pos


def check_name(name: str, prefix: str | None) -> None:
    """Refuse a segment name that is not a plain name under ``prefix`` (the one prefix this end accepts).

    Raises:
        PermissionError: the name is outside the prefix, or not a segment name at all.
    """
    if prefix is None or not name.startswith(prefix) or _NAME.fullmatch(name) is None:
        raise PermissionError(f"shared-memory segment {name!r} is not one of this scheduler's "
                              f"(expected a name under {prefix!r}); it is not mapped")


def _is_data(name: str, prefix: str | None) -> bool:
    """Whether ``name`` is a job's data or a handle's segment of the scheduler ``prefix`` (its owner releases it,
    nobody else: a result may not name it)."""
    return prefix is not None and (name.startswith(prefix + DATA) or name.startswith(prefix + HANDLE))


def _unlink(name: str) -> None:
    try:
        os.unlink(os.path.join(SHM_DIR, name))
    except OSError:
        pass


def _load(body: Any, prefix: str | None, access: int, unlink: bool, own: frozenset[str] = frozenset()) -> Any:
    """Map the segments a body names and unpickle it with them as its out-of-band buffers.

    In the scheduler (``unlink``): a worker's result segment is mapped shared and unlinked at once; a
    segment of the job's own data (``own``: an argument returned unchanged, see ``_reference``) is mapped
    copy-on-write and left to ``release``. In a worker: every segment copy-on-write, kept (``_job_maps``).
    """
    segments, pos = _parse(body)
    maps = []
    worker = not unlink
    try:
        for name, offset, size in segments:
            check_name(name, prefix)
            mine = unlink and name in own
            if unlink and not mine and _is_data(name, prefix):
                raise PermissionError(f"shared-memory segment {name!r} holds another job's data; it is not mapped")
            mode = mmap.ACCESS_COPY if mine else access
            path = os.path.join(SHM_DIR, name)
            flags = (os.O_RDWR if mode == mmap.ACCESS_WRITE else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(path, flags)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077 \
                        or offset + size > st.st_size or (not mine and (offset or st.st_size != size)):
                    raise PermissionError(f"shared-memory segment {name!r} is not a private file of "
                                          f"{offset + size} bytes owned by this user; it is not mapped")
                m = mmap.mmap(fd, st.st_size, access=mode)
                maps.append(memoryview(m)[offset:offset + size] if mine else memoryview(m))
                if worker:
                    import weakref  # deferred: a worker that never maps a segment does not pay for it at start

                    _job_maps.append((name, weakref.ref(m), _address(m), size))
            finally:
                os.close(fd)
                if unlink and not mine:  # we are its only reader: once mapped, the name has no use
                    _unlink(name)
    except BaseException:
        if unlink and prefix is not None:  # the worker's result segments (nobody else will), not a job's data
            for name, _, _ in segments:
                if _NAME.fullmatch(name) and name.startswith(prefix) and not _is_data(name, prefix):
                    _unlink(name)
        raise
    return pickle.loads(memoryview(body)[pos:], buffers=maps)


def _address(buffer: Any) -> int:
    """The address of a writable buffer's first byte (-1 if it is read-only)."""
    import ctypes  # deferred: only workers that receive segments need it

    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    except (TypeError, ValueError):  # read-only, or empty
        return -1


def _write(prefix: str, tag: str, oob: OutOfBand,
           reference: Callable[[memoryview], tuple[str, int] | None] | None = None) -> ShmBody:
    """Copy each buffer of ``oob`` into a new segment (or name the segment it already is); return the body."""
    parts = [b""]
    names: list[str] = []
    try:
        for pb in oob.buffers:
            view = pb.raw()
            found = None if reference is None else reference(view)
            if found is not None:  # a job's argument returned as it came: the scheduler maps it again
                name, offset = found
            else:
                name, offset = f"{prefix}{tag}{os.urandom(16).hex()}", 0
                fd = os.open(os.path.join(SHM_DIR, name),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                names.append(name)
                try:
                    done, n = 0, view.nbytes
                    while done < n:
                        done += os.write(fd, view[done:])
                finally:
                    os.close(fd)
            raw = name.encode("ascii")
            parts.append(_SEGMENT.pack(offset, view.nbytes, len(raw)) + raw)
    except BaseException:
        for name in names:
            _unlink(name)
        raise
    parts[0] = _COUNT.pack(MAGIC, len(parts) - 1)
    parts.append(oob.inband)
    return ShmBody(b"".join(parts))


class Area:
    """The segments of one scheduler: its prefix, creation of job data, and every cleanup."""

    def __init__(self, on_segment: Callable[[], object] | None = None) -> None:
        """``on_segment`` is called before each new job's segments are written (the local backend starts its
        ``Reaper`` there, so that a SIGKILL of the scheduler before any worker started leaves no segment)."""
        self.enabled = available()
        self.prefix = f"jobsched-{os.getpid()}-{os.urandom(8).hex()}-"
        self.on_segment = on_segment
        _accepted.add(self.prefix)
        self._finalizer: Any = None
        if self.enabled:
            sweep_stale()
            import weakref  # deferred: workers import this module and never make an Area

            # A scheduler dropped without close(): its segments go when it is collected, or at interpreter exit.
            self._finalizer = weakref.finalize(self, _sweep_at_end, self.prefix, os.getpid())

    def store(self, payload: OutOfBand | bytes) -> bytes:
        """Return the frame body of a job's pickled data, its large buffers copied into new segments."""
        if isinstance(payload, bytes):
            return payload
        if not self.enabled:
            return payload.inline()
        if self.on_segment is not None:
            self.on_segment()
        try:
            return _write(self.prefix, DATA, payload)
        except OSError:  # /dev/shm full or gone: in band, as without shared memory
            return payload.inline()

    def worker_prefix(self, index: int, generation: int) -> str:
        return f"w{index}g{generation}-"

    def sweep_worker(self, index: int, generation: int) -> None:
        """Remove what a dead worker was writing (its results already received were unlinked)."""
        self._sweep(self.prefix + self.worker_prefix(index, generation))

    def close(self) -> None:
        """Remove every segment of this scheduler (idempotent)."""
        self._sweep(self.prefix)
        _accepted.discard(self.prefix)
        if self._finalizer is not None:
            self._finalizer.detach()

    def _sweep(self, start: str) -> None:
        if self.enabled:
            _unlink_all(start)


_accepted: set[str] = set()  # prefixes of the live schedulers of this process


def _sweep_at_end(prefix: str, pid: int) -> None:
    """Remove the segments of a scheduler that was collected, or still open at exit, without ``close()``."""
    if os.getpid() != pid:  # a forked child's exit: the segments are its parent's
        return
    _accepted.discard(prefix)
    _unlink_all(prefix)


def _unlink_all(start: str) -> None:
    """Remove every segment whose name starts with ``start``."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return
    for name in names:
        if name.startswith(start):
            _unlink(name)


def accepted_prefix(body: Any) -> str | None:
    """The live scheduler prefix of this process that a result body's first segment is under, or None."""
    segments, _ = _parse(body)
    for p in _accepted:
        if segments and segments[0][0].startswith(p):
            return p
    return None


def load_result(body: Any, payload: Any = None) -> Any:
    """Unpickle a RESULT body in the scheduler's process (segments under a live scheduler's prefix only).

    ``payload`` is the job's own data: a result may name its segments (an argument returned unchanged).
    """
    if not len(body) or body[0] != MAGIC:
        return pickle.loads(body)
    own = payload.names() if payload.__class__ is ShmBody else frozenset()
    return _load(body, accepted_prefix(body), mmap.ACCESS_WRITE, unlink=True, own=own)


def discard(body: Any) -> None:
    """Unlink the segments of a RESULT body that will not be read (the job was cancelled meanwhile).

    A job's data named in it stays: it is the job's to release, not the result's.
    """
    if body is None or not len(body) or body[0] != MAGIC:
        return
    try:
        segments, _ = _parse(body)
        prefix = accepted_prefix(body)
        for name, _, _ in segments:
            check_name(name, prefix)
            if not _is_data(name, prefix):
                _unlink(name)
    except (PermissionError, struct.error, UnicodeDecodeError):
        pass


def release(payload: Any) -> None:
    """A job is delivered: unlink the segments of its data (nothing for a plain pickle)."""
    if payload.__class__ is ShmBody:
        payload.release()


def sweep_stale() -> None:
    """Remove segments left by schedulers whose process is gone (killed before they could clean up).

    The pid is in the name; a pid reused since by another process keeps its leftovers until that one ends.
    """
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return
    uid = os.getuid()
    dead: dict[int, bool] = {}
    for name in names:
        m = _STALE.match(name)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid not in dead:
            try:
                os.kill(pid, 0)
                dead[pid] = False
            except ProcessLookupError:
                dead[pid] = True
            except PermissionError:
                dead[pid] = False
        if dead[pid]:
            try:
                if os.lstat(os.path.join(SHM_DIR, name)).st_uid == uid:
                    _unlink(name)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------- worker side

_peer_prefix: str | None = None  # a worker: its scheduler's prefix
_result_prefix: str | None = None  # a worker: where its results go (None: in band)
# A worker: the segments of the job it runs, as mapped: name, the mapping (weak: it goes when the job's
# data does, and then nothing can be in it), its address, its size.
_job_maps: list[tuple[str, Callable[[], mmap.mmap | None], int, int]] = []
_pagemap: int | None = None  # /proc/self/pagemap, opened on first use (-1: unreadable)
# The top byte of a pagemap entry: bit 7 present, 6 swapped, 5 file page or shared. A page of a private file
# mapping that the job wrote to is a present (or swapped) page that is no longer the file's.
_CHANGED = bytes(1 if b & 0x40 or (b & 0x80 and not b & 0x20) else 0 for b in range(256))


def setup_worker(prefix: str | None, index: int, generation: int) -> None:
    """Accept segments under ``prefix`` and write results there (a worker, from its environment)."""
    global _peer_prefix, _result_prefix
    if prefix and _STALE.match(prefix) and available():
        _peer_prefix = prefix
        _result_prefix = f"{prefix}w{index}g{generation}-"


def dumps_result(result: Any, what: str, plain: Callable[[Any, str], bytes]) -> bytes:
    """Pickle a job's result for the RESULT frame: through segments in a local worker, else ``plain``."""
    prefix = _result_prefix
    oob = None if prefix is None else _dumps_or_none(wrap(result))
    if oob is None or prefix is None:  # no shared memory (Dask), or it cannot be pickled: one traceback
        return plain(result, what)
    if isinstance(oob, bytes):
        return oob
    try:
        return bytes(_write(prefix, "", oob, _reference if _job_maps else None))
    except OSError:
        return oob.inline()
    finally:
        del _job_maps[:]


def _reference(view: memoryview) -> tuple[str, int] | None:
    """``(segment, offset)`` if ``view`` is memory of one of the job's segments that the job left unchanged.

    An argument returned as it came (or a contiguous slice of it) then goes back as a name: the scheduler
    maps that segment again, and nothing is copied. The job's mapping is private (copy-on-write): a page it
    wrote to is its own, no longer the segment's, and /proc/self/pagemap tells which pages those are.
    """
    address = _address(view)
    if address < 0:
        return None
    end = address + view.nbytes
    for name, mapping, start, size in _job_maps:
        if start <= address and end <= start + size and mapping() is not None:
            return (name, address - start) if _unchanged(address, end) else None
    return None


def _unchanged(start: int, end: int) -> bool:
    """Whether no page in ``[start, end)`` of a private file mapping was written (False if pagemap cannot say)."""
    global _pagemap
    if _pagemap is None:
        try:
            _pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            _pagemap = -1
    if _pagemap < 0:
        return False
    page = mmap.PAGESIZE
    first, last = start // page, (end - 1) // page
    try:
        entries = os.pread(_pagemap, (last - first + 1) * 8, first * 8)
    except OSError:
        return False
    return len(entries) == (last - first + 1) * 8 and b"\x01" not in entries[7::8].translate(_CHANGED)
