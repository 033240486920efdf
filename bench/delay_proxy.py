"""A TCP proxy for the benchmarks: forwards a local port to a target, holding each chunk for
`delay_s` in each direction (a round trip of 2 x delay_s, as a far-away host has), and counts
the bytes each way. `tc netem` does not work on these machines; this does the same job."""

from __future__ import annotations

import queue
import socket
import threading
import time


class DelayProxy:
    def __init__(self, target_port: int, delay_s: float = 0.0, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.delay_s = delay_s
        self.sent_up = 0      # laptop -> host bytes
        self.sent_down = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._open: list = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset_counts(self) -> None:
        with self._lock:
            self.sent_up = self.sent_down = 0

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._open += [client, server]
            self._pipe(client, server, up=True)
            self._pipe(server, client, up=False)

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        held: "queue.Queue" = queue.Queue()

        def read() -> None:
            while True:
                try:
                    data = src.recv(1 << 18)
                except OSError:
                    data = b""
                held.put((time.monotonic() + self.delay_s, data))
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = held.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                with self._lock:
                    if up:
                        self.sent_up += len(data)
                    else:
                        self.sent_down += len(data)
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for s in self._open:
            try:
                s.close()
            except OSError:
                pass
