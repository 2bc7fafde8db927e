"""UCSF Tomo's model, its LM fit, the z0 acceptance rule and the predictor (leginon.md §1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.geometry.tilt_model import (
    SeriesPoints,
    TiltModel,
    fit_accepted,
    fit_model,
    model_positions,
    quadratic_extrapolation,
    straight_trajectory,
)
from tomopilot.geometry.tilt_predictor import (
    PredictorSettings,
    SessionHistory,
    TiltPredictor,
    seed_models,
)


def _series(
    phi: float,
    offset: float,
    z0: float,
    ref: tuple[float, float],
    tilts_deg: np.ndarray,
    noise_um: float,
    rng: np.random.Generator,
) -> SeriesPoints:
    t = np.radians(tilts_deg)
    x, y, _ = model_positions(phi, offset, z0, ref, t)
    return SeriesPoints(
        t, x + rng.normal(0, noise_um, t.size), y + rng.normal(0, noise_um, t.size), ref
    )


@settings(max_examples=25, deadline=None)
@given(
    phi=st.floats(-80.0, 80.0),
    offset=st.floats(-1.0, 1.0),
    z0=st.floats(0.5, 3.0),
    z_sign=st.sampled_from([-1.0, 1.0]),
    rx=st.floats(-2.0, 2.0),
    ry=st.floats(-2.0, 2.0),
    guess=st.floats(-15.0, 15.0),
    seed=st.integers(0, 1000),
)
def test_fit_recovers_phi_offset_z0_on_smooth_series(
    phi: float,
    offset: float,
    z0: float,
    z_sign: float,
    rx: float,
    ry: float,
    guess: float,
    seed: int,
) -> None:
    """0…60° in 1° steps with 5 nm of measurement noise, a feature at least 0.5 µm from the
    axis's height (else it does not move and φ means nothing): φ within 1°, offset and z0
    within 40 nm, starting from φ 15° off and offset 0."""
    rng = np.random.default_rng(seed)
    z0 *= z_sign
    tilts = np.arange(0.0, 61.0, 1.0)
    data = _series(phi, offset, z0, (rx, ry), tilts, 0.005, rng)
    fit = fit_model([data], phi + guess, 0.0)
    assert abs(fit.phi_deg - phi) < 1.0
    assert abs(fit.offset_um - offset) < 0.04
    assert abs(fit.z_um[-1] - z0) < 0.04
    assert fit.rms_um < 0.01


def test_several_series_share_phi_and_offset_each_with_its_height() -> None:
    rng = np.random.default_rng(3)
    heights = (-1.2, 0.4, 2.5)
    data = [
        _series(88.0, 0.35, z, (0.3 * k, -0.2 * k), np.arange(0.0, 46.0, 3.0), 0.005, rng)
        for k, z in enumerate(heights)
    ]
    fit = fit_model(data, 80.0, 0.0)
    assert abs(fit.phi_deg - 88.0) < 0.5
    assert abs(fit.offset_um - 0.35) < 0.03
    assert np.allclose(fit.z_um, heights, atol=0.03)
    fixed = fit_model(data, 88.0, 0.35, fixed=True)  # heights only
    assert fixed.phi_deg == 88.0 and fixed.offset_um == 0.35
    assert np.allclose(fixed.z_um, heights, atol=0.03)


def test_reported_phi_folds_into_half_circle_and_flips_the_offset() -> None:
    m = TiltModel(170.0, 0.5, 1.0).reported()
    assert m.phi_deg == pytest.approx(-10.0) and m.offset_um == -0.5 and m.z0_um == 1.0
    # The folded φ with the flipped offset moves the feature the same way once the height's
    # sense is reversed too: the report is for display, the model keeps its own branch.
    t = np.radians(np.arange(0, 60, 5.0))
    a = model_positions(170.0, 0.5, 1.0, (0.2, 0.1), t)
    b = model_positions(m.phi_deg, m.offset_um, -1.0, (0.2, 0.1), t)
    assert np.allclose(a[0], b[0]) and np.allclose(a[1], b[1]) and np.allclose(a[2], -b[2])


def test_acceptance_rule() -> None:
    assert fit_accepted(0.0, 1.9, 2.0, force=False)
    assert not fit_accepted(0.0, 2.1, 2.0, force=False)
    assert fit_accepted(0.0, 5.0, 2.0, force=True)
    t = np.radians(np.arange(0, 5.0))
    assert straight_trajectory(t, 0.1 * t, 0.3 * t + 0.01)
    assert not straight_trajectory(t, np.array([0, 0.1, -0.2, 0.15, -0.1]), t)


def test_quadratic_extrapolation_is_exact_on_a_parabola() -> None:
    t = np.array([0.1, 0.12, 0.14, 0.16, 0.18])
    assert quadratic_extrapolation(t, 2 - 3 * t + 5 * t**2, 0.2) == pytest.approx(
        2 - 0.6 + 0.2, abs=1e-9
    )
    assert quadratic_extrapolation(t[:2], 1 + t[:2], 0.2) == pytest.approx(1.2)


def _run_series(
    predictor: TiltPredictor,
    truth: TiltModel,
    ref: tuple[float, float],
    tilts_deg: list[float],
    group: int = 0,
    *,
    noise_um: float = 0.003,
    outlier_at: float | None = None,
    rng: np.random.Generator | None = None,
    walk_um: float = 0.0,
    runaway_um: float = 0.0,
) -> list[tuple[float, float, float, str]]:
    """Feed a trajectory point by point; (x error, y error, Δz error) of every prediction.

    ``walk_um``: the goniometer settles with this random error (x and y) at every tilt, a
    random walk; ``runaway_um``: beyond 40° it also slides this far across the axis per step.
    Both translate the specimen sideways: its height, and so Δz, does not change.
    """
    rng = rng or np.random.default_rng(0)
    t = np.radians(tilts_deg)
    x, y, z = model_positions(truth.phi_deg, truth.offset_um, truth.z0_um, ref, t)
    steps = rng.normal(0, walk_um, (2, t.size)) if walk_um else np.zeros((2, t.size))
    steps[:, 0] = 0.0
    beyond = np.array([abs(a) > 40.0 for a in tilts_deg])
    x = x + np.cumsum(steps[0])
    y = y + np.cumsum(steps[1]) + runaway_um * np.cumsum(beyond)
    predictor.add_position(group, tilts_deg[0], float(x[0]), float(y[0]))
    errors = []
    for i in range(1, len(tilts_deg)):
        p = predictor.predict(group, tilts_deg[i])
        errors.append((p.x_um - x[i], p.y_um - y[i], p.dz_um - (z[i] - z[0]), p.fit))
        mx, my = x[i] + rng.normal(0, noise_um), y[i] + rng.normal(0, noise_um)
        if outlier_at is not None and tilts_deg[i] == outlier_at:
            my = my + 1.2  # a false correlation peak, across the axis
        predictor.add_position(group, tilts_deg[i], float(mx), float(my))
    return errors


def test_predictor_tracks_a_smooth_series_within_ucsf_tomo_accuracy() -> None:
    """Truth φ 92°, offset 0.3 µm, z0 1.2 µm; start values φ 90°, offset 0, z0 0. After the
    first points, with 3 nm of measurement noise, x–y predictions fall within 15 nm RMS (30 nm
    at most) and Δz within 100 nm RMS (UCSF Tomo's figures), and the free fit above 30° finds
    the parameters."""
    truth = TiltModel(92.0, 0.3, 1.2)
    settings_ = PredictorSettings(initial=(TiltModel(90.0), TiltModel(90.0)))
    predictor = TiltPredictor(settings_)
    errors = _run_series(predictor, truth, (0.1, 0.4), [float(a) for a in range(0, 61)])
    late = np.array([e[:3] for e in errors[6:]])
    xy = np.hypot(late[:, 0], late[:, 1])
    assert np.sqrt(np.mean(xy**2)) < 0.015 and xy.max() < 0.03
    # Δz: below 30° the offset stays at its start value (0 for a true 0.3 µm), which costs
    # o·sin θ of defocus, as in Leginon; once the free fit runs the error is tens of nm.
    assert np.sqrt(np.mean(late[:, 2] ** 2)) < 0.1
    assert np.abs(late[:, 2]).max() < 0.3 * math.sin(math.radians(31.0)) + 0.02
    assert np.abs(late[30:, 2]).max() < 0.03
    m = predictor.models[0]
    assert abs(m.phi_deg - 92.0) < 1.0 and abs(m.offset_um - 0.3) < 0.05
    assert abs(m.z0_um - 1.2) < 0.05
    # Low tilt guard: every fit below 30° kept φ and offset fixed, later ones were free.
    below = [e for e in predictor.log if e["n"] <= 30]
    above = [e for e in predictor.log if e["n"] > 35]
    assert all(e["fixed"] for e in below) and not any(e["fixed"] for e in above)


def test_z0_rule_rejects_a_false_peak_and_accepts_a_real_change() -> None:
    truth = TiltModel(90.0, 0.0, 1.5)
    settings_ = PredictorSettings(initial=(TiltModel(90.0), TiltModel(90.0)))
    # A real height of 1.5 µm (within the 2 µm allowance) is accepted from the first fit.
    clean = TiltPredictor(settings_)
    _run_series(clean, truth, (0.0, 0.0), [float(a) for a in range(0, 50)])
    assert clean.log[0]["accepted"]
    assert abs(clean.models[0].z0_um - 1.5) < 0.05
    # A false peak 1.2 µm off at 6° pulls the height fitted over the last four tilts by more
    # than 2 µm: those fits are refused, and once it has left the window the model is where the
    # clean points put it.
    noisy = TiltPredictor(settings_)
    _run_series(noisy, truth, (0.0, 0.0), [float(a) for a in range(0, 16)], outlier_at=6.0)
    refused = [e for e in noisy.log if not e["accepted"]]
    assert refused and all(7 <= e["n"] <= 10 for e in refused)
    assert all(e["accepted"] for e in noisy.log if e["n"] < 7 or e["n"] > 10)
    assert abs(noisy.models[0].z0_um - 1.5) < 0.1
    # A specimen 4 µm away: beyond the allowance, but the first free fit of a clean, straight
    # trajectory is forced through (Leginon's force rule), and later fits follow it.
    far = TiltPredictor(settings_)
    _run_series(far, TiltModel(90.0, 0.0, 4.0), (0.0, 0.0), [float(a) for a in range(0, 30)])
    assert far.log[0]["forced"] and far.log[0]["accepted"]
    assert abs(far.models[0].z0_um - 4.0) < 0.1
    # With the force rule out of reach (the model fixed by the user), it is refused throughout.
    fixed = TiltPredictor(
        PredictorSettings(fixed_model=True, initial=(TiltModel(90.0), TiltModel(90.0)))
    )
    _run_series(fixed, TiltModel(90.0, 0.0, 4.0), (0.0, 0.0), [float(a) for a in range(0, 30)])
    assert not any(e["accepted"] for e in fixed.log)
    assert fixed.models[0].z0_um == 0.0


def test_groups_are_separate_and_history_seeds_the_next_series() -> None:
    settings_ = PredictorSettings(initial=(TiltModel(90.0), TiltModel(90.0)))
    first = TiltPredictor(settings_)
    _run_series(first, TiltModel(91.0, 0.4, 0.8), (0, 0), [float(a) for a in range(0, 61, 2)])
    _run_series(
        first, TiltModel(91.0, 0.4, 0.8), (0, 0), [float(-a) for a in range(0, 61, 2)], group=1
    )
    assert first.models[0] != first.models[1]
    history = SessionHistory()
    history.add_series(first.finished())
    restored = SessionHistory.from_json(history.to_json())
    seeds = seed_models(restored.recent_series(7), settings_)
    assert abs(seeds[0].phi_deg - 91.0) < 1.0 and abs(seeds[0].offset_um - 0.4) < 0.05
    assert seeds[0].z0_um == 0.0  # z0 is not carried over without use_z0
    # The second series (another height) starts from those values and uses the first series's
    # points at the same tilts in its fit: its early Δz is already right.
    second = TiltPredictor(settings_, restored.recent_series(7))
    errors = _run_series(second, TiltModel(91.0, 0.4, -1.0), (0.5, 0.2), [0.0, 2.0, 4.0, 6.0, 8.0])
    assert abs(errors[-1][2]) < 0.02
    state = second.state()
    again = TiltPredictor.from_state(state, settings_)
    assert again.predict(0, 10.0) == second.predict(0, 10.0)


def test_model_prediction_does_not_amplify_the_stages_random_settling() -> None:
    """A stage that settles 30 nm off at random after every 3° tilt: Leginon's quadratic through
    the last five positions amplifies that random walk (x1.6) and the measurement noise (x2.1);
    the model's own prediction from the last position misses by little more than one step."""
    truth = TiltModel(90.0, 0.3, 1.0)
    tilts = [float(a) for a in range(0, 61, 3)]
    rms: dict[str, list[float]] = {"quadratic": [], "model": []}
    for seed in range(6):
        for mode in rms:
            settings_ = PredictorSettings(
                initial=(TiltModel(90.0), TiltModel(90.0)), xy_prediction=mode
            )
            errors = _run_series(
                TiltPredictor(settings_),
                truth,
                (0.1, 0.2),
                tilts,
                noise_um=0.005,
                walk_um=0.03,
                rng=np.random.default_rng(seed),
            )
            late = np.array([e[:2] for e in errors[4:]])
            rms[mode].append(float(np.sqrt(np.mean(np.sum(late**2, axis=1)))))
    quadratic, model = np.mean(rms["quadratic"]), np.mean(rms["model"])
    step = 0.03 * math.sqrt(2.0)  # the random part of one step, x and y together
    assert model < 0.75 * quadratic
    assert model < 1.3 * step


def test_a_sideways_run_away_is_followed_without_moving_the_focus() -> None:
    """Beyond 40° the goniometer slides 1 µm per step across the axis (a run-away branch).
    Leginon's fit reads that as a height change and sets the focus microns off; with the
    jump rule the translation is kept out of the fit, so Δz stays right, and x-y (by the
    quadratic while it slides) still follow the target."""
    truth = TiltModel(90.0, 0.3, 1.0)
    tilts = [float(a) for a in range(0, 61, 3)]
    leginon = TiltPredictor(PredictorSettings(initial=(TiltModel(90.0), TiltModel(90.0))))
    errors = _run_series(leginon, truth, (0.1, 0.2), tilts, runaway_um=1.0)
    assert max(abs(e[2]) for e in errors[-5:]) > 0.5
    ours = TiltPredictor(
        PredictorSettings(
            initial=(TiltModel(90.0), TiltModel(90.0)), xy_prediction="model", jump_um=0.3
        )
    )
    errors = _run_series(ours, truth, (0.1, 0.2), tilts, runaway_um=1.0)
    # (below 30° the offset is held at its start value, 0 for a true 0.3 µm: o·sin θ as before)
    assert max(abs(e[2]) for e in errors[10:]) < 0.05
    assert abs(ours.models[0].z0_um - 1.0) < 0.05
    xy = np.hypot(*np.array([e[:2] for e in errors[-3:]]).T)
    assert xy.max() < 0.05  # followed once the slide is under way
    slid = [e for e in ours.log if "translation_um" in e]
    assert len(slid) == sum(1 for a in tilts if a > 40.0)  # every step of the slide, no other


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="fit_points"):
        PredictorSettings(fit_points=1)
    with pytest.raises(ValueError, match="no reference"):
        TiltPredictor().predict(0, 5.0)
    assert math.isfinite(TiltPredictor().settings.z0_error_um)
    with pytest.raises(ValueError, match="xy_prediction"):
        PredictorSettings(xy_prediction="cubic")
    with pytest.raises(ValueError, match="jump_um"):
        PredictorSettings(jump_um=0.0)


def test_early_height_fit_follows_a_feature_off_the_axis_height_from_the_second_tilt() -> None:
    """A feature 0.6 µm above the axis's height moves z·sin(3°) ≈ 31 nm per 3° step across
    the axis at low tilt. Before the model's first fit (fewer than fit_points positions)
    Leginon predicts with height 0 and misses that much at every step; fitting the height to
    the positions already measured misses by about the stage's random settling (10 nm a step,
    as the twin's calm goniometer) instead. From the first fit on the two are the same."""
    truth = TiltModel(90.0, 0.3, 0.6)
    tilts = [float(a) for a in range(0, 61, 3)]
    misses: dict[bool, list[float]] = {False: [], True: []}
    late: dict[bool, list[float]] = {False: [], True: []}
    for seed in range(8):
        for early in misses:
            settings_ = PredictorSettings(
                initial=(TiltModel(90.0), TiltModel(90.0)),
                xy_prediction="model",
                early_height=early,
            )
            errors = _run_series(
                TiltPredictor(settings_),
                truth,
                (0.1, 0.2),
                tilts,
                walk_um=0.01,
                rng=np.random.default_rng(seed),
            )
            # errors[0] is the first tilt (one position: nothing to fit), [1] and [2] follow
            assert [e[3] for e in errors[1:3]] == (["early"] * 2 if early else ["model"] * 2)
            misses[early] += [math.hypot(e[0], e[1]) for e in errors[1:3]]
            late[early] += [math.hypot(e[0], e[1]) for e in errors[3:]]
    leginon = float(np.sqrt(np.mean(np.square(misses[False]))))
    ours = float(np.sqrt(np.mean(np.square(misses[True]))))
    assert leginon > 0.025  # ~z·sin(3°)
    assert ours < 0.6 * leginon
    assert late[True] == late[False]  # the first fit and everything after are unchanged


def test_early_height_does_not_read_a_jump_in_the_first_steps_as_a_height() -> None:
    """The stage jumps 0.2 µm across the axis between 0° and 3°: fitted as a height that is
    3.8 µm, beyond the z0 allowance, so it is not used, and the next predictions miss no more
    than Leginon's (which start from the jumped position with height 0)."""
    truth = TiltModel(90.0, 0.0, 0.3)
    tilts = np.array([0.0, 3.0, 6.0, 9.0])
    x, y, _ = model_positions(truth.phi_deg, 0.0, truth.z0_um, (0.1, 0.2), np.radians(tilts))
    y = y + np.array([0.0, 0.2, 0.2, 0.2])  # the jump (y is across the axis at φ = 90°)
    misses = {}
    for early in (False, True):
        settings_ = PredictorSettings(
            initial=(TiltModel(90.0), TiltModel(90.0)), xy_prediction="model", early_height=early
        )
        predictor = TiltPredictor(settings_)
        predictor.add_position(0, 0.0, float(x[0]), float(y[0]))
        predictor.add_position(0, 3.0, float(x[1]), float(y[1]))
        p = predictor.predict(0, 6.0)
        misses[early] = (math.hypot(p.x_um - x[2], p.y_um - y[2]), p.fit)
    assert misses[True][1] == "model"  # the early height was refused
    assert misses[True][0] == pytest.approx(misses[False][0]) and misses[True][0] < 0.03
