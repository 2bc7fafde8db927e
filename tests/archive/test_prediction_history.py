"""A sequential session's predictor seeded from the archive's earlier series."""

from __future__ import annotations

import math
from pathlib import Path

from archive_helpers import archive_model_series

from tomopilot.archive.prediction_history import archive_history
from tomopilot.geometry.tilt_predictor import PredictorSettings, TiltPredictor, seed_models
from tomopilot.store import open_store


def test_archived_series_become_the_history_a_new_session_starts_from(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.sqlite")
    archive_model_series(store, [0.3, -0.5, 1.1], phi_deg=20.0, offset_um=0.4, noise_um=0.002)
    archive_model_series(
        store, [2.0], phi_deg=-40.0, offset_um=-1.0, noise_um=0.002, pixel_size_a=8.0, name="other"
    )
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
