"""The wire between the scheduler and a worker: an HMAC handshake, then length-prefixed frames.

Protocol (one TCP connection per worker; on 127.0.0.1 unless ``Scheduler(listen=...)`` says otherwise):

 1. The scheduler listens on 127.0.0.1 on an ephemeral port. It starts each worker process with
    ``JOBSCHED_ADDRESS=127.0.0.1:<port>`` and ``JOBSCHED_WORKER=<index>:<generation>`` in its
    environment, and writes the 32-byte random secret of this scheduler, hex-encoded, as the first line
    of the worker's stdin. The secret never appears on a command line. The scheduler keeps the stdin
    pipe open: when the scheduler's process dies, the worker reads EOF there and exits (watchdog).
 1b. With an explicit ``listen=`` (any address, loopback too), every connection is TLS 1.3 first, with this
    run's self-signed certificate, which workers pin (``_local.tls``); steps 2-8 then run inside TLS. A
    worker started by hand (``python -m jobsched.worker --connect HOST:PORT --credentials FILE``) reads the
    secret and the certificate from a 0600 credential file (or stdin with ``--credentials -``), never
    from its command line, and says ``index`` = ``ADOPT`` (0xFFFFFFFF), ``generation`` = 0 in step 3: the
    scheduler gives it a slot of its own once it has authenticated.
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
      JOB_INT (scheduler -> worker): the same, for a cost that is an ``int`` within int64: cost (``!q``), so
             that the worker's ``job.cost`` is the ``int`` the caller gave (1, not 1.0). Any other cost (a
             ``float``, an ``int`` beyond int64) travels as JOB and arrives as a ``float``.
      JOB_SEED, JOB_INT_SEED (scheduler -> worker): JOB and JOB_INT for a scheduler with a ``seed``: the cost,
             then the job's seed (``!Q``), then the data. Before running the job, the worker seeds ``random``
             (and numpy's global state, if numpy is imported) with it; ``jobsched.job_seed()`` returns it.
      RESULT (worker -> scheduler): body = the result, pickled.
      ERROR  (worker -> scheduler): body = pickled ``(type name, message, traceback text, type names)``: three
             str, then a tuple of str, ``module.qualname`` of each class in the exception type's MRO (matched
             against the job's ``retry_on``).
      CLOSE  (scheduler -> worker): no body; the worker returns from ``start_worker`` and exits.
      PROGRESS (worker -> scheduler): body = pickled ``(done, total, note)`` reported by the running job
             (``jobsched.progress`` or a tqdm bar inside it); index = that job's index. Any number of
             PROGRESS frames may precede a job's RESULT or ERROR.
      WITHDRAW (scheduler -> worker): no body; index = a job sent ahead (``prefetch``) that was cancelled.
      WITHDRAWN (worker -> scheduler): no body; index = a withdrawn job that the worker dropped unstarted.
 7. The worker handles JOB frames in order, one at a time, and answers each with RESULT or ERROR, or with
    WITHDRAWN for a job whose WITHDRAW it received before starting it (it looks for one just before it starts a
    job it has held for a while). A WITHDRAW that comes too late (the job has started) is ignored: the
    scheduler sees no WITHDRAWN right after the previous job's answer, and stops the job by killing the worker.
      RETIRE (worker -> scheduler, kind 11; resident Dask workers only): no body, index 0. The machine under the
             worker is being retired (its Dask worker closes gracefully). The worker finishes the job it runs,
             if any, sends its result, runs no other job and exits; the scheduler sends it CLOSE (an idle
             worker leaves at once) and re-queues the jobs it had sent ahead, and its exit counts no crash.
      DATA (scheduler -> worker, kind 12; resident Dask workers only): index 0; body = a ``put`` handle's token
             (``TOKEN_BYTES`` ASCII hex digits), then its pickle, sent once per connection before the first job
             that takes it (``_data.handles.deliver``). With no pickle: the handle was released, forget it.
 8. A pickled job's data or result whose large buffers went through shared memory (``_data.shm``) starts with a
    0 byte (a pickle starts with 0x80): ``!BH`` = 0, number of segments; per segment ``!QQB`` = where its
    buffer starts in the segment, the buffer's size, the name's length, then the name (ASCII); then the
    in-band pickle, whose out-of-band buffers are those segments' buffers, in order.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
from time import monotonic

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
INT_COST = struct.Struct("!q")
JOB_INT_HEADER = struct.Struct("!IBQq")  # HEADER + INT_COST: the start of every JOB_INT frame
SEED = struct.Struct("!Q")  # a job's seed, after its cost (JOB_SEED, JOB_INT_SEED)
JOB_SEED_HEADER = struct.Struct("!IBQdQ")  # HEADER + COST + SEED
JOB_INT_SEED_HEADER = struct.Struct("!IBQqQ")  # HEADER + INT_COST + SEED
# Bytes asked of one recv(). Below glibc's mmap threshold (128 KiB): a larger buffer would cost an
# mmap/mremap/munmap round per call, i.e. per job.
RECV_SIZE = 1 << 16

JOB, RESULT, ERROR, CLOSE, PROGRESS, JOB_INT, WITHDRAW, WITHDRAWN, JOB_SEED, JOB_INT_SEED, RETIRE = range(1, 12)
DATA = 12
KINDS = frozenset({JOB, RESULT, ERROR, CLOSE, PROGRESS, JOB_INT, WITHDRAW, WITHDRAWN, JOB_SEED, JOB_INT_SEED, RETIRE,
                   DATA})
TOKEN_BYTES = 32  # a handle's token in a DATA frame: 16 random bytes, hex
# A job held this long (seconds) since its frame was read is checked for a WITHDRAW before it starts (one
# non-blocking recv); a job just read had no time to be withdrawn, and costs nothing more.
WITHDRAW_CHECK_AGE = 0.001
_JOB_KINDS = frozenset({JOB, JOB_INT, JOB_SEED, JOB_INT_SEED})  # the frames that carry a job
ADOPT = 0xFFFFFFFF  # the hello's index of a worker started by hand: it asks for a slot of its own

ENV_ADDRESS = "JOBSCHED_ADDRESS"
ENV_WORKER = "JOBSCHED_WORKER"
ENV_SYS_PATH = "JOBSCHED_SYS_PATH"
ENV_MEMORY_LIMIT = "JOBSCHED_MEMORY_LIMIT"  # bytes: the worker sets its RLIMIT_AS (Scheduler(memory_limit=...))
ENV_CERTIFICATE = "JOBSCHED_CERTIFICATE"  # the scheduler's certificate (public) to pin, with listen=


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


class FrameDecoder:
    """Split a byte stream into frames: ``feed(chunk)`` returns the complete ``(kind, index, body)`` frames.

    The one frame parser of both ends (the scheduler's non-blocking connections and the worker's blocking
    one). A body larger than ``RECV_SIZE`` is received into a buffer of exactly its size: ``body_view()``
    gives the part still missing, for ``recv_into`` without any intermediate copy, so a 100 MB payload costs
    100 MB here, not a growing buffer plus copies.

    Args:
        accept: the frame kinds this end may receive; any other kind is a ``ProtocolError``.
    """

    __slots__ = ("_accept", "_buf", "_big", "_big_got", "_big_kind", "_big_index")

    def __init__(self, accept: frozenset[int]) -> None:
        self._accept = accept
        self._buf = bytearray()
        self._big: bytearray | None = None  # the body of a large frame, being filled
        self._big_got = 0
        self._big_kind = 0
        self._big_index = 0

    def body_view(self) -> memoryview | None:
        """The missing part of a large frame's body (fill it, then call ``filled``), or None."""
        big = self._big
        return None if big is None else memoryview(big)[self._big_got:]

    def filled(self, n: int) -> list[tuple[int, int, bytes | bytearray | memoryview]]:
        """``n`` bytes were received into ``body_view()``: return the frame if it is now complete."""
        self._big_got += n
        big = self._big
        assert big is not None
        if self._big_got < len(big):
            return []
        self._big = None
        return [(self._big_kind, self._big_index, big)]

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[tuple[int, int, bytes | bytearray | memoryview]]:
        """Add received bytes; return the frames they complete, in order.

        Raises:
            ProtocolError: a frame of a kind this end may not receive, or longer than ``MAX_FRAME``.
        """
        frames: list[tuple[int, int, bytes | bytearray | memoryview]] = []
        if self._big is not None:  # the rest of a large body (the caller did not use body_view())
            view = memoryview(chunk)
            need = len(self._big) - self._big_got
            take = view[:need]
            self._big[self._big_got:self._big_got + len(take)] = take
            frames += self.filled(len(take))
            chunk = view[need:]
            if not len(chunk):
                return frames
        buf = self._buf
        if buf:
            buf += chunk
            data: bytes | bytearray | memoryview = buf
        else:
            data = chunk
        n = len(data)
        pos = 0
        hsize = HEADER.size
        unpack = HEADER.unpack_from
        accept = self._accept
        while n - pos >= hsize:
            size, kind, index = unpack(data, pos)
            if kind not in accept or size > MAX_FRAME:
                from ..errors import ProtocolError  # only on a broken peer

                self._buf = bytearray()
                raise ProtocolError(f"bad frame: kind {kind}, {size} bytes (accepted kinds: {sorted(accept)}, "
                                    f"at most {MAX_FRAME} bytes)")
            end = pos + hsize + size
            if n < end:
                if size > RECV_SIZE:  # a large body: receive the rest straight into its own buffer
                    big = bytearray(size)
                    have = n - pos - hsize
                    big[:have] = data[pos + hsize:n]
                    self._big, self._big_got, self._big_kind, self._big_index = big, have, kind, index
                    pos = n
                break
            frames.append((kind, index, data[pos + hsize:end]))
            pos = end
        if data is buf:
            del buf[:pos]
        elif pos < n:
            buf += data[pos:]
        return frames


SCHEDULER_ACCEPTS = frozenset({RESULT, ERROR, PROGRESS, WITHDRAWN})
RESIDENT_ACCEPTS = SCHEDULER_ACCEPTS | {RETIRE}  # what a resident Dask worker may send
WORKER_ACCEPTS = frozenset({JOB, JOB_INT, JOB_SEED, JOB_INT_SEED, CLOSE, WITHDRAW, DATA})


class BlockingConnection:
    """The worker's end: a blocking socket that reads and writes whole frames (parsed by ``FrameDecoder``).

    Reads are buffered: one ``recv`` usually brings a whole frame (header and body), often several when the
    scheduler sends ahead (``prefetch``). The worker serialises sends itself (``worker.progress.Reporter.lock``):
    a job's progress reports may come from a thread of their own.

    WITHDRAW frames never come out of ``recv_frame``: the index of a withdrawn job that is still waiting here
    goes into ``withdrawn``, which the worker checks before it starts a job. A job held longer than
    ``WITHDRAW_CHECK_AGE`` is checked against what has arrived since (one non-blocking read) before it is
    handed out.
    """

    def __init__(self, sock: socket.socket, accept: frozenset[int] = WORKER_ACCEPTS) -> None:
        self.sock = sock
        self._decoder = FrameDecoder(accept)
        self._frames: list[tuple[int, int, bytes | bytearray | memoryview]] = []
        self._next = 0
        self._withdrawable = WITHDRAW in accept
        self._read_at = 0.0  # monotonic time of the last read from the socket
        self.withdrawn: set[int] = set()  # jobs withdrawn before they were handed out

    def recv_exactly(self, n: int) -> bytes:
        """Return exactly ``n`` bytes (the handshake, before any frame)."""
        out = bytearray(n)
        view = memoryview(out)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise ConnectionError("the scheduler closed the connection")
            got += k
        return bytes(out)

    def recv_frame(self) -> tuple[int, int, bytes | bytearray | memoryview]:
        """Return the next ``(kind, index, body)`` frame, waiting for it."""
        frames = self._frames
        if self._next < len(frames) and self._withdrawable and monotonic() - self._read_at >= WITHDRAW_CHECK_AGE:
            self._poll()  # a job held for a while: was it withdrawn meanwhile?
            frames = self._frames
        while self._next >= len(frames):
            decoder = self._decoder
            view = decoder.body_view()
            if view is not None:
                k = self.sock.recv_into(view)
                if k == 0:
                    raise ConnectionError("the scheduler closed the connection")
                frames = decoder.filled(k)
            else:
                chunk = self.sock.recv(RECV_SIZE)
                if not chunk:
                    raise ConnectionError("the scheduler closed the connection")
                frames = decoder.feed(chunk)
            self._read_at = monotonic()
            frames = self._frames = self._sift(frames, []) if self._withdrawable else frames
            self._next = 0
        frame = frames[self._next]
        self._next += 1
        return frame

    def _poll(self) -> None:
        """Read what has arrived without waiting, queueing its frames behind those not yet handed out."""
        self._read_at = monotonic()
        decoder, sock = self._decoder, self.sock
        new: list[tuple[int, int, bytes | bytearray | memoryview]] = []
        # A TLS socket (``listen=``, resident workers) takes no recv flags: it is made non-blocking meanwhile,
        # and says "nothing more" with SSLWantReadError (an OSError).
        tls = hasattr(sock, "pending")
        flags, timeout = (0, sock.gettimeout()) if tls else (socket.MSG_DONTWAIT, None)
        if tls:
            sock.setblocking(False)
        try:
            while True:
                view = decoder.body_view()
                if view is not None:
                    k = sock.recv_into(view, 0, flags)
                    if not k:
                        break  # EOF: the next blocking read reports it
                    new += decoder.filled(k)
                else:
                    chunk = sock.recv(RECV_SIZE, flags)
                    if not chunk:
                        break
                    new += decoder.feed(chunk)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            if not tls or type(exc).__name__ != "SSLWantReadError":
                raise
        finally:
            if tls:
                sock.settimeout(timeout)
        if new:
            waiting = self._frames[self._next:]
            self._frames = waiting + self._sift(new, waiting)
            self._next = 0

    def _sift(self, new: list[tuple[int, int, bytes | bytearray | memoryview]],
              waiting: list[tuple[int, int, bytes | bytearray | memoryview]],
              ) -> list[tuple[int, int, bytes | bytearray | memoryview]]:
        """Take the WITHDRAW frames out of ``new``, noting the withdrawn jobs that are still waiting here."""
        for kind, _, _ in new:
            if kind == WITHDRAW:
                break
        else:
            return new
        held = {index for kind, index, _ in waiting if kind in _JOB_KINDS}
        kept: list[tuple[int, int, bytes | bytearray | memoryview]] = []
        for frame in new:
            kind, index, _ = frame
            if kind != WITHDRAW:
                kept.append(frame)
                if kind in _JOB_KINDS:
                    held.add(index)
            elif index in held:  # else it has started already: too late, the scheduler kills it if it runs
                self.withdrawn.add(index)
        return kept

    def send_frame(self, kind: int, index: int, body: bytes = b"") -> None:
        header = HEADER.pack(len(body), kind, index)
        if len(body) < 65536:
            self.sock.sendall(header + body)
        else:  # no copy of a large body
            self.sock.sendall(header)
            self.sock.sendall(body)


def parse_address(text: str, what: str) -> tuple[str, int]:
    """Split ``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6).

    Raises:
        ValueError: no port, or a port that is not a number in 0..65535; the message names ``what``.
    """
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what}: {text!r} is not HOST:PORT (for example '10.0.0.5:7000' or '127.0.0.1:0')")
    return host, int(port)


def connect(address: tuple[str, int], secret: bytes, index: int, generation: int,
            timeout: float = HANDSHAKE_TIMEOUT, certificate: str | None = None) -> BlockingConnection:
    """Connect a worker to its scheduler and authenticate both ways (over TLS pinned to ``certificate``)."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if certificate is not None:
            from . import tls as _tls

            sock = _tls.client_context(certificate).wrap_socket(sock)
            _tls.check_pin(sock, certificate)
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
