"""The scheduler's end of the wire: the listener, the handshake acceptor, and worker connections.

The protocol itself is written out at the top of ``_local/wire.py``. Here, on the loop's thread:

* ``Listener`` listens on 127.0.0.1 (or where ``listen=`` says, then behind TLS: ``_local.tls``) and runs the
  handshake of each new connection, reading only the fixed-size raw bytes of the handshake (never unpickling
  anything) until the HMAC checks out; the TLS handshake, when there is one, runs first, without blocking;
* ``Connection`` is an authenticated worker's socket: frames in through the shared ``FrameDecoder``, frames out
  through a queue of buffers sent with ``sendmsg`` (a 100 MB payload is never joined or copied here), or, over
  TLS (which has no ``sendmsg``), in slices of at most ``TLS_SLICE`` bytes.
"""

from __future__ import annotations

import collections
import select
import selectors
import socket
import ssl
from collections.abc import Callable
from typing import Any

from ..errors import ProtocolError
from . import wire as _wire

Body = bytes | bytearray | memoryview
Frames = list[tuple[int, int, Body]]

IOV_MAX = 512  # buffers per sendmsg (Linux allows 1024)
SMALL_SEND = 1 << 16  # up to this many bytes, frames are joined and sent with send(): cheaper per call
# One TLS write: a retry after SSLWantWriteError must pass the same bytes again, and a slice of the head
# buffer of fixed size is the same until it is sent.
TLS_SLICE = 1 << 18
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class _Pending:
    """A connection that has not authenticated yet: only raw bytes, never unpickled."""

    __slots__ = ("sock", "nonce", "deadline", "buf", "tls_done")

    def __init__(self, sock: socket.socket, nonce: bytes, deadline: float) -> None:
        self.sock = sock
        self.nonce = nonce
        self.deadline = deadline
        self.buf = bytearray()
        self.tls_done = not isinstance(sock, ssl.SSLSocket)


class Listener:
    """Accept connections on 127.0.0.1 (or ``host:port``) and authenticate them (``_local.wire``, steps 1b-5).

    Args:
        selector: the loop's selector.
        secret: this scheduler's secret.
        on_hello: ``on_hello(index, generation)`` for a connection that proved the secret: returns
            ``(accept, log)``: ``accept(sock)`` takes the connection once the scheduler has proved itself (None:
            that worker is not expected, and ``log`` says whether to report it).
        log: where refusals are reported.
        now: the loop's clock.
        host, port: where to listen (the default: 127.0.0.1, an ephemeral port).
        tls: wrap every connection in TLS with this server context before the HMAC handshake.
    """

    def __init__(self, selector: selectors.BaseSelector, secret: bytes,
                 on_hello: Callable[[int, int], tuple[Callable[[socket.socket], None] | None, bool]],
                 log: Callable[[str], None], now: Callable[[], float], host: str = _wire.HOST, port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self._selector = selector
        self._secret = secret
        self._on_hello = on_hello
        self._log = log
        self._now = now
        self._tls = tls
        self._pending: dict[socket.socket, _Pending] = {}
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        if port:  # a fixed port must be usable again at once after a previous run
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
        self._sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]
        selector.register(sock, selectors.EVENT_READ, self._on_accept)

    def _on_accept(self, mask: int) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except OSError:  # BlockingIOError: none left
                return
            sock.setblocking(False)
            nonce = _wire.new_nonce()
            if self._tls is not None:
                try:
                    sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except OSError:
                    sock.close()
                    continue
            else:
                try:
                    sock.send(nonce)
                except OSError:
                    sock.close()
                    continue
            pending = _Pending(sock, nonce, self._now() + _wire.HANDSHAKE_TIMEOUT)
            self._pending[sock] = pending
            self._selector.register(sock, selectors.EVENT_READ, lambda mask, p=pending: self._on_handshake(p))
            if not pending.tls_done:
                self._on_handshake(pending)  # start the TLS handshake (it waits for the client's hello)

    def _tls_handshake(self, p: _Pending) -> bool:
        """Advance the TLS handshake; True once it is done (and the challenge sent)."""
        sock = p.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(sock, selectors.EVENT_READ, lambda mask, p=p: self._on_handshake(p))
            return False
        except ssl.SSLWantWriteError:
            self._selector.modify(sock, selectors.EVENT_WRITE, lambda mask, p=p: self._on_handshake(p))
            return False
        except (OSError, ValueError) as exc:  # not TLS (plain TCP), another protocol, or a reset
            self._reject(p, f"TLS handshake failed ({type(exc).__name__}: {exc})", log=bool(str(exc)))
            return False
        p.tls_done = True
        self._selector.modify(sock, selectors.EVENT_READ, lambda mask, p=p: self._on_handshake(p))
        try:
            sock.send(p.nonce)  # 32 bytes into an empty buffer
        except OSError:
            self._reject(p, "closed during the handshake", log=False)
            return False
        return True

    def _on_handshake(self, p: _Pending) -> None:
        if not p.tls_done and not self._tls_handshake(p):
            return
        try:
            chunk = p.sock.recv(_wire.HELLO_BYTES - len(p.buf))
        except _WOULD_BLOCK:
            return
        except OSError:
            chunk = b""
        if not chunk:
            # Silent when nothing was said: a worker killed while connecting (closed right after start).
            self._reject(p, "closed during the handshake", log=bool(p.buf))
            return
        p.buf += chunk
        if len(p.buf) < _wire.HELLO_BYTES:
            return
        checked = _wire.check_hello(self._secret, p.nonce, bytes(p.buf))
        if checked is None:
            self._reject(p, "failed authentication")
            return
        index, generation, nonce_w = checked
        accept, log = self._on_hello(index, generation)
        if accept is None:
            self._reject(p, f"authenticated as worker {index}:{generation}, which is not expected", log=log)
            return
        del self._pending[p.sock]
        self._selector.unregister(p.sock)
        try:
            p.sock.sendall(_wire.scheduler_mac(self._secret, nonce_w))  # 32 bytes into an empty buffer
        except OSError:
            pass  # it went away: its connection reports the end
        accept(p.sock)

    def _reject(self, p: _Pending, why: str, log: bool = True) -> None:
        self._pending.pop(p.sock, None)
        try:
            self._selector.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        p.sock.close()
        if log:
            self._log(f"jobsched: refused a connection to the scheduler: {why}")

    def expire(self, now: float) -> float:
        """Drop connections whose handshake is overdue; return when the next one is due (inf: none)."""
        next_at = float("inf")
        for p in list(self._pending.values()):
            if now >= p.deadline:
                self._reject(p, f"no valid handshake within {_wire.HANDSHAKE_TIMEOUT:g} s")
            else:
                next_at = min(next_at, p.deadline)
        return next_at

    def close(self) -> None:
        for sock in list(self._pending):
            sock.close()
        self._pending.clear()
        try:
            self._selector.unregister(self._sock)
        except (KeyError, ValueError):
            pass
        self._sock.close()


class Connection:
    """An authenticated worker connection on the loop's selector.

    Args:
        on_frames: ``on_frames(frames)`` with the complete frames of each read, in order.
        on_lost: ``on_lost(error)`` once, when the connection ends (None) or breaks the protocol (a message).
    """

    __slots__ = ("_sock", "_selector", "_decoder", "_out", "_writing", "_on_frames", "_on_lost", "closed", "_tls")

    def __init__(self, sock: socket.socket, selector: selectors.BaseSelector, on_frames: Callable[[Frames], Any],
                 on_lost: Callable[[str | None], Any], accept: frozenset[int] = _wire.SCHEDULER_ACCEPTS) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._selector = selector
        self._decoder = _wire.FrameDecoder(accept)
        self._out: collections.deque[memoryview] = collections.deque()  # unsent buffers, oldest first
        self._writing = False
        self._on_frames = on_frames
        self._on_lost = on_lost
        self.closed = False
        selector.register(sock, selectors.EVENT_READ, self._on_event)

    def send(self, buffers: list[Body]) -> None:
        """Send ``buffers`` in order, now as far as the socket takes them, the rest when it is writable."""
        if self.closed:
            return
        if self._out:
            self._out.extend(memoryview(b) for b in buffers)
            return
        if self._tls:
            self._send_tls(buffers)
            return
        total = 0
        for b in buffers:
            total += len(b)
        try:
            if total <= SMALL_SEND:  # one plain send() of a small join is cheaper than a scatter-gather send
                data = buffers[0] if len(buffers) == 1 else b"".join(buffers)
                sent = self._sock.send(data)
                buffers = [data]
            else:  # large: no join, no copy of the payload
                sent = self._sock.sendmsg(buffers) if len(buffers) <= IOV_MAX else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # broken: the read side reports the end
        total = 0
        for b in buffers:
            n = len(b)
            if sent >= total + n:
                total += n
                continue
            view = memoryview(b)
            self._out.append(view[max(0, sent - total):])
            total += n
        if self._out and not self._writing:
            self._writing = True
            self._selector.modify(self._sock, selectors.EVENT_READ | selectors.EVENT_WRITE, self._on_event)

    def _send_tls(self, buffers: list[Body]) -> None:
        """TLS has no ``sendmsg``: small frames go joined (one TLS record), large ones slice by slice."""
        total = 0
        for b in buffers:
            total += len(b)
        if total <= SMALL_SEND and len(buffers) > 1:
            buffers = [b"".join(buffers)]
        self._out.extend(memoryview(b) for b in buffers)
        self._flush()
        if self._out and not self._writing and not self.closed:
            self._writing = True
            self._selector.modify(self._sock, selectors.EVENT_READ | selectors.EVENT_WRITE, self._on_event)

    def _flush_tls(self) -> bool:
        """Send what TLS takes now; True once everything is sent (or the connection broke)."""
        out = self._out
        while out:
            head = out[0]
            try:
                sent = self._sock.send(head[:TLS_SLICE])
            except _WOULD_BLOCK:
                return False
            except OSError:
                out.clear()
                return True
            if sent >= len(head):
                out.popleft()
            else:
                out[0] = head[sent:]
        return True

    def _flush(self) -> None:
        out = self._out
        if self._tls:
            if not self._flush_tls():
                return
            if self._writing:
                self._writing = False
                if not self.closed:
                    self._selector.modify(self._sock, selectors.EVENT_READ, self._on_event)
            return
        while out:
            batch = [out[i] for i in range(min(len(out), IOV_MAX))]
            try:
                sent = self._sock.sendmsg(batch)
            except BlockingIOError:
                return
            except OSError:
                out.clear()
                break
            while sent and out:
                head = out[0]
                if sent >= len(head):
                    sent -= len(head)
                    out.popleft()
                else:
                    out[0] = head[sent:]
                    sent = 0
            if out:
                return  # the socket is full: wait for the next writable event
        self._writing = False
        if not self.closed:
            self._selector.modify(self._sock, selectors.EVENT_READ, self._on_event)

    def _on_event(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush()
        if mask & selectors.EVENT_READ and not self.closed:
            # TLS may hold decrypted bytes that the socket no longer signals: read until they are taken.
            while self.read() and self._tls and not self.closed and self._sock.pending():  # type: ignore[attr-defined]
                pass

    def read(self) -> bool:
        """Read what the socket has and hand over the complete frames; False once the connection is over."""
        decoder = self._decoder
        try:
            view = decoder.body_view()
            if view is not None:
                n = self._sock.recv_into(view, min(len(view), 1 << 24))
                frames = decoder.filled(n) if n else None
            else:
                chunk = self._sock.recv(_wire.RECV_SIZE)
                frames = decoder.feed(chunk) if chunk else None
        except _WOULD_BLOCK:
            return True
        except ProtocolError as exc:
            self._lost(str(exc))
            return False
        except (OSError, ValueError):  # reset by the peer, or closed under us
            frames = None
        if frames is None:
            self._lost(None)
            return False
        if frames:
            self._on_frames(frames)
        return True

    def drain(self) -> None:
        """Read everything the peer sent before it exited (its last result may still be in the socket)."""
        if self.closed:
            return
        self._sock.setblocking(False)
        while not self.closed and self.read():
            if self._tls:
                # Go on while TLS holds decrypted bytes, or the socket has a record (or its end) to read.
                if not self._sock.pending() and not select.select([self._sock], [], [], 0)[0]:  # type: ignore[attr-defined]
                    break
                continue
            try:
                if not self._sock.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                break
            except OSError:
                break

    def _lost(self, error: str | None) -> None:
        if not self.closed:
            self.close()
            self._on_lost(error)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._out.clear()
        try:
            self._selector.unregister(self._sock)
        except (KeyError, ValueError):
            pass
        self._sock.close()
