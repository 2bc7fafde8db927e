"""Open an archive database: SQLite in a session folder, or a facility's PostgreSQL.

Opening migrates the schema to this version of tomopilot (Alembic, scripts shipped in the
package). A database whose schema is newer than this code, or a file that is not a database, is
refused with a :class:`StoreError` naming it, before anything is written to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tomopilot.core.errors import TomopilotError

_log = logging.getLogger(__name__)

DEFAULT_DB_NAME = "tomopilot_archive.sqlite"
"""The embedded database's file name in a session folder."""

_MIGRATIONS = Path(__file__).with_name("migrations")
_SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(TomopilotError):
    """The archive database cannot be opened or used."""


class StoreVersionError(StoreError):
    """The database was written by a newer tomopilot than this one."""


def database_url(db: str | Path) -> str:
    """A SQLAlchemy URL from a URL or a path (a folder gets the default file name).

    >>> database_url("postgresql://u@host/db")
    'postgresql+psycopg://u@host/db'
    >>> database_url("/data/run1/x.sqlite")
    'sqlite:////data/run1/x.sqlite'
    """
    text = str(db)
    if "://" not in text:
        path = Path(text)
        if path.is_dir():
            path = path / DEFAULT_DB_NAME
        return f"sqlite:///{path.resolve()}"
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    return text


def _alembic_config(connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    assert head is not None
    return head


def _check_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    path = Path(database)
    if not path.exists():
        if not path.parent.is_dir():
            raise StoreError(f"{path}: the folder for the database does not exist")
        return
    if path.stat().st_size == 0:
        return
    with path.open("rb") as handle:
        magic = handle.read(len(_SQLITE_MAGIC))
    if magic != _SQLITE_MAGIC:
        raise StoreError(f"{path} is not an SQLite database (corrupt or another file); untouched")


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30.0}, future=True
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, future=True)


class Store:
    """An open archive: an engine, a session factory and the schema revision."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLite database."""
        return self.engine.dialect.name == "sqlite"

    @property
    def display_url(self) -> str:
        """The URL without its password."""
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def reader(self) -> Session:
        """A session for reading (the caller closes it)."""
        return self._sessions()

    def revision(self) -> str | None:
        """The schema revision stamped in the database."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def downgrade(self, revision: str = "base") -> None:
        """Migrate the schema down (tests and support use; drops data of the removed tables)."""
        with self.engine.begin() as connection:
            command.downgrade(_alembic_config(connection), revision)

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()


def open_store(db: str | Path, *, migrate: bool = True) -> Store:
    """Open (and create, and migrate) the archive at ``db``: a URL, a file or a session folder.

    Raises
    ------
    StoreVersionError
        The database's schema is newer than this tomopilot (nothing is changed).
    StoreError
        The database cannot be reached or is not a database (nothing is changed).
    """
    url = database_url(db)
    shown = make_url(url).render_as_string(hide_password=True)
    if url.startswith("sqlite"):
        _check_sqlite_file(url)
    engine = _make_engine(url)
    script = ScriptDirectory.from_config(_alembic_config(None))
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        if current is not None:
            try:
                known = script.get_revision(current)
            except Exception:  # alembic raises its own ResolutionError family
                known = None
            if known is None:
                raise StoreVersionError(
                    f"{shown}: the archive's schema revision {current!r} is newer than this "
                    f"tomopilot knows (newest {script.get_current_head()!r}); upgrade tomopilot "
                    "to open it (nothing was changed)"
                )
        if url.startswith("sqlite") and make_url(url).database not in (None, "", ":memory:"):
            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        if migrate and current != script.get_current_head():
            with engine.begin() as connection:
                command.upgrade(_alembic_config(connection), "head")
            _log.info("archive %s migrated from %s to %s", shown, current, head_revision())
    except StoreError:
        engine.dispose()
        raise
    except exc.SQLAlchemyError as error:
        engine.dispose()
        original = getattr(error, "orig", None)
        reason = str(original) if original is not None else str(error)
        raise StoreError(f"{shown}: cannot open the archive ({reason.strip()})") from error
    return Store(engine, url)
