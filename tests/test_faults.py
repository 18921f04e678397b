"""Fault injection with real workers and real sockets: crashes, stopped and flooding workers, a killed
scheduler, and hostile connections to the scheduler's port. Each test stops by itself, in bounded time."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import helpers
import psutil
import pytest
from waiting import TIMEOUT, eventually, gone, reap

from jobsched import JobError, JobTimeout, Scheduler, SchedulerClosedError, Worker, WorkerState, remote_call
from jobsched._core.slot import OUTPUT_LINES
from jobsched._local import wire as _wire

TESTS = Path(__file__).parent



def running_worker(sched: Scheduler) -> Worker:
    """Wait for the one worker that holds a job, and return it."""
    found: list[Worker] = []

    def busy() -> bool:
        found[:] = [w for w in sched.workers if w.state is WorkerState.RUNNING and w.pid is not None]
        return len(found) == 1

    eventually(busy, "one RUNNING worker")
    return found[0]


# ---------------------------------------------------------------------------------------------------------
# Crashes inside a job: each is a value (a JobError), and the scheduler goes on.

# (job, args, remote_type, text in the message, whether the worker process is replaced)
CRASH_CASES: list[tuple[Callable[..., Any], tuple[Any, ...], str, str, bool]] = [
    (helpers.raise_value_error, ("boom",), "ValueError", "boom", False),
    (helpers.raise_system_exit, (3,), "SystemExit", "3", False),
    (helpers.unpicklable_result, (), "TypeError", "cannot be pickled", False),
    (helpers.result_that_fails_to_unpickle, (), "RuntimeError", "could not be unpickled here", False),
    (helpers.exit_process, (3,), "WorkerDied", "exit code 3", True),
    (helpers.kill_self, (signal.SIGKILL,), "WorkerDied", "killed by signal SIGKILL", True),
    (helpers.kill_self, (signal.SIGTERM,), "WorkerDied", "killed by signal SIGTERM", True),
    (helpers.segfault, (), "WorkerDied", "killed by signal SIGSEGV", True),
    # An authenticated worker that breaks the protocol is cut off and killed: its frame is never trusted.
    (helpers.send_oversized_frame, (), "WorkerDied", "killed by signal SIGKILL", True),
    (helpers.send_result_for_another_job, (), "WorkerDied", "killed by signal SIGKILL", True),
    (helpers.close_connection, (), "WorkerDied", "killed by signal SIGKILL (closed its connection)", True),
]


@pytest.mark.parametrize(
    ("job", "args", "remote_type", "text", "replaced"),
    CRASH_CASES,
    ids=[f"{c[0].__name__}{c[1]!r}" for c in CRASH_CASES],
)
def test_a_crashing_job_is_a_job_error_and_the_scheduler_goes_on(
    job: Callable[..., Any], args: tuple[Any, ...], remote_type: str, text: str, replaced: bool
) -> None:
    retries = 2  # two deaths are enough to show the retry; three would only make the test slower
    with Scheduler(max_retries=retries, echo_output=False) as sched:
        sched.start(1, wait=False)
        pid = sched.submit(os.getpid).result(timeout=TIMEOUT)
        first = psutil.Process(pid)
        with pytest.raises(JobError) as info:
            sched.submit(job, *args).result(timeout=TIMEOUT)
        err = info.value
        assert err.remote_type == remote_type
        assert text in err.remote_message
        # Later jobs run, on the same process or on its replacement.
        assert [sched.submit(helpers.square, i).result(timeout=TIMEOUT) for i in range(5)] == [0, 1, 4, 9, 16]
        new_pid = sched.submit(os.getpid).result(timeout=TIMEOUT)
        worker = sched.workers[0]
        if replaced:
            assert f"died {retries} times" in err.remote_message
            assert err.remote_message.count("worker 0 (pid ") == retries  # says which workers died, and how
            assert new_pid != pid and worker.n_restarts == retries
            assert gone(first)
        else:
            assert new_pid == pid and worker.n_restarts == 0
        stats = sched.stats()
        assert (stats["done"], stats["failed"], stats["queued"], stats["active"]) == (8, 1, 0, 0)
        assert stats["restarts"] == (retries if replaced else 0)


# ---------------------------------------------------------------------------------------------------------
# A stopped worker and a job timeout.


@pytest.mark.parametrize("who", ["stopped from outside", "stops itself"])
def test_a_sigstopped_worker_times_out_is_replaced_and_later_jobs_run(who: str) -> None:
    with Scheduler(echo_output=False) as sched:
        sched.start(2, wait=False)
        if who == "stopped from outside":
            # Without the SIGSTOP this job would finish in 0.5 s, well inside its timeout.
            future: Future[Any] = sched.submit(helpers.square_slowly, 3, 0.5, timeout=3.0)
            worker = running_worker(sched)
            assert worker.pid is not None
            os.kill(worker.pid, signal.SIGSTOP)
        else:
            future = sched.submit(helpers.stop_self, timeout=3.0)
            worker = running_worker(sched)
        stopped_pid = worker.pid
        assert stopped_pid is not None
        stopped = psutil.Process(stopped_pid)
        with pytest.raises(JobTimeout) as info:
            future.result(timeout=TIMEOUT)
        assert "timeout of 3 s" in info.value.remote_message
        assert f"pid {stopped_pid}" in info.value.remote_message
        assert isinstance(info.value, TimeoutError)  # what callers of concurrent.futures already catch
        eventually(lambda: gone(stopped), "the stopped worker to be killed", timeout=10)
        # The slot got a fresh process, and every later job runs.
        results = [sched.submit(helpers.square, i) for i in range(20)]
        assert [f.result(timeout=TIMEOUT) for f in results] == [i * i for i in range(20)]
        # Its replacement may wait for a zygote to boot (the other worker did those jobs meanwhile).
        eventually(lambda: worker.pid not in (None, stopped_pid), "the slot's new process")
        assert worker.n_restarts == 1
        assert sched.stats()["failed"] == 1


# ---------------------------------------------------------------------------------------------------------
# A worker that floods its output.


@pytest.mark.parametrize("echo_output", [False, True])
def test_a_worker_flooding_stdout_keeps_the_scheduler_responsive(
    echo_output: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    n_lines = 60_000  # about 6.5 MB
    with Scheduler(echo_output=echo_output) as sched:
        sched.start(2, wait=False)
        flood = sched.submit(helpers.flood_stdout, n_lines)
        flooder = running_worker(sched)
        # While it floods, the other worker's results keep coming.
        quick = [sched.submit(helpers.square, i) for i in range(300)]
        assert [f.result(timeout=120) for f in quick] == [i * i for i in range(300)]
        assert flood.result(timeout=120) == n_lines
        # Output is kept per worker, bounded, and ends with what the flooder printed last.
        eventually(lambda: bool(flooder.output) and flooder.output[-1] == f"last line {n_lines - 1}",
                   "the last line of the flood", timeout=30)
        assert len(flooder.output) == OUTPUT_LINES
        assert all(line.endswith("y" * 100) for line in list(flooder.output)[:-1])
        others = [w for w in sched.workers if w is not flooder]
        assert all(not any(line.endswith("y" * 100) for line in w.output) for w in others)
        # A flood with no line break at all is kept in bounded pieces, not as one growing line.
        assert sched.submit(helpers.flood_without_newline, 8 << 20).result(timeout=120) == 8 << 20
        assert sched.submit(helpers.square, 12).result(timeout=TIMEOUT) == 144
        for w in sched.workers:
            assert len(w.output) <= OUTPUT_LINES
            assert max((len(line) for line in w.output), default=0) <= 2 * 65536
    err = capfd.readouterr().err
    if echo_output:
        assert f"[worker {flooder.index}] last line {n_lines - 1}\n" in err
    else:
        assert "last line" not in err


# ---------------------------------------------------------------------------------------------------------
# close() with a worker that is busy, or that ignores SIGTERM.


def test_close_bounds_a_busy_worker_and_settles_its_future() -> None:
    sched = Scheduler(echo_output=False)
    try:
        sched.start(1, wait=False)
        long_job = sched.submit(helpers.hang, 600)
        queued = sched.submit(helpers.square, 2)
        worker = running_worker(sched)
        assert worker.pid is not None
        busy = psutil.Process(worker.pid)
        closer = threading.Thread(target=sched.close, kwargs={"timeout": 1.0}, name="test-closer")
        closer.start()
        # close(timeout=1): SIGTERM after 1 s, SIGKILL 2 s later at the latest; allow for a loaded machine.
        closer.join(timeout=15)
        assert not closer.is_alive(), "close(timeout=1.0) did not return while a worker was busy"
        assert gone(busy)
        # Nobody waits forever on a future of a closed scheduler.
        assert queued.cancelled()
        assert long_job.done()
        if not long_job.cancelled():
            assert isinstance(long_job.exception(timeout=0), SchedulerClosedError)
    finally:
        sched.close(timeout=1.0)


# ---------------------------------------------------------------------------------------------------------
# SIGKILL of the scheduler's process: its workers must not outlive it.


@pytest.mark.parametrize("kind", ["sleep", "spin", "idle", "gil"])
def test_workers_exit_within_2s_when_their_scheduler_is_sigkilled(kind: str) -> None:
    n_workers = 3
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import helpers; helpers.run_doomed_scheduler({n_workers}, {kind!r})"],
        cwd=TESTS, stdout=subprocess.PIPE, text=True,
    )
    workers: list[psutil.Process] = []
    try:
        assert proc.stdout is not None
        line = _readline(proc, timeout=90)
        reported = json.loads(line)["pids"]
        # The workers are the scheduler process's children (not ours once it dies): find them by psutil.
        children = psutil.Process(proc.pid).children(recursive=True)
        workers = [c for c in children if c.pid in reported]
        assert sorted(c.pid for c in workers) == sorted(reported) and len(workers) == n_workers
        assert all(not gone(w) for w in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        deadline = killed_at + 2.0
        while not all(gone(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        survivors = [w.pid for w in workers if not gone(w)]
        assert not survivors, f"workers {survivors} ({kind}) outlived their SIGKILLed scheduler by 2 s"
    finally:
        reap(proc, workers)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """Read one line of the child's stdout, or fail after ``timeout`` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), f"no line from the child in {timeout} s (exit code {proc.poll()})"
    return proc.stdout.readline()


# ---------------------------------------------------------------------------------------------------------
# Hostile connections to the scheduler's port while jobs run.


def _until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, str]:
    """Read until the peer closes; return what came and how it ended: "eof", "reset" or "open"."""
    received = b""
    sock.settimeout(timeout)
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return received, "open"
    except ConnectionResetError:
        return received, "reset"
    return received, "eof"


def attack_idle(address: tuple[str, int]) -> tuple[bytes, str]:
    """Connect and say nothing: dropped at the handshake deadline."""
    with socket.create_connection(address, timeout=10) as sock:
        return _until_closed(sock, _wire.HANDSHAKE_TIMEOUT + 20)


def attack_wrong_hmac(address: tuple[str, int]) -> tuple[bytes, str]:
    """A well-formed answer for worker 0, signed with another key."""
    with socket.create_connection(address, timeout=10) as sock:
        nonce_s = sock.recv(_wire.NONCE_BYTES)
        sock.sendall(_wire.hello_message(_wire.new_secret(), nonce_s, 0, 1, _wire.new_nonce()))
        received, how = _until_closed(sock, 20)
        return nonce_s + received, how


def attack_garbage(address: tuple[str, int]) -> tuple[bytes, str]:
    with socket.create_connection(address, timeout=10) as sock:
        try:
            sock.sendall(os.urandom(1 << 16))
        except OSError:  # refused while we were still sending
            pass
        return _until_closed(sock, 20)


def attack_huge_length_prefix(address: tuple[str, int]) -> tuple[bytes, str]:
    """Only a frame header announcing 4 GiB, then silence: nothing is allocated, dropped at the deadline."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(_wire.HEADER.pack(0xFFFFFFFF, _wire.RESULT, 0))
        return _until_closed(sock, _wire.HANDSHAKE_TIMEOUT + 20)


def attack_slow_drip(address: tuple[str, int]) -> tuple[bytes, str]:
    """One byte every 0.25 s: the handshake deadline counts from the connection, not from the last byte."""
    with socket.create_connection(address, timeout=10) as sock:
        received = sock.recv(_wire.NONCE_BYTES)
        sent = 0
        sock.settimeout(0.25)
        deadline = time.monotonic() + _wire.HANDSHAKE_TIMEOUT + 20
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                try:
                    sock.send(b"\x00")
                    sent += 1
                except OSError:
                    return received, "reset"
                continue
            except ConnectionResetError:
                return received, "reset"
            if not chunk:
                # 72 bytes at 4 per second take 18 s: the scheduler must give up first.
                assert sent < _wire.HELLO_BYTES, f"the drip got to send {sent} bytes"
                return received, "eof"
            received += chunk
        return received, "open"


def attack_malicious_pickle(path: str) -> Callable[[tuple[str, int]], tuple[bytes, str]]:
    """A frame whose body would create ``path`` if unpickled, sent instead of a handshake."""

    def attack(address: tuple[str, int]) -> tuple[bytes, str]:
        evil = helpers.malicious_pickle(path)
        with socket.create_connection(address, timeout=10) as sock:
            try:
                sock.sendall(_wire.frame(_wire.RESULT, 0, evil) * 20)
            except OSError:
                pass
            return _until_closed(sock, 20)

    return attack


def attack_after_bad_hello(path: str) -> Callable[[tuple[str, int]], tuple[bytes, str]]:
    """A failed handshake followed by a pickled frame: nothing after a failed handshake is read."""

    def attack(address: tuple[str, int]) -> tuple[bytes, str]:
        evil = helpers.malicious_pickle(path)
        with socket.create_connection(address, timeout=10) as sock:
            nonce_s = sock.recv(_wire.NONCE_BYTES)
            try:
                sock.sendall(os.urandom(_wire.HELLO_BYTES) + _wire.frame(_wire.RESULT, 0, evil))
            except OSError:
                pass
            received, how = _until_closed(sock, 20)
            return nonce_s + received, how

    return attack


def attack_replayed_hello(secret: bytes) -> Callable[[tuple[str, int]], tuple[bytes, str]]:
    """A hello signed with the real key, but for another connection's challenge (a replay)."""

    def attack(address: tuple[str, int]) -> tuple[bytes, str]:
        with socket.create_connection(address, timeout=10) as first, \
                socket.create_connection(address, timeout=10) as second:
            nonce_first = first.recv(_wire.NONCE_BYTES)
            nonce_second = second.recv(_wire.NONCE_BYTES)
            second.sendall(_wire.hello_message(secret, nonce_first, 0, 1, _wire.new_nonce()))
            received, how = _until_closed(second, 20)
            return nonce_second + received, how

    return attack


def attack_impostor(secret: bytes, index: int, generation: int) -> Callable[[tuple[str, int]], tuple[bytes, str]]:
    """The real key and a fresh challenge, but the identity of a worker that is already connected.

    (The key alone makes a worker: it reaches only the processes the scheduler starts, on their stdin. An
    identity that the scheduler is still waiting for would be accepted, so the test takes a connected one.)
    """

    def attack(address: tuple[str, int]) -> tuple[bytes, str]:
        with socket.create_connection(address, timeout=10) as sock:
            nonce_s = sock.recv(_wire.NONCE_BYTES)
            sock.sendall(_wire.hello_message(secret, nonce_s, index, generation, _wire.new_nonce()))
            received, how = _until_closed(sock, 20)
            return nonce_s + received, how

    return attack


class Feeder:
    """Keep a scheduler busy with small jobs, from a thread, until ``stop()``."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.futures: list[tuple[int, Future[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="test-feeder", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.futures.append((i, self.sched.submit(helpers.square_slowly, i, 0.005)))
            i += 1
            if self.sched.n_queued_jobs > 50:  # a steady trickle, not an ever-growing queue
                self._stop.wait(0.05)

    def stop(self) -> list[tuple[int, Future[int]]]:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()
        return self.futures


def test_hostile_connections_are_refused_while_jobs_run(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    evil_file = tmp_path / "unpickled"
    with Scheduler(echo_output=False) as sched:
        sched.start(2, wait=False)
        assert sched.submit(helpers.square, 3).result(timeout=TIMEOUT) == 9
        eventually(lambda: all(w.state in (WorkerState.READY, WorkerState.RUNNING) for w in sched.workers),
                   "both workers to connect")
        live = sched.workers[0]
        address = helpers.host_port(sched)
        assert address[0] == "127.0.0.1"
        feeder = Feeder(sched)
        attacks: dict[str, Callable[[tuple[str, int]], tuple[bytes, str]]] = {
            "no handshake": attack_idle,
            "wrong HMAC": attack_wrong_hmac,
            "garbage": attack_garbage,
            "huge length prefix": attack_huge_length_prefix,
            "slow drip": attack_slow_drip,
            "malicious pickle": attack_malicious_pickle(str(evil_file)),
            "pickle after a bad hello": attack_after_bad_hello(str(evil_file)),
            "replayed hello": attack_replayed_hello(sched._secret),
            "impostor of a live worker": attack_impostor(sched._secret, live.index, live.generation),
        }
        outcomes: dict[str, tuple[bytes, str] | BaseException] = {}

        def run(name: str, attack: Callable[[tuple[str, int]], tuple[bytes, str]]) -> None:
            try:
                outcomes[name] = attack(address)
            except BaseException as exc:  # reported below, with the attack's name
                outcomes[name] = exc

        threads = [threading.Thread(target=run, args=item, name=f"test-attack-{item[0]}") for item in attacks.items()]
        # And a crowd of silent connections, while the scheduler adds a worker: the newcomer still gets in.
        crowd = [socket.create_connection(address, timeout=10) for _ in range(100)]
        try:
            for t in threads:
                t.start()
            sched.scale(3)
            eventually(lambda: sum(w.state in (WorkerState.READY, WorkerState.RUNNING) for w in sched.workers) == 3,
                       "a third worker to connect past 100 pending connections")
            for t in threads:
                t.join(timeout=_wire.HANDSHAKE_TIMEOUT + 40)
            assert not any(t.is_alive() for t in threads)
            crowd_outcomes = [_until_closed(sock, 20) for sock in crowd]
        finally:
            for sock in crowd:
                sock.close()
            futures = feeder.stop()
        for name, outcome in outcomes.items():
            assert not isinstance(outcome, BaseException), f"{name}: {outcome!r}"
            received, how = outcome
            # Refused: closed by the scheduler, which sent its 32-byte challenge and nothing more
            # (no proof of its identity, no job).
            assert how in ("eof", "reset"), f"{name}: the connection was still open"
            assert len(received) <= _wire.NONCE_BYTES, f"{name}: got {len(received)} bytes"
        assert all(how in ("eof", "reset") and len(got) == _wire.NONCE_BYTES for got, how in crowd_outcomes)
        # The jobs that ran meanwhile all completed, correctly, without any worker being harmed.
        assert len(futures) > 100
        assert all(f.result(timeout=TIMEOUT) == i * i for i, f in futures)
        assert sched.wait(timeout=TIMEOUT)
        assert sum(w.n_restarts for w in sched.workers) == 0
        assert sched.stats()["failed"] == 0
        # The port is bound to the loopback interface only.
        listening = [c for c in psutil.Process().net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == address[1]]
        assert [c.laddr.ip for c in listening] == ["127.0.0.1"]
        for ip in _other_local_ipv4_addresses():
            with pytest.raises(OSError):
                socket.create_connection((ip, address[1]), timeout=5).close()
    # No sleep needed: the scheduler read each pickle before it closed that connection (the outcomes above),
    # and it is closed now, so nothing of it is left that could still unpickle one.
    assert not evil_file.exists(), "a hostile pickle was unpickled"
    err = capfd.readouterr().err
    assert "refused a connection to the scheduler: failed authentication" in err
    assert "refused a connection to the scheduler: no valid handshake within" in err
    assert ("refused a connection to the scheduler: "
            f"authenticated as worker {live.index}:{live.generation}, which is not expected") in err


def _other_local_ipv4_addresses() -> list[str]:
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


# ---------------------------------------------------------------------------------------------------------
# A callback that fails on the way to a worker must not cost a future.


def test_a_raising_before_start_loses_no_future_and_start_again_runs_them() -> None:
    calls: list[int] = []

    def before_start(s: Scheduler, job: Any) -> None:
        calls.append(job.index)
        if len(calls) == 1:
            raise ValueError("before_start failed once")

    with Scheduler(echo_output=False) as sched:
        futures = [sched.submit(helpers.square, i) for i in range(3)]
        with pytest.raises(ValueError, match="before_start failed once"):
            sched.start(1, before_start=before_start)
        assert not any(f.done() for f in futures)
        assert sched.n_queued_jobs == 3  # the job whose before_start raised went back to the queue
        sched.start(1, before_start=before_start)
        assert [f.result(timeout=TIMEOUT) for f in futures] == [0, 1, 4]
        assert sched.stats()["error"] is None


# ---------------------------------------------------------------------------------------------------------
# Ordering survives a crash.


def test_a_job_requeued_after_a_crash_keeps_its_place_in_the_queue(tmp_path: Path) -> None:
    started: list[int] = []
    delivered: list[tuple[int, Any]] = []
    with Scheduler(echo_output=False) as sched:
        sched.add_job(remote_call(helpers.die_once, str(tmp_path / "died"), "survivor"), cost=1)
        for i, cost in enumerate([1, 2, 1, 0]):
            sched.add_job(remote_call(helpers.square, i + 1), cost=cost)
        sched.start(1, before_start=lambda s, job: started.append(job.index),
                    after_stop=lambda s, job, result: delivered.append((job.index, result)))
    # Job 4 (cost 0) first; job 0 dies once and runs again before the other cost-1 jobs, then cost 2.
    assert started == [4, 0, 0, 1, 3, 2]
    assert delivered == [(4, 16), (0, "survivor"), (1, 1), (3, 9), (2, 4)]
