"""A sequential session's predictor seeded from the archive's earlier series."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tomopilot.archive.prediction_history import archive_history
from tomopilot.geometry.tilt_predictor import PredictorSettings, TiltPredictor, seed_models
from tomopilot.store import Store, open_store
from tomopilot.store.seeding import model_positions
from tomopilot.store.writes import (
    tracking_values,
    upsert_exposure,
    upsert_session,
    upsert_tilt_series,
)

TILTS = [0.0] + [t for k in range(1, 21) for t in (3.0 * k, -3.0 * k)]  # ±60° in 3° steps


def _archive(
    store: Store,
    heights_um: list[float],
    *,
    phi_deg: float,
    offset_um: float,
    pixel_size_a: float,
    name: str,
) -> None:
    rng = np.random.default_rng(3)
    with store.session() as db:
        session = upsert_session(db, f"/data/{name}", name=name, source="tomopilot")
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
            for ordinal, tilt in enumerate(TILTS):
                x, y = model_positions(
                    np.radians([tilt]), ref, 0.0, math.radians(phi_deg), offset_um, z_um
                )[0] + rng.normal(0, 0.002, 2)
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


def test_archived_series_become_the_history_a_new_session_starts_from(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.sqlite")
    _archive(store, [0.3, -0.5, 1.1], phi_deg=20.0, offset_um=0.4, pixel_size_a=2.0, name="past")
    _archive(store, [2.0], phi_deg=-40.0, offset_um=-1.0, pixel_size_a=8.0, name="other_mag")
    records = archive_history(store, pixel_size_a=2.0, max_series=8)
    assert len(records) == 3  # the 8 Å series is another magnification
    for record in records:
        assert len(record.points[0]) == 21 and len(record.points[1]) == 21  # start opens both
        tilts = [round(math.degrees(p[0]), 9) for p in record.points[0]]
        assert tilts == [0.0] + [3.0 * k for k in range(1, 21)]
    # The newest carries the archive's fit; a new predictor starts from it in both groups.
    predictor = TiltPredictor(PredictorSettings(), records)
    for group in (0, 1):
        model = predictor.models[group]
        assert abs(model.phi_deg - 20.0) < 1.0 and abs(model.offset_um - 0.4) < 0.05
    assert seed_models(records, PredictorSettings()) == predictor.models
    assert archive_history(store, pixel_size_a=3.0) == []  # nothing of that pixel size
    store.close()
