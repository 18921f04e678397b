"""Large buffers through shared memory (jobsched._data.shm): round trips, types, security, and no leaks."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobsched import JobError, Journal, Scheduler
from jobsched._data import shm as _shm

np = pytest.importorskip("numpy")
import shm_jobs  # noqa: E402  # tests/ is on sys.path (conftest)

TIMEOUT = 120
MIB = 1 << 20
pytestmark = pytest.mark.skipif(not _shm.available(), reason="no writable /dev/shm")


def segments(prefix: str) -> list[str]:
    return [n for n in os.listdir(_shm.SHM_DIR) if n.startswith(prefix)]


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    s = Scheduler(max_retries=1)
    s.start(1, wait=False)
    try:
        yield s
    finally:
        s.close()


def prefix_of(s: Scheduler) -> str:
    return s._backend.shm.prefix  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("nbytes", [1024, 2 * MIB, 100 * MIB], ids=["1KiB", "2MiB", "100MiB"])
def test_numpy_argument_and_result(sched: Scheduler, nbytes: int) -> None:
    a = np.arange(nbytes // 8, dtype=np.float64)
    big = nbytes >= _shm.THRESHOLD
    name, mapped, accepts = sched.submit(shm_jobs.describe, a).result(timeout=TIMEOUT)
    assert (name, mapped, accepts) == ("ndarray", big, True)
    r = sched.submit(shm_jobs.double, a).result(timeout=TIMEOUT)
    assert np.array_equal(r, a * 2)
    assert r.flags.writeable and shm_jobs.is_mapped(r) is big  # a large result is backed by its segment
    r[0] = 1.0  # ours alone: the segment is already unlinked
    assert segments(prefix_of(sched)) == []


@pytest.mark.parametrize("value", [b"x" * (3 * MIB), bytearray(b"y" * (3 * MIB)), memoryview(b"z" * (3 * MIB)),
                                   memoryview(b"small"), (b"a" * (2 * MIB), 1), {"k": bytearray(2 * MIB)}],
                         ids=["bytes", "bytearray", "memoryview", "small-memoryview", "tuple", "dict"])
def test_bytes_likes(sched: Scheduler, value: object) -> None:
    r = sched.submit(shm_jobs.identity, value).result(timeout=TIMEOUT)
    assert type(r) is type(value)
    if isinstance(value, memoryview):
        assert bytes(r) == bytes(value)
    else:
        assert r == value
    assert segments(prefix_of(sched)) == []


def test_pandas(sched: Scheduler) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": np.arange(300_000, dtype=np.float64), "b": np.ones(300_000)})
    r = sched.submit(shm_jobs.double, df).result(timeout=TIMEOUT)
    pd.testing.assert_frame_equal(r, df * 2)


def backing_file(a: object) -> str:
    """The file this process maps at the array's first byte (/proc/self/maps), "" for anonymous memory."""
    address = a.__array_interface__["data"][0]  # type: ignore[attr-defined]
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            start, end = (int(v, 16) for v in fields[0].split("-"))
            if start <= address < end:
                return fields[5] if len(fields) > 5 else ""
    raise AssertionError("address not mapped")


def test_an_argument_returned_unchanged_is_not_copied_back(sched: Scheduler) -> None:
    a = np.arange(MIB // 8, dtype=np.float64)
    prefix = prefix_of(sched)
    for job, args, expected in [(shm_jobs.identity, (a,), a), (shm_jobs.head, (a, len(a) // 2), a[:len(a) // 2]),
                                (np.asarray, (a,), a)]:
        r = sched.submit(job, *args).result(timeout=TIMEOUT)
        assert np.array_equal(r, expected)
        # backed by the segment the argument went in (kind "a"), not by a result segment of the worker
        assert re.fullmatch(rf"/dev/shm/{re.escape(prefix)}a[0-9a-f]{{32}}", backing_file(r)), backing_file(r)
        r[0] = -1.0  # copy-on-write: ours alone
        assert a[0] == 0.0
    first, second = sched.submit(shm_jobs.halves, a).result(timeout=TIMEOUT)  # two views, one segment
    assert np.array_equal(first, a[:len(a) // 2]) and np.array_equal(second, a[len(a) // 2:])
    assert backing_file(first) == backing_file(second) != ""
    first[-1] = second[0] = -2.0  # each its own copy-on-write mapping, as two unpickled arrays would be
    assert first[-1] == second[0] == -2.0 and second[1] == a[len(a) // 2 + 1]
    assert segments(prefix) == []


def test_an_argument_changed_by_the_job_comes_back_changed(sched: Scheduler) -> None:
    a = np.arange(MIB // 8, dtype=np.float64)
    prefix = prefix_of(sched)
    for i in (0, 5000, len(a) - 1):  # the first, a middle and the last page
        r = sched.submit(shm_jobs.write_one, a, i, -7.0).result(timeout=TIMEOUT)
        expected = a.copy()
        expected[i] = -7.0
        assert np.array_equal(r, expected)
        assert f"{prefix}w" in backing_file(r)  # the worker wrote it to a segment of its own
    assert a[0] == 0.0 and a[-1] == len(a) - 1  # the caller's array is untouched
    assert segments(prefix) == []


def test_a_returned_argument_stays_private_to_each_side(sched: Scheduler) -> None:
    a = np.ones(MIB // 8, dtype=np.float64)
    r = sched.submit(shm_jobs.keep, a).result(timeout=TIMEOUT)  # the worker keeps the argument's mapping
    r[0] = 42.0  # the scheduler's copy-on-write page
    assert sched.submit(shm_jobs.first_of_kept).result(timeout=TIMEOUT) == 1.0
    r2 = sched.submit(shm_jobs.identity, a).result(timeout=TIMEOUT)
    assert r2[0] == 1.0 and r[0] == 42.0


def test_a_result_may_name_only_its_own_jobs_data() -> None:
    area = _shm.Area()
    try:
        mine = area.store(_shm.dumps(np.zeros(2 * MIB // 8)))
        other = area.store(_shm.dumps(np.ones(2 * MIB // 8)))
        assert isinstance(mine, _shm.ShmBody) and isinstance(other, _shm.ShmBody)
        # A RESULT body that names a segment of the job's data (what a worker sends for an argument returned
        # unchanged) is read from that segment, which stays for the job's release()
        assert np.array_equal(_shm.load_result(mine, mine), np.zeros(2 * MIB // 8))
        assert len(segments(area.prefix)) == 2
        with pytest.raises(PermissionError, match="another job's data"):
            _shm.load_result(other, mine)  # a segment of another job: refused, and left in place
        _shm.discard(other)  # a result that will not be read leaves the job data it names alone
        assert len(segments(area.prefix)) == 2
        _shm.release(mine)
        _shm.release(other)
        assert segments(area.prefix) == []
    finally:
        area.close()


def test_segments_are_private_and_unguessable() -> None:
    area = _shm.Area()
    try:
        oob = _shm.dumps(np.zeros(2 * MIB // 8))
        assert isinstance(oob, _shm.OutOfBand)
        body = area.store(oob)
        (name,) = segments(area.prefix)
        mode = os.stat(os.path.join(_shm.SHM_DIR, name)).st_mode
        assert stat.S_IMODE(mode) == 0o600
        # <prefix = jobsched-pid-64 random bits->a<128 random bits>
        assert re.fullmatch(r"jobsched-\d+-[0-9a-f]{16}-a[0-9a-f]{32}", name)
        assert np.array_equal(_shm.loads(body, area.prefix), np.zeros(2 * MIB // 8))
        _shm.release(body)
        assert segments(area.prefix) == []
    finally:
        area.close()


def test_a_name_outside_the_prefix_is_refused() -> None:
    area, other = _shm.Area(), _shm.Area()
    try:
        body = other.store(_shm.dumps(np.zeros(2 * MIB // 8)))
        with pytest.raises(PermissionError, match="not one of this scheduler's"):
            _shm.loads(body, area.prefix)  # a worker of ``area`` is sent ``other``'s segment
        with pytest.raises(PermissionError):
            _shm.loads(body, None)  # a worker that was given no prefix maps nothing
        for bad in ("../etc/passwd", area.prefix + "a/" + "0" * 32, area.prefix + "a" + "0" * 31):
            with pytest.raises(PermissionError):
                _shm.check_name(bad, area.prefix)
        _shm.check_name(area.prefix + "a" + "0" * 32, area.prefix)
    finally:
        area.close()
        other.close()
    assert segments(other.prefix) == []


def test_nothing_is_left_after_close() -> None:
    s = Scheduler(max_retries=1)
    prefix = prefix_of(s)
    fut = s.submit(shm_jobs.sleep_with, np.zeros(2 * MIB // 8), 0.0)  # queued: its segment exists already
    assert len(segments(prefix)) == 1
    s.close()
    assert fut.cancelled()
    assert segments(prefix) == []


def test_nothing_is_left_when_a_worker_is_killed_mid_job(sched: Scheduler) -> None:
    prefix = prefix_of(sched)
    fut = sched.submit(shm_jobs.sleep_with, np.zeros(4 * MIB // 8), 30.0)
    deadline = time.monotonic() + TIMEOUT
    while not fut.running() or sched.workers[0].pid is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)  # it has mapped its argument and sleeps
    os.kill(sched.workers[0].pid, signal.SIGKILL)
    with pytest.raises(JobError):
        fut.result(timeout=TIMEOUT)
    del fut
    assert segments(prefix) == []
    # A result segment it was writing when it died goes too.
    with pytest.raises(JobError):
        sched.submit(shm_jobs.leave_segment_and_die).result(timeout=TIMEOUT)
    assert segments(prefix) == []


SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from jobsched import Scheduler
    import shm_jobs
    s = Scheduler()
    s.start(1, wait=False)
    fut = s.submit(shm_jobs.sleep_with, np.zeros(4 << 17), 60.0)
    while not fut.running():
        time.sleep(0.01)
    print(s._backend.shm.prefix, flush=True)
    time.sleep(60)
""")


def test_the_reaper_removes_segments_when_the_scheduler_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        prefix = proc.stdout.readline().strip()
        assert prefix.startswith("jobsched-") and segments(prefix)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5.0
    while segments(prefix):
        assert time.monotonic() < deadline, f"left in /dev/shm 5 s after a SIGKILL: {segments(prefix)}"
        time.sleep(0.05)


def test_the_next_scheduler_removes_segments_of_a_dead_one() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    name = f"jobsched-{int(dead.stdout)}-{'0' * 16}-a{os.urandom(16).hex()}"
    fd = os.open(os.path.join(_shm.SHM_DIR, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    mine = _shm.Area()  # what a new Scheduler makes
    mine.close()
    assert not os.path.exists(os.path.join(_shm.SHM_DIR, name))


def test_a_journaled_result_is_self_contained(tmp_path: Path) -> None:
    a = np.arange(2 * MIB // 8, dtype=np.float64)
    with Scheduler(journal=tmp_path / "j.sqlite") as s:
        s.start(1, wait=False)
        assert np.array_equal(s.submit(shm_jobs.double, a, key="a").result(timeout=TIMEOUT), a * 2)
    (value,) = Journal(tmp_path / "j.sqlite").results().values()
    assert np.array_equal(value, a * 2)


PEAK = textwrap.dedent("""
    import numpy as np
    from jobsched import Scheduler
    import shm_jobs

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    a = np.ones(100 << 17)  # 100 MiB
    with Scheduler() as s:
        s.start(1, wait=False)
        s.submit(shm_jobs.identity, np.ones(1)).result(timeout=60)  # the worker is up
        base = status("VmRSS:")
        r = s.submit(shm_jobs.double, a).result(timeout=120)
        assert r[0] == 2.0 and r[-1] == 2.0
        print((status("VmHWM:") - base) / a.nbytes)
""")


def test_scheduler_peak_memory_for_a_100_mib_round_trip(tmp_path: Path) -> None:
    script = tmp_path / "peak.py"
    script.write_text(PEAK)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    ratio = float(out.stdout.split()[-1])
    assert ratio <= 1.3, f"the scheduler's peak grew by {ratio:.2f}x the payload"


def test_which_values_are_pickled_looking_for_large_buffers() -> None:
    """A small array is pickled plainly (3 µs faster); a large one, or one of objects, is looked into."""
    from jobsched._data.shm import THRESHOLD, may_hold_buffers

    assert may_hold_buffers(np.zeros(16)) is False
    assert may_hold_buffers(np.zeros(THRESHOLD // 8)) is True
    assert may_hold_buffers(np.array([np.zeros(THRESHOLD // 8)] * 2, dtype=object)) is True
    assert may_hold_buffers((1, "a", np.zeros(16))) is False
    assert may_hold_buffers([1, np.zeros(THRESHOLD)]) is True
    big = np.zeros(THRESHOLD // 8)
    assert (big.nbytes, may_hold_buffers({"k": big})) == (THRESHOLD, True)
