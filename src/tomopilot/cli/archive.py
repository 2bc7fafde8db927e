"""``tomopilot archive``: import finished run folders into the session archive, list sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import func, select

from tomopilot.archive.import_run import import_run
from tomopilot.cli.common import console, user_errors
from tomopilot.store import open_store
from tomopilot.store.models import ExposureRow, SessionRow, TiltSeriesRow

archive_app = typer.Typer(
    help="The session archive (SQLite in a run folder, or a facility's PostgreSQL).",
    no_args_is_help=True,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (postgresql://user@host/db) or SQLite file; "
        "default: tomopilot_archive.sqlite in the run folder.",
    ),
]


@archive_app.command("import")
def import_command(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(help="Run folders: tomopilot's, or SerialEM/PACEtomo stacks + mdocs."),
    ],
    db: DbOption = None,
) -> None:
    """Read finished run folders into the archive (importing twice changes nothing)."""
    with user_errors():
        for run_dir in run_dirs:
            store = open_store(db if db is not None else run_dir)
            try:
                with console.status(f"importing {run_dir}"):
                    result = import_run(store, run_dir)
            finally:
                store.close()
            truth = f", ground truth of {result.n_truth}" if result.n_truth else ""
            console.print(
                f"{result.run_dir} ({result.kind}): {result.n_series} tilt series, "
                f"{result.n_exposures} exposures ({result.n_new_exposures} new){truth} "
                f"→ {store.display_url}"
            )


@archive_app.command("list")
def list_command(db: Annotated[str, typer.Option("--db", help="Database URL or file.")]) -> None:
    """The sessions in an archive."""
    with user_errors():
        store = open_store(db)
        try:
            table = Table(title=store.display_url)
            for column in ("id", "name", "source", "status", "tilt series", "exposures", "folder"):
                table.add_column(column)
            with store.reader() as s:
                for row in s.scalars(select(SessionRow).order_by(SessionRow.id)):
                    n_series = s.scalar(
                        select(func.count()).select_from(TiltSeriesRow).filter_by(session_id=row.id)
                    )
                    n_exp = s.scalar(
                        select(func.count())
                        .select_from(ExposureRow)
                        .join(TiltSeriesRow)
                        .where(TiltSeriesRow.session_id == row.id)
                    )
                    table.add_row(
                        str(row.id),
                        row.name,
                        row.source,
                        row.status,
                        str(n_series),
                        str(n_exp),
                        row.run_dir,
                    )
            console.print(table)
        finally:
            store.close()
