"""Whole runs through the SerialEM backend: record-and-save, and a user STOP resumed.

The fake ``serialem`` module sits on a twin, so each run has a ground truth; the STOP run is
resumed as ``tomopilot acquire --resume`` does it (a fresh engine and a fresh SerialEM session
on the same microscope) and its whole outcome is compared with an uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mdocfile
import mrcfile
import numpy as np
import pytest
import yaml
from fake_serialem import FakeSerialEM, short_run_config, small_twin

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import AcquireConfig, load_acquire_config
from tomopilot.acquisition.quality import RunQuality, assess
from tomopilot.acquisition.run import close_microscope, start_run
from tomopilot.core.errors import ConfigError


def write_serialem_config(folder: Path, **microscope: Any) -> Path:
    """A short run (3 targets, 0, ±3, ±6°) with ``backend: serialem``."""
    scope = {"backend": "serialem", "host": "127.0.0.1", "port": 48888, **microscope}
    return short_run_config(folder / "run.yaml", folder / "run", scope)


def run_on(fake: FakeSerialEM, config: AcquireConfig, *, resume: bool = False) -> str:
    engine, _ = start_run(config, serialem_module=fake)
    engine.scope.set_exposure_ids(lambda: fake.last_exposure_id)  # type: ignore[attr-defined]
    try:
        return engine.run(resume=resume).status
    finally:
        close_microscope(engine.scope)


def quality(fake: FakeSerialEM, config: AcquireConfig) -> RunQuality:
    run_dir = Path(config.output.dir)
    journal = replay_journal(run_dir / "L1.journal.jsonl")
    return assess(fake.twin.ground_truth, journal, config, microscope_s=fake.twin.clock.now_s())


def taken(config: AcquireConfig) -> set[tuple[int, float]]:
    journal = replay_journal(Path(config.output.dir) / "L1.journal.jsonl")
    return {(int(c["target"]), float(c["tilt_deg"])) for c in journal.committed}


def test_config_selects_serialem_and_refuses_bad_fields(tmp_path: Path) -> None:
    config = load_acquire_config(write_serialem_config(tmp_path))
    assert config.microscope.backend == "serialem"
    assert (config.microscope.host, config.microscope.port) == ("127.0.0.1", 48888)
    bad = write_serialem_config(tmp_path, port=70000)
    with pytest.raises(ConfigError, match=r"microscope\.port"):
        load_acquire_config(bad)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[AcquireConfig, RunQuality]:
    folder = tmp_path_factory.mktemp("whole")
    config = load_acquire_config(write_serialem_config(folder))
    fake = FakeSerialEM(small_twin())
    assert run_on(fake, config) == "finished"
    return config, quality(fake, config)


def test_record_and_save_writes_stacks_and_mdocs_the_field_reads(
    uninterrupted: tuple[AcquireConfig, RunQuality],
) -> None:
    config, result = uninterrupted
    run_dir = Path(config.output.dir)
    assert result.n_exposures == 15 and result.n_lost == 0
    for target in (1, 2, 3):
        stack = run_dir / f"L1_ts_{target:03d}.mrc"
        with mrcfile.open(stack, permissive=False) as mrc:
            n = mrc.data.shape[0]
        mdoc = mdocfile.read(f"{stack}.mdoc")
        assert n == len(mdoc) == 5
        assert sorted(np.round(mdoc["TiltAngle"].to_numpy())) == [-6, -3, 0, 3, 6]
        assert np.all(mdoc["ExposureDose"].to_numpy() > 0)
    # the backend took real images of the right places: tracking within a few hundred nm
    assert result.pooled()["tracking_rms_nm"] < 500


def test_user_stop_mid_series_resumes_to_the_same_outcome(
    tmp_path: Path, uninterrupted: tuple[AcquireConfig, RunQuality]
) -> None:
    whole_config, whole = uninterrupted
    config = load_acquire_config(write_serialem_config(tmp_path))
    fake = FakeSerialEM(small_twin())
    fake.stop_at("R", 8)  # the operator presses STOP during the 8th Record
    assert run_on(fake, config) == "aborted"
    stopped_at = len(fake.calls)
    assert fake.calls[-1][0] == "R"  # nothing was sent after the STOP, not even restores
    journal = replay_journal(Path(config.output.dir) / "L1.journal.jsonl")
    assert len(journal.committed) == 7 and journal.in_flight is not None
    # --resume: a new engine and a new SerialEM session on the same microscope
    assert run_on(fake, config, resume=True) == "finished"
    assert len(fake.calls) > stopped_at
    resumed = quality(fake, config)
    # the Record in flight at the STOP is booked lost and taken again: the same tilts, all of them
    assert taken(config) == taken(whole_config)
    assert resumed.n_exposures == whole.n_exposures and resumed.n_lost == 1
    for a, b in zip(resumed.targets, whole.targets, strict=True):
        assert a.tracking_rms_nm < 1.5 * b.tracking_rms_nm + 30
        assert abs(a.defocus_rms_um - b.defocus_rms_um) < 0.1
    for target in (1, 2, 3):
        stack = Path(config.output.dir) / f"L1_ts_{target:03d}.mrc"
        with mrcfile.open(stack, permissive=False) as mrc:
            assert mrc.data.shape[0] == len(mdocfile.read(f"{stack}.mdoc"))


def two_targets_three_tilts(folder: Path, **top_level: Any) -> AcquireConfig:
    """The short SerialEM run cut to targets 1-2 at -3, 0, +3°, with ``top_level`` keys set."""
    path = write_serialem_config(folder)
    data = yaml.safe_load(path.read_text())
    data.update(targets=data["targets"][:2], **top_level)
    data["settings"].update(minTilt=-3, maxTilt=3)
    path.write_text(yaml.safe_dump(data))
    return load_acquire_config(path)


@pytest.mark.parametrize("strategy", ["fused", "none"])
def test_every_strategy_runs_unchanged_through_the_backend(tmp_path: Path, strategy: str) -> None:
    config = two_targets_three_tilts(tmp_path, strategy=strategy)
    fake = FakeSerialEM(small_twin())
    assert run_on(fake, config) == "finished"
    assert taken(config) == {(t, a) for t in (1, 2) for a in (-3.0, 0.0, 3.0)}
    assert quality(fake, config).pooled()["tracking_rms_nm"] < 500


@pytest.mark.parametrize("strategy", ["none", "fused"])
def test_frames_serialem_saved_are_linked_into_the_run_not_written_again(
    tmp_path: Path, strategy: str
) -> None:
    # fused asks for early return; this SerialEM (the fake) has no EarlyReturnNextShot: the
    # lever is dropped at the first refusal and the frames are read as without it
    config = two_targets_three_tilts(tmp_path, save_frames=True, strategy=strategy)
    fake = FakeSerialEM(small_twin())
    fake.frames_dir = tmp_path / "serialem_frames"
    fake.frames_dir.mkdir()
    assert run_on(fake, config) == "finished"
    saved = sorted(fake.frames_dir.iterdir())
    assert len(saved) == 6  # 2 targets x 3 tilts, each Record's movie saved once by SerialEM
    run_dir = Path(config.output.dir)
    linked = []
    for target in (1, 2):
        mdoc = mdocfile.read(run_dir / f"L1_ts_{target:03d}.mrc.mdoc")
        for sub_frame_path, n_frames in zip(
            mdoc["SubFramePath"], mdoc["NumSubFrames"], strict=True
        ):
            movie = run_dir / str(sub_frame_path).replace("\\", "/")  # mdocfile: "\\"
            assert movie.suffix == ".mrc"  # SerialEM's format kept, whatever the run's default
            with mrcfile.open(movie, permissive=False) as mrc:
                assert mrc.data.shape[0] == n_frames
            linked.append(movie)
    # every movie in the run is SerialEM's own file (same inode): no second copy on disk
    assert len(linked) == len(saved)
    for movie in linked:
        assert any(movie.samefile(original) for original in saved)
        assert movie.stat().st_nlink == 2


def test_track_twice_retakes_save_their_own_frames_and_link_them(tmp_path: Path) -> None:
    # PACEtomo's trackTwice: target 1 is retaken when it moved more than alignLimit (20 nm)
    config = two_targets_three_tilts(tmp_path, save_frames=True, strategy="pace")
    config.settings = config.settings.model_copy(
        update={"track_twice": True, "align_limit_um": 0.02}
    )
    fake = FakeSerialEM(small_twin())
    fake.frames_dir = tmp_path / "serialem_frames"
    fake.frames_dir.mkdir()
    assert run_on(fake, config) == "finished"
    n_records = fake.names().count("R")
    retakes = n_records - 6  # 2 targets x 3 tilts in the stacks
    assert retakes >= 1
    run_dir = Path(config.output.dir)
    linked = []
    for target in (1, 2):
        stack = run_dir / f"L1_ts_{target:03d}.mrc"
        mdoc = mdocfile.read(f"{stack}.mdoc")
        with mrcfile.open(stack, permissive=False) as mrc:
            sections = mrc.data.astype(np.float64)
        assert len(mdoc) == len(sections) == 3
        # every section, a retaken one too, links the movie of its own exposure: the frames
        # sum to the section's image (r 0.99; another exposure of the field, its own noise: < 0.2)
        for sub_frame_path, section in zip(mdoc["SubFramePath"], sections, strict=True):
            assert str(sub_frame_path) not in ("", "nan", "None")
            movie = run_dir / str(sub_frame_path).replace("\\", "/")
            with mrcfile.open(movie, permissive=False) as mrc:
                frame_sum = mrc.data.astype(np.float64).sum(axis=0)
            assert np.corrcoef(frame_sum.ravel(), section.ravel())[0, 1] > 0.9
            linked.append(movie)
    saved = sorted(fake.frames_dir.iterdir())
    # every Record asked for frames: the series' own and the Records their retakes replaced
    assert len(saved) == n_records
    originals = [next(s for s in saved if movie.samefile(s)) for movie in linked]
    assert len(set(originals)) == 6
    # the replaced Records' movies are the only files outside the series, one per retake
    assert len(set(saved) - set(originals)) == retakes
