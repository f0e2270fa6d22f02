"""Helpers of the service tests: stores with tokens, real servers on loopback, problem checks.

Used by tests/test_client.py and tests/test_contract_remote.py (``Service``, ``make_store``,
``make_token``, ``free_port``) and by tests/test_service_*.py (``make_lab``, ``problem``, ...).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

import moldb
from moldb.api.access import Access

PROBLEM = "application/problem+json"
ARROW = "application/vnd.apache.arrow.stream"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def moldb_cli() -> list[str]:
    """The ``moldb`` command of this interpreter."""
    return [sys.executable, "-c", "from moldb.cli.main import main; main()"]


def make_store(path: Path) -> str:
    """Create an empty store at ``path``; returns its URI."""
    moldb.create(path).close()
    return str(path)


def make_token(store: str, name: str, lab: str, role: str, cli: bool = False,
               expires_days: float | None = None) -> str:
    """A token for ``name`` (through ``moldb user add`` when ``cli``, else through moldb.api.access)."""
    if not cli:
        return Access(store).add_user(name, lab, role, expires_days)[0]
    args = [*moldb_cli(), "user", "add", name, "--lab", lab, "--role", role, "--store", store]
    if expires_days is not None:
        args += ["--expires-days", str(expires_days)]
    res = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    return res.stdout.strip().splitlines()[-1]


class Service:
    """A ``moldb serve`` subprocess on a free loopback port (its own process group).

    Parameters
    ----------
    store : str
        Store URI.
    log : Path
        File receiving the server's output.
    args : list of str, optional
        Extra ``moldb serve`` flags (limits ...).
    """

    def __init__(self, store: str, log: Path, args: list[str] | None = None, port: int | None = None) -> None:
        self.store = store
        self.log = Path(log)
        self.args = list(args or [])
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Service:
        """Start the server (again, on the same port) and wait until ``/healthz`` answers."""
        self._log = self.log.open("ab")
        cmd = [*moldb_cli(), "serve", "--store", self.store, "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moldb serve exited with {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moldb serve on port {self.port} did not start in {timeout} s")

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """``kill -9`` the server (no shutdown at all)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM)."""
        self._signal(signal.SIGTERM)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Lab:
    """A store, its tokens by name and the server URL."""

    uri: str
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, str] = field(default_factory=dict)
    url: str = ""

    def client(self, who: str | None, **kw: Any) -> httpx.Client:
        """An httpx client authenticated as ``who`` (a token name, a raw token, or None for no token)."""
        headers = {}
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)


#: name → (user, lab, role)
USERS = {
    "ana": ("ana", "fraser", "depositor"),
    "ben": ("ben", "fraser", "reader"),
    "fadmin": ("fay", "fraser", "admin"),
    "olga": ("olga", "other", "depositor"),
    "root": ("root", "*", "admin"),
}


def make_lab(path: Path) -> Lab:
    """A fresh store with the tokens of :data:`USERS` (plus an expired one)."""
    uri = str(path / "store")
    moldb.create(uri).close()
    lab = Lab(uri)
    acc = Access(uri)
    for key, (user, ns, role) in USERS.items():
        tok, info = acc.add_user(user, ns, role)
        lab.tokens[key], lab.token_ids[key] = tok, info.id
    tok, info = acc.add_user("eve", "fraser", "depositor", expires_days=1e-9)  # expires within 0.1 ms
    lab.tokens["expired"], lab.token_ids["expired"] = tok, info.id
    return lab


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert ``r`` is a problem+json response with ``status`` and ``code``; returns the body."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body = r.json()
    assert body["code"] == code and body["status"] == status, body
    assert body["type"] == f"https://moldb.dev/problems/{code}"
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def start_process(args: list[str], port: int, timeout: float = 60.0) -> subprocess.Popen[bytes]:
    """Start a server process (its own process group) and wait until ``/healthz`` on ``port`` answers."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {args} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_process(proc, signal.SIGKILL)
    raise RuntimeError(f"server on port {port} did not start in {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the process group of ``proc`` (started by :func:`start_process`) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    proc.wait(timeout=15)
