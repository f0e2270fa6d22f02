"""The writer lock of a store on S3-compatible object storage: a lease object.

Object stores have no ``flock``, but S3 (since 2024), MinIO, Ceph and moto honour
conditional writes, which is all a lease needs:

* **Create**: ``PUT <store>/.moldb.lock`` with ``If-None-Match: *`` succeeds for exactly one
  of several racing writers (the others get ``412 Precondition Failed``).
* **Every later change** (renewal, clock update, release, takeover) is a ``PUT`` with
  ``If-Match: <the ETag this holder last wrote or read>``. The body carries a fresh random
  nonce, so two writes never share an ETag (S3 ETags are content MD5s) and a holder whose
  lease was taken over fails its next conditional write instead of overwriting the new holder.

The body (JSON) holds ``owner`` (host:pid:random, or null when free), ``expires_ms`` (wall clock),
``ttl_s``, and the store's **clock**: ``ts``, the last reserved write timestamp, and ``count``, the
commits so far — the same fields the local lock file holds (:class:`moldb.storage.lock.Clock`).
Release writes the free state (``owner`` null) rather than deleting the object, so the clock
survives from one holder to the next and timestamps stay strictly increasing across machines
whatever their clock skew.

A held lease is renewed every ``ttl_s / 3`` by a background thread and once more, synchronously,
right before the commit point (:meth:`S3Lease.fence`). A lease is taken over (conditional put on
its ETag) when it is free, when its ``expires_ms`` plus ``moldb.lock.max_skew_s`` has passed on the
taker's clock, or when the taker has watched the same ETag for longer than the holder's ``ttl_s`` on
its own monotonic clock (immune to wall-clock skew). ``docs/storage-s3.md`` describes the failure
modes.

``boto3`` is imported here only (extra ``moldb[s3]``); it is configured from the same settings as
TileDB (:func:`moldb.storage.engine.settings`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from typing import Any

from moldb.errors import ConcurrencyError, StorageError, StorageUnavailableError
from moldb.storage import engine

__all__ = ["LOCK_NAME", "S3Lease", "s3_client"]

LOCK_NAME = ".moldb.lock"
DEFAULT_TTL_S = 30.0
DEFAULT_MAX_SKEW_S = 5.0
_log = logging.getLogger("moldb.storage.s3lock")

_CLIENTS: dict[tuple[tuple[str, str], ...], Any] = {}
_CLIENTS_MU = threading.Lock()
#: ETags of leases this process held but could not release (endpoint down): it may take them back at once.
_ABANDONED: dict[tuple[str, str], set[str]] = {}


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def s3_client(cfg: dict[str, str]) -> Any:
    """A cached boto3 S3 client configured like TileDB from the ``vfs.s3.*`` settings in ``cfg``.

    Parameters
    ----------
    cfg : dict
        Effective settings (:func:`moldb.storage.engine.settings`).

    Raises
    ------
    StorageError
        boto3 is not installed (``pip install 'moldb[s3]'``).
    """
    keys = ("endpoint_override", "scheme", "region", "aws_access_key_id", "aws_secret_access_key",
            "aws_session_token", "use_virtual_addressing", "verify_ssl", "ca_file", "connect_timeout_ms",
            "request_timeout_ms", "connect_max_tries")
    s3 = {k: cfg.get(f"vfs.s3.{k}", "") for k in keys}
    cache_key = tuple(sorted(s3.items()))
    with _CLIENTS_MU:
        if cache_key in _CLIENTS:
            return _CLIENTS[cache_key]
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - the s3 extra is part of the test environment
            raise StorageError("stores on s3:// need boto3 for the writer lock; install it with "
                               "`pip install 'moldb[s3]'`") from exc
        endpoint = s3["endpoint_override"]
        scheme = s3["scheme"] or "https"
        verify: bool | str = not s3["verify_ssl"] or _truthy(s3["verify_ssl"])
        if s3["ca_file"] and verify:
            verify = s3["ca_file"]
        bconf = Config(
            connect_timeout=float(s3["connect_timeout_ms"] or 3000) / 1000,
            read_timeout=max(float(s3["request_timeout_ms"] or 3000) / 1000, 1.0),
            # at most one retry inside botocore (its backoff grows to seconds); the lease loop and the
            # caller retry the rest, and a dead endpoint surfaces quickly as StorageUnavailableError
            retries={"max_attempts": min(2, max(1, int(s3["connect_max_tries"] or 5))), "mode": "standard"},
            s3={"addressing_style": "virtual" if _truthy(s3["use_virtual_addressing"] or "true") else "path"},
        )
        client = boto3.client(
            "s3",
            endpoint_url=f"{scheme}://{endpoint}" if endpoint else None,
            region_name=s3["region"] or None,
            aws_access_key_id=s3["aws_access_key_id"] or None,
            aws_secret_access_key=s3["aws_secret_access_key"] or None,
            aws_session_token=s3["aws_session_token"] or None,
            verify=verify,
            config=bconf,
        )
        _CLIENTS[cache_key] = client
        return client


def _error_code(exc: BaseException) -> str:
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        return str(resp.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: BaseException) -> int:
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        return int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def _is_conflict(exc: BaseException) -> bool:
    """A conditional write lost a race (412 Precondition Failed, 409 ConditionalRequestConflict, or the key
    vanished under an If-Match)."""
    return _error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or \
        _status(exc) in (409, 412)


def _translate(exc: BaseException, uri: str, action: str) -> Exception:
    """Map a botocore error to a moldb error (unreachable / 5xx → retryable)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        status = _status(exc)
        if status >= 500 or status == 429 or _error_code(exc) in ("SlowDown", "ServiceUnavailable"):
            return StorageUnavailableError(f"{uri}: object store failing while {action} ({exc}); retry later")
        if _error_code(exc) == "NoSuchBucket":
            return StorageError(f"{uri}: bucket does not exist ({exc}); create it first")
        return StorageError(f"{uri}: object store refused {action} ({exc}); check the credentials "
                            "(vfs.s3.aws_access_key_id / AWS_ACCESS_KEY_ID) and the bucket policy")
    if isinstance(exc, BotoCoreError):
        return StorageUnavailableError(
            f"{uri}: object store unreachable while {action} ({exc}); nothing was committed. Check the endpoint "
            "(vfs.s3.endpoint_override / MOLDB_S3_ENDPOINT) and the network, then retry")
    return StorageError(f"{uri}: {action} failed: {exc}")


class S3Lease:
    """The writer lease of one store on S3; also its :class:`~moldb.storage.lock.Clock`.

    Parameters
    ----------
    uri : str
        Store URI (``s3://bucket/path``).
    config : mapping, optional
        Settings as for :func:`moldb.storage.engine.settings` (``vfs.s3.*`` and ``moldb.lock.*``).
    """

    def __init__(self, uri: str, config: dict[str, str] | None = None) -> None:
        self.uri = uri.rstrip("/")
        cfg = engine.settings(config)
        self.bucket, prefix = engine.split_s3(self.uri)
        self.key = f"{prefix}/{LOCK_NAME}" if prefix else LOCK_NAME
        self.ttl_s = float(cfg.get("moldb.lock.ttl_s", DEFAULT_TTL_S))
        self.max_skew_s = float(cfg.get("moldb.lock.max_skew_s", DEFAULT_MAX_SKEW_S))
        if self.ttl_s <= 0:
            raise ValueError(f"moldb.lock.ttl_s must be positive, got {self.ttl_s}")
        self.client = s3_client(cfg)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.etag: str | None = None
        self._state: dict[str, Any] = {}
        self._mu = threading.Lock()
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: seconds the last :meth:`acquire` took (reported by tests and benchmarks)
        self.acquire_s = 0.0

    # -- object I/O ----------------------------------------------------------------------------------
    def _get(self) -> tuple[dict[str, Any], str] | None:
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self.key)
            raw = r["Body"].read()
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404") or _status(exc) == 404:
                return None
            raise _translate(exc, self.uri, "reading the writer lease") from exc
        try:
            state = json.loads(raw)
            if not isinstance(state, dict):
                raise ValueError("not an object")
        except ValueError:
            _log.warning("%s: unreadable writer lease %r; treating it as free", self.uri, raw[:80])
            state = {}
        return state, str(r["ETag"])

    def _put(self, state: dict[str, Any], if_match: str | None) -> str:
        """Conditional put; returns the new ETag. Conflicts propagate as the botocore error."""
        body = json.dumps({**state, "nonce": uuid.uuid4().hex}).encode()
        cond = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        r = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                   ContentType="application/json", **cond)
        return str(r["ETag"])

    def _held_state(self, base: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time() * 1000)
        return {"v": 1, "store": self.uri, "owner": self.owner, "acquired_ms": base.get("acquired_ms", now),
                "expires_ms": now + int(self.ttl_s * 1000), "ttl_s": self.ttl_s,
                "ts": base.get("ts"), "count": int(base.get("count", 0) or 0)}

    # -- acquire / release ---------------------------------------------------------------------------
    def acquire(self, timeout: float = 120.0) -> S3Lease:
        """Take the lease, waiting up to ``timeout`` seconds.

        Raises
        ------
        ConcurrencyError
            Another writer held a live lease for the whole ``timeout`` (retryable).
        StorageUnavailableError
            The endpoint could not be reached (retryable).
        """
        t0 = time.monotonic()
        deadline = t0 + timeout
        watched: tuple[str, float] | None = None  # (etag, first seen, monotonic) of someone else's lease
        delay = 0.02
        holder = ""
        while True:
            cur = self._get()
            try:
                if cur is None:
                    state = {"acquired_ms": int(time.time() * 1000), "ts": None, "count": 0}
                    self.etag = self._put(self._held_state(state), None)
                    self._state = self._held_state(state)
                    break
                state, etag = cur
                now = time.monotonic()
                if watched is None or watched[0] != etag:
                    watched = (etag, now)
                owner = state.get("owner")
                holder = str(owner)
                ttl = float(state.get("ttl_s") or self.ttl_s)
                wall_expired = time.time() * 1000 > float(state.get("expires_ms") or 0) + self.max_skew_s * 1000
                seen_expired = now - watched[1] > ttl
                mine = etag in _ABANDONED.get((self.bucket, self.key), set())
                if not owner or wall_expired or seen_expired or mine:
                    base = {"acquired_ms": int(time.time() * 1000), "ts": state.get("ts"),
                            "count": state.get("count", 0)}
                    new = self._held_state(base)
                    self.etag = self._put(new, etag)
                    self._state = new
                    if owner and not mine:
                        _log.warning("%s: took over the writer lease of %s (expired %s)", self.uri, owner,
                                     "by its own clock" if wall_expired else f"unchanged for {ttl:.1f} s")
                    _ABANDONED.get((self.bucket, self.key), set()).discard(etag)
                    break
            except Exception as exc:
                if not _is_conflict(exc):
                    raise _translate(exc, self.uri, "taking the writer lease") from exc
                # lost a race: someone else created or changed the lease; look again
            if time.monotonic() > deadline:
                raise ConcurrencyError(
                    f"{self.uri}: writer lease {self.key} held by {holder} for more than {timeout:.0f} s; retry "
                    f"when its ingest or deposit has finished (a crashed holder's lease expires after its ttl)"
                )
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, 0.25)
        self.acquire_s = time.monotonic() - t0
        self._lost = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"moldb-lease-{self.key}", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Write the free state (keeping the clock); never raises (an unreleased lease expires)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl_s)
            self._thread = None
        with self._mu:
            if self._lost or self.etag is None:
                return
            free = {"v": 1, "store": self.uri, "owner": None, "expires_ms": 0, "ttl_s": self.ttl_s,
                    "released_by": self.owner, "ts": self._state.get("ts"),
                    "count": int(self._state.get("count", 0) or 0)}
            try:
                self._put(free, self.etag)
            except Exception as exc:
                if not _is_conflict(exc):
                    _ABANDONED.setdefault((self.bucket, self.key), set()).add(self.etag)
                _log.warning("%s: could not release the writer lease (%s); it expires after %.0f s",
                             self.uri, exc, self.ttl_s)
            self.etag = None

    # -- renewal and fencing ---------------------------------------------------------------------------
    def _renew_locked(self) -> None:
        if self._lost:
            raise ConcurrencyError(self._lost)
        new = self._held_state(self._state)
        try:
            self.etag = self._put(new, self.etag)
        except Exception as exc:
            if _is_conflict(exc):
                self._lost = (f"{self.uri}: the writer lease was taken over by another writer (this process "
                              f"stalled beyond its ttl of {self.ttl_s:.0f} s); nothing was committed, retry")
                raise ConcurrencyError(self._lost) from exc
            raise _translate(exc, self.uri, "renewing the writer lease") from exc
        self._state = new

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            with self._mu:
                try:
                    self._renew_locked()
                except ConcurrencyError:
                    return
                except StorageError as exc:  # keep trying; fence() reports it before the commit point
                    _log.warning("%s: lease renewal failed: %s", self.uri, exc)

    def fence(self) -> None:
        """Renew now and fail unless this process still holds the lease (call right before a commit point).

        Raises
        ------
        ConcurrencyError
            The lease was taken over (this writer stalled past its ttl): do not commit.
        StorageUnavailableError
            The endpoint could not be reached.
        """
        with self._mu:
            self._renew_locked()

    # -- the Clock interface -----------------------------------------------------------------------------
    def read(self) -> int | None:
        """Last reserved timestamp (ms), or None for a fresh store."""
        ts = self._state.get("ts")
        return None if ts is None else int(ts)

    def count(self) -> int:
        """Commits recorded so far."""
        return int(self._state.get("count", 0) or 0)

    def write(self, ts: int, count: int | None = None) -> None:
        """Reserve ``ts`` (and record ``count``) in the lease before any data of the commit is written."""
        with self._mu:
            prev = dict(self._state)
            self._state["ts"] = int(ts)
            if count is not None:
                self._state["count"] = int(count)
            try:
                self._renew_locked()
            except Exception:
                self._state = prev
                raise
