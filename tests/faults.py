"""Fault injection for tests and the soak run: a loopback TCP proxy you can take down.

Point a database URL at :class:`TcpProxy` instead of the server, then:

* :meth:`TcpProxy.down` — "the server is down": live connections are reset and new ones
  refused (the port stays reserved, so :meth:`up` gets the same address back);
* :meth:`TcpProxy.hang` — "the server stopped answering": connections are accepted but
  nothing is forwarded either way, so the client sees silence, not an error;
* :meth:`TcpProxy.up` — back to normal; the next connection goes through.

It only ever listens on loopback and forwards to the one target it was given. Nothing in
the running bot imports this module.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator

UP, DOWN, HANG = "up", "down", "hang"


class TcpProxy:
    """A TCP forwarder from ``127.0.0.1:port`` to ``target``, with an on/off switch."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the fault proxy listens on loopback only")
        self.target = (target_host, target_port)
        self.host = host
        self.port = port
        self.mode = UP
        self.connections = 0  # accepted so far, for tests
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._accept_thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def close(self) -> None:
        self._closed = True
        self._stop_listening()
        self._reset_all()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # ---- the switch ------------------------------------------------------------------------

    def down(self) -> None:
        """Refuse new connections and reset the live ones."""
        with self._lock:
            self.mode = DOWN
        self._stop_listening()
        self._reset_all()

    def hang(self) -> None:
        """Accept connections but forward nothing (live ones freeze too)."""
        with self._lock:
            self.mode = HANG
        if self._listener is None:
            self._listen()

    def up(self) -> None:
        """Forward again; connections frozen by :meth:`hang` are reset (the server "restarted")."""
        if self.mode == HANG:
            self._reset_all()
        with self._lock:
            self.mode = UP
        if self._listener is None:
            self._listen()

    @contextlib.contextmanager
    def outage(self, mode: str = DOWN) -> Iterator[None]:
        """``with proxy.outage(): …`` — down (or hung) inside the block, up after it."""
        self.hang() if mode == HANG else self.down()
        try:
            yield
        finally:
            self.up()

    # ---- internals -------------------------------------------------------------------------

    def _listen(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:
            try:
                sock.bind((self.host, self.port))
                break
            except OSError:
                if not self.port or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # the old listener is still closing
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._accept_thread = threading.Thread(target=self._accept, args=(sock,), name="fault-proxy", daemon=True)
        self._accept_thread.start()

    def _stop_listening(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=2)
            self._accept_thread = None

    def _reset_all(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: close with RST, as a crashed server's kernel would
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self.mode
                self.connections += 1
                self._conns.add(client)
            if mode == DOWN:
                self._drop(client)
                continue
            if mode == HANG:
                continue  # held open, never answered
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                self._drop(client)
                continue
            with self._lock:
                self._conns.add(server)
            threading.Thread(target=self._pump, args=(client, server), name="fault-proxy-pump", daemon=True).start()

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        """Copy both ways until either side closes; while hung, copy nothing."""
        pair = {a: b, b: a}
        try:
            while True:
                if self.mode == HANG:
                    time.sleep(0.05)
                    if a.fileno() < 0 or b.fileno() < 0:
                        return
                    continue
                readable, _, _ = select.select(list(pair), [], [], 0.2)
                for src in readable:
                    if self.mode != UP:
                        break
                    data = src.recv(65536)
                    if not data:
                        return
                    pair[src].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                self._drop(s)


__all__ = ["TcpProxy", "UP", "DOWN", "HANG"]
