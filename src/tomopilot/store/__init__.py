"""The session archive: SQLAlchemy 2 models, Alembic migrations, and queries.

SQLite (WAL) in the session folder is the embedded default; a PostgreSQL URL is the facility
setting. :func:`open_store` migrates a database to this version of tomopilot when it opens it,
and refuses one written by a newer version.
"""

from tomopilot.store.database import (
    DEFAULT_DB_NAME,
    Store,
    StoreError,
    StoreVersionError,
    database_url,
    open_store,
)

__all__ = [
    "DEFAULT_DB_NAME",
    "Store",
    "StoreError",
    "StoreVersionError",
    "database_url",
    "open_store",
]
