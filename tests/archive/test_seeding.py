"""Model seeding: φ, optical-axis offset and z0 recovered from archived tilt series."""

from __future__ import annotations

from pathlib import Path

import pytest
from archive_helpers import archive_model_series

from tomopilot.store import open_store
from tomopilot.store.models import TiltSeriesRow
from tomopilot.store.seeding import fit_series, seed_model


def test_seeds_recover_the_model_of_past_series(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.sqlite")
    heights = [0.3, -0.5, 1.1]  # oldest first; the newest (1.1 µm) is z0
    archive_model_series(
        store, heights, phi_deg=20.0, offset_um=0.4, noise_um=0.002, source="serialem", seed=7
    )
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
        newest = db.query(TiltSeriesRow).filter_by(name="past_3").one()
        alone = fit_series(newest.exposures)
    assert alone["+"].z0_um == pytest.approx(1.1, abs=0.03)
    assert alone["-"].phi_deg == pytest.approx(20.0, abs=1.0)
    with store.reader() as db:  # another magnification: nothing to seed from
        assert seed_model(db, pixel_size_a=5.0).groups == {}
    store.close()


def test_low_tilt_history_keeps_the_prior_axis(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.sqlite")
    low = [0.0, 3.0, -3.0, 6.0, -6.0, 9.0, -9.0]
    archive_model_series(
        store, [0.2], phi_deg=20.0, offset_um=0.0, noise_um=0.001, seed=7, tilts_deg=low
    )
    with store.reader() as db:
        seed = seed_model(db, phi_deg=20.0, offset_um=0.0)
    g = seed.groups["+"]
    assert g.fixed and g.phi_deg == 20.0 and g.offset_um == 0.0
    assert g.z0_um == pytest.approx(0.2, abs=0.03)
    store.close()
