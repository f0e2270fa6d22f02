"""Settings of the moldb service (``create_app(settings)``; environment ``MOLDB_SERVICE_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """What one service process serves and the limits it enforces.

    Every field can also be set from the environment as ``MOLDB_SERVICE_<FIELD>`` (upper
    case; ``tiledb_config`` as JSON), which is how ``moldb serve --workers N`` passes them to
    its worker processes.

    Attributes
    ----------
    store : str
        Store URI (local path or ``s3://...``).
    tiledb_config : dict
        Extra TileDB configuration (``vfs.s3.*`` ...).
    max_upload_bytes : int
        Upload size cap, enforced while the request body streams in (413).
    max_result_rows : int
        Most rows one ``/select`` or ``/atoms`` response may have (422 ``limit-exceeded``).
    query_timeout_s : float
        Time budget of one query, checked between batches (422 ``limit-exceeded``).
    rate_limit_per_s, rate_limit_burst : float
        Token bucket per API token (per process): refill rate and capacity (429).
    token_cache_ttl_s : float
        How long a token lookup is cached; a revocation reaches every process within it.
    upload_dir : str or None
        Where private per-request upload directories are made (system temp dir by default).
    response_cache_mb : float
        Encoded ``/atoms`` responses kept per process (LRU, MiB; 0 disables). A version never
        changes, so a cached response is never stale; access is checked before every hit.
    """

    model_config = SettingsConfigDict(env_prefix="MOLDB_SERVICE_", extra="ignore")

    store: str = ""
    tiledb_config: dict[str, str] = Field(default_factory=dict)
    max_upload_bytes: int = Field(default=256 << 20, gt=0)
    max_result_rows: int = Field(default=20_000_000, gt=0)
    query_timeout_s: float = Field(default=60.0, gt=0)
    rate_limit_per_s: float = Field(default=200.0, gt=0)
    rate_limit_burst: float = Field(default=400.0, ge=1)
    token_cache_ttl_s: float = Field(default=5.0, ge=0)
    upload_dir: str | None = None
    response_cache_mb: float = Field(default=512.0, ge=0)

    def to_env(self) -> dict[str, str]:
        """The ``MOLDB_SERVICE_*`` variables that reproduce these settings in another process."""
        import json

        out = {}
        for k, v in self.model_dump().items():
            if v is None:
                continue
            out[f"MOLDB_SERVICE_{k.upper()}"] = json.dumps(v) if isinstance(v, dict) else str(v)
        return out
