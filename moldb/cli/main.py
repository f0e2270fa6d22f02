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
from moldb.cli.frames import register as _register_frames
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


#: Store settings from ``moldb --config key=value`` (TileDB ``vfs.s3.*`` keys and moldb's ``moldb.*``).
_CONFIG: dict[str, str] = {}


@app.callback()
def _settings(
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", metavar="KEY=VALUE",
        help="Store setting, repeatable: e.g. vfs.s3.endpoint_override=http://127.0.0.1:9000 "
             "(see docs/storage-s3.md; environment variables MOLDB_S3_* / AWS_* work too)")] = None,
) -> None:
    """moldb: a versioned array database for macromolecular structures."""
    _CONFIG.clear()
    for item in config or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _fail(ValueError(f"--config {item!r}: use KEY=VALUE, e.g. vfs.s3.region=us-east-1"))
        _CONFIG[key.strip()] = value.strip()


def _open(uri: str) -> moldb.Store:
    try:
        return moldb.open(uri, config=_CONFIG or None)
    except MoldbError as exc:
        raise _fail(exc) from exc


@app.command()
def init(uri: Annotated[str, typer.Argument(help="Where to create the store")]) -> None:
    """Create an empty store."""
    try:
        moldb.create(uri, config=_CONFIG or None)
    except MoldbError as exc:
        raise _fail(exc) from exc
    out.print(f"created moldb store at [bold]{uri}[/]")


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(
        help="mmCIF / PDB / BinaryCIF / MMTF files (.gz ok); trajectories: H5MD, XTC, DCD, TRR, NetCDF")],
    store: StoreOpt,
    entry: Annotated[str | None, typer.Option(help="Entry id (single file only)")] = None,
    json_out: JsonOpt = False,
    topology: Annotated[Path | None, typer.Option(
        "--topology", "-t", help="Structure file with the atoms of the trajectories (H5MD: default same-stem file)")]
    = None,
    batch: Annotated[int, typer.Option(help="Files per commit (1: one commit per file)", min=1)] = 64,
    workers: Annotated[int | None, typer.Option(
        help="Threads parsing ahead of the commits (default: cores, at most 4)", min=1)] = None,
) -> None:
    """Ingest structure files; each becomes version 1 of a new entry.

    Several files are committed in batches (one commit per --batch files): much faster than
    one commit per file, and each batch becomes visible at once.
    """
    st = _open(store)
    if entry and len(files) > 1:
        raise _fail(ValueError("--entry can only be used with a single file"))
    done: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=json_out or not err.is_terminal) as bar:
        task = bar.add_task("ingesting", total=len(files))
        if entry is None and topology is None:
            def step(path: Path) -> None:
                bar.update(task, description=f"read {path.name}", advance=1)

            report = st.ingest_many(files, batch_entries=batch, progress=step, workers=workers)
            done = [v.as_dict() for v in report.ingested]
            failed = [{"file": f.path, "error": str(f.error)} for f in report.failed]
        for f in files if entry is not None or topology is not None else []:
            bar.update(task, description=f"ingesting {f.name}")
            try:
                v = st.ingest(f, entry=entry, topology=topology)
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
def deposit(
    file: Annotated[Path, typer.Argument(help="Structure file to commit as the next version")],
    store: StoreOpt,
    entry: Annotated[str, typer.Option("--entry", "-e", help="Entry id (created if new)")],
    message: Annotated[str, typer.Option("--message", "-m", help="Why this version")] = "",
    author: Annotated[str, typer.Option("--author", "-a", help="Who")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Commit a file as the next version of an entry (unchanged column groups are shared)."""
    st = _open(store)
    try:
        v = st.deposit(file, entry=entry, message=message, author=author)
    except (MoldbError, OSError) as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(json.dumps(v.as_dict()))
        return
    out.print(f"[green]✓[/] {v.entry} v{v.version} (parent v{v.parent})  {v.n_atoms} atoms  {v.content_hash[:12]}")


@app.command()
def tag(entry: str, version: Annotated[str, typer.Argument(help="Version number or existing tag")],
        name: Annotated[str, typer.Argument(help="New tag name")], store: StoreOpt,
        author: Annotated[str, typer.Option("--author", "-a")] = "") -> None:
    """Name a version of an entry."""
    st = _open(store)
    try:
        st.tag(entry, int(version) if version.isdigit() else version, name, author=author)  # type: ignore[arg-type]
        v = st.get(entry, version=name).version.version
    except MoldbError as exc:
        raise _fail(exc) from exc
    out.print(f"tagged {entry.upper()} v{v} as [bold]{name}[/]")


@app.command()
def get(
    entry: str, store: StoreOpt,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output file (.cif, .cif.gz, .bcif, .pdb)")],
    version: Annotated[str | None, typer.Option(help="Version number or tag (default: latest)")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Latest version at this time (ISO-8601 or ms)")] = None,
    format: Annotated[str | None, typer.Option(help="cif | bcif | pdb (default: from suffix)")] = None,
) -> None:
    """Write one version of an entry (by number, tag or point in time) to a file."""
    fmt = {"cif": "mmcif", "mmcif": "mmcif", "bcif": "bcif", "pdb": "pdb", None: None}.get(format, format)
    when: int | str | None = int(as_of) if as_of is not None and as_of.isdigit() else as_of
    try:
        s = _open(store).get(entry, version=version, as_of=when)
        path = s.write(output, format=fmt)
    except (MoldbError, OSError) as exc:
        raise _fail(exc) from exc
    out.print(f"wrote {s.entry} v{s.version.version} to {path}")


def _print_diff(d: dict[str, Any]) -> None:
    at = d["atoms"]
    a, b = d["a"], d["b"]
    out.print(f"[bold]{a.get('entry', '')}[/] v{a.get('version', '?')} → v{b.get('version', '?')}"
              + ("  [green]identical[/]" if d["identical"] else ""))
    t = Table("atoms", "count", show_header=True)
    t.add_row("in a / in b", f"{at['a']} / {at['b']}")
    t.add_row("matched", str(at["matched"]))
    for k in ("added", "removed", "renamed"):
        t.add_row(k, str(at[k]["count"]))
    mv = at["moved"]
    t.add_row("moved", f"{mv['count']}  (RMSD {mv['rmsd']:.3f} Å, max {mv['max_shift']:.3f} Å)")
    out.print(t)
    if at["changed_columns"]:
        c = Table("column", "atoms changed")
        for k, n in at["changed_columns"].items():
            c.add_row(k, str(n))
        out.print(c)
    for k in ("added", "removed"):
        for atom in at[k]["atoms"][:10]:
            out.print(f"  {'+' if k == 'added' else '-'} {atom}")
    for r in at["renamed"]["atoms"][:10]:
        out.print(f"  ~ {r['old']} → {r['new']} at {r.get('chain')} {r.get('seq')}")
    cats = d["categories"]
    if cats["added"] or cats["removed"]:
        out.print(f"categories added: {', '.join(cats['added']) or '-'}; removed: {', '.join(cats['removed']) or '-'}")
    for name, ch in cats["changed"].items():
        if "values" in ch:
            vals = "; ".join(f"{i}: {o} → {n}" for i, (o, n) in ch["values"].items())
            out.print(f"  _{name}: {vals}")
        else:
            what = ch.get("items_changed") or {k: ch[k] for k in ("rows_added", "rows_removed") if k in ch}
            out.print(f"  _{name}: rows {ch['rows'][0]} → {ch['rows'][1]} {what}")
    for name, ch in d["tls"].items():
        out.print(f"  TLS {name}: added {ch['added']}, removed {ch['removed']}, changed {list(ch['changed'])}")


@app.command()
def diff(entry: str, a: Annotated[str, typer.Argument(help="Version number or tag")],
         b: Annotated[str, typer.Argument(help="Version number or tag")], store: StoreOpt,
         json_out: JsonOpt = False) -> None:
    """What changed between two versions: atoms added/removed/renamed/moved, columns, categories, TLS."""
    st = _open(store)
    try:
        d = st.diff(entry, int(a) if a.isdigit() else a, int(b) if b.isdigit() else b).as_dict()
    except MoldbError as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(json.dumps(d))
        return
    _print_diff(d)


@app.command()
def maintain(
    store: StoreOpt,
    vacuum: Annotated[bool, typer.Option("--vacuum/--no-vacuum", help="Delete superseded fragments")] = True,
    orphan_grace: Annotated[float, typer.Option(help="Keep unreferenced blocks younger than this (s)")] = 3600.0,
    json_out: JsonOpt = False,
) -> None:
    """Consolidate and vacuum the store; collect orphan blocks left by crashed writers."""
    st = _open(store)
    try:
        rep = st.maintain(vacuum=vacuum, orphan_grace_s=orphan_grace)
    except MoldbError as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(json.dumps(rep))
        return
    t = Table("array", "fragments", "bytes")
    for name, r in rep["arrays"].items():
        t.add_row(name, f"{r['fragments_before']} → {r['fragments_after']}",
                  f"{r['bytes_before']:,} → {r['bytes_after']:,}")
    t.add_row("total", f"{rep['fragments_before']} → {rep['fragments_after']}",
              f"{rep['bytes_before']:,} → {rep['bytes_after']:,}")
    out.print(t)
    orph = rep["orphans"]
    out.print(f"orphan blocks collected: {len(orph['collected'])}; younger than {orph['grace_s']:.0f} s, kept: "
              f"{len(orph['young'])}  ({rep['seconds']:.2f} s)")
    frames = rep.get("orphan_frames") or {}

    def ids(items: list[dict[str, Any]]) -> str:
        return ", ".join(str(o["traj"]) for o in items) or "none"

    collected = frames.get("collected", [])
    out.print(f"orphan trajectories collected: {len(collected)} ({ids(collected)}; "
              f"{frames.get('bytes_collected', 0):,} bytes); younger than {orph['grace_s']:.0f} s, kept: "
              f"{len(frames.get('young', []))} ({ids(frames.get('young', []))})"
              + (f"; old, not collected: {len(frames['uncollected_old'])} ({ids(frames['uncollected_old'])})"
                 if frames.get("uncollected_old") else ""))


@app.command()
def groupings(entry: str, store: StoreOpt, version: Annotated[str | None, typer.Option()] = None,
              json_out: JsonOpt = False) -> None:
    """List the groupings of an entry (chain, residue, tls, user-defined ...)."""
    try:
        rows = _open(store).groupings(entry, version=version).to_pylist()
    except MoldbError as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(json.dumps(rows))
        return
    t = Table("name", "kind", "groups", "members", "version", "source")
    for r in rows:
        extra = f" ({r['n_unparsed']} unparsed)" if r["n_unparsed"] else ""
        t.add_row(r["name"], r["kind"], str(r["n_groups"]), str(r["n_members"]) + extra, str(r["version"]),
                  r["source"])
    out.print(t)


@app.command()
def descriptors(entry: str, store: StoreOpt, version: Annotated[str | None, typer.Option()] = None,
                json_out: JsonOpt = False) -> None:
    """List the heterogeneity descriptors of an entry (regime, scope, mode, operator, composition)."""
    try:
        descs = _open(store).descriptors(entry, version=version)
    except MoldbError as exc:
        raise _fail(exc) from exc
    specs = [d.spec() for d in descs]
    if json_out:
        out.print_json(json.dumps(specs))
        return
    t = Table("id", "type", "regime", "scope", "mode", "axis", "composition", "operator", "source")
    for s in specs:
        op = (s.get("operator") or {}).get("name") or "-"
        t.add_row(s["id"], s["type"], str(s["regime"]), s["scope"], s["mode"], s["sample_axis"] or "parametric",
                  s["composition"], op, s["provenance"]["source"])
    out.print(t)


@app.command()
def query(
    selection: Annotated[str, typer.Argument(help="Selection, e.g. \"chain A and name CA and resid 10-50\"")],
    store: StoreOpt,
    entry: Annotated[list[str] | None, typer.Option("--entry", "-e", help="Restrict to these entries")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="arrow | csv | json | cif")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (stdout for csv/json)")] = None,
    altloc: Annotated[str, typer.Option(help="all | highest | an altloc id")] = "all",
) -> None:
    """Select atoms across the store with the selection language (docs/query.md)."""
    st = _open(store)
    try:
        sel = st.select(selection, entries=entry or None, altloc=altloc)
        if fmt == "cif":
            structs = sel.structures()
            if len(structs) != 1 or output is None:
                raise ValueError(f"--format cif writes one entry to -o FILE; the selection spans "
                                 f"{len(structs)} entries (use --entry)")
            structs[0].write(output, format="mmcif")
            err.print(f"wrote {structs[0].atoms.num_rows} atoms of {structs[0].entry} to {output}")
            return
        table = sel.to_arrow()
        if fmt == "arrow":
            if output is None:
                raise ValueError("--format arrow needs -o FILE")
            import pyarrow.feather as feather

            feather.write_feather(table, str(output))
        elif fmt in ("csv", "json"):
            plain = table.cast(__import__("pyarrow").schema(
                [f.with_type(f.type.value_type) if hasattr(f.type, "value_type") else f for f in table.schema]))
            if fmt == "csv":
                import pyarrow.csv as pcsv

                sink = str(output) if output is not None else sys.stdout.buffer
                pcsv.write_csv(plain, sink)
            else:
                text = json.dumps(plain.to_pylist())
                (output.write_text(text) if output is not None else sys.stdout.write(text + "\n"))
        else:
            raise ValueError(f"unknown --format {fmt!r}: use arrow, csv, json or cif")
        if output is not None:
            err.print(f"wrote {table.num_rows} atoms to {output}")
    except (MoldbError, ValueError, OSError) as exc:
        raise _fail(exc) from exc


@app.command()
def render(
    entry: str, store: StoreOpt,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Multi-model mmCIF (.cif, .cif.gz)")] = None,
    state: Annotated[list[str] | None, typer.Option(
        "--state", help="NODE=STATE, repeatable: altloc:A/45=B, altloc=B (all residues), model=3")] = None,
    draws: Annotated[int, typer.Option("--draws", "-n", help="Models to draw (one per draw)")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same coordinates")] = 0,
    version: Annotated[str | None, typer.Option(help="Version number or tag (default: latest)")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    descriptor: Annotated[list[str] | None, typer.Option(
        "--descriptor", "-d", help="Render only these descriptor ids (repeatable)")] = None,
    adp: Annotated[str, typer.Option(help="deposited (reconcile ingested ADPs) | sum")] = "deposited",
    mean: Annotated[bool, typer.Option("--mean", help="Write the mean structure (one model), no draws")] = False,
    list_states: Annotated[bool, typer.Option("--list-states", help="Print the discrete nodes; write nothing")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Render an entry from its stored descriptors: draws from N(0, U_total) around a joint state's mean."""
    from moldb.api.render import parse_state, render_file

    st = _open(store)
    try:
        if output is None and not list_states:
            raise ValueError("-o/--output FILE is required (or pass --list-states)")
        info = render_file(st, entry, None if list_states else output, draws=draws, seed=seed,
                           state=parse_state(state), version=int(version) if version and version.isdigit() else version,
                           device=device, descriptors=descriptor, adp=adp, mean=mean)  # type: ignore[arg-type]
    except (MoldbError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(json.dumps(info))
        return
    if list_states:
        for name, states in info["nodes"].items():
            out.print(f"{name}: {' '.join(states)}")
        out.print(f"{info['n_joint_states']} legal joint state(s); {len(info['components'])} Gaussian component(s)")
        return
    out.print(f"wrote {info['models']} model(s) of {info['entry']} v{info['version']} ({info['n_atoms']} atoms) to "
              f"{info['output']}  RMS displacement {info['rms_displacement']:.3f} Å")
    for note in info["notes"]:
        err.print(f"[yellow]note:[/] {note}")


@app.command()
def demo(uri: Annotated[str, typer.Argument()] = "./lab-store") -> None:
    """Create a store (if needed), ingest the bundled demo entries and print a summary."""
    from moldb.cli.demo import run_demo

    run_demo(uri, out)


@app.command()
def serve(
    store: StoreOpt,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 for every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (they share nothing but the store)")] = 1,
    max_upload_mb: Annotated[float, typer.Option(help="Upload size cap (MiB)")] = 256.0,
    max_result_rows: Annotated[int, typer.Option(help="Most rows one /select or /atoms response may have")]
    = 20_000_000,
    query_timeout: Annotated[float, typer.Option(help="Time budget of one query (s)")] = 60.0,
    rate_limit: Annotated[float, typer.Option(help="Requests/s per token (token bucket, per process)")] = 200.0,
    rate_burst: Annotated[float, typer.Option(help="Burst size of the per-token bucket")] = 400.0,
    token_cache_ttl: Annotated[float, typer.Option(help="Seconds a token lookup is cached (revocation delay)")]
    = 5.0,
    response_cache_mb: Annotated[float, typer.Option(help="Encoded /atoms responses kept per process (MiB, 0: off)")]
    = 512.0,
) -> None:
    """Serve a store over HTTP (docs/service.md): FastAPI + uvicorn, tokens from `moldb user add`."""
    import os

    try:
        import uvicorn

        from moldb.service import Settings, create_app
    except ImportError as exc:
        msg = f"`moldb serve` needs the service extra: pip install 'moldb[service]' ({exc})"
        raise _fail(ImportError(msg)) from exc
    _open(store).close()  # fail early and clearly on a missing store
    settings = Settings(store=store, max_upload_bytes=int(max_upload_mb * (1 << 20)), max_result_rows=max_result_rows,
                        query_timeout_s=query_timeout, rate_limit_per_s=rate_limit, rate_limit_burst=rate_burst,
                        token_cache_ttl_s=token_cache_ttl, response_cache_mb=response_cache_mb)
    err.print(f"moldb serving [bold]{store}[/] on http://{host}:{port} ({workers} worker(s)); API docs at /docs")
    if workers > 1:  # worker processes import the app factory and read the settings from the environment
        os.environ.update(settings.to_env())
        uvicorn.run("moldb.service.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="info")
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


user_app = typer.Typer(help="Users and API tokens of a store served by `moldb serve`.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="User name")],
    lab: Annotated[str, typer.Option(help="Lab namespace ('*' for a global admin)")],
    role: Annotated[str, typer.Option(help="reader | depositor | admin")],
    store: StoreOpt,
    expires_days: Annotated[float | None, typer.Option(help="Token lifetime in days (default: never expires)")]
    = None,
    json_out: JsonOpt = False,
) -> None:
    """Create an API token for a user; it is printed once (only its hash is stored)."""
    from moldb.api.access import Access

    _open(store).close()
    try:
        token, info = Access(store).add_user(name, lab, role, expires_days, actor="cli")
    except MoldbError as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(json.dumps({"token": token, **info.as_dict()}))
        return
    err.print(f"[green]✓[/] token {info.id} for [bold]{name}[/] ({role} in lab {lab}); it is shown only now:")
    print(token)


@user_app.command("ls")
def user_ls(store: StoreOpt, lab: Annotated[str | None, typer.Option(help="Only this lab")] = None,
            json_out: JsonOpt = False) -> None:
    """List API tokens: id, user, lab, role, created, expires, revoked (never secrets)."""
    import datetime as dt

    from moldb.api.access import Access

    _open(store).close()
    try:
        tokens = Access(store).tokens(lab)
    except MoldbError as exc:
        raise _fail(exc) from exc
    if json_out:
        out.print_json(json.dumps([t.as_dict() for t in tokens]))
        return

    def when(ms: int | None) -> str:
        return "-" if ms is None else f"{dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC):%Y-%m-%d %H:%M}"

    t = Table("token id", "user", "lab", "role", "created (UTC)", "expires", "revoked")
    for tk in tokens:
        t.add_row(tk.id, tk.user, tk.lab, tk.role, when(tk.created), when(tk.expires), when(tk.revoked))
    out.print(t)
    out.print(f"{len(tokens)} token(s)")


@user_app.command("revoke")
def user_revoke(token_id: Annotated[str, typer.Argument(help="Token id (the 16 hex digits after 'mdb_')")],
                store: StoreOpt) -> None:
    """Revoke an API token (services refuse it within their token cache TTL, 5 s by default)."""
    from moldb.api.access import Access

    _open(store).close()
    try:
        info = Access(store).revoke(token_id, actor="cli")
    except MoldbError as exc:
        raise _fail(exc) from exc
    out.print(f"revoked token {info.id} of {info.user} ({info.role} in lab {info.lab})")


_register_frames(app, _open, _fail, out, err)  # moldb frames ENTRY -o out.{h5md,pdb,cif,xyz}


def main() -> None:
    """Entry point of the ``moldb`` script."""
    try:
        app()
    except MoldbError as exc:  # anything not handled per command
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
