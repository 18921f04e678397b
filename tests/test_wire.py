"""The wire: the handshake's checks, and hostile local connections refused without unpickling anything."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import helpers
import pytest
from waiting import TIMEOUT, eventually

from jobsched import Scheduler
from jobsched._local import wire as _wire


def test_check_hello_accepts_the_right_secret_only() -> None:
    secret, other = _wire.new_secret(), _wire.new_secret()
    nonce_s, nonce_w = _wire.new_nonce(), _wire.new_nonce()
    good = _wire.hello_message(secret, nonce_s, 3, 7, nonce_w)
    assert len(good) == _wire.HELLO_BYTES
    assert _wire.check_hello(secret, nonce_s, good) == (3, 7, nonce_w)
    assert _wire.check_hello(other, nonce_s, good) is None  # wrong key
    assert _wire.check_hello(secret, _wire.new_nonce(), good) is None  # replayed to another challenge
    tampered = _wire.HELLO.pack(4, 7) + good[_wire.HELLO.size:]
    assert _wire.check_hello(secret, nonce_s, tampered) is None  # identity changed
    assert _wire.check_hello(secret, nonce_s, good[:-1]) is None


def _hostile(address: tuple[str, int], payload: bytes, linger: float = 0.3) -> bytes:
    """Connect, read the challenge, send ``payload``; return what the scheduler sent before closing."""
    with socket.create_connection(address, timeout=10) as sock:
        received = sock.recv(_wire.NONCE_BYTES)
        if payload:
            try:
                sock.sendall(payload)
            except OSError:
                pass
        sock.settimeout(linger + 5)
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def test_hostile_connections_are_refused_and_nothing_is_unpickled(tmp_path: Path,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    evil_file = tmp_path / "pwned"
    evil = helpers.malicious_pickle(str(evil_file))
    attacks = {
        "garbage": os.urandom(_wire.HELLO_BYTES),
        "pickle instead of a handshake": (evil * 3)[: _wire.HELLO_BYTES],
        "huge length prefix": struct.pack("!IBQ", 0xFFFFFFFF, _wire.RESULT, 0) + os.urandom(59),
        "a valid-looking frame with a pickle": _wire.frame(_wire.RESULT, 0, evil).ljust(_wire.HELLO_BYTES, b"\0"),
    }
    with Scheduler() as sched:
        sched.start(1, wait=False)
        assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
        address = helpers.host_port(sched)
        for name, payload in attacks.items():
            received = _hostile(address, payload)
            # Only the 32-byte challenge came back: no proof of the scheduler's identity, no job.
            assert len(received) == _wire.NONCE_BYTES, name
        # A worker identity with the wrong key, even for a real worker slot.
        nonce_w = _wire.new_nonce()
        with socket.create_connection(address, timeout=10) as sock:
            nonce_s = sock.recv(_wire.NONCE_BYTES)
            sock.sendall(_wire.hello_message(_wire.new_secret(), nonce_s, 0, 1, nonce_w))
            sock.settimeout(10)
            assert sock.recv(4096) == b""
        # Later jobs still run, on the same worker.
        futures = [sched.submit(helpers.add, i) for i in range(20)]
        assert [f.result(timeout=TIMEOUT) for f in futures] == [i + 1 for i in range(20)]
        assert sched.workers[0].n_restarts == 0
    assert not evil_file.exists()
    err = capfd.readouterr().err
    assert err.count("refused a connection to the scheduler: failed authentication") >= 5


def test_a_silent_connection_is_dropped_after_the_handshake_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "HANDSHAKE_TIMEOUT", 0.5)
    with Scheduler() as sched:
        sched.start(1, wait=False)
        with socket.create_connection(helpers.host_port(sched), timeout=10) as sock:
            sock.settimeout(10)
            started = time.monotonic()
            assert sock.recv(_wire.NONCE_BYTES)
            assert sock.recv(1) == b""  # closed by the scheduler
            assert time.monotonic() - started < 9
        assert sched.submit(helpers.add, 41).result(timeout=TIMEOUT) == 42


def test_the_secret_is_not_on_any_command_line(sched: Scheduler) -> None:
    import psutil

    sched.start(2, wait=False)
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    # A worker forked from the zygote has no process until the zygote has booted: wait for every one.
    eventually(lambda: len(sched.workers) == 2 and all(w.pid is not None for w in sched.workers),
               "both workers to have a process")
    secret_hex = sched._secret.hex()
    for w in sched.workers:
        assert w.pid is not None
        cmdline = " ".join(psutil.Process(w.pid).cmdline())
        assert secret_hex not in cmdline
        assert secret_hex not in str(psutil.Process(w.pid).environ())
