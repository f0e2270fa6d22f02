"""Run the service in a background thread on a free loopback port (tests, notebooks, benchmarks).

::

    with serve_in_thread(Settings(store="./lab-store")) as url:
        store = moldb.connect(url, token=...)
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from moldb.errors import ServiceUnavailableError
from moldb.service.app import create_app
from moldb.service.settings import Settings

__all__ = ["serve_in_thread"]


@contextlib.contextmanager
def serve_in_thread(settings: Settings, host: str = "127.0.0.1", port: int = 0,
                    startup_timeout_s: float = 30.0) -> Iterator[str]:
    """A real uvicorn server for ``settings`` in a daemon thread; yields its base URL.

    Parameters
    ----------
    settings : Settings
    host : str
        Interface to bind (loopback by default).
    port : int
        Port; 0 picks a free one (the socket is bound before the server starts, so no race).
    startup_timeout_s : float
        Seconds to wait for the server to accept requests.

    Raises
    ------
    ServiceUnavailableError
        The server did not start in time.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="moldb-service")
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise ServiceUnavailableError(f"the moldb service did not start within {startup_timeout_s:g} s; "
                                          "see the log above")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
