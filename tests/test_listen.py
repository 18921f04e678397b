"""``Scheduler(listen=...)``: TLS with a pinned per-run certificate, the credential file, hand-started workers,
and hostile clients against a listener that is not 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import helpers
import pytest
from waiting import TIMEOUT, eventually

from jobsched import Scheduler
from jobsched._local import wire as _wire
from jobsched._local.tls import Credentials, client_context
from jobsched.states import WorkerState

pytest.importorskip("cryptography")

# A second loopback address: not the default 127.0.0.1, so the listener is "elsewhere", yet no packet leaves
# the machine (Linux routes all of 127.0.0.0/8 to the loopback interface).
OTHER_HOST = "127.0.0.2"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _can_bind(host: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((host, 0))
        return True
    except OSError:
        return False


needs_other_host = pytest.mark.skipif(not _can_bind(OTHER_HOST), reason=f"cannot bind {OTHER_HOST}")


@pytest.fixture
def remote_sched(tmp_path: Path) -> Iterator[tuple[Scheduler, Path]]:
    """A scheduler on 127.0.0.2 with no workers of its own, and its credential file."""
    with Scheduler(listen=OTHER_HOST, echo_output=False) as sched:
        sched.start(0, wait=False)
        path = tmp_path / "credentials.json"
        sched.write_credentials(path)
        yield sched, path


def _start_by_hand(address: str, credentials: Path | str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
    return subprocess.Popen([sys.executable, "-m", "jobsched.worker", "--connect", address,
                             "--credentials", os.fspath(credentials)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def _tls_connect(address: tuple[str, int], certificate: str) -> ssl.SSLSocket:
    sock = socket.create_connection(address, timeout=10)
    return client_context(certificate).wrap_socket(sock)


def test_listen_is_parsed_and_bad_values_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.5:http' is not HOST:PORT"):
        Scheduler(listen="10.0.0.5:http")
    with pytest.raises(TypeError, match="listen must be 'HOST' or 'HOST:PORT'"):
        Scheduler(listen=7000)  # type: ignore[arg-type]


def test_a_tls_listener_serves_its_own_workers_and_says_where(tmp_path: Path) -> None:
    """Local workers of a listen= scheduler connect over TLS too, and jobs run as by default."""
    with Scheduler(listen="127.0.0.1:0", echo_output=False) as sched:
        sched.start(2, wait=False)
        host, port = helpers.host_port(sched)
        assert sched.address == f"127.0.0.1:{port}" and port > 0
        futures = [sched.submit(helpers.square, i) for i in range(200)]
        assert [f.result(timeout=TIMEOUT) for f in futures] == [i * i for i in range(200)]
        # The listener speaks TLS: a TLS client that pins the run's certificate gets the challenge inside it.
        sched.write_credentials(tmp_path / "c.json")
        credentials = Credentials.from_json((tmp_path / "c.json").read_text(), "test")
        assert credentials.certificate is not None and credentials.address == sched.address
        with _tls_connect((host, port), credentials.certificate) as tls:
            assert len(tls.recv(_wire.NONCE_BYTES)) == _wire.NONCE_BYTES


def test_the_credential_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("old")
    path.chmod(0o644)
    old = os.umask(0)
    try:
        with Scheduler(echo_output=False) as sched:
            with pytest.raises(RuntimeError, match=r"does not listen yet; call start\(0, wait=False\)"):
                sched.write_credentials(path)
            sched.start(0, wait=False)
            sched.write_credentials(path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert set(data) == {"address", "secret", "certificate"} and len(bytes.fromhex(data["secret"])) == 32
    assert data["certificate"] is None  # no listen=: loopback, no TLS
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temporary file left


@needs_other_host
def test_hand_started_workers_each_take_a_slot_and_exit_with_the_scheduler(tmp_path: Path) -> None:
    """Workers started by hand, stdin /dev/null, join a start(0) scheduler; it closes, they exit 0."""
    with Scheduler(listen=OTHER_HOST, echo_output=False) as sched:
        sched.start(0, wait=False)
        assert sched.address is not None and sched.address.startswith(f"{OTHER_HOST}:")
        creds = tmp_path / "c.json"
        sched.write_credentials(creds)
        procs = [_start_by_hand(sched.address, creds) for _ in range(2)]
        try:
            eventually(lambda: sum(w.state is WorkerState.READY for w in sched.workers) == 2, "two workers to join")
            assert sched.n_workers == 0  # they are not the scheduler's own
            futures = [sched.submit(helpers.square_and_pid, i) for i in range(100)]
            results = [f.result(timeout=TIMEOUT) for f in futures]
            assert [r[0] for r in results] == [i * i for i in range(100)]
            assert {r[1] for r in results} <= {p.pid for p in procs}
            assert len({w.index for w in sched.workers}) == 2
        finally:
            sched.close(timeout=TIMEOUT)
            codes = [p.wait(timeout=TIMEOUT) for p in procs]
            for p in procs:
                assert p.stdout is not None
                p.stdout.close()
    assert codes == [0, 0]


@needs_other_host
def test_a_worker_with_another_runs_credentials_gets_no_job(remote_sched: tuple[Scheduler, Path],
                                                            tmp_path: Path) -> None:
    sched, _ = remote_sched
    with Scheduler(listen=OTHER_HOST, echo_output=False) as other:
        other.start(0, wait=False)
        other.write_credentials(tmp_path / "other.json")
    proc = _start_by_hand(sched.address or "", tmp_path / "other.json")  # the right address, a stale run's file
    output, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode != 0
    assert b"could not join the scheduler" in output
    future = sched.submit(helpers.square, 3)
    assert sched.workers == [] and not future.done()
    future.cancel()


@needs_other_host
def test_hostile_clients_against_a_tls_listener_get_nothing(remote_sched: tuple[Scheduler, Path], tmp_path: Path,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
    """Plain TCP, a wrong secret, a replayed handshake and an oversized frame: refused, nothing unpickled."""
    sched, creds_path = remote_sched
    credentials = Credentials.from_json(creds_path.read_text(), "test")
    assert credentials.certificate is not None
    address = helpers.host_port(sched)
    evil_file = tmp_path / "unpickled"
    evil = b"cos\nsystem\n(S'touch " + str(evil_file).encode() + b"'\ntR."

    # Plain TCP against TLS: the scheduler says nothing in clear (no challenge), and hangs up.
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(_wire.frame(_wire.RESULT, 0, evil).ljust(_wire.HELLO_BYTES + 512, b"\0"))
        sock.settimeout(10)
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        assert len(received) != _wire.NONCE_BYTES and not received.startswith(b"\x80")

    # Wrong secret, inside TLS: no proof of the scheduler comes back, the connection ends.
    with _tls_connect(address, credentials.certificate) as tls:
        nonce_s = tls.recv(_wire.NONCE_BYTES)
        tls.sendall(_wire.hello_message(_wire.new_secret(), nonce_s, _wire.ADOPT, 0, _wire.new_nonce()))
        assert tls.recv(4096) == b""

    # A replayed handshake: a valid answer to one challenge, sent again to the next one, is refused.
    with _tls_connect(address, credentials.certificate) as tls:
        first_nonce = tls.recv(_wire.NONCE_BYTES)
        recorded = _wire.hello_message(credentials.secret, first_nonce, _wire.ADOPT, 0, _wire.new_nonce())
    with _tls_connect(address, credentials.certificate) as tls:
        assert tls.recv(_wire.NONCE_BYTES) != first_nonce
        tls.sendall(recorded)
        assert tls.recv(4096) == b""

    # An authenticated worker that sends an oversized frame is dropped before reading its body.
    with _tls_connect(address, credentials.certificate) as tls:
        nonce_s = tls.recv(_wire.NONCE_BYTES)
        nonce_w = _wire.new_nonce()
        tls.sendall(_wire.hello_message(credentials.secret, nonce_s, _wire.ADOPT, 0, nonce_w))
        assert tls.recv(_wire.MAC_BYTES) == _wire.scheduler_mac(credentials.secret, nonce_w)
        eventually(lambda: len(sched.workers) == 1, "the client to get a slot")
        tls.sendall(struct.pack("!IBQ", _wire.MAX_FRAME + 1, _wire.RESULT, 0) + evil)
        tls.settimeout(10)
        try:
            assert tls.recv(4096) == b""
        except ConnectionResetError:
            pass
    eventually(lambda: all(w.state is WorkerState.CLOSED for w in sched.workers), "the client's slot to end")

    # The scheduler still serves an honest worker.
    proc = _start_by_hand(sched.address or "", creds_path)
    try:
        assert sched.submit(helpers.square, 7).result(timeout=TIMEOUT) == 49
    finally:
        sched.close(timeout=TIMEOUT)
        proc.communicate(timeout=TIMEOUT)
    assert not evil_file.exists()
    err = capfd.readouterr().err
    assert "TLS handshake failed" in err
    assert err.count("failed authentication") >= 2
    assert "broke the protocol" in err


def test_workers_over_tls_take_jobs_sent_ahead_that_wait_a_while() -> None:
    """With prefetch, a worker looks for a WITHDRAW before a job it has held for a while: over TLS too."""
    with Scheduler(listen="127.0.0.1", prefetch=4, echo_output=False) as sched:
        sched.start(2, wait=False)
        futures = [sched.submit(helpers.sleep_then, 0.005, i) for i in range(100)]
        assert [f.result(timeout=TIMEOUT) for f in futures] == list(range(100))
        assert sched.stats()["restarts"] == 0
