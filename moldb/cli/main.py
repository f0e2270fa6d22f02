"""The ``moldb`` command line (typer + rich). Talks only to :mod:`moldb.api`.

Exit codes: 0 success, 1 some inputs failed (others were committed), 2 usage or
store error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import moldb
from moldb.errors import MoldbError

app = typer.Typer(help="moldb: a versioned array database for macromolecular structures.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)

StoreOpt = Annotated[str, typer.Option("--store", "-s", help="Store URI (path or s3://...)",
                                       envvar="MOLDB_STORE")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output")]


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code)


def _open(uri: str) -> moldb.Store:
    try:
        return moldb.open(uri)
    except MoldbError as exc:
        raise _fail(exc) from exc


@app.command()
def init(uri: Annotated[str, typer.Argument(help="Where to create the store")]) -> None:
    """Create an empty store."""
    try:
        moldb.create(uri)
    except MoldbError as exc:
        raise _fail(exc) from exc
    out.print(f"created moldb store at [bold]{uri}[/]")


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="mmCIF / PDB / BinaryCIF / MMTF files (.gz ok)")],
    store: StoreOpt,
    entry: Annotated[str | None, typer.Option(help="Entry id (single file only)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Ingest structure files; each becomes version 1 of a new entry."""
    st = _open(store)
    if entry and len(files) > 1:
        raise _fail(ValueError("--entry can only be used with a single file"))
    done: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=json_out or not err.is_terminal) as bar:
        task = bar.add_task("ingesting", total=len(files))
        for f in files:
            bar.update(task, description=f"ingesting {f.name}")
            try:
                v = st.ingest(f, entry=entry)
                done.append(v.as_dict())
            except (MoldbError, OSError) as exc:
                failed.append({"file": str(f), "error": str(exc)})
            bar.advance(task)
    if json_out:
        out.print_json(json.dumps({"ingested": done, "failed": failed}))
    else:
        for d in done:
            out.print(f"[green]✓[/] {d['entry']} v{d['version']}  {d['n_atoms']} atoms, {d['n_models']} model(s)")
        for fl in failed:
            err.print(f"[red]✗[/] {fl['error']}")
        out.print(f"{len(done)} ingested, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@app.command("ls")
def ls_(store: StoreOpt, json_out: JsonOpt = False) -> None:
    """List entries: id, title, method, resolution, models, atoms."""
    tab = _open(store).entries()
    rows = tab.to_pylist()
    if json_out:
        out.print_json(json.dumps(rows))
        return
    t = Table("entry", "ver", "title", "method", "res (Å)", "models", "atoms")
    for r in rows:
        res = f"{r['resolution']:.2f}" if r["resolution"] is not None else "-"
        title = r["title"] if len(r["title"]) <= 60 else r["title"][:57] + "..."
        t.add_row(r["entry"], str(r["version"]), title, r["method"], res, str(r["n_models"]), str(r["n_atoms"]))
    out.print(t)
    out.print(f"{len(rows)} entries")


@app.command()
def show(entry: str, store: StoreOpt, version: Annotated[str | None, typer.Option()] = None,
         json_out: JsonOpt = False) -> None:
    """Chains, entities, ligands, altlocs, TLS groups and models of one entry."""
    st = _open(store)
    try:
        s = st.get(entry, version=version)
    except MoldbError as exc:
        raise _fail(exc) from exc
    info = {**s.version.as_dict(), "categories": s.category_names}
    if json_out:
        out.print_json(json.dumps(info))
        return
    sm = s.summary
    t = Table(show_header=False, box=None)
    t.add_row("entry", f"[bold]{s.entry}[/] v{s.version.version} ({s.version.datetime:%Y-%m-%d %H:%M:%S} UTC)")
    for key, label in [("title", "title"), ("method", "method"), ("resolution", "resolution (Å)")]:
        t.add_row(label, str(sm.get(key) if sm.get(key) is not None else "-"))
    t.add_row("models", str(sm["n_models"]))
    t.add_row("atoms", str(sm["n_atoms"]))
    t.add_row("chains", f"{len(sm['chains'])} label: {' '.join(sm['chains'])}; auth: {' '.join(sm['auth_chains'])}")
    t.add_row("entities", str(sm["entities"]))
    t.add_row("ligands", " ".join(sm["ligands"]) or "-")
    t.add_row("altlocs", " ".join(sm["altlocs"]) or "-")
    t.add_row("TLS groups", str(sm["tls_groups"]))
    t.add_row("aniso ADPs", "yes" if sm["has_aniso"] else "no")
    t.add_row("categories", str(len(s.category_names)))
    out.print(t)


@app.command()
def export(
    entry: str, store: StoreOpt,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output file")],
    format: Annotated[str | None, typer.Option(help="cif | bcif | pdb (default: from suffix)")] = None,
    version: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Write one entry as mmCIF, BinaryCIF or PDB."""
    fmt = {"cif": "mmcif", "mmcif": "mmcif", "bcif": "bcif", "pdb": "pdb", None: None}.get(format, format)
    try:
        path = _open(store).export(entry, output, format=fmt, version=version)
    except (MoldbError, OSError) as exc:
        raise _fail(exc) from exc
    out.print(f"wrote {path}")


@app.command()
def log(entry: str, store: StoreOpt, json_out: JsonOpt = False) -> None:
    """Version history of one entry."""
    try:
        hist = _open(store).history(entry)
    except MoldbError as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(json.dumps([h.as_dict() for h in hist]))
        return
    t = Table("ver", "time (UTC)", "author", "message", "atoms", "hash")
    for h in hist:
        t.add_row(str(h.version), f"{h.datetime:%Y-%m-%d %H:%M:%S.%f}"[:-3], h.author, h.message,
                  str(h.n_atoms), h.content_hash[:12])
    out.print(t)


@app.command()
def migrate(uri: Annotated[str, typer.Argument(help="Store to upgrade")]) -> None:
    """Upgrade a store written by an older moldb to this moldb's schema (explicit, logged)."""
    from moldb.api.admin import migrate_store

    try:
        applied = migrate_store(uri)
    except MoldbError as exc:
        raise _fail(exc) from exc
    out.print(f"applied {len(applied)} migration step(s): {', '.join(applied) or 'store already current'}")


@app.command()
def demo(uri: Annotated[str, typer.Argument()] = "./lab-store") -> None:
    """Create a store (if needed), ingest the bundled demo entries and print a summary."""
    from moldb.cli.demo import run_demo

    run_demo(uri, out)


def main() -> None:
    """Entry point of the ``moldb`` script."""
    try:
        app()
    except MoldbError as exc:  # anything not handled per command
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
