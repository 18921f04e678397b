"""The wire between the scheduler and a worker: an HMAC handshake, then length-prefixed frames.

Protocol (one TCP connection per worker, on 127.0.0.1 only):

 1. The scheduler listens on 127.0.0.1 on an ephemeral port. It starts each worker process with
    ``JOBSCHED_ADDRESS=127.0.0.1:<port>`` and ``JOBSCHED_WORKER=<index>:<generation>`` in its
    environment, and writes the 32-byte random secret of this scheduler, hex-encoded, as the first line
    of the worker's stdin. The secret never appears on a command line. The scheduler keeps the stdin
    pipe open: when the scheduler's process dies, the worker reads EOF there and exits (watchdog).
 2. The worker connects. The scheduler sends CHALLENGE: 32 random bytes ``nonce_s``.
 3. The worker answers with exactly 72 bytes: ``index`` (u32), ``generation`` (u32), its own 32 random
    bytes ``nonce_w``, and ``HMAC-SHA256(secret, b"worker" + nonce_s + index + generation + nonce_w)``.
 4. The scheduler checks the MAC with ``hmac.compare_digest`` and that ``(index, generation)`` is a worker
    it started and is waiting for. On failure it closes the connection (and logs it); until here it has
    read only these fixed-size raw bytes and unpickled nothing. It has ``HANDSHAKE_TIMEOUT`` seconds.
 5. The scheduler proves itself: ``HMAC-SHA256(secret, b"scheduler" + nonce_w)`` (32 bytes). The worker
    checks it. Both sides are now authenticated; the worker is READY.
 6. Frames, both ways: a 13-byte header ``!IBQ`` = body length, kind, job index; then the body.
    A body longer than ``MAX_FRAME`` is a protocol error and ends the connection.
      JOB    (scheduler -> worker): body = cost (``!d``) + the job's data, pickled.
      RESULT (worker -> scheduler): body = the result, pickled.
      ERROR  (worker -> scheduler): body = pickled ``(type name, message, traceback text)``, all str.
      CLOSE  (scheduler -> worker): no body; the worker returns from ``start_worker`` and exits.
      PROGRESS (worker -> scheduler): body = pickled ``(done, total, note)`` reported by the running job
             (``jobsched.progress`` or a tqdm bar inside it); index = that job's index. Any number of
             PROGRESS frames may precede a job's RESULT or ERROR.
 7. The worker handles JOB frames in order, one at a time, and answers each with RESULT or ERROR.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct

HOST = "127.0.0.1"
SECRET_BYTES = 32
NONCE_BYTES = 32
MAC_BYTES = 32
HANDSHAKE_TIMEOUT = 10.0
MAX_FRAME = 1 << 31  # 2 GiB: large results pass, a garbage length prefix does not

HELLO = struct.Struct("!II")  # index, generation
HELLO_BYTES = HELLO.size + NONCE_BYTES + MAC_BYTES
HEADER = struct.Struct("!IBQ")  # body length, kind, job index
COST = struct.Struct("!d")
JOB_HEADER = struct.Struct("!IBQd")  # HEADER + COST: the start of every JOB frame, packed at once
# Bytes asked of one recv(). Below glibc's mmap threshold (128 KiB): a larger buffer would cost an
# mmap/mremap/munmap round per call, i.e. per job.
RECV_SIZE = 1 << 16

JOB, RESULT, ERROR, CLOSE, PROGRESS = 1, 2, 3, 4, 5
KINDS = frozenset({JOB, RESULT, ERROR, CLOSE, PROGRESS})

ENV_ADDRESS = "JOBSCHED_ADDRESS"
ENV_WORKER = "JOBSCHED_WORKER"
ENV_SYS_PATH = "JOBSCHED_SYS_PATH"


def new_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def worker_mac(secret: bytes, nonce_s: bytes, hello: bytes, nonce_w: bytes) -> bytes:
    return hmac.new(secret, b"worker" + nonce_s + hello + nonce_w, hashlib.sha256).digest()


def scheduler_mac(secret: bytes, nonce_w: bytes) -> bytes:
    return hmac.new(secret, b"scheduler" + nonce_w, hashlib.sha256).digest()


def hello_message(secret: bytes, nonce_s: bytes, index: int, generation: int, nonce_w: bytes) -> bytes:
    hello = HELLO.pack(index, generation)
    return hello + nonce_w + worker_mac(secret, nonce_s, hello, nonce_w)


def check_hello(secret: bytes, nonce_s: bytes, message: bytes) -> tuple[int, int, bytes] | None:
    """Return ``(index, generation, nonce_w)`` if the worker's 72-byte answer carries a valid MAC."""
    if len(message) != HELLO_BYTES:
        return None
    hello = message[: HELLO.size]
    nonce_w = message[HELLO.size : HELLO.size + NONCE_BYTES]
    mac = message[HELLO.size + NONCE_BYTES :]
    if not hmac.compare_digest(mac, worker_mac(secret, nonce_s, hello, nonce_w)):
        return None
    index, generation = HELLO.unpack(hello)
    return index, generation, nonce_w


def frame(kind: int, index: int, body: bytes = b"") -> bytes:
    return HEADER.pack(len(body), kind, index) + body


class BlockingConnection:
    """The worker's end: a blocking socket that reads and writes whole frames.

    Reads are buffered: one ``recv`` usually brings a whole frame (header and body), often several
    when the scheduler sends ahead (``prefetch``), instead of one call for the header and one for the body.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""  # received, not yet consumed from self._pos on
        self._pos = 0

    def recv_exactly(self, n: int) -> bytes:
        """Return the next ``n`` bytes of the stream (buffered bytes first)."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos >= n:
            self._pos = pos + n
            return buf[pos:pos + n]
        out = bytearray(n)
        view = memoryview(out)
        got = len(buf) - pos
        view[:got] = buf[pos:]
        self._buf, self._pos = b"", 0
        while got < n:  # a large body lands in place, without an intermediate copy
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise ConnectionError("the scheduler closed the connection")
            got += k
        return bytes(out)

    def _fill(self, n: int) -> None:
        """Buffer at least ``n`` unread bytes, reading what the socket has (up to RECV_SIZE) per call."""
        buf, pos = self._buf, self._pos
        parts = [buf[pos:]] if pos < len(buf) else []
        have = len(buf) - pos
        while have < n:
            chunk = self.sock.recv(RECV_SIZE)
            if not chunk:
                raise ConnectionError("the scheduler closed the connection")
            parts.append(chunk)
            have += len(chunk)
        self._buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pos = 0

    def recv_frame(self) -> tuple[int, int, bytes]:
        if len(self._buf) - self._pos < HEADER.size:
            self._fill(HEADER.size)
        size, kind, index = HEADER.unpack_from(self._buf, self._pos)
        if size > MAX_FRAME or kind not in KINDS:
            raise ConnectionError(f"bad frame from the scheduler: kind {kind}, {size} bytes")
        self._pos += HEADER.size
        if not size:
            return kind, index, b""
        if size <= RECV_SIZE and len(self._buf) - self._pos < size:
            self._fill(size)
        return kind, index, self.recv_exactly(size)

    def send_frame(self, kind: int, index: int, body: bytes = b"") -> None:
        header = HEADER.pack(len(body), kind, index)
        if len(body) < 65536:
            self.sock.sendall(header + body)
        else:  # no copy of a large body
            self.sock.sendall(header)
            self.sock.sendall(body)


def connect(address: tuple[str, int], secret: bytes, index: int, generation: int,
            timeout: float = HANDSHAKE_TIMEOUT) -> BlockingConnection:
    """Connect a worker to its scheduler and authenticate both ways."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = BlockingConnection(sock)
        nonce_s = conn.recv_exactly(NONCE_BYTES)
        nonce_w = new_nonce()
        sock.sendall(hello_message(secret, nonce_s, index, generation, nonce_w))
        proof = conn.recv_exactly(MAC_BYTES)
        if not hmac.compare_digest(proof, scheduler_mac(secret, nonce_w)):
            raise ConnectionError("the scheduler failed to authenticate")
        sock.settimeout(None)
        return conn
    except BaseException:
        sock.close()
        raise
