"""``moldb frames``: write chosen frames and atoms of a stored trajectory (H5MD, multi-model PDB / mmCIF, XYZ).

Registered on the main app by :func:`register` (``moldb.cli.main``), which passes in the app's
store opener and error helper so ``--config`` settings and exit codes stay the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

from moldb.errors import MoldbError

__all__ = ["register"]

StoreOpt = Annotated[str, typer.Option("--store", "-s", help="Store URI (path or s3://...)", envvar="MOLDB_STORE")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output")]


def register(
    app: typer.Typer,
    open_store: Callable[[str], Any],
    fail: Callable[[Exception], typer.Exit],
    out: Console,
    err: Console,
) -> None:
    """Add the ``frames`` command to ``app``."""

    @app.command("frames")
    def frames(
        entry: Annotated[str, typer.Argument(help="Entry with a trajectory")],
        store: StoreOpt,
        output: Annotated[
            Path,
            typer.Option(
                "-o", "--output", help="Output: .h5md, .pdb, .cif, .bcif (.gz ok) or .xyz; one model per frame"
            ),
        ],
        frames: Annotated[
            str | None,
            typer.Option("--frames", help="Frames: START:STOP[:STEP] (0:250:10), one index (137) or a list (0,5,9)"),
        ] = None,
        where: Annotated[
            str | None,
            typer.Option(
                "--where",
                help="Keep frames where labels / observables / time / step / frame hold, e.g. 'cluster == 3', "
                "'energy < 1.5 and time >= 10'",
            ),
        ] = None,
        select: Annotated[
            str | None,
            typer.Option("--select", help='Atoms, in the selection language, e.g. "name CA" (docs/query.md)'),
        ] = None,
        version: Annotated[str | None, typer.Option(help="Version number or tag (default: latest)")] = None,
        format: Annotated[str | None, typer.Option(help="h5md | pdb | cif | bcif | xyz (default: from suffix)")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Write frames of an entry's trajectory: H5MD (with observables and bonds), multi-model PDB/mmCIF, XYZ."""
        from moldb.api.trajectory_export import parse_frames, write_frames

        st = open_store(store)
        ver: int | str | None = int(version) if version is not None and version.isdigit() else version
        try:
            chosen: Any = None if frames is None else parse_frames(frames)
            if where is not None:
                t = st.trajectory(entry, version=ver)
                hits = st.frames_where(where, entry=t.entry, version=ver)
                chosen = hits if chosen is None else np.intersect1d(t.frame_indices(chosen), hits)
            info = write_frames(st, entry, output, frames=chosen, select=select, version=ver, format=format)
        except (MoldbError, OSError) as exc:
            raise fail(exc) from exc
        if json_out:
            out.print_json(json.dumps(info))
            return
        out.print(
            f"wrote {info['n_frames']} frame(s) x {info['n_atoms']} atoms of {info['entry']} v{info['version']} "
            f"to {info['output']} ({info['format']})"
        )
