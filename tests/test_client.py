"""The remote client (``moldb.connect``): error mapping, retries, unreachable services.

Problem codes the tests can provoke are checked against a real ``moldb serve`` on loopback;
every code of docs/service.md is also checked through ``httpx.MockTransport``, as are the
retry rules (idempotent reads retry, writes never do).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import moldb
from moldb.client import CODE_TO_ERROR
from moldb.client.transport import Transport
from tests._service import Service, free_port, make_store, make_token
from tests.conftest import data

pytest.importorskip("fastapi", reason="the service extra is not installed: pip install 'moldb[service]'")

ENTRY = "1O1Z"
SRC = "mmcif/1o1z.cif.gz"

#: code → (HTTP status, exception class, retryable) as in the table of docs/service.md
PROBLEMS: dict[str, tuple[int, type[moldb.MoldbError], bool]] = {
    "entry-not-found": (404, moldb.EntryNotFoundError, False),
    "duplicate-entry": (409, moldb.DuplicateEntryError, False),
    "parse-error": (422, moldb.ParseError, False),
    "unsupported-format": (422, moldb.UnsupportedFormatError, False),
    "validation-error": (422, moldb.ValidationError, False),
    "unauthenticated": (401, moldb.AuthenticationError, False),
    "forbidden": (403, moldb.PermissionDeniedError, False),
    "payload-too-large": (413, moldb.LimitExceededError, False),
    "limit-exceeded": (422, moldb.LimitExceededError, False),
    "rate-limited": (429, moldb.RateLimitedError, True),
    "busy": (503, moldb.ConcurrencyError, True),
    "storage-unavailable": (503, moldb.StorageUnavailableError, True),
    "internal": (500, moldb.ServiceError, False),
}


def _problem(code: str, status: int, detail: str) -> httpx.Response:
    body = {"type": f"https://moldb.dev/problems/{code}", "title": code, "status": status, "detail": detail,
            "code": code, "retryable": PROBLEMS[code][2]}
    headers = {"Retry-After": "0"} if status in (429, 503) else {}
    return httpx.Response(status, content=json.dumps(body), headers={"Content-Type": "application/problem+json",
                                                                      **headers})


def _mocked(handler: Any, retries: int = 3) -> moldb.RemoteStore:
    store = moldb.connect("http://moldb.test", token="mdb_x_y")
    store._http.close()
    store._http = Transport("http://moldb.test", token="mdb_x_y", retries=retries, backoff=0.001,
                            transport=httpx.MockTransport(handler))
    return store


# -- mapping and retry rules (mock transport) -------------------------------------------------------------
def test_the_client_maps_every_documented_code() -> None:
    assert set(CODE_TO_ERROR) >= set(PROBLEMS)
    assert CODE_TO_ERROR["not-found"] is moldb.ServiceError  # an unknown endpoint is not a missing entry


@pytest.mark.parametrize("code", sorted(PROBLEMS))
def test_each_problem_code_raises_its_exception(code: str) -> None:
    status, cls, retryable = PROBLEMS[code]
    store = _mocked(lambda request: _problem(code, status, f"{ENTRY}: the {code} detail"), retries=0)
    with pytest.raises(cls, match=f"the {code} detail") as exc:
        store.history(ENTRY)
    assert type(exc.value) is cls or code == "validation-error"
    assert exc.value.retryable is retryable
    assert exc.value.code == code and exc.value.status == status  # type: ignore[attr-defined]


def test_entry_not_found_is_still_a_key_error() -> None:
    store = _mocked(lambda request: _problem("entry-not-found", 404, "entry 1ABC is not in the store"))
    with pytest.raises(KeyError, match="1ABC"):
        store.get("1ABC")
    assert "1ABC" not in store


def test_a_read_retries_503_until_the_service_answers() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            return _problem("storage-unavailable", 503, "object store unreachable")
        return httpx.Response(200, json={"published": 1})

    assert _mocked(handler).tags(ENTRY) == {"published": 1}
    assert len(calls) == 3


def test_a_read_gives_up_after_its_retries() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503, text="<html>bad gateway</html>")  # a proxy's page, no problem+json

    with pytest.raises(moldb.ServiceUnavailableError, match="503") as exc:
        _mocked(handler, retries=2).history(ENTRY)
    assert exc.value.retryable and len(calls) == 3


def test_select_is_a_read_and_retries() -> None:
    import pyarrow as pa

    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        if len(calls) == 1:
            return _problem("busy", 503, "busy")
        sink = pa.BufferOutputStream()
        table = pa.table({"entry": ["1O1Z"], "label_atom_id": ["CA"]})
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        return httpx.Response(200, content=sink.getvalue().to_pybytes(),
                              headers={"Content-Type": "application/vnd.apache.arrow.stream"})

    t = _mocked(handler).select("name CA", entries=ENTRY, residues=(10, 20)).to_arrow()
    assert t.num_rows == 1 and len(calls) == 2
    assert calls[0] == {"selection": "name CA", "entries": ENTRY, "residues": [10, 20]}


def test_writes_are_never_retried(tmp_path: Path) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return _problem("busy", 503, "writer lease held")

    store = _mocked(handler, retries=5)
    with pytest.raises(moldb.ConcurrencyError):
        store.ingest(data(SRC))
    with pytest.raises(moldb.ConcurrencyError):
        store.tag(ENTRY, 1, "published")
    assert calls == ["POST", "PUT"]


def test_connection_refused_is_service_unavailable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with moldb.connect(url, token="mdb_x_y", retries=1) as store, \
            pytest.raises(moldb.ServiceUnavailableError, match=url.replace(".", r"\.")) as exc:
        store.entries()
    assert exc.value.retryable
    assert isinstance(exc.value, ConnectionError)


def test_connect_wants_an_http_url() -> None:
    with pytest.raises(moldb.ValidationError, match=r"moldb\.open"):
        moldb.connect("/data/store")


# -- against a real service ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One service (small upload and result caps) with a depositor, a reader and an admin of lab 'fraser'."""
    root = tmp_path_factory.mktemp("client")
    store = make_store(root / "store")
    tokens = {role: make_token(store, f"u_{role}", lab="fraser", role=role)
              for role in ("reader", "admin")}
    tokens["depositor"] = make_token(store, "u_depositor", lab="fraser", role="depositor", cli=True)
    with Service(store, root / "serve.log", args=["--max-upload-mb", "0.3", "--max-result-rows", "3000"]) as svc:
        with moldb.connect(svc.url, token=tokens["depositor"]) as dep:
            dep.ingest(data(SRC))
            dep.ingest(data("mmcif/3o5r.cif.gz"))
        yield {"url": svc.url, "tokens": tokens, "store": store, "service": svc}


def _as(served: dict[str, Any], role: str | None, retries: int = 0) -> moldb.RemoteStore:
    token = served["tokens"][role] if role else None
    return moldb.connect(served["url"], token=token, retries=retries)


def test_real_entry_not_found(served: dict[str, Any]) -> None:
    with _as(served, "reader") as s, pytest.raises(moldb.EntryNotFoundError, match="1ABC"):
        s.get("1ABC")


def test_real_duplicate_entry(served: dict[str, Any]) -> None:
    with _as(served, "depositor") as s, pytest.raises(moldb.DuplicateEntryError, match=ENTRY):
        s.ingest(data(SRC))


def test_real_parse_error(served: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "broken.cif"
    bad.write_text("data_X\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1\n")
    with _as(served, "depositor") as s, pytest.raises(moldb.ParseError, match=r"broken\.cif"):
        s.ingest(bad)


def test_real_unsupported_format(served: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "notes.cif"
    bad.write_bytes(b"these are not atoms\n" * 10)
    with _as(served, "depositor") as s, pytest.raises(moldb.UnsupportedFormatError):
        s.ingest(bad)


def test_real_validation_errors(served: dict[str, Any]) -> None:
    with _as(served, "depositor") as s:
        with pytest.raises(moldb.ValidationError, match="frobnicate"):
            s.select("frobnicate 3", entries=ENTRY).to_arrow()
        with pytest.raises(moldb.ValidationError, match="tag"):
            s.tag(ENTRY, 1, "123")


def test_real_unauthenticated(served: dict[str, Any]) -> None:
    with _as(served, None) as s, pytest.raises(moldb.AuthenticationError):
        s.entries()
    with moldb.connect(served["url"], token="mdb_nope_wrongsecret", retries=0) as s, \
            pytest.raises(moldb.AuthenticationError):
        s.get(ENTRY)


def test_real_forbidden(served: dict[str, Any], tmp_path: Path) -> None:
    with _as(served, "reader") as s:
        assert s.get(ENTRY).atoms.num_rows == 2302
        with pytest.raises(moldb.PermissionDeniedError):
            s.deposit(data(SRC), entry=ENTRY, message="readers may not deposit")
        with pytest.raises(moldb.PermissionDeniedError):
            s.tag(ENTRY, 1, "nope")
    with _as(served, "depositor") as s:
        assert [h.version for h in s.history(ENTRY)] == [1]


def test_real_payload_too_large(served: dict[str, Any]) -> None:
    with _as(served, "depositor") as s, pytest.raises(moldb.LimitExceededError):
        s.ingest(data("mmcif/1xnr.cif.gz"))  # 713 KB > the 300 KB cap of this service
    with _as(served, "reader") as s:
        assert "1XNR" not in s


def test_real_result_limit(served: dict[str, Any]) -> None:
    with _as(served, "reader") as s:
        assert s.select("all", entries=ENTRY).to_arrow().num_rows == 2302
        with pytest.raises(moldb.LimitExceededError) as exc:
            s.select("all").to_arrow()  # 2302 + 1470 rows > the 3000-row cap
        assert not exc.value.retryable


def test_real_rate_limit(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    token = make_token(store, "eager", lab="fraser", role="reader")
    with Service(store, tmp_path / "serve.log", args=["--rate-limit", "1", "--rate-burst", "3"]) as svc, \
            moldb.connect(svc.url, token=token, retries=0) as s:
        with pytest.raises(moldb.RateLimitedError) as exc:
            for _ in range(10):
                s.entries()
        assert exc.value.retryable and exc.value.retry_after is not None  # type: ignore[attr-defined]


def test_real_reads_survive_a_service_restart(tmp_path: Path) -> None:
    """Kill the service; a read issued while it is down retries until the restarted service answers."""
    store = make_store(tmp_path / "store")
    token = make_token(store, "ana", lab="fraser", role="depositor")
    svc = Service(store, tmp_path / "serve.log")
    svc.start()
    try:
        with moldb.connect(svc.url, token=token, retries=10) as s:
            v = s.ingest(data(SRC))
            svc.kill()
            with moldb.connect(svc.url, token=token, retries=0) as impatient, \
                    pytest.raises(moldb.ServiceUnavailableError, match=str(svc.port)):
                impatient.history(ENTRY)
            restarter = threading.Timer(0.5, svc.start)
            restarter.start()
            t0 = time.monotonic()
            got = s.get(ENTRY)  # retries with back-off while the service restarts
            restarter.join()
            assert got.version.content_hash == v.content_hash
            assert time.monotonic() - t0 > 0.4
    finally:
        svc.stop()
