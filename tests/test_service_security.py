"""Hostile and unauthorised requests against a real uvicorn server on loopback.

Each must be a 4xx problem+json with the documented code, and must store nothing.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

pytest.importorskip("fastapi", reason="the service extra is not installed: pip install 'moldb[service]'")

import moldb
from moldb.api.access import Access
from moldb.service import Settings
from moldb.service.runner import serve_in_thread
from tests._service import Lab, make_lab, problem
from tests.conftest import data

ENTRY = "1O1Z"
OTHER = "3O5R"
CAP = 200_000  # upload cap of the served store (1o1z.cif.gz is 75 kB, 3o5r.cif.gz 87 kB)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """1O1Z in lab fraser, 3O5R in lab other, 1CRN in public (ingested locally); small caps, fast revocation."""
    root = tmp_path_factory.mktemp("sec")
    lab = make_lab(root)
    uploads = root / "uploads"
    uploads.mkdir()
    local = moldb.open(lab.uri)
    local.ingest(data("mmcif/1crn.cif.gz"))  # no namespace: public
    settings = Settings(store=lab.uri, max_upload_bytes=CAP, max_result_rows=2000, token_cache_ttl_s=0.3,
                        upload_dir=str(uploads))
    with serve_in_thread(settings) as url:
        lab.url = url
        with lab.client("ana") as c:
            assert c.post("/v1/entries", params={"filename": "1o1z.cif.gz"},
                          content=data("mmcif/1o1z.cif.gz").read_bytes()).status_code == 201
        with lab.client("olga") as c:
            assert c.post("/v1/entries", params={"filename": "3o5r.cif.gz"},
                          content=data("mmcif/3o5r.cif.gz").read_bytes()).status_code == 201
        yield lab


def _versions(lab: Lab) -> list[tuple[str, int]]:
    s = moldb.open(lab.uri)
    t = s.entries()
    return sorted(zip(t.column("entry").to_pylist(), t.column("version").to_pylist(), strict=True))


BASELINE = [("1CRN", 1), (ENTRY, 1), (OTHER, 1)]


def _no_leftover_uploads(lab: Lab) -> None:
    uploads = Path(lab.uri).parent / "uploads"
    assert list(uploads.iterdir()) == []


# -- authentication ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [("GET", "/v1/entries"), ("GET", f"/v1/entries/{ENTRY}/atoms"),
                                         ("POST", "/v1/select"), ("POST", "/v1/entries"), ("GET", "/v1/audit"),
                                         ("DELETE", "/v1/tokens/0123456789abcdef")])
def test_no_token_is_401_everywhere(lab: Lab, method: str, path: str) -> None:
    with lab.client(None) as c:
        r = c.request(method, path, json={} if method == "POST" else None)
    body = problem(r, 401, "unauthenticated")
    assert "Authorization: Bearer" in body["detail"] and r.headers["www-authenticate"].startswith("Bearer")
    assert body["retryable"] is False


def test_wrong_malformed_and_foreign_scheme_tokens_are_401(lab: Lab) -> None:
    good = lab.tokens["ana"]
    tid = lab.token_ids["ana"]
    wrong_secret = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    cases = {
        wrong_secret: "not valid",
        f"mdb_{'f' * 16}_{'a' * 64}": "not valid",  # unknown id
        "mdb_../../etc/passwd_x": "malformed",
        "' OR 1=1 --": "malformed",
        good + "x": "malformed",
    }
    for tok, words in cases.items():
        with lab.client(tok) as c:
            assert words in problem(c.get("/v1/entries"), 401, "unauthenticated")["detail"], tok
    r = httpx.get(f"{lab.url}/v1/entries", headers={"Authorization": f"Basic {good}"})
    problem(r, 401, "unauthenticated")
    with lab.client("ana") as c:
        assert c.get("/v1/whoami").json()["token_id"] == tid  # the genuine token still works


def test_expired_token_is_401(lab: Lab) -> None:
    with lab.client("expired") as c:
        assert "expired" in problem(c.get("/v1/entries"), 401, "unauthenticated")["detail"]


def test_revocation_from_another_process_takes_effect_within_the_ttl(lab: Lab) -> None:
    acc = Access(lab.uri)  # as `moldb user revoke` in another process would
    tok, info = acc.add_user("dan", "fraser", "reader")
    with lab.client(tok) as c:
        assert c.get("/v1/whoami").status_code == 200
        acc.revoke(info.id)
        time.sleep(0.5)  # > token_cache_ttl_s of the service
        assert "revoked" in problem(c.get("/v1/whoami"), 401, "unauthenticated")["detail"]
    assert acc.token(info.id).revoked is not None


# -- roles and namespaces ------------------------------------------------------------------------------------
def test_reader_cannot_write(lab: Lab) -> None:
    body = data("mmcif/1o1z.cif.gz").read_bytes()
    with lab.client("ben") as c:
        assert c.get(f"/v1/entries/{ENTRY}").status_code == 200
        problem(c.post(f"/v1/entries/{ENTRY}/versions", params={"filename": "1o1z.cif.gz"}, content=body),
                403, "forbidden")
        problem(c.post("/v1/entries", params={"filename": "x.cif.gz", "entry": "NEW1"}, content=body), 403, "forbidden")
        problem(c.put(f"/v1/entries/{ENTRY}/tags/mine", json={"version": 1}), 403, "forbidden")
        problem(c.post("/v1/users", json={"name": "x", "lab": "fraser", "role": "admin"}), 403, "forbidden")
        problem(c.get("/v1/audit"), 403, "forbidden")
    assert _versions(lab) == BASELINE and moldb.open(lab.uri).tags(ENTRY) == {}
    with lab.client("fadmin") as c:
        denied = [r for r in c.get("/v1/audit").json() if r["user"] == "ben"]
    assert {(r["action"], r["outcome"]) for r in denied} >= {("deposit", "error:forbidden"),
                                                             ("ingest", "error:forbidden"), ("tag", "error:forbidden")}


def test_cross_namespace_reads_are_refused_and_listings_filtered(lab: Lab) -> None:
    with lab.client("olga") as c:  # warm the per-process response cache with lab other's entry
        first = c.get(f"/v1/entries/{OTHER}/atoms")
        again = c.get(f"/v1/entries/{OTHER}/atoms")
        assert first.status_code == again.status_code == 200 and first.content == again.content
        assert pa.ipc.open_stream(again.content).read_all().equals(moldb.open(lab.uri).get(OTHER).atoms)
    with lab.client("ana") as c:  # lab fraser: refused although the response is cached
        problem(c.get(f"/v1/entries/{OTHER}/atoms"), 403, "forbidden")
    with lab.client("olga") as c:  # lab other
        for path in (f"/v1/entries/{ENTRY}", f"/v1/entries/{ENTRY}/atoms", f"/v1/entries/{ENTRY}/history",
                     f"/v1/entries/{ENTRY}/file", f"/v1/entries/{ENTRY}/tags"):
            problem(c.get(path), 403, "forbidden")
        problem(c.post("/v1/select", json={"selection": "all", "entries": [OTHER, ENTRY]}), 403, "forbidden")
        listed = pa.ipc.open_stream(c.get("/v1/entries").content).read_all().column("entry").to_pylist()
        assert sorted(listed) == ["1CRN", OTHER]  # own lab and public
        t = pa.ipc.open_stream(c.post("/v1/select", json={"selection": "name CA"}).content).read_all()
        assert set(t.column("entry").to_pylist()) == {"1CRN", OTHER}
    with lab.client("ben") as c:
        listed = pa.ipc.open_stream(c.get("/v1/entries").content).read_all().column("entry").to_pylist()
        assert sorted(listed) == ["1CRN", ENTRY]
        assert c.get("/v1/entries/1CRN/atoms").status_code == 200  # public
    with lab.client("root") as c:
        listed = pa.ipc.open_stream(c.get("/v1/entries").content).read_all().column("entry").to_pylist()
        assert sorted(listed) == ["1CRN", ENTRY, OTHER]


def test_cross_namespace_writes_are_refused_and_store_nothing(lab: Lab) -> None:
    body = data("mmcif/1o1z.cif.gz").read_bytes()
    with lab.client("olga") as c:
        problem(c.post(f"/v1/entries/{ENTRY}/versions", params={"filename": "1o1z.cif.gz"}, content=body),
                403, "forbidden")
        problem(c.put(f"/v1/entries/{ENTRY}/tags/x", json={"version": 1}), 403, "forbidden")
        problem(c.post("/v1/entries", params={"filename": "a.cif.gz", "entry": "NEW2", "namespace": "fraser"},
                       content=body), 403, "forbidden")
        problem(c.post("/v1/users", json={"name": "x", "lab": "fraser", "role": "admin"}), 403, "forbidden")
    with lab.client("ana") as c:  # public entries belong to no lab
        problem(c.post("/v1/entries/1CRN/versions", params={"filename": "1crn.cif.gz"},
                       content=data("mmcif/1crn.cif.gz").read_bytes()), 403, "forbidden")
        problem(c.post("/v1/users", json={"name": "x", "lab": "fraser", "role": "admin"}), 403, "forbidden")
    with lab.client("fadmin") as c:
        problem(c.post("/v1/users", json={"name": "x", "lab": "other", "role": "reader"}), 403, "forbidden")
        problem(c.delete(f"/v1/tokens/{lab.token_ids['olga']}"), 403, "forbidden")
    assert _versions(lab) == BASELINE
    assert moldb.open(lab.uri).history(ENTRY)[-1].author == "ana"


def test_commit_refuses_a_foreign_namespace_atomically(lab: Lab, tmp_path: Path) -> None:
    """The namespace check also holds under the writer lock (no check-then-write race)."""
    local = moldb.open(lab.uri)
    with pytest.raises(moldb.PermissionDeniedError, match="namespace 'fraser'"):
        local.deposit(data("mmcif/1o1z.cif.gz"), entry=ENTRY, namespace="other")
    assert _versions(lab) == BASELINE


# -- hostile uploads -----------------------------------------------------------------------------------------
def test_oversized_uploads_are_413_and_store_nothing(lab: Lab) -> None:
    big = gzip.compress(b"x" * 10) + b"\0" * (CAP + 1)
    with lab.client("ana") as c:
        body = problem(c.post("/v1/entries", params={"filename": "big.cif.gz"}, content=big), 413,
                       "payload-too-large")
        assert f"{CAP:,}" in body["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap is enforced while streaming
            for _ in range(CAP // 16_384 + 2):
                yield b"\0" * 16_384

        problem(c.post("/v1/entries/BIG1/versions", params={"filename": "big.cif"}, content=chunks()), 413,
                "payload-too-large")
    assert _versions(lab) == BASELINE
    _no_leftover_uploads(lab)


@pytest.mark.parametrize("filename,content,status,code", [
    ("broken.cif", b"data_X\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1\n", 422, None),
    ("garbage.cif.gz", b"\x1f\x8b\x08\x00not really gzip", 422, None),
    ("garbage.bcif", b"\x00\x01\x02 not msgpack", 422, None),
    ("program.exe", b"MZ\x90\x00", 422, "unsupported-format"),
    ("empty.cif", b"", 422, "validation-error"),
    (None, b"data_X\n", 422, "validation-error"),
])
def test_malformed_uploads_are_422_and_store_nothing(lab: Lab, filename: str | None, content: bytes, status: int,
                                                     code: str | None) -> None:
    params = {"filename": filename} if filename else {}
    with lab.client("ana") as c:
        r = c.post("/v1/entries", params={**params, "entry": "BAD1"}, content=content)
    assert r.status_code == status
    body = r.json()
    assert body["code"] in ((code,) if code else ("parse-error", "unsupported-format", "validation-error"))
    assert "moldb-upload-" not in body["detail"]  # the private upload directory is never shown
    if filename and code is None:
        assert filename in body["detail"]
    assert _versions(lab) == BASELINE
    _no_leftover_uploads(lab)


@pytest.mark.parametrize("filename", ["../../evil.cif", "/etc/passwd", "a/b.cif", "..", ".hidden.cif",
                                      "evil.cif\x00.pdb", "c:\\evil.cif", "x" * 200 + ".cif"])
def test_traversal_in_filenames_is_refused(lab: Lab, filename: str) -> None:
    with lab.client("ana") as c:
        r = c.post("/v1/entries", params={"filename": filename, "entry": "EVIL1"},
                   content=data("mmcif/1crn.cif.gz").read_bytes())
    problem(r, 422, "validation-error")
    root = Path(lab.uri).parent
    assert not list(root.parent.rglob("evil.cif")) and _versions(lab) == BASELINE


@pytest.mark.parametrize("path", ["/v1/entries/..%2F..%2Fetc/history", "/v1/entries/%2e%2e/history",
                                  "/v1/entries/.moldb.lock/history", "/v1/entries/_moldb/atoms",
                                  "/v1/entries/a%00b/history", "/v1/entries/" + "A" * 65 + "/history"])
def test_traversal_in_entry_ids_is_refused(lab: Lab, path: str) -> None:
    with lab.client("root") as c:
        r = c.get(path)
    assert r.status_code in (404, 422), (path, r.status_code)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] in ("validation-error", "not-found")


def test_traversal_in_ids_of_writes_and_tags(lab: Lab) -> None:
    body = data("mmcif/1crn.cif.gz").read_bytes()
    with lab.client("ana") as c:
        problem(c.post("/v1/entries", params={"filename": "1crn.cif.gz", "entry": "../../x"}, content=body),
                422, "validation-error")
        problem(c.post("/v1/entries/_moldb/versions", params={"filename": "1crn.cif.gz"}, content=body),
                422, "validation-error")
        for tag in ("..", "a..b", "v1%2F..%2Fx", "123"):
            r = c.put(f"/v1/entries/{ENTRY}/tags/{tag}", json={"version": 1})
            assert r.status_code in (404, 405, 422), tag  # ".." is resolved by the client: PUT /v1/entries/1O1Z/
            assert r.json()["code"] in ("validation-error", "not-found", "method-not-allowed"), tag
        problem(c.post("/v1/select", json={"entries": ["../../etc"]}), 422, "validation-error")
        problem(c.delete("/v1/tokens/..%2F..%2Fversions"), 404, "not-found")
    with lab.client("root") as c:
        problem(c.delete("/v1/tokens/..hack.json"), 422, "validation-error")
        problem(c.post("/v1/users", json={"name": "../evil", "lab": "fraser", "role": "reader"}), 422,
                "validation-error")
        problem(c.post("/v1/users", json={"name": "ok", "lab": "../../tmp", "role": "reader"}), 422,
                "validation-error")
        problem(c.post("/v1/users", json={"name": "ok", "lab": "fraser", "role": "superuser"}), 422,
                "validation-error")
    assert _versions(lab) == BASELINE and moldb.open(lab.uri).tags(ENTRY) == {}
    store_dir = Path(lab.uri)
    assert sorted(p.name for p in (store_dir / "_moldb").iterdir()) == ["audit", "tokens"]


INJECTIONS = [
    "__import__('os').system('touch PWNED')",
    "name CA) or __import__('os').system('touch PWNED') or (name CA",
    "exec(\"open('PWNED','w')\")",
    "name CA; DROP TABLE versions; --",
    "name 'CA' OR 1=1 --",
    "resname HEM' UNION SELECT * FROM tokens --",
    "{{7*7}} ${7*7}",
    "name CA or " * 2000 + "__import__('os')",
    "(" * 5000,
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_through_selection_strings_is_a_validation_error(lab: Lab, text: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with lab.client("ben") as c:
        r = c.post("/v1/select", json={"selection": text, "entries": ENTRY})
        assert r.status_code in (413, 422), r.text[:300]
        assert r.json()["code"] in ("validation-error", "limit-exceeded", "payload-too-large")
        w = c.post("/v1/select", json={"where": text, "entries": ENTRY})
        assert w.status_code == 422 and w.json()["code"] in ("validation-error", "limit-exceeded")
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
    assert _versions(lab) == BASELINE


def test_unknown_select_fields_are_refused(lab: Lab) -> None:
    with lab.client("ben") as c:
        problem(c.post("/v1/select", json={"selection": "name CA", "eval": "1"}), 422, "validation-error")
        problem(c.post("/v1/select", content=b"{not json", headers={"content-type": "application/json"}), 422,
                "validation-error")


# -- limits --------------------------------------------------------------------------------------------------
def test_result_row_cap(lab: Lab) -> None:
    with lab.client("root") as c:
        t = pa.ipc.open_stream(c.post("/v1/select", json={"selection": "all", "entries": OTHER}).content).read_all()
        assert t.num_rows == 1470
        body = problem(c.post("/v1/select", json={"selection": "all"}), 422, "limit-exceeded")  # 2302 + 1470 + 327
        assert "2,000" in body["detail"] and body["retryable"] is False
        assert "2,302 atoms" in problem(c.get(f"/v1/entries/{ENTRY}/atoms"), 422, "limit-exceeded")["detail"]
        sub = c.post("/v1/select", json={"selection": "name CA", "entries": ENTRY})
        assert pa.ipc.open_stream(sub.content).read_all().num_rows < 2000


def test_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    with serve_in_thread(Settings(store=lab.uri, rate_limit_per_s=1, rate_limit_burst=3)) as url:
        lab.url = url
        with lab.client("ben") as c:
            codes = [c.get("/v1/whoami").status_code for _ in range(3)]
            r = c.get("/v1/whoami")
        assert codes == [200, 200, 200]
        body = problem(r, 429, "rate-limited")
        assert body["retryable"] is True and int(r.headers["retry-after"]) >= 1
        with lab.client("ana") as c:  # buckets are per token
            assert c.get("/v1/whoami").status_code == 200
        time.sleep(1.1)
        with lab.client("ben") as c:
            assert c.get("/v1/whoami").status_code == 200
