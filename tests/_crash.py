"""Test helper: a child process that dies (SIGKILL) after writing its blocks, before its commit point."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def crash_before_commit(uri: Path, path: Path, call: str = "deposit", entry: str | None = "CRASHED",
                        env: dict[str, str] | None = None) -> None:
    """Run ``moldb.open(uri).<call>(path[, entry=...])`` in a child that SIGKILLs itself just before
    writing its ``versions`` cell; assert that it died that way."""
    kw = f", entry={entry!r}" if entry is not None else ""
    script = textwrap.dedent(f"""
        import os, signal, moldb
        from moldb.storage.backend import Backend
        orig = Backend.write_cells
        def write_cells(self, name, *a, **k):
            if name == "versions":
                os.kill(os.getpid(), signal.SIGKILL)
            return orig(self, name, *a, **k)
        Backend.write_cells = write_cells
        moldb.open({str(uri)!r}).{call}({str(path)!r}{kw})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == -9, proc.stderr.decode()
