"""The moldb HTTP service (FastAPI + uvicorn): ``create_app(settings)``; wire contract in ``docs/service.md``.

Talks only to :mod:`moldb.api`; ``fastapi`` and ``uvicorn`` are imported only here
(``pip install 'moldb[service]'``).
"""

from moldb.service.app import app_from_env, create_app
from moldb.service.settings import Settings

__all__ = ["Settings", "app_from_env", "create_app"]
