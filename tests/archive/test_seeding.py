"""Model seeding: φ, optical-axis offset and z0 recovered from archived tilt series."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tomopilot.store import open_store
from tomopilot.store.models import TiltSeriesRow
from tomopilot.store.seeding import fit_series, model_positions, seed_model
from tomopilot.store.writes import (
    tracking_values,
    upsert_exposure,
    upsert_session,
    upsert_tilt_series,
)

TILTS = [0.0] + [t for k in range(1, 21) for t in (3.0 * k, -3.0 * k)]  # ±60° in 3° steps


def _archive_series(store, heights_um, phi_deg, offset_um, noise_um, pixel_size_a=2.0):
    rng = np.random.default_rng(7)
    with store.session() as db:
        session = upsert_session(db, "/data/past", name="past", source="serialem")
        for number, z_um in enumerate(heights_um, start=1):
            series = upsert_tilt_series(
                db,
                session,
                f"ts_{number}",
                number=number,
                stack_file=f"ts_{number}.mrc",
                mdoc_file=f"ts_{number}.mrc.mdoc",
                pixel_size_a=pixel_size_a,
            )
            ref = tuple(rng.uniform(-1, 1, 2))
            for ordinal, tilt in enumerate(TILTS):
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


def test_seeds_recover_the_model_of_past_series(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.sqlite")
    heights = [0.3, -0.5, 1.1]  # oldest first; the newest (1.1 µm) is z0
    _archive_series(store, heights, phi_deg=20.0, offset_um=0.4, noise_um=0.002)
    with store.reader() as db:
        seed = seed_model(db, pixel_size_a=2.0)
    for group in ("+", "-"):
        g = seed.groups[group]
        assert not g.fixed
        assert g.n_series == 3 and g.n_points == 3 * 21
        assert g.phi_deg == pytest.approx(20.0, abs=0.3)
        assert g.offset_um == pytest.approx(0.4, abs=0.02)
        assert g.z0_um == pytest.approx(1.1, abs=0.02)
        assert g.rms_um < 0.004
    with store.reader() as db:  # one series alone, as the tilt-series page shows it
        newest = db.query(TiltSeriesRow).filter_by(name="ts_3").one()
        alone = fit_series(newest.exposures)
    assert alone["+"].z0_um == pytest.approx(1.1, abs=0.03)
    assert alone["-"].phi_deg == pytest.approx(20.0, abs=1.0)
    with store.reader() as db:  # another magnification: nothing to seed from
        assert seed_model(db, pixel_size_a=5.0).groups == {}
    store.close()


def test_low_tilt_history_keeps_the_prior_axis(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.sqlite")
    global TILTS
    saved = TILTS
    TILTS = [0.0, 3.0, -3.0, 6.0, -6.0, 9.0, -9.0]
    try:
        _archive_series(store, [0.2], phi_deg=20.0, offset_um=0.0, noise_um=0.001)
    finally:
        TILTS = saved
    with store.reader() as db:
        seed = seed_model(db, phi_deg=20.0, offset_um=0.0)
    g = seed.groups["+"]
    assert g.fixed and g.phi_deg == 20.0 and g.offset_um == 0.0
    assert g.z0_um == pytest.approx(0.2, abs=0.03)
    store.close()
