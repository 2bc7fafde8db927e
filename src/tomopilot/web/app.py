"""The web monitor: server-rendered pages, a JSON API under ``/api``, live push by SSE.

Read-only for everyone who can reach it; the control endpoints (pause, resume, skip a target,
abort) exist only beside a running acquisition and need the token printed when the server
starts (``Authorization: Bearer TOKEN`` or ``X-Tomopilot-Token``). Files are served only from
inside a session's folder. Every script and style sheet comes from this package: the pages work
on a microscope network with no internet.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import StreamingResponse

from tomopilot import __version__
from tomopilot.store import Store
from tomopilot.store.models import AreaRow, ExposureRow, SessionRow, TiltSeriesRow
from tomopilot.store.seeding import fit_series
from tomopilot.web import queries
from tomopilot.web.cache import RevisionCache
from tomopilot.web.files import (
    OutsideSessionError,
    read_section,
    session_file,
    thumbnail_png,
    tilt_angle_text,
)
from tomopilot.web.plots import series_plots, session_plots, target_map_svg, timeline_svg
from tomopilot.web.schemas import AreaOut, SessionDetail, SessionOut, TiltSeriesDetail

HERE = Path(__file__).parent
N_THUMBNAILS = 16


class RunControl(Protocol):
    """What the control endpoints act on: an :class:`EngineControl` or a proxy of one."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def abort(self) -> None: ...
    def skip_target(self, target: int) -> None: ...
    def skipped_targets(self) -> set[int]: ...
    @property
    def paused(self) -> bool: ...


@dataclass
class LiveRun:
    """An acquisition the server may control (``acquire --serve``)."""

    control: RunControl
    token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    notify: Callable[[str, dict[str, Any]], None] | None = None
    """Told of every control action (the CLI emits it as an event)."""


@dataclass
class MonitorState:
    """What the app serves from."""

    store: Store
    live: LiveRun | None = None
    poll_s: float = 0.5
    stopping: bool = False


def _thumb_ordinals(exposures: list[ExposureRow], n: int = N_THUMBNAILS) -> list[ExposureRow]:
    ordered = sorted(exposures, key=lambda e: e.tilt_deg)
    if len(ordered) <= n:
        return ordered
    step = (len(ordered) - 1) / (n - 1)
    return [ordered[round(i * step)] for i in range(n)]


def authorised(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_tomopilot_token: Annotated[str | None, Header()] = None,
) -> LiveRun:
    """The attached run, if the request carries its token (else 401/403; 404 without a run)."""
    state: MonitorState = request.app.state.monitor
    if state.live is None:
        raise HTTPException(404, "no acquisition is attached to this server")
    given = x_tomopilot_token
    if given is None and authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    if not given:
        raise HTTPException(401, "control needs the token printed when the server started")
    if not secrets.compare_digest(given.encode(), state.live.token.encode()):
        raise HTTPException(403, "wrong token")
    return state.live


Controller = Annotated[LiveRun, Depends(authorised)]


def create_app(
    store: Store,
    live: LiveRun | None = None,
    *,
    poll_s: float = 0.5,
    refresh_s: float = 1.0,
) -> FastAPI:
    """The monitor's ASGI application on ``store``.

    ``poll_s`` is how often a live stream looks for news; ``refresh_s`` how often at most the
    archive is asked whether anything changed (pages and answers are rendered at most that often,
    however many viewers ask).
    """
    state = MonitorState(store=store, live=live, poll_s=poll_s)
    app = FastAPI(
        title="tomopilot monitor",
        version=__version__,
        description="Sessions, tilt series and exposures of the tomopilot archive.",
        docs_url=None,  # the stock pages load scripts from a CDN; /api/docs is our own
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.monitor = state
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    cache = RevisionCache(store, ttl_s=refresh_s)
    app.state.cache = cache
    owners: dict[tuple[str, int], int] = {}  # (kind, id) → session id (never changes)

    def session_of(kind: str, ident: int) -> int:
        if (kind, ident) not in owners:
            with store.reader() as db:
                row: TiltSeriesRow | AreaRow | None = (
                    db.get(TiltSeriesRow, ident) if kind == "series" else db.get(AreaRow, ident)
                )
                if row is None:
                    raise HTTPException(404, f"no {kind} {ident}")
                owners[(kind, ident)] = row.session_id
        return owners[(kind, ident)]

    def render(name: str, fragment: bool, **context: Any) -> str:
        return templates.env.get_template(name).render(
            fragment=fragment, version=__version__, live=state.live is not None, **context
        )

    # -- JSON API -----------------------------------------------------------------------------
    @app.get("/api/sessions", response_model=list[SessionOut], tags=["archive"])
    def api_sessions() -> list[SessionOut]:
        """Every session in the archive, newest first."""

        def answer() -> list[SessionOut]:
            with store.reader() as db:
                return queries.list_sessions(db)

        return cache.get(("api-sessions",), None, answer)

    @app.get("/api/sessions/{session_id}", response_model=SessionDetail, tags=["archive"])
    def api_session(session_id: int) -> SessionDetail:
        """A session: progress, ETA in microscope time, dose rate, housekeeping, timeline."""

        def answer() -> SessionDetail:
            with store.reader() as db:
                detail = queries.session_detail(db, session_id)
            if detail is None:
                raise HTTPException(404, f"no session {session_id}")
            return detail

        return cache.get(("api-session", session_id), session_id, answer)

    @app.get("/api/tilt-series/{series_id}", response_model=TiltSeriesDetail, tags=["archive"])
    def api_series(series_id: int) -> TiltSeriesDetail:
        """A tilt series with every exposure (and the twin's truth when there is one)."""

        def answer() -> TiltSeriesDetail:
            with store.reader() as db:
                detail = queries.series_detail(db, series_id)
            if detail is None:
                raise HTTPException(404, f"no tilt series {series_id}")
            return detail

        return cache.get(("api-series", series_id), session_of("series", series_id), answer)

    @app.get("/api/areas/{area_id}", response_model=AreaOut, tags=["archive"])
    def api_area(area_id: int) -> AreaOut:
        """An area's targets and their status."""

        def answer() -> AreaOut:
            with store.reader() as db:
                detail = queries.area_detail(db, area_id)
            if detail is None:
                raise HTTPException(404, f"no area {area_id}")
            return detail

        return cache.get(("api-area", area_id), session_of("area", area_id), answer)

    @app.get("/api/revision", tags=["archive"])
    def api_revision(session_id: int | None = None) -> dict[str, int]:
        """A number that grows whenever something is recorded (cheap polling)."""
        return {"revision": cache.revision(session_id)}

    @app.get("/api/stream", tags=["live"])
    async def api_stream(request: Request, session_id: int | None = None) -> StreamingResponse:
        """Server-sent events: ``update`` with the new revision whenever something is recorded."""

        def current() -> int:
            return cache.revision(session_id)

        async def events() -> AsyncIterator[str]:
            last = -1
            idle = 0.0
            yield "retry: 2000\n\n"
            while not state.stopping and not await request.is_disconnected():
                now = await run_in_threadpool(current)
                if now != last:
                    last = now
                    idle = 0.0
                    yield f"event: update\ndata: {json.dumps({'revision': now})}\n\n"
                elif idle >= 15.0:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(state.poll_s)
                idle += state.poll_s

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- control ------------------------------------------------------------------------------
    def _act(live: LiveRun, action: str, **detail: Any) -> dict[str, Any]:
        if live.notify is not None:
            live.notify(action, detail)
        return {"action": action, **detail, "paused": live.control.paused}

    @app.post("/api/control/pause", tags=["control"])
    def control_pause(live: Controller) -> dict[str, Any]:
        """Finish the current exposure, then wait."""
        live.control.pause()
        return _act(live, "paused")

    @app.post("/api/control/resume", tags=["control"])
    def control_resume(live: Controller) -> dict[str, Any]:
        """Continue after a pause."""
        live.control.resume()
        return _act(live, "running")

    @app.post("/api/control/skip/{target}", tags=["control"])
    def control_skip(target: int, live: Controller) -> dict[str, Any]:
        """Never image ``target`` again in this run."""
        if target < 1:
            raise HTTPException(422, "targets are numbered from 1")
        live.control.skip_target(target)
        return _act(live, "skipped", target=target)

    @app.post("/api/control/abort", tags=["control"])
    def control_abort(live: Controller) -> dict[str, Any]:
        """Stop after the current exposure (resumable with ``--resume``)."""
        live.control.abort()
        return _act(live, "aborting")

    # -- files --------------------------------------------------------------------------------
    def _run_dir(session_id: int) -> str:
        with store.reader() as db:
            row = db.get(SessionRow, session_id)
            if row is None:
                raise HTTPException(404, f"no session {session_id}")
            return row.run_dir

    def _serve(session_id: int, name: str, media_type: str | None = None) -> FileResponse:
        try:
            path = session_file(_run_dir(session_id), name)
        except OutsideSessionError:
            raise HTTPException(404, "no such file in the session folder") from None
        return FileResponse(path, media_type=media_type, filename=path.name)

    @app.get("/sessions/{session_id}/files/{name:path}", tags=["files"])
    def session_files(session_id: int, name: str) -> FileResponse:
        """A file of the session folder (never one outside it)."""
        return _serve(session_id, name)

    def _series(series_id: int) -> TiltSeriesRow:
        with store.reader() as db:
            series = db.get(TiltSeriesRow, series_id)
            if series is None:
                raise HTTPException(404, f"no tilt series {series_id}")
            list(series.exposures)  # load before the session closes
            return series

    @app.get("/series/{series_id}/stack.mrc", tags=["files"])
    def download_stack(series_id: int) -> FileResponse:
        """The tilt series' MRC stack."""
        series = _series(series_id)
        return _serve(series.session_id, series.stack_file, "application/octet-stream")

    @app.get("/series/{series_id}/stack.mdoc", tags=["files"])
    def download_mdoc(series_id: int) -> FileResponse:
        """The tilt series' mdoc."""
        series = _series(series_id)
        return _serve(series.session_id, series.mdoc_file, "text/plain")

    @app.get("/series/{series_id}/tilts.tlt", tags=["files"])
    def download_tilts(series_id: int) -> PlainTextResponse:
        """The tilt angles in stack order (IMOD's .tlt)."""
        series = _series(series_id)
        text = tilt_angle_text([(e.section, e.tilt_deg) for e in series.exposures])
        return PlainTextResponse(
            text, headers={"Content-Disposition": f'attachment; filename="{series.name}.tlt"'}
        )

    @app.get("/series/{series_id}/thumb/{ordinal}.png", tags=["files"])
    def thumbnail(series_id: int, ordinal: int) -> Response:
        """A small PNG of one Record."""
        series = _series(series_id)
        exposure = next((e for e in series.exposures if e.ordinal == ordinal), None)
        if exposure is None:
            raise HTTPException(404, "no such exposure")
        try:
            path = session_file(_run_dir(series.session_id), exposure.file)
            png = thumbnail_png(read_section(path, exposure.section))
        except (OutsideSessionError, OSError, ValueError, IndexError):
            raise HTTPException(404, "image not readable (yet)") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=60"})

    # -- pages --------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def sessions_page(fragment: bool = False) -> HTMLResponse:
        def html() -> str:
            with store.reader() as db:
                sessions = queries.list_sessions(db)
            return render("sessions.html", fragment, sessions=sessions, stream="/api/stream")

        return HTMLResponse(cache.get(("sessions", fragment), None, html))

    @app.get("/sessions/{session_id}", response_class=HTMLResponse, include_in_schema=False)
    def session_page(session_id: int, fragment: bool = False) -> HTMLResponse:
        def html() -> str:
            with store.reader() as db:
                detail = queries.session_detail(db, session_id)
                if detail is None:
                    raise HTTPException(404, f"no session {session_id}")
                row = db.get(SessionRow, session_id)
                assert row is not None
                plots = session_plots(queries.session_exposures(db, session_id), row.start_s)
                timeline = timeline_svg(detail.timeline, row.start_s, row.last_s)
            return render(
                "session.html",
                fragment,
                s=detail,
                plots=plots,
                timeline=timeline,
                stream=f"/api/stream?session_id={session_id}",
            )

        return HTMLResponse(cache.get(("session", session_id, fragment), session_id, html))

    @app.get("/series/{series_id}", response_class=HTMLResponse, include_in_schema=False)
    def series_page(series_id: int, fragment: bool = False) -> HTMLResponse:
        def html() -> str:
            with store.reader() as db:
                detail = queries.series_detail(db, series_id)
                if detail is None:
                    raise HTTPException(404, f"no tilt series {series_id}")
                series = db.get(TiltSeriesRow, series_id)
                assert series is not None
                thumbs = [(e.ordinal, e.tilt_deg) for e in _thumb_ordinals(list(series.exposures))]
                model = fit_series(series.exposures)
            return render(
                "series.html",
                fragment,
                t=detail,
                plots=series_plots(detail),
                thumbs=thumbs,
                model=model,
                stream=f"/api/stream?session_id={detail.session_id}",
            )

        key = ("series", series_id, fragment)
        return HTMLResponse(cache.get(key, session_of("series", series_id), html))

    @app.get("/areas/{area_id}", response_class=HTMLResponse, include_in_schema=False)
    def area_page(area_id: int, fragment: bool = False) -> HTMLResponse:
        def html() -> str:
            with store.reader() as db:
                area = queries.area_detail(db, area_id)
            if area is None:
                raise HTTPException(404, f"no area {area_id}")
            return render(
                "area.html",
                fragment,
                a=area,
                map_svg=target_map_svg(area),
                stream=f"/api/stream?session_id={area.session_id}",
            )

        return HTMLResponse(
            cache.get(("area", area_id, fragment), session_of("area", area_id), html)
        )

    @app.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return HTMLResponse(render("api.html", False, spec=app.openapi(), stream=None))

    return app
