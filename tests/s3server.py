"""A real S3-compatible server on loopback for tests: ``moto_server`` (PyPI ``moto[server]``) as a subprocess.

Tests start and stop it themselves (module-scoped fixtures); nothing outside this machine is
contacted. :class:`S3Proxy` puts a TCP forwarding proxy (``tests/s3proxy.py``, another
subprocess) in front of it for fault tests: killing the proxy cuts TileDB's connections exactly
as a crashed S3 endpoint would, while moto (which keeps its objects in memory) survives, so the
store can be checked after the "server" comes back on the same port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ACCESS_KEY = "moldb-test-key"
SECRET_KEY = "moldb-test-secret"  # moto accepts any keys; these only exercise the configuration path
REGION = "us-east-1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    """Wait until something accepts TCP connections on ``127.0.0.1:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def s3_config(port: int, **extra: str) -> dict[str, str]:
    """moldb/TileDB settings for an S3-compatible endpoint on ``127.0.0.1:port``."""
    return {
        "vfs.s3.endpoint_override": f"127.0.0.1:{port}",
        "vfs.s3.scheme": "http",
        "vfs.s3.use_virtual_addressing": "false",
        "vfs.s3.region": REGION,
        "vfs.s3.aws_access_key_id": ACCESS_KEY,
        "vfs.s3.aws_secret_access_key": SECRET_KEY,
        **extra,
    }


class MotoServer:
    """``moto_server`` on a free loopback port.

    Parameters
    ----------
    port : int, optional
        Port to listen on (a free one by default).
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        """Start the server and wait until it answers HTTP."""
        exe = [sys.executable, "-c", "from moto.server import main; main()"]
        self.proc = subprocess.Popen([*exe, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, self.proc)
        self._client = None
        return self

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the server (its in-memory objects are lost)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
            self.proc = None

    def client(self) -> Any:
        """A boto3 client for the server."""
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        return self._client

    def bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        name = name or f"moldb-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def config(self, **extra: str) -> dict[str, str]:
        """moldb settings pointing at this server."""
        return s3_config(self.port, **extra)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class S3Proxy:
    """A TCP forwarding proxy subprocess (``tests/s3proxy.py``) from ``port`` to ``target_port``.

    Parameters
    ----------
    target_port : int
        Where the real server listens.
    port : int, optional
        Port the proxy listens on (a free one by default; kept across :meth:`restart`).
    die_after : int
        Once armed (:meth:`arm`), the proxy SIGKILLs itself after forwarding this many
        client-to-server bytes, i.e. in the middle of an upload.
    """

    def __init__(self, target_port: int, port: int | None = None, die_after: int = 0) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.die_after = die_after
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Proxy:
        """Start (or restart) the proxy on its port and wait until it accepts connections."""
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "s3proxy.py"), "--listen", str(self.port),
             "--target", str(self.target_port), "--die-after", str(self.die_after)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, self.proc)
        return self

    def arm(self) -> None:
        """Start counting uploaded bytes; the proxy kills itself with SIGKILL after ``die_after`` of them."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9`` the proxy now."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(5)

    def stop(self) -> None:
        self.kill()
        self.proc = None
