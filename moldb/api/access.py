"""Identity, permissions and the audit log of a multi-user store (the moldb service's model).

* A token belongs to one user in one lab namespace with one role: ``reader`` < ``depositor``
  < ``admin``. Tokens look like ``mdb_<id>_<secret>``; the store keeps the id, the SHA-256
  of the secret, user, lab, role, created, expires and revoked (never the secret).
* Every entry belongs to the namespace recorded in its versions' ``source`` (entries
  recording none, e.g. ingested locally, are ``public``). Readers of lab L read L and
  ``public``; depositors also ingest, deposit and tag in L; admins of L also manage L's
  tokens and read L's audit log. An admin of lab ``*`` is a global admin.
* The audit log has one object per write or admin action.

Everything is kept in the store (:class:`moldb.storage.objects.ObjectStore`), so several
service processes share it; token lookups are cached for ``cache_ttl_s`` seconds, so a
revocation takes effect in every process within that time (at once in the one revoking).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from moldb.api.store import Store
from moldb.errors import (
    AuthenticationError,
    EntryNotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from moldb.ingest.load import DEFAULT_NAMESPACE, validate_entry_id
from moldb.schema.records import VersionInfo
from moldb.storage.objects import ObjectStore
from moldb.versioning.resolve import TimeLike

__all__ = ["DEFAULT_NAMESPACE", "GLOBAL", "ROLES", "Access", "Principal", "TokenInfo", "check_name",
           "entry_namespaces", "resolve_version", "validate_entry_id"]

#: Roles, weakest first; each role may do everything the ones before it may.
ROLES = ("reader", "depositor", "admin")
#: The lab of global admins.
GLOBAL = "*"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")
_TOKEN = re.compile(r"^mdb_([0-9a-f]{16})_([0-9a-f]{64})$")
_TOKEN_ID = re.compile(r"^[0-9a-f]{16}$")


def _now_ms() -> int:
    return int(time.time() * 1000)


def check_name(kind: str, value: str) -> str:
    """Validate a user or lab name (1-64 letters, digits, ``_ . @ -``); returns it.

    Raises
    ------
    ValidationError
        If it has other characters (``/``, ``..``, spaces, NUL ...) or the wrong length.
    """
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise ValidationError(f"{kind} {value!r} is not valid: use 1-64 letters, digits, '_', '.', '@' or '-', "
                              "starting with a letter or digit")
    return value


@dataclass(frozen=True)
class TokenInfo:
    """A stored token (never its secret).

    Attributes
    ----------
    id : str
        Public token id (the ``<id>`` of ``mdb_<id>_<secret>``).
    user, lab, role : str
        Who it authenticates, in which namespace, with which role.
    created : int
        ms since the epoch.
    expires, revoked : int or None
        ms since the epoch; None for never / not revoked.
    """

    id: str
    user: str
    lab: str
    role: str
    created: int
    expires: int | None = None
    revoked: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request.

    Attributes
    ----------
    user, lab, role, token_id : str
    """

    user: str
    lab: str
    role: str
    token_id: str

    @property
    def is_global_admin(self) -> bool:
        """Admin of lab ``*``: every namespace, every action."""
        return self.lab == GLOBAL and self.role == "admin"

    def has_role(self, role: str) -> bool:
        """Whether this principal's role is ``role`` or a stronger one."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def can_read(self, namespace: str) -> bool:
        """Whether entries of ``namespace`` are visible to this principal."""
        return self.is_global_admin or self.lab == GLOBAL or namespace in (self.lab, DEFAULT_NAMESPACE)

    def can_write(self, namespace: str) -> bool:
        """Whether this principal may ingest, deposit or tag in ``namespace``."""
        return self.has_role("depositor") and (self.is_global_admin or namespace == self.lab)

    def require(self, role: str, action: str) -> None:
        """Raise :class:`PermissionDeniedError` unless the role is at least ``role``."""
        if not self.has_role(role):
            raise PermissionDeniedError(
                f"{action} needs role {role!r}; token {self.token_id} of user {self.user!r} is {self.role!r} in lab "
                f"{self.lab!r} (ask an admin of the lab for a token with that role)")

    def write_namespace(self, requested: str | None = None) -> str:
        """The namespace a new entry of this principal goes to (its lab; global admins may choose).

        Raises
        ------
        PermissionDeniedError
            The role is below depositor, or ``requested`` is another lab and the caller is no global admin.
        """
        self.require("depositor", "writing entries")
        if requested is None or requested == self.lab:
            return DEFAULT_NAMESPACE if self.lab == GLOBAL else self.lab
        check_name("namespace", requested)
        if not self.is_global_admin:
            raise PermissionDeniedError(f"a token of lab {self.lab!r} cannot write into namespace {requested!r}; "
                                        "omit the namespace or use a token of that lab")
        return requested


# -- entry namespaces ----------------------------------------------------------------------------------
_NS_CACHE: weakref.WeakKeyDictionary[Store, tuple[int, dict[str, str]]] = weakref.WeakKeyDictionary()


def entry_namespaces(store: Store) -> dict[str, str]:
    """Entry id → namespace of every entry of ``store`` (``public`` where none is recorded).

    Computed from the store's cached versions index, recomputed only when it changes.
    """
    import json

    cells = store._backend.versions_index()
    if store.as_of is not None:
        keep = np.flatnonzero(np.asarray(cells["ts"]) <= store.as_of)
        cells = {k: np.asarray(v)[keep] for k, v in cells.items()}
    hit = _NS_CACHE.get(store)
    if hit is not None and hit[0] == id(cells):
        return hit[1]
    ent = np.asarray(cells["entry"], dtype=object)
    ver = np.asarray(cells["version"])
    out: dict[str, str] = {}
    if len(ent):
        order = np.lexsort((-ver.astype(np.int64), ent))  # latest version of each entry first
        first = np.r_[True, ent[order][1:] != ent[order][:-1]]
        for i in order[first]:
            src = json.loads(cells["source"][i] or "{}")
            out[str(ent[i])] = str(src.get("namespace") or DEFAULT_NAMESPACE)
    if store.as_of is None:
        _NS_CACHE[store] = (id(cells), out)
    return out


def resolve_version(store: Store, entry: str, version: int | str | None = None,
                    as_of: TimeLike | None = None) -> VersionInfo:
    """The :class:`VersionInfo` that ``store.get(entry, version, as_of)`` would read (no atoms read)."""
    return store._resolve(entry, version, as_of)


# -- tokens, authentication, audit -----------------------------------------------------------------------
class Access:
    """Users, tokens, permissions and audit log of one store.

    Parameters
    ----------
    uri : str
        Store URI.
    config : dict, optional
        Extra TileDB configuration (as for :func:`moldb.open`).
    cache_ttl_s : float
        Seconds a token lookup is cached (a revocation by another process takes effect within it).
    """

    def __init__(self, uri: str, config: dict[str, str] | None = None, cache_ttl_s: float = 5.0) -> None:
        self.uri = str(uri).rstrip("/")
        self.objects = ObjectStore(self.uri, config)
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    # -- tokens -------------------------------------------------------------------------------------
    def add_user(self, name: str, lab: str, role: str, expires_days: float | None = None,
                 actor: str = "cli") -> tuple[str, TokenInfo]:
        """Create a token for user ``name`` in ``lab`` with ``role``.

        Parameters
        ----------
        name, lab : str
            User and lab namespace (``*`` for a global admin).
        role : {"reader", "depositor", "admin"}
        expires_days : float, optional
            Lifetime; never expires when omitted.
        actor : str
            Who did it (for the audit log).

        Returns
        -------
        (str, TokenInfo)
            The token (shown once: only its hash is stored) and its record.
        """
        check_name("user name", name)
        if lab != GLOBAL:
            check_name("lab", lab)
        if role not in ROLES:
            raise ValidationError(f"role {role!r} is not valid: use one of {', '.join(ROLES)}")
        if expires_days is not None and not expires_days > 0:
            raise ValidationError(f"expires_days={expires_days!r}: give a positive number of days, or none")
        tid, secret = secrets.token_hex(8), secrets.token_hex(32)
        now = _now_ms()
        info = TokenInfo(tid, name, lab, role, now,
                         None if expires_days is None else now + int(expires_days * 86_400_000))
        digest = hashlib.sha256(secret.encode()).hexdigest()
        self.objects.put(f"tokens/{tid}.json", {**info.as_dict(), "sha256": digest})
        self.audit(actor, lab, "user.add", outcome="ok", detail={"token_id": tid, "user": name, "role": role})
        return f"mdb_{tid}_{secret}", info

    def tokens(self, lab: str | None = None) -> list[TokenInfo]:
        """Every stored token (of ``lab`` only, when given), oldest first."""
        out = []
        for key in self.objects.list("tokens"):
            rec = self.objects.get(key)
            if rec is None or (lab is not None and rec.get("lab") != lab):
                continue
            out.append(_info(rec))
        return sorted(out, key=lambda t: (t.created, t.id))

    def token(self, token_id: str) -> TokenInfo:
        """The record of one token.

        Raises
        ------
        EntryNotFoundError
            No token has that id.
        """
        rec = self._load(token_id, fresh=True)
        if rec is None:
            raise EntryNotFoundError(f"no token with id {token_id!r} (see `moldb user ls`)")
        return _info(rec)

    def revoke(self, token_id: str, actor: str = "cli", by: Principal | None = None) -> TokenInfo:
        """Revoke a token (takes effect at once here, within ``cache_ttl_s`` in other processes).

        Parameters
        ----------
        token_id : str
        actor : str
            Who revokes (audit log).
        by : Principal, optional
            When given, must be an admin of the token's lab or a global admin.

        Raises
        ------
        EntryNotFoundError
            No such token.
        PermissionDeniedError
            ``by`` may not manage that lab.
        """
        if not isinstance(token_id, str) or not _TOKEN_ID.match(token_id):
            raise ValidationError(f"token id {token_id!r} is not valid: it is the 16 hex digits after 'mdb_'")
        rec = self._load(token_id, fresh=True)
        if rec is None:
            raise EntryNotFoundError(f"no token with id {token_id!r} (see `moldb user ls`)")
        if by is not None:
            self.require_admin(by, rec["lab"], "revoking a token")
        if rec.get("revoked") is None:
            rec["revoked"] = _now_ms()
            self.objects.put(f"tokens/{token_id}.json", rec)
        with self._lock:
            self._cache.pop(token_id, None)
        self.audit(actor, rec["lab"], "token.revoke", outcome="ok", detail={"token_id": token_id,
                                                                             "user": rec["user"]})
        return _info(rec)

    def require_admin(self, by: Principal, lab: str, action: str) -> None:
        """Raise :class:`PermissionDeniedError` unless ``by`` administers ``lab``."""
        if not (by.is_global_admin or (by.role == "admin" and by.lab == lab)):
            raise PermissionDeniedError(f"{action} in lab {lab!r} needs an admin of that lab; token {by.token_id} is "
                                        f"{by.role!r} in lab {by.lab!r}")

    def _load(self, token_id: str, fresh: bool = False) -> dict[str, Any] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(token_id)
        if hit is not None and not fresh and now - hit[0] < self.cache_ttl_s:
            return hit[1]
        rec = self.objects.get(f"tokens/{token_id}.json")
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[token_id] = (now, rec)
        return rec

    def authenticate(self, token: str | None) -> Principal:
        """The principal of a bearer token.

        Raises
        ------
        AuthenticationError
            No token, a malformed or unknown one, a wrong secret, an expired or a revoked token.
        """
        if not token:
            raise AuthenticationError("no API token: send 'Authorization: Bearer mdb_...' (an admin creates one with "
                                      "`moldb user add`)")
        m = _TOKEN.match(token)
        if m is None:
            raise AuthenticationError("malformed API token: tokens look like mdb_<16 hex>_<64 hex>; copy it whole "
                                      "from `moldb user add`")
        tid, secret = m.groups()
        rec = self._load(tid)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if rec is None or not hmac.compare_digest(digest, str(rec.get("sha256", ""))):
            raise AuthenticationError(f"API token {tid} is not valid (unknown id or wrong secret); ask an admin for a "
                                      "new one")
        if rec.get("revoked") is not None:
            raise AuthenticationError(f"API token {tid} was revoked; ask an admin of lab {rec['lab']!r} for a new one")
        if rec.get("expires") is not None and _now_ms() >= int(rec["expires"]):
            raise AuthenticationError(f"API token {tid} expired; ask an admin of lab {rec['lab']!r} for a new one")
        return Principal(str(rec["user"]), str(rec["lab"]), str(rec["role"]), tid)

    # -- entries -------------------------------------------------------------------------------------
    def namespace_of(self, store: Store, entry: str) -> str:
        """Namespace of ``entry``.

        Raises
        ------
        EntryNotFoundError
            The entry is not in the store.
        """
        eid = validate_entry_id(entry)
        ns = entry_namespaces(store).get(eid)
        if ns is None:
            hist = store.history(eid)  # refreshes the index: maybe written by another process
            ns = str(hist[-1].source.get("namespace") or DEFAULT_NAMESPACE)
        return ns

    def check_read(self, store: Store, who: Principal, entry: str) -> str:
        """Raise unless ``who`` may read ``entry``; returns the upper-cased entry id."""
        eid = validate_entry_id(entry)
        ns = self.namespace_of(store, eid)
        if not who.can_read(ns):
            raise PermissionDeniedError(f"entry {eid} is in a namespace that lab {who.lab!r} cannot read; use a "
                                        "token of the entry's lab")
        return eid

    def check_write(self, store: Store, who: Principal, entry: str) -> str | None:
        """Raise unless ``who`` may write to ``entry``; its namespace (None for a new entry)."""
        eid = validate_entry_id(entry)
        who.require("depositor", f"writing to {eid}")
        try:
            ns = self.namespace_of(store, eid)
        except EntryNotFoundError:
            return None
        if not who.can_write(ns):
            raise PermissionDeniedError(f"entry {eid} belongs to namespace {ns!r}; a {who.role} token of lab "
                                        f"{who.lab!r} cannot write to it")
        return ns

    def visible_entries(self, store: Store, who: Principal) -> list[str]:
        """Ids of the entries ``who`` may read, sorted."""
        return sorted(e for e, ns in entry_namespaces(store).items() if who.can_read(ns))

    # -- audit ---------------------------------------------------------------------------------------
    def audit(self, user: str, lab: str, action: str, entry: str | None = None, version: int | None = None,
              outcome: str = "ok", detail: Any = None) -> dict[str, Any]:
        """Record one event (one object: ``audit/<ms>-<random>.json``); returns the record."""
        rec = {"time": _now_ms(), "user": user, "lab": lab, "action": action, "entry": entry,
               "version": version, "outcome": outcome, "detail": detail}
        self.objects.put(f"audit/{rec['time']:015d}-{secrets.token_hex(4)}.json", rec)
        return rec

    def audit_log(self, since: int | None = None, lab: str | None = None, limit: int = 10_000) -> list[dict[str, Any]]:
        """Audit records at or after ``since`` (ms), of ``lab`` only when given, oldest first (at most ``limit``)."""
        out = []
        for key in self.objects.list("audit"):
            stamp = key.rsplit("/", 1)[-1].split("-", 1)[0]
            if since is not None and stamp.isdigit() and int(stamp) < since:
                continue
            rec = self.objects.get(key)
            if rec is None or (lab is not None and rec.get("lab") != lab):
                continue
            out.append(rec)
            if len(out) >= limit:
                break
        return out


def _info(rec: dict[str, Any]) -> TokenInfo:
    return TokenInfo(str(rec["id"]), str(rec["user"]), str(rec["lab"]), str(rec["role"]), int(rec["created"]),
                     None if rec.get("expires") is None else int(rec["expires"]),
                     None if rec.get("revoked") is None else int(rec["revoked"]))
