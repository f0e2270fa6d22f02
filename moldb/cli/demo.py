"""The bundled demo: three small real entries shipped in ``moldb/data``.

1o1z (mmCIF: TLS groups, altlocs, waters), 3o5r (mmCIF: full anisotropic ADPs,
altlocs, ligand FK5) and 1l2y (BinaryCIF: 38-model NMR ensemble). All are
CC0 wwPDB entries copied from biotite's test data.
"""

from __future__ import annotations

from importlib import resources

from rich.console import Console
from rich.table import Table

import moldb

__all__ = ["DEMO_FILES", "run_demo"]

DEMO_FILES = ("1o1z.cif.gz", "3o5r.cif.gz", "1l2y.bcif")


def run_demo(uri: str, console: Console) -> moldb.Store:
    """Create/open ``uri``, ingest the demo files not yet present, print a summary."""
    try:
        store = moldb.open(uri)
    except moldb.StoreNotFoundError:
        store = moldb.create(uri)
        console.print(f"created moldb store at [bold]{uri}[/]")
    data = resources.files("moldb") / "data"
    for name in DEMO_FILES:
        with resources.as_file(data / name) as path:
            entry = name.split(".")[0].upper()
            if entry in store:
                continue
            v = store.ingest(path)
            console.print(f"ingested {v.entry} v{v.version}: {v.n_atoms} atoms, {v.n_models} model(s)")
    t = Table("entry", "method", "res (Å)", "models", "atoms", title=f"moldb store {uri}")
    for r in store.entries().to_pylist():
        res = f"{r['resolution']:.2f}" if r["resolution"] is not None else "-"
        t.add_row(r["entry"], r["method"], res, str(r["n_models"]), str(r["n_atoms"]))
    console.print(t)
    s = store.get("1O1Z")
    console.print(f"store.get('1O1Z').atoms → {s.atoms.num_rows} rows × {s.atoms.num_columns} columns; "
                  f"TLS groups: {s.summary['tls_groups']}, altlocs: {' '.join(s.summary['altlocs'])}")
    return store
