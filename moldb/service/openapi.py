"""Write (or check) the frozen OpenAPI document ``docs/openapi.json``.

``python -m moldb.service.openapi`` rewrites it from the app; ``--check`` exits 1 when it is
out of date (the test suite runs the check). The live spec is served at ``/openapi.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from moldb.service.app import create_app
from moldb.service.settings import Settings

__all__ = ["FROZEN", "render", "spec"]

#: The frozen copy, beside the wire contract (docs/service.md).
FROZEN = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def spec() -> dict[str, Any]:
    """The OpenAPI document of the service (independent of the store and limits served)."""
    return create_app(Settings(store="")).openapi()


def render() -> str:
    """:func:`spec` as the exact text of the frozen file."""
    return json.dumps(spec(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``docs/openapi.json``; with ``--check``, report whether it is current instead."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        current = FROZEN.exists() and FROZEN.read_text() == text
        print(f"{FROZEN}: {'current' if current else 'out of date; run python -m moldb.service.openapi'}")
        return 0 if current else 1
    FROZEN.write_text(text)
    print(f"wrote {FROZEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
