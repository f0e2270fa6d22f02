"""A minimal TCP forwarding proxy used by the S3 fault tests (run as a subprocess).

``python tests/s3proxy.py --listen PORT --target PORT [--die-after BYTES]``

Every accepted connection is forwarded to ``127.0.0.1:TARGET`` byte for byte. After SIGUSR1
("arm") the proxy counts client-to-server bytes and, once ``--die-after`` of them have been
forwarded, kills itself with SIGKILL — in the middle of whatever upload is in flight, with no
chance to close sockets cleanly. That is ``kill -9`` of the S3 endpoint at a reproducible
point of a write.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import threading

_state = {"armed": False, "count": 0, "limit": 0}
_mu = threading.Lock()


def _pump(src: socket.socket, dst: socket.socket, upstream: bool) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if upstream and _state["armed"]:
                with _mu:
                    _state["count"] += len(data)
                    over = _state["count"] - _state["limit"]
                if over >= 0:
                    dst.sendall(data[: len(data) - over])  # part of the chunk, then die mid-request
                    os.kill(os.getpid(), signal.SIGKILL)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _arm(signum: int, frame: object) -> None:
    with _mu:
        _state["count"] = 0
        _state["armed"] = _state["limit"] > 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--die-after", type=int, default=0)
    args = ap.parse_args()
    _state["limit"] = args.die_after
    signal.signal(signal.SIGUSR1, _arm)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.listen))
    srv.listen(256)
    while True:
        client, _ = srv.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", args.target))
        except OSError:
            client.close()
            continue
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_pump, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client, False), daemon=True).start()


if __name__ == "__main__":
    main()
