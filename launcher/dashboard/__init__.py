"""`tether ui`: a local web dashboard of every job, served on 127.0.0.1 with a one-time token.

    running = start(places, port=0)     # background threads: uvicorn and the host monitor
    print(running.url)                  # http://127.0.0.1:PORT/?token=...
    running.stop()

docs/dashboard.md says how it works and what it guarantees.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Optional

from launcher.errors import TetherError, UsageError
from launcher.settings import Places


@dataclass
class Running:
    url: str
    port: int
    token: str
    server: object
    thread: threading.Thread
    monitor: object
    sock: socket.socket

    def stop(self) -> None:
        self.server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join(10)
        self.monitor.close()  # type: ignore[attr-defined]
        self.sock.close()


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))  # never another interface: the token is the only other lock
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror})", "pick another --port") from None
    sock.listen(64)
    return sock


def start(places: Places, port: int = 0, token: Optional[str] = None, every_s: float = 2.0) -> Running:
    try:
        import uvicorn

        from launcher.dashboard.auth import Gate
        from launcher.dashboard.data import Monitor
        from launcher.dashboard.server import build_app
    except ImportError as exc:
        raise UsageError(f"the dashboard needs {exc.name}", "pip install 'tether[ui]'") from None
    sock = _listen(port)
    port = sock.getsockname()[1]
    token = token or secrets.token_urlsafe(24)
    monitor = Monitor(places, every_s=every_s)
    app = build_app(monitor, Gate(token, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    monitor.start()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tether-ui-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            monitor.close()
            sock.close()
            raise TetherError("the dashboard's web server did not start", "run tether --debug ui")
        time.sleep(0.02)
    return Running(f"http://127.0.0.1:{port}/?token={token}", port, token, server, thread, monitor, sock)
