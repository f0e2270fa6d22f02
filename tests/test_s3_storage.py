"""Stores on S3-compatible object storage: the lease lock, faults, concurrency, time travel, maintain, CLI.

A real S3-compatible server (``moto_server``) runs on loopback for this module (``tests/s3server.py``);
the store contract itself is in ``tests/test_contract_s3.py``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import moldb
from moldb.cli.main import app
from moldb.storage import engine
from moldb.storage.backend import Backend
from moldb.storage.s3lock import S3Lease
from tests.cif_edits import edit, shift_b
from tests.conftest import data
from tests.s3server import MotoServer, S3Proxy, free_port, s3_config


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="module")
def bucket(s3: MotoServer) -> str:
    return s3.bucket()


def _uri(bucket: str) -> str:
    return f"s3://{bucket}/{uuid.uuid4().hex[:8]}/store"


def _fingerprint(store: moldb.Store, entry: str, version: int) -> tuple[str, str]:
    """(content hash recorded at commit, SHA-256 of the atom table as read back now)."""
    s = store.get(entry, version=version)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, s.atoms.schema) as w:
        w.write_table(s.atoms)
    return s.version.content_hash, hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


# -- settings ----------------------------------------------------------------------------------------------
def test_settings_split_endpoint_and_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLDB_S3_ENDPOINT", "http://127.0.0.1:9999/")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("MOLDB_S3_REQUEST_TIMEOUT_MS", "1234")
    cfg = engine.settings({"vfs.s3.region": "eu-west-1", "moldb.lock.ttl_s": "7"})
    assert cfg["vfs.s3.endpoint_override"] == "127.0.0.1:9999"
    assert cfg["vfs.s3.scheme"] == "http"
    assert cfg["vfs.s3.use_virtual_addressing"] == "false"  # path-style for a custom endpoint
    assert cfg["vfs.s3.aws_access_key_id"] == "env-key"
    assert cfg["vfs.s3.request_timeout_ms"] == "1234"
    assert cfg["vfs.s3.region"] == "eu-west-1" and cfg["moldb.lock.ttl_s"] == "7"
    assert cfg["vfs.s3.use_multipart_upload"] == "false" and cfg["vfs.s3.connect_timeout_ms"] == "3000"
    explicit = engine.settings({"vfs.s3.endpoint_override": "https://s3.example.org",
                                "vfs.s3.use_virtual_addressing": "true", "vfs.s3.connect_max_tries": "2"})
    assert (explicit["vfs.s3.endpoint_override"], explicit["vfs.s3.scheme"]) == ("s3.example.org", "https")
    assert explicit["vfs.s3.use_virtual_addressing"] == "true" and explicit["vfs.s3.connect_max_tries"] == "2"
    assert engine.split_s3("s3://lab/a/store/") == ("lab", "a/store")
    with pytest.raises(ValueError, match="not an s3://"):
        engine.split_s3("/tmp/x")


# -- creation ------------------------------------------------------------------------------------------------
def test_create_refuses_missing_bucket_and_used_prefix(s3: MotoServer, bucket: str) -> None:
    with pytest.raises(moldb.StoreNotFoundError, match=r"no-such-bucket.*bucket does not exist.*create it first"):
        moldb.create("s3://no-such-bucket/store", config=s3.config())
    uri = _uri(bucket)
    s3.client().put_object(Bucket=bucket, Key=uri.split("/", 3)[3] + "/stray.txt", Body=b"x")
    with pytest.raises(moldb.StoreExistsError, match="already holds objects"):
        moldb.create(uri, config=s3.config())
    good = _uri(bucket)
    moldb.create(good, config=s3.config()).close()
    with pytest.raises(moldb.StoreExistsError):
        moldb.create(good, config=s3.config())
    with pytest.raises(moldb.StoreNotFoundError, match="no moldb store"):
        moldb.open(_uri(bucket), config=s3.config())


def test_unreachable_endpoint_is_a_retryable_error() -> None:
    cfg = s3_config(free_port())  # nothing listens there
    t0 = time.perf_counter()
    with pytest.raises(moldb.StorageUnavailableError, match=r"s3://lab/store.*unreachable") as exc:
        moldb.open("s3://lab/store", config=cfg)
    assert exc.value.retryable and isinstance(exc.value, OSError)
    assert time.perf_counter() - t0 < 10
    with pytest.raises(moldb.StorageUnavailableError) as exc2:
        S3Lease("s3://lab/store", cfg).acquire(timeout=1)
    assert exc2.value.retryable


# -- the lease lock --------------------------------------------------------------------------------------------
def test_lease_excludes_second_writer_and_hands_over_the_clock(s3: MotoServer, bucket: str) -> None:
    uri = _uri(bucket)
    a = S3Lease(uri, s3.config()).acquire(timeout=5)
    a.write(1_000, 3)
    t0 = time.perf_counter()
    with pytest.raises(moldb.ConcurrencyError, match=r"\.moldb\.lock held by .*:") as exc:
        S3Lease(uri, s3.config()).acquire(timeout=0.3)
    assert exc.value.retryable and time.perf_counter() - t0 < 3
    body = json.loads(s3.client().get_object(Bucket=bucket, Key=a.key)["Body"].read())
    assert body["owner"] == a.owner and body["ts"] == 1_000 and body["count"] == 3
    a.release()
    body = json.loads(s3.client().get_object(Bucket=bucket, Key=a.key)["Body"].read())
    assert body["owner"] is None and body["ts"] == 1_000  # released, clock kept
    b = S3Lease(uri, s3.config()).acquire(timeout=5)
    assert (b.read(), b.count()) == (1_000, 3)
    assert b.acquire_s < 1.0
    b.release()


def test_expired_lease_is_taken_over_and_the_stale_holder_is_fenced(s3: MotoServer, bucket: str) -> None:
    uri = _uri(bucket)
    cfg = s3.config(**{"moldb.lock.ttl_s": "0.6", "moldb.lock.max_skew_s": "0"})
    a = S3Lease(uri, cfg).acquire(timeout=5)
    a._stop.set()  # simulate a stalled holder: its renewals stop
    a._thread.join()  # type: ignore[union-attr]
    a.write(5_000)
    t0 = time.perf_counter()
    b = S3Lease(uri, cfg).acquire(timeout=10)  # waits for expiry, then a conditional takeover
    waited = time.perf_counter() - t0
    assert 0.3 < waited < 5, waited
    assert b.read() == 5_000  # the clock survives the takeover: timestamps stay increasing
    with pytest.raises(moldb.ConcurrencyError, match="taken over"):
        a.fence()  # the stale holder's If-Match fails: it must not commit
    a.release()  # must not clobber the new holder
    b.fence()
    body = json.loads(s3.client().get_object(Bucket=bucket, Key=b.key)["Body"].read())
    assert body["owner"] == b.owner
    b.release()


def test_takeover_by_observation_ignores_a_skewed_expiry(s3: MotoServer, bucket: str) -> None:
    """A holder whose clock runs an hour ahead writes an expiry far in the future; a waiter still takes the
    lease once it has seen the same ETag for longer than the holder's ttl on its own monotonic clock."""
    uri = _uri(bucket)
    lease = S3Lease(uri, s3.config())
    future = int(time.time() * 1000) + 3_600_000
    s3.client().put_object(Bucket=bucket, Key=lease.key, Body=json.dumps(
        {"owner": "skewed:1:dead", "expires_ms": future, "ttl_s": 0.5, "ts": 42, "count": 1}).encode())
    t0 = time.perf_counter()
    lease.acquire(timeout=10)
    assert 0.5 <= time.perf_counter() - t0 < 5
    assert lease.read() == 42
    lease.release()


def test_crashed_writer_leaves_no_partial_version_and_its_lease_expires(s3: MotoServer, bucket: str) -> None:
    uri = _uri(bucket)
    cfg = s3.config(**{"moldb.lock.ttl_s": "1.5", "moldb.lock.max_skew_s": "0"})
    st = moldb.create(uri, config=cfg)
    v1 = st.ingest(data("mmcif/1o1z.cif.gz"))
    before = _fingerprint(st, "1O1Z", 1)
    script = textwrap.dedent(f"""
        import os, signal, moldb
        from moldb.storage.backend import Backend
        orig = Backend.write_cells
        def write_cells(self, name, *a, **k):
            if name == "versions":  # blocks written, lease held, commit point not reached
                os.kill(os.getpid(), signal.SIGKILL)
            return orig(self, name, *a, **k)
        Backend.write_cells = write_cells
        moldb.open({uri!r}, config={cfg!r}).ingest({str(data("mmcif/5zmz.cif.gz"))!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    st2 = moldb.open(uri, config=cfg)
    assert st2.entries().column("entry").to_pylist() == ["1O1Z"] and "5ZMZ" not in st2
    assert _fingerprint(st2, "1O1Z", 1) == before
    t0 = time.perf_counter()
    v = st2.ingest(data("mmcif/5zmz.cif.gz"))  # waits out the dead writer's lease, then commits
    assert v.version == 1 and v.timestamp > v1.timestamp
    assert time.perf_counter() - t0 < 30
    assert st2.get("5ZMZ").atoms.num_rows == 31


def _depositor(uri: str, cfg: dict[str, str], paths: list[str]) -> list[tuple[str, int, int]]:
    store = moldb.open(uri, config=cfg)
    out = []
    for p in paths:
        v = store.deposit(p, entry="5ZMZ", message=p)
        out.append((p, v.version, v.timestamp))
    return out


def test_concurrent_depositor_processes_lose_and_duplicate_no_version(s3: MotoServer, bucket: str,
                                                                        tmp_path: Path) -> None:
    n_proc, per_proc = 4, 2
    src = data("mmcif/5zmz.cif.gz")
    files = [str(edit(src, tmp_path / f"d{i}.cif", shift_b(0.5 * (i + 1)))) for i in range(n_proc * per_proc)]
    uri = _uri(bucket)
    moldb.create(uri, config=s3.config()).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(n_proc) as pool:
        parts = pool.starmap(_depositor, [(uri, s3.config(), files[k * per_proc:(k + 1) * per_proc])
                                          for k in range(n_proc)])
    results = [r for part in parts for r in part]
    assert sorted(v for _, v, _ in results) == list(range(1, n_proc * per_proc + 1))  # none lost or duplicated
    store = moldb.open(uri, config=s3.config())
    hist = store.history("5ZMZ")
    assert [h.version for h in hist] == list(range(1, n_proc * per_proc + 1))
    ts = [h.timestamp for h in hist]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert all(h.parent == h.version - 1 for h in hist)
    for path, version, stamp in results:  # each version reads back the file its process deposited
        s = store.get("5ZMZ", version=version)
        assert s.version.message == path and s.version.timestamp == stamp
        want = np.array(gemmi.cif.read(path).sole_block().find_values("_atom_site.B_iso_or_equiv"), dtype=float)
        np.testing.assert_array_equal(s.atoms.column("B_iso_or_equiv").to_numpy(), want)


# -- reads across handles, time travel, maintenance ----------------------------------------------------------
def test_other_handles_see_new_versions_and_time_travel(s3: MotoServer, bucket: str, tmp_path: Path) -> None:
    uri = _uri(bucket)
    writer = moldb.create(uri, config=s3.config())
    reader = moldb.open(uri, config=s3.config())
    v1 = writer.ingest(data("mmcif/1o1z.cif.gz"))
    assert reader.get("1O1Z").version.version == 1
    v2 = writer.deposit(edit(data("mmcif/1o1z.cif.gz"), tmp_path / "v2.cif", shift_b(2.0)), entry="1O1Z")
    # the reader notices the new commit without refresh (a LIST of versions/__commits)
    assert reader.get("1O1Z").version.version == 2
    assert [h.version for h in reader.history("1O1Z")] == [1, 2]
    assert reader.get("1O1Z", as_of=v1.timestamp).version.content_hash == v1.content_hash
    pinned = moldb.open(uri, as_of=v1.timestamp, config=s3.config())
    assert [h.version for h in pinned.history("1O1Z")] == [1]
    b1 = pinned.get("1O1Z").atoms.column("B_iso_or_equiv").to_numpy()
    b2 = reader.get("1O1Z").atoms.column("B_iso_or_equiv").to_numpy()
    np.testing.assert_allclose(b2 - b1, 2.0, atol=1e-6)
    assert v2.timestamp > v1.timestamp
    with pytest.raises(moldb.ValidationError, match="read-only"):
        pinned.ingest(data("mmcif/5zmz.cif.gz"))
    relaxed = moldb.open(uri, config=s3.config(**{"moldb.s3.revalidate_s": "3600"}))
    assert relaxed.get("1O1Z").version.version == 2


def test_maintain_on_s3_keeps_history_bit_identical(s3: MotoServer, bucket: str, tmp_path: Path) -> None:
    uri = _uri(bucket)
    cfg = s3.config()
    st = moldb.create(uri, config=cfg)
    v1 = st.ingest(data("mmcif/1o1z.cif.gz"))
    st.deposit(edit(data("mmcif/1o1z.cif.gz"), tmp_path / "v2.cif", shift_b(1.0)), entry="1O1Z")
    st.tag("1O1Z", 2, "refit")
    snap = {v: _fingerprint(st, "1O1Z", v) for v in (1, 2)}
    args = [a for k, v in cfg.items() for a in ("--config", f"{k}={v}")]
    res = CliRunner().invoke(app, [*args, "maintain", "--store", uri, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["arrays"]["versions"]["fragments_after"] < report["arrays"]["versions"]["fragments_before"]
    fresh = moldb.open(uri, config=cfg)
    assert {v: _fingerprint(fresh, "1O1Z", v) for v in (1, 2)} == snap
    assert fresh.get("1O1Z", as_of=v1.timestamp).version.version == 1
    assert fresh.tags("1O1Z") == {"refit": 2}
    assert fresh.maintenance_log()[-1]["op"] == "maintain"


def test_cli_init_and_ingest_with_config_and_environment(s3: MotoServer, bucket: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    uri = _uri(bucket)
    args = [a for k, v in s3.config().items() for a in ("-c", f"{k}={v}")]
    runner = CliRunner()
    res = runner.invoke(app, [*args, "init", uri])
    assert res.exit_code == 0 and "created moldb store" in res.output, res.output
    res = runner.invoke(app, [*args, "ingest", str(data("mmcif/5zmz.cif.gz")), "--store", uri, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["ingested"][0]["n_atoms"] == 31
    res = runner.invoke(app, ["-c", "novalue", "ls", "--store", uri])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output
    for var, value in {"MOLDB_S3_ENDPOINT": s3.endpoint, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    res = runner.invoke(app, ["ls", "--store", uri, "--json"])
    assert res.exit_code == 0, res.output
    assert [r["entry"] for r in json.loads(res.output)] == ["5ZMZ"]


# -- faults ---------------------------------------------------------------------------------------------------
def test_killing_the_s3_endpoint_mid_write_leaves_the_store_consistent(s3: MotoServer, bucket: str,
                                                                       tmp_path: Path) -> None:
    """Kill -9 the S3 endpoint in the middle of a large ingest, restart it on the same port, check the store.

    Why a proxy stands in for the server: moto keeps its objects in memory, so killing ``moto_server``
    itself also deletes the store and nothing would be left to check for consistency. A TCP forwarding
    proxy (``tests/s3proxy.py``, its own process) is the endpoint TileDB and the lease talk to; killed
    with SIGKILL after a set number of uploaded bytes, it drops every connection in the middle of an
    upload exactly as a crashed S3 front end would, and restarting it on the same port brings the
    endpoint back with the data that reached the server, which is what a real S3 outage looks like.
    (Killing moto itself is tested below, for the error only.)
    """
    proxy = S3Proxy(s3.port, die_after=150_000).start()
    cfg = s3_config(proxy.port, **{"moldb.lock.ttl_s": "2"})
    try:
        uri = _uri(bucket)
        st = moldb.create(uri, config=cfg)
        st.ingest(data("mmcif/1o1z.cif.gz"))
        st.deposit(edit(data("mmcif/1o1z.cif.gz"), tmp_path / "v2.cif", shift_b(1.0)), entry="1O1Z")
        st.ingest(data("mmcif/5zmz.cif.gz"))
        committed = {(e, v): _fingerprint(st, e, v) for e, v in (("1O1Z", 1), ("1O1Z", 2), ("5ZMZ", 1))}
        ts_before = st.history("5ZMZ")[-1].timestamp  # the last commit before the fault

        proxy.arm()  # the next 150 kB uploaded are the last: 4ZXB's blocks are ~0.5 MB
        t0 = time.perf_counter()
        with pytest.raises(moldb.StorageUnavailableError) as exc:
            st.ingest(data("mmcif/4zxb.cif.gz"))
        failed_after = time.perf_counter() - t0
        assert exc.value.retryable and uri in str(exc.value)
        assert proxy.proc is not None and proxy.proc.wait(5) == -9  # the endpoint died (SIGKILL) mid-upload
        assert failed_after < 30
        while_down = moldb.StorageUnavailableError
        with pytest.raises(while_down):
            moldb.open(uri, config=cfg)

        proxy.start()  # the endpoint comes back on the same port
        fresh = moldb.open(uri, config=cfg)
        assert sorted(fresh.entries().column("entry").to_pylist()) == ["1O1Z", "5ZMZ"]  # no partial version
        assert "4ZXB" not in fresh and [h.version for h in fresh.history("1O1Z")] == [1, 2]
        assert {(e, v): _fingerprint(fresh, e, v) for e, v in committed} == committed  # bit-identical
        assert len(Backend(uri, cfg).read_versions()["version"]) == 3  # 1O1Z v1-2, 5ZMZ v1, nothing else
        lease = json.loads(s3.client().get_object(Bucket=bucket, Key=uri.split("/", 3)[3] + "/.moldb.lock")
                           ["Body"].read())
        assert lease["ts"] > ts_before and lease["owner"]  # it died inside the commit, holding the lease

        v = st.ingest(data("mmcif/4zxb.cif.gz"))  # the retry succeeds (same handle, lease taken back)
        assert v.version == 1 and v.timestamp > ts_before
        got = moldb.open(uri, config=cfg).get("4ZXB")
        assert got.atoms.num_rows == 12918 and got.version.content_hash == v.content_hash
    finally:
        proxy.stop()


def test_killing_moto_itself_mid_write_is_a_retryable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    server = MotoServer().start()
    try:
        cfg = server.config()
        st = moldb.create(f"s3://{server.bucket()}/store", config=cfg)
        st.ingest(data("mmcif/5zmz.cif.gz"))
        orig = Backend.write_blocks

        def write_blocks(self: Backend, *a: Any, **k: Any) -> None:
            server.kill()  # SIGKILL the S3 server between the lease and the first data upload
            orig(self, *a, **k)

        monkeypatch.setattr(Backend, "write_blocks", write_blocks)
        with pytest.raises(moldb.StorageUnavailableError, match="unreachable") as exc:
            st.ingest(data("mmcif/1o1z.cif.gz"))
        assert exc.value.retryable and isinstance(exc.value, moldb.StorageError)
        assert "raw" not in type(exc.value).__module__  # a moldb error, not a TileDB one
        assert type(exc.value).__module__ == "moldb.errors"
    finally:
        server.stop()


def test_lock_acquire_latency_is_small(s3: MotoServer, bucket: str) -> None:
    uri = _uri(bucket)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        lease = S3Lease(uri, s3.config()).acquire(timeout=5)
        times.append(time.perf_counter() - t0)
        lease.release()
    assert float(np.median(times)) < 0.5, times
    done: list[int] = []

    def worker(k: int) -> None:
        for _ in range(3):
            lease = S3Lease(uri, s3.config()).acquire(timeout=30)
            done.append(k)
            lease.release()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(done) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
