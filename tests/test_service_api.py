"""The moldb service over a real uvicorn server on loopback: Arrow endpoints, authorship, audit, OpenAPI,
and a ``kill -9`` of a service process in the middle of a deposit.
"""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gemmi
import httpx
import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("fastapi", reason="the service extra is not installed: pip install 'moldb[service]'")

import moldb
from moldb.service import Settings
from moldb.service.openapi import FROZEN, render
from moldb.service.runner import serve_in_thread
from tests._service import ARROW, Lab, Service, free_port, make_lab, problem
from tests.cif_edits import edit, shift_b
from tests.conftest import data

ENTRY = "1O1Z"
SRC = "mmcif/1o1z.cif.gz"


def _arrow(r: httpx.Response) -> pa.Table:
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == ARROW
    return pa.ipc.open_stream(r.content).read_all()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A served store: 1O1Z ingested by ana (lab fraser) through the service, v2 deposited."""
    root = tmp_path_factory.mktemp("api")
    lab = make_lab(root)
    with serve_in_thread(Settings(store=lab.uri, upload_dir=str(root))) as url:
        lab.url = url
        with lab.client("ana") as c:
            r = c.post("/v1/entries", params={"filename": "1o1z.cif.gz", "author": "mallory"},
                       content=data(SRC).read_bytes())
            assert r.status_code == 201, r.text
            v2 = edit(data(SRC), root / "1o1z_v2.cif", shift_b(1.5))
            r = c.post(f"/v1/entries/{ENTRY}/versions", params={"filename": "1o1z_v2.cif", "message": "B+1.5"},
                       content=v2.read_bytes())
            assert r.status_code == 201, r.text
        yield lab


def test_health_and_openapi(lab: Lab) -> None:
    r = httpx.get(f"{lab.url}/healthz")
    assert r.json() == {"status": "ok", "store": lab.uri}
    spec = httpx.get(f"{lab.url}/openapi.json").json()
    assert spec["info"]["title"] == "moldb"
    assert {"/v1/entries", "/v1/entries/{entry}/atoms", "/v1/select", "/v1/users", "/v1/audit"} <= set(spec["paths"])
    assert ARROW in spec["paths"]["/v1/select"]["post"]["responses"]["200"]["content"]


def test_frozen_openapi_copy_is_current() -> None:
    assert FROZEN.exists(), "docs/openapi.json missing: run python -m moldb.service.openapi"
    assert FROZEN.read_text() == render(), "docs/openapi.json is out of date: run python -m moldb.service.openapi"


def test_author_is_the_token_user_and_namespace_is_recorded(lab: Lab) -> None:
    with lab.client("ben") as c:
        hist = c.get(f"/v1/entries/{ENTRY.lower()}/history").json()
    assert [(h["version"], h["author"], h["parent"]) for h in hist] == [(1, "ana", 0), (2, "ana", 1)]
    assert hist[1]["message"] == "B+1.5" and hist[0]["message"] == "ingest 1o1z.cif.gz"
    assert [h["source"]["namespace"] for h in hist] == ["fraser", "fraser"]
    assert [h["source"]["path"] for h in hist] == ["1o1z.cif.gz", "1o1z_v2.cif"]  # never the upload directory
    local = moldb.open(lab.uri)
    assert [(v.version, v.author, v.content_hash) for v in local.history(ENTRY)] == \
        [(h["version"], h["author"], h["content_hash"]) for h in hist]


def test_version_endpoint_resolves_numbers_tags_and_time(lab: Lab) -> None:
    with lab.client("ana") as c:
        latest = c.get(f"/v1/entries/{ENTRY}").json()
        assert latest["version"] == 2 and latest["n_atoms"] == 2302
        first = c.get(f"/v1/entries/{ENTRY}", params={"version": "1"}).json()
        assert c.get(f"/v1/entries/{ENTRY}", params={"as_of": str(first["timestamp"])}).json()["version"] == 1
        assert c.put(f"/v1/entries/{ENTRY}/tags/published", json={"version": 1}).status_code == 204
        assert c.get(f"/v1/entries/{ENTRY}/tags").json() == {"published": 1}
        assert c.get(f"/v1/entries/{ENTRY}", params={"version": "published"}).json()["content_hash"] == \
            first["content_hash"]
        problem(c.get(f"/v1/entries/{ENTRY}", params={"version": "nope"}), 404, "entry-not-found")
        problem(c.get("/v1/entries/1ABC"), 404, "entry-not-found")


def test_atoms_arrow_equals_the_local_store(lab: Lab) -> None:
    local = moldb.open(lab.uri)
    with lab.client("ben") as c:
        r = c.get(f"/v1/entries/{ENTRY}/atoms", params={"version": "1"})
        t = _arrow(r)
        want = local.get(ENTRY, version=1).atoms
        assert t.num_rows == 2302 and t.column_names == want.column_names
        assert t.drop_columns([]).equals(want.replace_schema_metadata(t.schema.metadata))
        info = json.loads(r.headers["moldb-version"])
        assert info["version"] == 1 and info["author"] == "ana"
        assert json.loads(t.schema.metadata[b"moldb.version"])["content_hash"] == info["content_hash"]
        sub = _arrow(c.get(f"/v1/entries/{ENTRY}/atoms", params={"columns": "label_atom_id,B_iso_or_equiv"}))
        assert {"label_atom_id", "B_iso_or_equiv"} <= set(sub.column_names) and "Cartn_x" not in sub.column_names
        b2 = sub.column("B_iso_or_equiv").to_numpy()
        np.testing.assert_allclose(b2 - want.column("B_iso_or_equiv").to_numpy(), 1.5, atol=1e-6)


def test_select_arrow_equals_the_local_store(lab: Lab) -> None:
    local = moldb.open(lab.uri)
    with lab.client("ben") as c:
        body = {"selection": "name CA and resid 10-60", "entries": ENTRY, "altloc": "highest"}
        t = _arrow(c.post("/v1/select", json=body))
        want = local.select("name CA and resid 10-60", entries=ENTRY, altloc="highest").to_arrow()
        assert t.num_rows == want.num_rows > 0 and t.equals(want)
        kw = _arrow(c.post("/v1/select", json={"chains": "A", "residues": [10, 20], "atoms": ["CA", "CB"],
                                               "columns": ["label_atom_id", "auth_seq_id"]}))
        want = local.select(chains="A", residues=(10, 20), atoms=["CA", "CB"]).to_arrow(
            ["label_atom_id", "auth_seq_id"])
        assert kw.equals(want) and set(kw.column("label_atom_id").to_pylist()) == {"CA", "CB"}
        near = _arrow(c.post("/v1/select", json={"within": 4.0, "of": [[10.0, 20.0, 30.0]], "entries": [ENTRY]}))
        assert near.num_rows == len(local.select(within=4.0, of=np.array([[10.0, 20.0, 30.0]]), entries=ENTRY))
        empty = _arrow(c.post("/v1/select", json={"selection": "resname NOPE"}))
        assert empty.num_rows == 0


def test_entries_listing_is_arrow(lab: Lab) -> None:
    with lab.client("ben") as c:
        t = _arrow(c.get("/v1/entries"))
    want = moldb.open(lab.uri).entries()
    assert t.equals(want)
    assert t.column("entry").to_pylist() == [ENTRY] and t.column("version").to_pylist() == [2]


def test_diff_and_file_export(lab: Lab, tmp_path: Path) -> None:
    with lab.client("ben") as c:
        d = c.get(f"/v1/entries/{ENTRY}/diff", params={"a": "1", "b": "2"}).json()
        assert d["a"]["version"] == 1 and d["b"]["version"] == 2
        assert d["atoms"]["changed_columns"]["B_iso_or_equiv"] == 2302
        r = c.get(f"/v1/entries/{ENTRY}/file", params={"version": "1", "format": "cif"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("chemical/x-mmcif")
        out = tmp_path / "got.cif"
        out.write_bytes(r.content)
        st = gemmi.read_structure(str(out))
        assert sum(1 for m in st for ch in m for res in ch for _ in res) == 2302
        problem(c.get(f"/v1/entries/{ENTRY}/file", params={"format": "exe"}), 422, "validation-error")


def test_audit_records_writes_with_user_entry_and_version(lab: Lab) -> None:
    with lab.client("fadmin") as c:
        recs = c.get("/v1/audit").json()
    ok = [(r["action"], r["user"], r["entry"], r["version"]) for r in recs if r["outcome"] == "ok"]
    assert ("ingest", "ana", ENTRY, 1) in ok and ("deposit", "ana", ENTRY, 2) in ok
    assert all(r["lab"] == "fraser" for r in recs)  # a lab admin sees only its lab
    with lab.client("root") as c:
        everything = c.get("/v1/audit", params={"since": 0}).json()
        later = c.get("/v1/audit", params={"since": recs[-1]["time"] + 1}).json()
    assert {r["lab"] for r in everything} >= {"fraser", "other", "*"}  # user.add records of every lab
    assert len(later) < len(everything) and all(r["time"] > recs[-1]["time"] for r in later)


def test_whoami_and_user_admin_cycle(lab: Lab) -> None:
    with lab.client("fadmin") as c:
        assert c.get("/v1/whoami").json()["user"] == "fay"
        r = c.post("/v1/users", json={"name": "cat", "lab": "fraser", "role": "reader", "expires_days": 30})
        assert r.status_code == 201
        new = r.json()
        assert new["token"].startswith(f"mdb_{new['id']}_") and new["role"] == "reader"
        assert new["expires"] - new["created"] == 30 * 86_400_000
        ids = [t["id"] for t in c.get("/v1/tokens").json()]
        assert new["id"] in ids and all("sha256" not in t for t in c.get("/v1/tokens").json())
    with lab.client(new["token"]) as c:
        assert c.get("/v1/whoami").json() == {"user": "cat", "lab": "fraser", "role": "reader",
                                              "token_id": new["id"]}
    with lab.client("fadmin") as c:
        assert c.delete(f"/v1/tokens/{new['id']}").status_code == 204
    with lab.client(new["token"]) as c:
        assert "revoked" in problem(c.get("/v1/whoami"), 401, "unauthenticated")["detail"]
    actions = [(r["action"], r["outcome"]) for r in httpx.get(
        f"{lab.url}/v1/audit", headers={"Authorization": f"Bearer {lab.tokens['fadmin']}"}).json()]
    assert ("user.add", "ok") in actions and ("token.revoke", "ok") in actions


# -- faults: kill -9 mid-deposit -----------------------------------------------------------------------------
_FAULT_SERVER = textwrap.dedent("""
    import sys, time, pathlib
    import uvicorn
    from moldb.ingest.hooks import register_ingest_hook
    from moldb.service import Settings, create_app

    store, port, marker = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])

    def stall(*args):  # inside the commit: blocks written, versions cell (the commit point) not yet
        marker.write_text("in commit")
        time.sleep(600)

    register_ingest_hook("zz-stall", stall)
    uvicorn.run(create_app(Settings(store=store)), host="127.0.0.1", port=port, log_level="warning")
""")


def test_kill_9_mid_deposit_leaves_only_whole_versions(tmp_path: Path) -> None:
    import subprocess

    from tests._service import start_process, stop_process

    lab = make_lab(tmp_path)
    local = moldb.open(lab.uri)
    v1 = local.ingest(data(SRC), namespace="fraser", author="ana")
    v2_file = edit(data(SRC), tmp_path / "1o1z_v2.cif", shift_b(2.0))
    script = tmp_path / "fault_server.py"
    script.write_text(_FAULT_SERVER)
    marker = tmp_path / "in_commit"
    port = free_port()
    proc: subprocess.Popen[bytes] = start_process([sys.executable, str(script), lab.uri, str(port), str(marker)], port)
    outcome: dict[str, object] = {}

    def deposit() -> None:
        try:
            outcome["response"] = httpx.post(
                f"http://127.0.0.1:{port}/v1/entries/{ENTRY}/versions", params={"filename": "1o1z_v2.cif"},
                content=v2_file.read_bytes(), headers={"Authorization": f"Bearer {lab.tokens['ana']}"}, timeout=60)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    t = threading.Thread(target=deposit)
    t.start()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the deposit never reached the commit"
        time.sleep(0.02)
    stop_process(proc, sig=9)  # kill -9 while the new blocks are written but not the version
    t.join(timeout=30)
    assert "error" in outcome and "response" not in outcome  # the client saw the connection drop

    after = moldb.open(lab.uri)
    hist = after.history(ENTRY)
    assert [(h.version, h.content_hash) for h in hist] == [(1, v1.content_hash)]  # no partial version 2
    assert after.get(ENTRY).atoms.num_rows == 2302

    with Service(lab.uri, tmp_path / "serve.log") as svc:  # a fresh `moldb serve`; the lock died with the process
        r = httpx.post(f"{svc.url}/v1/entries/{ENTRY}/versions", params={"filename": "1o1z_v2.cif"},
                       content=v2_file.read_bytes(), headers={"Authorization": f"Bearer {lab.tokens['ana']}"},
                       timeout=60)
        assert r.status_code == 201, r.text
        assert (r.json()["version"], r.json()["parent"], r.json()["author"]) == (2, 1, "ana")
    final = moldb.open(lab.uri)
    assert [h.version for h in final.history(ENTRY)] == [1, 2]
    b1 = final.get(ENTRY, version=1).atoms.column("B_iso_or_equiv").to_numpy()
    b2 = final.get(ENTRY, version=2).atoms.column("B_iso_or_equiv").to_numpy()
    np.testing.assert_allclose(b2 - b1, 2.0, atol=1e-6)


# -- CLI: users and a multi-process server ---------------------------------------------------------------------
def test_cli_user_add_ls_revoke_and_serve_with_two_workers(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from moldb.cli.main import app

    uri = str(tmp_path / "store")
    moldb.create(uri).close()
    runner = CliRunner()
    res = runner.invoke(app, ["user", "add", "ana", "--lab", "fraser", "--role", "depositor", "--store", uri,
                              "--expires-days", "7"])
    assert res.exit_code == 0, res.output
    token = res.stdout.strip().splitlines()[-1]
    assert token.startswith("mdb_") and len(token) == 4 + 16 + 1 + 64
    tid = token.split("_")[1]
    listed = json.loads(runner.invoke(app, ["user", "ls", "--store", uri, "--json"]).stdout)
    assert [(t["id"], t["user"], t["lab"], t["role"], t["revoked"]) for t in listed] == \
        [(tid, "ana", "fraser", "depositor", None)]
    assert listed[0]["expires"] - listed[0]["created"] == 7 * 86_400_000
    assert token.split("_")[2] not in (tmp_path / "store" / "_moldb" / "tokens" / f"{tid}.json").read_text()
    bad = runner.invoke(app, ["user", "add", "x", "--lab", "fraser", "--role", "root", "--store", uri])
    assert bad.exit_code == 2 and "role" in bad.output

    with Service(uri, tmp_path / "serve.log", args=["--workers", "2", "--token-cache-ttl", "0.2"]) as svc:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=svc.url, headers=headers, timeout=30) as c:
            r = c.post("/v1/entries", params={"filename": "1o1z.cif.gz"}, content=data(SRC).read_bytes())
            assert r.status_code == 201 and r.json()["author"] == "ana"
            assert all(c.get(f"/v1/entries/{ENTRY}").json()["version"] == 1 for _ in range(6))  # either worker
            res = runner.invoke(app, ["user", "revoke", tid, "--store", uri])
            assert res.exit_code == 0 and tid in res.output
            time.sleep(0.4)
            assert all(c.get("/v1/whoami").status_code == 401 for _ in range(4))  # every worker refuses it
    assert json.loads(runner.invoke(app, ["user", "ls", "--store", uri, "--json"]).stdout)[0]["revoked"] is not None
