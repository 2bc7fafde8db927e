"""The archive database: migrations up and down, WAL, refusals that change nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from archive_helpers import fresh_postgres
from sqlalchemy import inspect, text

from tomopilot.store import StoreError, StoreVersionError, open_store
from tomopilot.store.database import DEFAULT_DB_NAME, head_revision
from tomopilot.store.models import Base


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_migrations(url: str) -> None:
    store = open_store(url)
    try:
        assert store.revision() == head_revision()
        with store.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == [], f"migrations and models disagree: {diff}"
        tables = set(inspect(store.engine).get_table_names())
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        store.downgrade("base")
        assert store.revision() is None
        assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    finally:
        store.close()
    again = open_store(url)  # opening migrates up again
    try:
        assert again.revision() == head_revision()
    finally:
        again.close()


def test_sqlite_migrates_up_and_down_and_matches_the_models(tmp_path: Path) -> None:
    _check_migrations(str(tmp_path / "a.sqlite"))


def test_postgresql_migrates_up_and_down_and_matches_the_models() -> None:
    with fresh_postgres() as url:
        _check_migrations(url)


def test_a_session_folder_gets_sqlite_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:
        assert (tmp_path / DEFAULT_DB_NAME).is_file()
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.close()


def test_a_newer_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite"
    store = open_store(path)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    store.close()
    before = _digest(path)
    with pytest.raises(StoreVersionError, match="newer than this tomopilot"):
        open_store(path)
    assert _digest(path) == before


def test_a_newer_postgresql_database_is_refused() -> None:
    with fresh_postgres() as url:
        store = open_store(url)
        with store.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        store.close()
        with pytest.raises(StoreVersionError, match="9999_future"):
            open_store(url)


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a database\n" * 40, b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["not-sqlite", "damaged-sqlite"],
)
def test_a_corrupt_database_is_a_clear_error_and_unchanged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / DEFAULT_DB_NAME
    path.write_bytes(content)
    with pytest.raises(StoreError, match=str(path.name)):
        open_store(tmp_path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [DEFAULT_DB_NAME]


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot open the archive"):
        open_store("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
