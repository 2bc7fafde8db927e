"""Shared pieces of the archive tests: a PostgreSQL server, small twin runs, table dumps."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tomopilot.store import Store
from tomopilot.store.models import Base

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acquisition"))

from acq_helpers import write_config

PG_URL = os.environ.get(
    "TOMOPILOT_TEST_POSTGRES_URL",
    "postgresql://tomopilot:tomopilot@127.0.0.1:5432/tomopilot_test",
)
"""A role that may create databases; each test gets a database of its own."""


def _admin() -> Any:
    import psycopg

    url = make_url(PG_URL)
    try:
        return psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database,
            autocommit=True,
            connect_timeout=3,
        )
    except psycopg.OperationalError as error:
        message = f"no PostgreSQL server for the tests at {url.render_as_string()}: {error}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI must run these: .ci/run starts the server)")
        pytest.skip(message)


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database (dropped afterwards)."""
    admin = _admin()
    name = f"tp_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def set_connections(url: str, allowed: bool) -> None:
    """Let clients in, or throw every client out and keep them out (a server 'dying')."""
    admin = _admin()
    name = make_url(url).database
    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
    if not allowed:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
            " AND usename = current_user AND pid <> pg_backend_pid()",  # not autovacuum's
            (name,),
        )
    admin.close()


def recorded_twin_run(folder: Path, **settings: Any) -> Path:
    """A finished twin run in ``folder``, recorded live into its own SQLite archive.

    The run folder is returned; the archive is ``tomopilot.sqlite`` inside it, closed.
    """
    from tomopilot.acquisition.output.side_files import detach_run_log
    from tomopilot.acquisition.plan.run_config import load_acquire_config
    from tomopilot.acquisition.run import attach_outputs, start_run
    from tomopilot.archive.live import record_run
    from tomopilot.store import open_store

    config = load_acquire_config(write_config(folder, settings=settings))
    engine, resolved = start_run(config)
    handler = attach_outputs(engine, resolved)
    store = open_store(engine.plan.run_dir)
    recorder = record_run(engine, resolved, store)
    engine.run()
    assert recorder.close()
    detach_run_log(handler)
    store.close()
    return Path(engine.plan.run_dir)


LEGINON_TILTS = [0.0] + [t for k in range(1, 21) for t in (3.0 * k, -3.0 * k)]
"""±60° in 3° steps, Leginon's order interleaved as the archive stores them."""


def archive_model_series(
    store: Store,
    heights_um: list[float],
    *,
    phi_deg: float,
    offset_um: float,
    noise_um: float,
    pixel_size_a: float = 2.0,
    name: str = "past",
    source: str = "tomopilot",
    seed: int = 3,
    tilts_deg: list[float] | None = None,
) -> None:
    """Archive one session of tilt series (one per height, oldest first) whose tracked
    positions follow UCSF Tomo's model (φ, offset, height) with Gaussian noise."""
    import math

    import numpy as np

    from tomopilot.store.seeding import model_positions
    from tomopilot.store.writes import (
        tracking_values,
        upsert_exposure,
        upsert_session,
        upsert_tilt_series,
    )

    rng = np.random.default_rng(seed)
    with store.session() as db:
        session = upsert_session(db, f"/data/{name}", name=name, source=source)
        for number, z_um in enumerate(heights_um, start=1):
            series = upsert_tilt_series(
                db,
                session,
                f"{name}_{number}",
                number=number,
                stack_file=f"{name}_{number}.mrc",
                mdoc_file=f"{name}_{number}.mrc.mdoc",
                pixel_size_a=pixel_size_a,
            )
            ref = tuple(rng.uniform(-1, 1, 2))
            for ordinal, tilt in enumerate(tilts_deg or LEGINON_TILTS):
                x, y = model_positions(
                    np.radians([tilt]), ref, 0.0, math.radians(phi_deg), offset_um, z_um
                )[0] + rng.normal(0, noise_um, 2)
                branch = "start" if tilt == 0 else ("+" if tilt > 0 else "-")
                upsert_exposure(
                    db,
                    series,
                    ordinal,
                    section=ordinal,
                    file=series.stack_file,
                    tilt_deg=tilt,
                    branch=branch,
                    **tracking_values((float(x), float(y)), (0.0, 0.0)),
                )


def dump(store: Store, skip: tuple[str, ...] = ("recorded_utc",)) -> dict[str, list[tuple]]:
    """Every row of every archive table, ordered by id, without the wall-clock columns."""
    out: dict[str, list[tuple]] = {}
    with store.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            columns = [c.name for c in table.columns if c.name not in skip]
            rows = connection.execute(
                text(f"SELECT {', '.join(columns)} FROM {table.name} ORDER BY id")
            )
            out[table.name] = [tuple(row) for row in rows]
    return out


__all__ = [
    "PG_URL",
    "dump",
    "fresh_postgres",
    "recorded_twin_run",
    "set_connections",
    "write_config",
]
