"""The measuring side of ``benchmarks/run.py``: one peer (a pool implementation) per process.

``run.py`` starts each child as ``python benchmarks/child.py`` (which calls :func:`main` here) and sends it
requests, one JSON object per line on its stdin: ``{"peer": ..., "scenario": ..., "params": {...}}``. The
child runs the scenario with its peer and answers one JSON line on its original stdout, which it keeps
as a private file descriptor (fd 1 itself is pointed at stderr, so nothing that a worker prints can
corrupt the answers). A child that must report its own peak memory serves a single request and exits.

Every peer runs the same job: ``x -> x + 1`` (``operator.add(x, 1)``) or ``time.sleep(s)``, both from
the standard library, so that no peer's workers import more than their own machinery.

Peers:

* ``floor1`` / ``floor2``: the protocol floor (``floor.py``): a minimal length-prefixed TCP ping-pong to
  worker processes (``python -c``, stdlib only) with 1 or 2 jobs in flight per worker, driven by a
  ``selectors`` loop in the main thread. No authentication, no priorities, no futures.
* ``jobsched`` / ``jobsched_prefetch2``: ``Scheduler(prefetch=1 | 2)`` with ``submit`` futures, submitted
  while the scheduler runs (the caller thread and the scheduler thread share the GIL).
* ``jobsched_manual`` / ``jobsched_manual_prefetch2``: the manual's server loop: ``add_job`` each
  ``remote_call``, then ``start(after_stop=...)`` (the scheduler thread runs alone).
* ``ppe_fork`` / ``ppe_spawn``: ``concurrent.futures.ProcessPoolExecutor`` (``submit``, one job per task).
* ``mp_pool``: ``multiprocessing.Pool.imap_unordered(chunksize=1)`` (fork).
* ``loky``: ``loky.ProcessPoolExecutor``; ``dask``: ``distributed.LocalCluster`` + ``Client.map``.

Only jobsched's public API is used (names in ``jobsched.__all__`` and their documented methods), so the
benchmark measures what a user gets.
"""

from __future__ import annotations

import concurrent.futures
import functools
import gc
import json
import operator
import os
import pickle
import resource
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from floor import FloorPool  # sibling modules: benchmarks/ is on sys.path, as the folder of the script
from scenarios import size_label

TIMEOUT = 600.0  # seconds any single wait may take before the measurement is declared failed
_inc = functools.partial(operator.add, 1)  # x -> 1 + x, for the map-style peers


# ---------------------------------------------------------------------------------------------- peers


class Peer:
    """One pool implementation, driven through the same five operations by every scenario."""

    name = "?"

    def start(self, workers: int) -> None:
        """Create the pool (the clock of a cold start begins before this)."""
        raise NotImplementedError

    def first(self) -> int:
        """Run one trivial job and return its result."""
        return self.call(0)

    def call(self, x: int) -> int:
        """Run ``x + 1`` in a worker and wait for it (one round trip)."""
        raise NotImplementedError

    def run_inc(self, n: int) -> int:
        """Run ``x + 1`` for x in range(n), one job per task, all submitted at once; return the sum."""
        raise NotImplementedError

    def run_sleep(self, n: int, seconds: float) -> int:
        """Run ``n`` jobs of ``time.sleep(seconds)``; return how many results came back."""
        raise NotImplementedError

    def echo(self, value: Any) -> Any:
        """Run the payload job, ``numpy.asarray(value)`` (the identity on an array), and wait for its result."""
        raise NotImplementedError

    def warm(self, workers: int) -> None:
        """Make sure every worker is up and has run a job."""
        self.run_sleep(2 * workers, 0.02)

    def close(self) -> None:
        raise NotImplementedError


class SubmitPeer(Peer):
    """A pool driven through a ``submit(fn, *args) -> Future`` (``self.submit``, set by ``start``)."""

    submit: Callable[..., concurrent.futures.Future[Any]]

    def call(self, x: int) -> int:
        return int(self.submit(operator.add, x, 1).result(TIMEOUT))

    def run_inc(self, n: int) -> int:
        submit = self.submit
        futures = [submit(operator.add, i, 1) for i in range(n)]
        return sum(f.result(TIMEOUT) for f in futures)

    def run_sleep(self, n: int, seconds: float) -> int:
        futures = [self.submit(time.sleep, seconds) for _ in range(n)]
        return sum(1 for f in futures if f.result(TIMEOUT) is None)

    def echo(self, value: Any) -> Any:
        import numpy

        return self.submit(numpy.asarray, value).result(TIMEOUT)


class Floor(Peer):
    def __init__(self, inflight: int) -> None:
        self.inflight = inflight
        self.name = f"floor{inflight}"

    def start(self, workers: int) -> None:
        self.pool = FloorPool(workers, self.inflight, TIMEOUT)

    def first(self) -> int:
        return int(self.pool.run([0])[0])

    def warm(self, workers: int) -> None:
        self.pool.wait_connected(workers)
        self.pool.run([0.02] * (2 * workers), op=1)

    def call(self, x: int) -> int:
        return int(self.pool.run([x])[0])

    def run_inc(self, n: int) -> int:
        return sum(self.pool.run(list(range(n))))

    def run_sleep(self, n: int, seconds: float) -> int:
        return len(self.pool.run([seconds] * n, op=1))

    def close(self) -> None:
        self.pool.close()


def _prefetch_suffix(prefetch: int | str) -> str:
    return "" if prefetch == 1 else "_auto" if prefetch == "auto" else f"_prefetch{prefetch}"


class Jobsched(SubmitPeer):
    def __init__(self, prefetch: int | str) -> None:
        self.prefetch = prefetch
        self.name = "jobsched" + _prefetch_suffix(prefetch)

    def start(self, workers: int) -> None:
        from jobsched import Scheduler

        self.sched = Scheduler(prefetch=self.prefetch)
        self.sched.start(workers, wait=False)
        self.submit = self.sched.submit

    def warm(self, workers: int) -> None:
        from jobsched import WorkerState

        super().warm(workers)
        deadline = time.monotonic() + TIMEOUT
        while sum(w.state in (WorkerState.READY, WorkerState.RUNNING) for w in self.sched.workers) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError("jobsched workers did not start")
            time.sleep(0.01)

    def close(self) -> None:
        self.sched.close()


class JobschedManual(Peer):
    """jobsched as the manual's server loop: ``add_job`` while stopped, then ``start`` with ``after_stop``.

    The scheduler thread runs alone while the jobs run: nothing else competes with it for the GIL,
    as with ``start_simple_server`` / ``server_start``. Workers are kept between runs (``close_workers=False``).
    """

    def __init__(self, prefetch: int | str, **options: Any) -> None:
        self.prefetch = prefetch
        self.options = options  # more Scheduler options (journal=...)
        self.name = "jobsched_manual" + _prefetch_suffix(prefetch)

    def start(self, workers: int) -> None:
        from jobsched import Scheduler

        self.workers = workers
        self.sched = Scheduler(prefetch=self.prefetch, **self.options)
        self.sched.start(workers, wait=False)  # workers start now, in the background

    def _run(self, calls: list[Any]) -> list[Any]:
        results: list[Any] = []
        add_job = self.sched.add_job
        for rc in calls:
            add_job(rc)
        self.sched.start(self.workers, after_stop=lambda s, job, result: results.append(result),
                         close_workers=False)
        # The scheduler keeps its after_stop callback until the next start(), and with it this list: hand
        # the results over and empty it, so that a dropped result (an array of the payload scenario) is freed.
        out = results[:]
        results.clear()
        return out

    def call(self, x: int) -> int:
        from jobsched import remote_call

        return int(self._run([remote_call(operator.add, x, 1)])[0])

    def run_inc(self, n: int) -> int:
        from jobsched import remote_call

        return sum(self._run([remote_call(operator.add, i, 1) for i in range(n)]))

    def run_sleep(self, n: int, seconds: float) -> int:
        from jobsched import remote_call

        return sum(1 for r in self._run([remote_call(time.sleep, seconds) for _ in range(n)]) if r is None)

    def echo(self, value: Any) -> Any:
        import numpy

        from jobsched import remote_call

        return self._run([remote_call(numpy.asarray, value)])[0]

    def close(self) -> None:
        self.sched.close()


class FuturesExecutor(SubmitPeer):
    """``ProcessPoolExecutor`` (stdlib, fork or spawn) or ``loky.ProcessPoolExecutor``."""

    def __init__(self, name: str, make: Callable[[int], concurrent.futures.Executor]) -> None:
        self.name = name
        self.make = make

    def start(self, workers: int) -> None:
        self.ex = self.make(workers)
        self.submit = self.ex.submit

    def close(self) -> None:
        self.ex.shutdown(wait=True)


class MpPool(Peer):
    name = "mp_pool"

    def start(self, workers: int) -> None:
        import multiprocessing

        self.pool = multiprocessing.get_context("fork").Pool(workers)

    def call(self, x: int) -> int:
        return int(self.pool.apply_async(operator.add, (x, 1)).get(TIMEOUT))

    def run_inc(self, n: int) -> int:
        it = self.pool.imap_unordered(_inc, range(n), chunksize=1)
        return sum(it.next(TIMEOUT) for _ in range(n))

    def run_sleep(self, n: int, seconds: float) -> int:
        it = self.pool.imap_unordered(time.sleep, [seconds] * n, chunksize=1)
        return sum(1 for _ in range(n) if it.next(TIMEOUT) is None)

    def echo(self, value: Any) -> Any:
        import numpy

        return self.pool.apply_async(numpy.asarray, (value,)).get(TIMEOUT)

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


class Dask(Peer):
    name = "dask"

    def start(self, workers: int) -> None:
        import logging

        from distributed import Client, LocalCluster

        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        self.cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.CRITICAL)
        self.client = Client(self.cluster)  # type: ignore[no-untyped-call]

    def call(self, x: int) -> int:
        return int(self.client.submit(operator.add, x, 1, pure=False).result(TIMEOUT))

    def run_inc(self, n: int) -> int:
        futures = self.client.map(_inc, range(n), pure=False)
        results: list[int] = self.client.gather(futures)  # type: ignore[no-untyped-call]
        return sum(results)

    def run_sleep(self, n: int, seconds: float) -> int:
        futures = self.client.map(time.sleep, [seconds] * n, pure=False)
        results: list[None] = self.client.gather(futures)  # type: ignore[no-untyped-call]
        return sum(1 for r in results if r is None)

    def warm(self, workers: int) -> None:
        self.client.wait_for_workers(workers, timeout=TIMEOUT)
        super().warm(workers)

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]
        self.cluster.close()


def make_peer(name: str) -> Peer:
    import multiprocessing

    if name in ("floor1", "floor2"):
        return Floor(int(name[-1]))
    if name == "jobsched":
        return Jobsched(1)
    if name == "jobsched_auto":
        return Jobsched("auto")
    if name == "jobsched_manual_auto":
        return JobschedManual("auto")
    if name.startswith("jobsched_prefetch"):
        return Jobsched(int(name.removeprefix("jobsched_prefetch")))
    if name == "jobsched_manual":
        return JobschedManual(1)
    if name.startswith("jobsched_manual_prefetch"):
        return JobschedManual(int(name.removeprefix("jobsched_manual_prefetch")))
    if name in ("ppe_fork", "ppe_spawn"):
        ctx = multiprocessing.get_context(name.removeprefix("ppe_"))
        return FuturesExecutor(name, lambda n: concurrent.futures.ProcessPoolExecutor(n, mp_context=ctx))
    if name == "mp_pool":
        return MpPool()
    if name == "loky":
        import loky  # type: ignore[import-untyped, import-not-found]  # an optional peer, maybe not installed

        return FuturesExecutor(name, lambda n: loky.ProcessPoolExecutor(max_workers=n))
    if name == "dask":
        return Dask()
    raise ValueError(f"unknown peer {name!r}")


# ---------------------------------------------------------------------------------------------- scenarios


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux; MB as _rss_mb


def _check_sum(n: int, total: int) -> None:
    if total != n * (n + 1) // 2:
        raise AssertionError(f"wrong results: sum {total}, expected {n * (n + 1) // 2}")


def throughput(peer: Peer, workers: int, n: int) -> dict[str, Any]:
    """Warm pool; n trivial jobs submitted at once; time to the last result."""
    peer.start(workers)
    try:
        peer.warm(workers)
        t0 = time.perf_counter()
        total = peer.run_inc(n)
        elapsed = time.perf_counter() - t0
    finally:
        peer.close()
    _check_sum(n, total)
    return {"seconds": elapsed, "jobs_per_s": n / elapsed, "n": n}


def roundtrip(peer: Peer, workers: int, n: int) -> dict[str, Any]:
    """Warm pool; one job at a time; the distribution of submit-to-result times."""
    peer.start(workers)
    times = []
    try:
        peer.warm(workers)
        for i in range(min(50, n)):  # settle caches and branch predictors
            peer.call(i)
        clock = time.perf_counter
        for i in range(n):
            t0 = clock()
            r = peer.call(i)
            times.append(clock() - t0)
            if r != i + 1:
                raise AssertionError(f"wrong result {r} for {i}")
    finally:
        peer.close()
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return {"median_us": times[len(times) // 2] * 1e6, "p99_us": p99 * 1e6, "n": n}


def cold_start(peer: Peer, workers: int) -> dict[str, Any]:
    """Creating the pool to the first result (closing is not timed)."""
    t0 = time.perf_counter()
    peer.start(workers)
    try:
        r = peer.first()
        elapsed = time.perf_counter() - t0
    finally:
        peer.close()
    if r != 1:
        raise AssertionError(f"wrong first result {r}")
    return {"seconds": elapsed}


def efficiency(peer: Peer, workers: int, n: int, sleep_s: float) -> dict[str, Any]:
    """Warm pool; n jobs of ``sleep(sleep_s)``; ideal time / measured time."""
    peer.start(workers)
    try:
        peer.warm(workers)
        t0 = time.perf_counter()
        got = peer.run_sleep(n, sleep_s)
        elapsed = time.perf_counter() - t0
    finally:
        peer.close()
    if got != n:
        raise AssertionError(f"{got} of {n} results")
    ideal = n * sleep_s / workers
    return {"seconds": elapsed, "ideal_s": ideal, "efficiency": ideal / elapsed}


def scale(peer: Peer, workers: int, n: int) -> dict[str, Any]:
    """Cold: create a pool of many workers, run n trivial jobs on it (to the last result), then close."""
    t0 = time.perf_counter()
    peer.start(workers)
    try:
        total = peer.run_inc(n)
        elapsed = time.perf_counter() - t0
    finally:
        peer.close()
    closed = time.perf_counter() - t0
    _check_sum(n, total)
    return {"seconds": elapsed, "with_close_s": closed, "workers": workers, "n": n}


def many(peer: Peer, workers: int, n: int) -> dict[str, Any]:
    """A fresh process: n trivial jobs at once on a warm pool; every result counted; peak RSS of this process."""
    gc.collect()
    base = _rss_mb()
    measured = throughput(peer, workers, n)  # raises unless every result came back
    return {**measured, "delivered": n, "workers": workers, "base_rss_mb": base, "peak_rss_mb": _peak_rss_mb()}


def queue_memory(n: int, kind: str) -> dict[str, Any]:
    """A fresh process: queue n small jobs on a scheduler that is not started; RSS growth per job.

    ``add_job`` queues plain data, as for a worker file's ``start_simple_worker(run)``: the scheduler is never
    started, so its command is never run (the default worker takes only remote calls, and says so).
    """
    from jobsched import Scheduler, make_python_cmd

    sched = Scheduler(lambda i: make_python_cmd(__file__)) if kind == "add_job" else Scheduler()
    gc.collect()
    base = _rss_mb()
    if kind == "add_job":
        add = sched.add_job
        for i in range(n):
            add(i)
    else:
        submit = sched.submit
        keep = [submit(operator.add, i, 1) for i in range(n)]  # a caller keeps its futures
    gc.collect()
    grown = _rss_mb() - base
    queued = sched.n_queued_jobs
    sched.close()
    if kind != "add_job":
        del keep
    return {"bytes_per_job": grown * 1e6 / n, "n": n, "queued": queued, "kind": kind}


def executor_map(n: int, workers: int) -> dict[str, Any]:
    """A fresh process: ``Executor.map`` over n items, consumed as they come; peak RSS growth.

    Then, for contrast, ``ProcessPoolExecutor.map`` (fork) over the same items in the same process: it
    submits every item before the first result, so its peak grows with n. Peak RSS never decreases, so
    jobsched's run goes first and each growth is measured from the peak before it.
    """
    from jobsched import Executor

    gc.collect()
    base = _rss_mb()
    with Executor(workers) as ex:
        list(ex.map(operator.add, range(64), range(64)))  # warm
        before = max(base, _peak_rss_mb())
        t0 = time.perf_counter()
        total = sum(ex.map(_inc, range(n)))
        elapsed = time.perf_counter() - t0
    _check_sum(n, total)
    peak = _peak_rss_mb()
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as ppe:
        list(ppe.map(_inc, range(64)))
        ppe_before = _peak_rss_mb()
        t0 = time.perf_counter()
        ppe_total = sum(ppe.map(_inc, range(n)))
        ppe_elapsed = time.perf_counter() - t0
    _check_sum(n, ppe_total)
    return {"seconds": elapsed, "items_per_s": n / elapsed, "n": n, "base_rss_mb": base, "peak_rss_mb": peak,
            "growth_mb": peak - before, "ppe_items_per_s": n / ppe_elapsed,
            "ppe_growth_mb": _peak_rss_mb() - ppe_before}


def _touch(value: Any) -> None:
    """Read one element per 4 KiB page of a result.

    A result that arrives through shared memory is a mapping whose pages are faulted in on first access;
    one that arrives through a pipe or a socket is already in this process's memory. Touching every page
    inside the timed part puts that cost where it belongs, so that a lazily mapped result is not counted
    as free.
    """
    flat = value.reshape(-1)
    step = max(1, 4096 // flat.itemsize)
    float(flat[::step].sum())


def _check_equal(got: Any, expected: Any) -> None:
    """Compare two arrays in 1 MiB slices (a whole-array ``==`` would allocate a mask of 1/8 of the payload)."""
    if got.shape != expected.shape or got.dtype != expected.dtype:
        raise AssertionError(f"wrong result: {got.dtype}{got.shape}, expected {expected.dtype}{expected.shape}")
    a, b = got.reshape(-1), expected.reshape(-1)
    step = max(1, (1 << 20) // a.itemsize)
    for i in range(0, a.size, step):
        if not (a[i:i + step] == b[i:i + step]).all():
            raise AssertionError(f"wrong result: elements {i}..{i + step} differ")


def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it.

    Writing "5" to /proc/self/clear_refs (Linux 4.0+) does exactly that, so the peak of one round trip is
    measured in a process that has long been running, without a fresh process per size. getrusage's
    ru_maxrss cannot be reset, and sampling RSS from a thread would miss short peaks and take the GIL.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmHWM") <= _status_kb("VmRSS") + 64
    except (OSError, KeyError):
        return False


def _trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    glibc serves a block below its mmap threshold from the heap, and that threshold rises, up to 32 MiB, to
    the size of each mmap'ed block freed: a freed 16 MiB buffer may then stay in the process's RSS and be
    reused by the next one, and a peak measured above that RSS would miss it.
    """
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def payload(peer: Peer, workers: int, sizes: list[int], rounds: list[int]) -> dict[str, Any]:
    """Warm pool; float64 arrays of each size sent as the argument and returned as the result, one at a time.

    The job is ``numpy.asarray`` (importable by every peer's workers, which need numpy anyway to unpickle
    the argument): the identity on an array, so what is timed is the transport both ways and nothing else,
    and ``numpy.copyto`` of the same array into a preallocated one (the physical floor: one memcpy) is the
    right yardstick. Each round trip ends once every page of the result has been read (``_touch``). Round
    trips and copies alternate, so that both see the same moments of a noisy machine; each figure is the
    median of ``rounds``.

    For the largest size, one more round trip measures this process's (the scheduler's) peak RSS (VmHWM,
    reset just before) above what it held before the payload existed (its RSS before the argument was
    made, plus the argument itself), divided by the payload. The result, read in full to check it, is one
    payload; anything above 1 is a copy: a transient one, or a buffer that the pool keeps between calls
    (``held_..._x``: the RSS above that same baseline once the result is dropped). Freed heap memory is
    handed back first (``_trim_heap``), so that it is not mistaken for memory held.
    """
    import numpy as np

    out: dict[str, Any] = {"job": "numpy.asarray (identity)"}
    peer.start(workers)
    try:
        peer.warm(workers)
        for size, n in zip(sizes, rounds, strict=True):
            label = size_label(size)
            gc.collect()
            _trim_heap()
            before = _status_kb("VmRSS") * 1024  # what the process holds before any payload of this size
            arr = np.arange(size // 8, dtype=np.float64)  # written: every page resident before the clock
            dst = np.zeros_like(arr)
            dst += 1.0  # every page of the copy's target resident too
            for _ in range(2):  # this size's path warm (segments, pipe and socket buffers, allocator)
                _check_equal(peer.echo(arr), arr)
            trips, copies = [], []
            clock = time.perf_counter
            for _ in range(n):
                t0 = clock()
                r = peer.echo(arr)
                _touch(r)
                trips.append(clock() - t0)
                del r
                t0 = clock()
                np.copyto(dst, arr)
                copies.append(clock() - t0)
            rt, copy = statistics.median(trips), statistics.median(copies)
            out[f"rt_{label}_ms"] = rt * 1e3
            out[f"memcpy_{label}_ms"] = copy * 1e3
            out[f"x_memcpy_{label}"] = rt / copy
            out[f"mb_per_s_{label}"] = 2 * size / rt / 1e6  # both ways
            if size == max(sizes):
                del dst
                # A pool may keep its last result alive until the next one comes (ProcessPoolExecutor's manager
                # thread holds it in a local variable): one small round trip first, or the baseline would hold
                # a payload that the measured round trip frees.
                _check_equal(peer.echo(arr[:128]), arr[:128])
                gc.collect()
                _trim_heap()
                base = before + arr.nbytes
                if _reset_peak():
                    r = peer.echo(arr)
                    _check_equal(r, arr)
                    peak = _status_kb("VmHWM") * 1024
                    del r
                    out[f"peak_{label}_x"] = (peak - base) / size
                gc.collect()
                _trim_heap()
                out[f"held_{label}_x"] = (_status_kb("VmRSS") * 1024 - base) / size
            del arr
            gc.collect()
    finally:
        peer.close()
    return out


def shm_threshold(sizes: list[int], budget_mb: float, blocks: int) -> dict[str, Any]:
    """One scheduler, one worker: the round trip of a uint8 array of each size, with shared memory forced on and off.

    ``jobsched._data.shm.THRESHOLD`` (private: the one place the benchmark reaches inside jobsched) decides which
    buffers go through shared memory, in the scheduler's process for arguments and in the worker's for
    results; it is set in both, here directly and in the worker by a job (``setattr`` on the module, which
    cloudpickle sends by reference). On: 1 byte, every buffer out of band; off: never. The modes alternate
    in ``blocks`` blocks per size; each block starts with an untimed round trip. Per size and mode:
    ``budget_mb`` of payload in all (at least 10 and at most 400 round trips), the median reported.
    """
    import numpy as np

    import jobsched._data.shm as shm

    modes = {"on": 1, "off": 1 << 62}
    peer = Jobsched(1)
    peer.start(1)
    out: dict[str, Any] = {"job": "numpy.asarray (identity)", "default_threshold": shm.THRESHOLD}

    def set_threshold(value: int) -> None:
        shm.THRESHOLD = value
        peer.submit(setattr, shm, "THRESHOLD", value).result(TIMEOUT)

    try:
        peer.warm(1)
        clock = time.perf_counter
        for size in sizes:
            arr = np.full(size, 7, dtype=np.uint8)
            n = max(10, min(400, int(budget_mb * 1e6 / size)))
            per_block = max(1, -(-n // blocks))
            times: dict[str, list[float]] = {m: [] for m in modes}
            for block in range(blocks):
                for mode in (("on", "off") if block % 2 == 0 else ("off", "on")):
                    set_threshold(modes[mode])
                    _check_equal(peer.echo(arr), arr)
                    for _ in range(per_block):
                        t0 = clock()
                        r = peer.echo(arr)
                        _touch(r)
                        times[mode].append(clock() - t0)
                        del r
            label = size_label(size)
            for mode in modes:
                out[f"{mode}_{label}_us"] = statistics.median(times[mode]) * 1e6
            out[f"on_over_off_{label}"] = out[f"on_{label}_us"] / out[f"off_{label}_us"]
    finally:
        peer.close()
    return out


def dashboard(workers: int, n: int, reps: int) -> dict[str, Any]:
    """The cost of a live dashboard: its poller thread's CPU, and throughput with vs without it.

    The direct measure is the CPU time of the "jobsched-dashboard" thread during the timed run, as a share
    of this (scheduler) process's CPU time: everything in this process shares one GIL, so that share is
    what the dashboard takes from dispatch. Throughput is also compared over ``reps`` alternating pairs,
    but on a busy machine that comparison is only as good as the run-to-run noise (often +-10 %).

    Whether there is a dashboard is asked of the public API: ``Scheduler.dashboard()`` raises ImportError
    when ipywidgets is missing. (A probe on a scheduler of its own would leave a poller thread by the same
    name behind, which the measured run could mistake for its own.)
    """
    rates: dict[bool, list[float]] = {False: [], True: []}
    shares: list[float] = []
    for rep in range(reps):
        for with_dashboard in ((False, True) if rep % 2 == 0 else (True, False)):
            peer = Jobsched(1)
            peer.start(workers)
            try:
                peer.warm(workers)
                try:
                    board = peer.sched.dashboard() if with_dashboard else None
                except ImportError as exc:
                    return {"skipped": f"no dashboard: {exc}"}  # the finally below closes the peer
                poller = next((t for t in threading.enumerate() if t.name == "jobsched-dashboard"), None)
                # The poller thread's own CPU clock (ns resolution; /proc's ticks are 10 ms).
                clock = time.pthread_getcpuclockid(poller.ident) if poller is not None and poller.ident else None
                d0 = time.clock_gettime(clock) if clock is not None else 0.0
                c0, t0 = time.process_time(), time.perf_counter()
                total = peer.run_inc(n)
                elapsed, used = time.perf_counter() - t0, time.process_time() - c0
                if clock is not None:
                    shares.append((time.clock_gettime(clock) - d0) / used)
                if board is not None:
                    board.close()
            finally:
                peer.close()
            _check_sum(n, total)
            rates[with_dashboard].append(n / elapsed)
    p, a = statistics.median(rates[False]), statistics.median(rates[True])
    return {"plain_jobs_per_s": p, "dashboard_jobs_per_s": a, "rate_change": a / p - 1.0,
            "cost": statistics.median(shares) if shares else float("nan"), "n": n, "pairs": reps}


def journal(workers: int, n: int, reps: int, records: int) -> dict[str, Any]:
    """The cost of a journal: throughput of ``add_job`` + ``start`` with vs without one, in this process.

    Each run with a journal starts from a new file (an old one would make every job a journal hit), keys
    are derived from the jobs' content, and the timed part ends once every result is delivered: those
    still buffered are written by ``close()``, which is timed separately. Runs alternate over ``reps``
    pairs. Then ``Journal.results()`` reads back ``records`` records written straight by the writer.
    """
    import tempfile

    from jobsched import Journal
    from jobsched.journal import JournalWriter

    rates: dict[bool, list[float]] = {False: [], True: []}
    closes: list[float] = []
    sizes: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for rep in range(reps):
            for with_journal in ((False, True) if rep % 2 == 0 else (True, False)):
                path = os.path.join(folder, f"run{rep}.sqlite")
                peer = JobschedManual(1, **({"journal": path} if with_journal else {}))
                peer.start(workers)
                try:
                    peer.run_inc(64)  # warm: workers up
                    t0 = time.perf_counter()
                    total = peer.run_inc(n)
                    elapsed = time.perf_counter() - t0
                finally:
                    c0 = time.perf_counter()
                    peer.close()
                    if with_journal:
                        closes.append(time.perf_counter() - c0)
                _check_sum(n, total)
                rates[with_journal].append(n / elapsed)
                if with_journal:
                    sizes.append(sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
                                 / (n + 64))
        path = os.path.join(folder, "read.sqlite")
        with JournalWriter.open(path) as writer:
            for i in range(records):
                writer.record_done(f"key{i}", i, 0.0, pickle.dumps(i + 1, 5), 0.0, 1.0, 0, 1)
        t0 = time.perf_counter()
        got = Journal(path).results()
        read_s = time.perf_counter() - t0
        assert len(got) == records
    plain, journaled = statistics.median(rates[False]), statistics.median(rates[True])
    return {"plain_jobs_per_s": plain, "journal_jobs_per_s": journaled, "ratio": journaled / plain,
            "bytes_per_job": statistics.median(sizes), "close_s": statistics.median(closes),
            "results_s": read_s, "records": records, "n": n, "pairs": reps}


def run_request(peer_name: str, scenario: str, params: dict[str, Any]) -> dict[str, Any]:
    if scenario == "queue_memory":
        return queue_memory(**params)
    if scenario == "executor_map":
        return executor_map(**params)
    if scenario == "dashboard":
        return dashboard(**params)
    if scenario == "journal":
        return journal(**params)
    if scenario == "shm_threshold":
        return shm_threshold(**params)
    if scenario == "shared_data":
        from shared_data import shared_data  # benchmarks/ is the child's path: see child.py

        return shared_data(**params)
    if scenario == "cluster":
        from cluster import cluster  # benchmarks/ is the child's path: see child.py

        return cluster(**params)
    peer = make_peer(peer_name)
    functions: dict[str, Callable[..., dict[str, Any]]] = {
        "throughput": throughput, "roundtrip": roundtrip, "cold_start": cold_start,
        "efficiency": efficiency, "scale": scale, "many": many, "payload": payload,
    }
    function = functions[scenario]
    return function(peer, **params)


def serve(result_fd: int) -> None:
    """Answer requests from stdin until EOF (the parent's protocol: one JSON object per line each way)."""
    out = os.fdopen(result_fd, "w", buffering=1)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            answer: dict[str, Any] = {"ok": True, "value": run_request(request["peer"], request["scenario"],
                                                                        request["params"])}
        except BaseException as exc:  # reported to the parent, which records the failure and goes on
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        gc.collect()


def main() -> None:
    """Serve the parent's requests (the entry point of ``benchmarks/child.py``)."""
    # Answers go to a private copy of fd 1; fd 1 itself becomes stderr, so that whatever the peers'
    # worker processes print (they inherit fd 1) cannot corrupt an answer.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    # Measure what a script run from a terminal gets, also when the bench itself runs as a background job
    # of a shell (which starts it with Ctrl-C ignored): Python's own SIGINT handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    serve(result_fd)

