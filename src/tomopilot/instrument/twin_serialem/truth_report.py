"""The ground truth of a script run: where the beam really was, the true defocus, the dose.

After ``tomopilot sem-run``, the run folder holds the twin's command log, its configuration and
the module's side record (which exposure every saved image was, which map image every Navigator
point was picked on). Replaying the log rebuilds the twin's ground truth exactly; this module
then judges every image the script saved:

- **what the script meant**: the specimen feature under a Navigator point (the point picked on a
  map, traced through the map image's true geometry onto the specimen). An image whose autodoc
  section names its item (``NavigatorLabel``, as SerialEM writes in Acquire at Items and scripts
  add with ``AddToAutodoc``) is judged against that item; otherwise a file belongs to the point
  nearest to where its first image really was, within 0.5 µm (and half the field). A file with
  no such point is judged against the specimen point at the centre of its first image (where the
  script started it);
- **tracking error**: where that point really was relative to the beam centre, in nm on the
  specimen plane (x along the tilt axis), for every image;
- **defocus**: the true defocus at the image centre, and its error from the target defocus the
  script had set (``SetTargetDefocus``) when it saved the image;
- **dose**: the dose of each exposure, and the total the point received from every exposure of
  the run (maps, focusing, tracking and its neighbours' beams included).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tomopilot.core.config import load_config
from tomopilot.core.errors import TomopilotError
from tomopilot.core.files import AppendOnlyJournal, atomic_write_text
from tomopilot.instrument.twin import ExposureTruth, TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.field import FieldOfView
from tomopilot.instrument.twin.surface import trace_rays
from tomopilot.instrument.twin_serialem.session import RECORD_FILE
from tomopilot.io.mdoc_writer import parse_mdoc

TWIN_CONFIG_FILE = "semrun_twin.yaml"
COMMAND_LOG_FILE = "twin_commands.jsonl"
SUMMARY_FILE = "semrun_summary.json"
MATCH_RADIUS_UM = 0.5  # a series belongs to a Navigator point within this of its first image
RECORD_AREAS = ("Record", "Preview")


@dataclass
class ImageTruth:
    """One saved image against the truth."""

    section: int
    exposure_id: int
    area: str
    tilt_deg: float
    offset_nm: tuple[float, float]
    true_defocus_um: float
    target_defocus_um: float
    dose_e_a2: float
    #: how far the beam moved during the exposure because an image shift had not settled
    #: (a shift without the settling multiplier #D, then a shot at once)
    settling_blur_nm: float = 0.0

    @property
    def error_nm(self) -> float:
        """Distance of the intended point from the beam centre."""
        return math.hypot(*self.offset_nm)

    @property
    def defocus_error_um(self) -> float:
        """True defocus minus the target defocus (NaN for View, Search, Focus, Trial images,
        which are taken at a defocus offset)."""
        if self.area not in RECORD_AREAS:
            return math.nan
        return self.true_defocus_um - self.target_defocus_um


@dataclass
class SeriesTruth:
    """One image file (a tilt series, a set of maps ...) against the truth."""

    file: str
    intended: str
    point_um: tuple[float, float, float]
    images: list[ImageTruth] = field(default_factory=list)
    dose_at_point_e_a2: float = 0.0

    def _rms(self, values: list[float]) -> float:
        return float(np.sqrt(np.mean(np.square(values)))) if values else 0.0

    @property
    def tracking_rms_nm(self) -> float:
        """RMS distance of the intended point from the beam centre."""
        return self._rms([i.error_nm for i in self.images])

    @property
    def tracking_max_nm(self) -> float:
        """Largest distance."""
        return max((i.error_nm for i in self.images), default=0.0)

    @property
    def settling_blur_max_nm(self) -> float:
        """Largest smear of an image by an image shift still settling (0: every shot waited)."""
        return max((i.settling_blur_nm for i in self.images), default=0.0)

    @property
    def defocus_rms_um(self) -> float:
        """RMS of true minus target defocus over the Record and Preview images (NaN if none)."""
        errors = [i.defocus_error_um for i in self.images if i.area in RECORD_AREAS]
        return self._rms(errors) if errors else math.nan


@dataclass
class ScriptTruth:
    """A whole script run."""

    series: list[SeriesTruth]
    microscope_s: float
    n_exposures: int
    dose_by_area: dict[str, float]


def _trace(
    twin: TwinMicroscope, truth: ExposureTruth, col: float, row: float
) -> tuple[float, float, float]:
    """The specimen point under a pixel position (pixel centres at integers) of an exposure."""
    fov = FieldOfView(
        truth.beam_centre_lab_um, truth.field_shape, truth.pixel_size_a, truth.rotation_deg
    )
    x, y = fov.lab_from_pixels(np.array([col + 0.5]), np.array([row + 0.5]))
    hits = trace_rays(twin.specimen, truth.pose, x, y)
    return float(hits.specimen_x_um[0]), float(hits.specimen_y_um[0]), float(hits.specimen_z_um[0])


def _centre_point(twin: TwinMicroscope, truth: ExposureTruth) -> tuple[float, float, float]:
    lab_x, lab_y = truth.beam_centre_lab_um
    hits = trace_rays(twin.specimen, truth.pose, np.array([lab_x]), np.array([lab_y]))
    return float(hits.specimen_x_um[0]), float(hits.specimen_y_um[0]), float(hits.specimen_z_um[0])


def _mdoc_labels(file: str) -> dict[int, str]:
    """NavigatorLabel of each section of an image file's autodoc (the script's own intent)."""
    try:
        parsed = parse_mdoc(Path(file + ".mdoc"))
    except (OSError, ValueError, TomopilotError):
        return {}
    return {
        z: sec.items["NavigatorLabel"]
        for z, sec in enumerate(parsed.sections)
        if sec.items.get("NavigatorLabel")
    }


def _judge_file(
    twin: TwinMicroscope,
    run_dir: Path,
    file: str,
    images: list[dict[str, Any]],
    points: dict[str, tuple[float, float, float]],
) -> SeriesTruth:
    """One image file: each image against the point its series (or its own label) meant."""
    truth = twin.ground_truth
    first = truth.exposure(int(images[0]["exposure_id"]))
    centre = _centre_point(twin, first)
    half_field_um = min(first.field_shape) * first.pixel_size_a * 1e-4 / 2
    best = min(
        points.items(),
        key=lambda p: math.hypot(p[1][0] - centre[0], p[1][1] - centre[1]),
        default=None,
    )
    radius = min(half_field_um, MATCH_RADIUS_UM)
    if best is not None and math.hypot(best[1][0] - centre[0], best[1][1] - centre[1]) <= radius:
        intended, point = f"Navigator item {best[0]}", best[1]
    else:
        intended, point = "centre of the first image", centre
    labelled = _mdoc_labels(file)
    name = Path(file).name if Path(file).parent == run_dir.resolve() else file
    one = SeriesTruth(file=name, intended=intended, point_um=point)
    used = set()
    for entry in images:
        exposure = truth.exposure(int(entry["exposure_id"]))
        label = labelled.get(int(entry["section"]))
        aim = points.get(label, point) if label is not None else point
        used.add(label if label in points else None)
        one.images.append(
            ImageTruth(
                section=int(entry["section"]),
                exposure_id=exposure.exposure_id,
                area=exposure.area,
                tilt_deg=exposure.tilt_deg,
                offset_nm=exposure.offset_nm(aim),
                true_defocus_um=exposure.defocus_um,
                target_defocus_um=float(entry["target_defocus_um"]),
                dose_e_a2=exposure.dose_e_a2,
                settling_blur_nm=exposure.is_blur_nm,
            )
        )
    if None not in used:  # every image names its item (mdoc NavigatorLabel)
        names = sorted(str(u) for u in used)
        one.intended = (
            f"Navigator item {names[0]}"
            if len(names) == 1
            else ("Navigator items " + ", ".join(names) + " (NavigatorLabel)")
        )
        one.point_um = points[names[0]]
    one.dose_at_point_e_a2 = truth.dose_received(one.point_um, min(0.2, half_field_um)).total_e_a2
    return one


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return list(AppendOnlyJournal(run_dir / RECORD_FILE).records())


def write_run_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Keep how a script run ended (status, commands used, dialogs, the script's traceback)."""
    return atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=1, default=str))


def read_run_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary of a script run, or None (a run still going, or killed)."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else None


def is_script_run(run_dir: Path) -> bool:
    """Whether a folder holds a ``tomopilot sem-run`` run."""
    return (run_dir / RECORD_FILE).is_file() and (run_dir / COMMAND_LOG_FILE).is_file()


def assess_script_run(run_dir: Path) -> ScriptTruth:
    """Rebuild a script run's twin from its folder and judge every saved image."""
    run_dir = Path(run_dir)
    if not is_script_run(run_dir):
        raise FileNotFoundError(
            f"{run_dir} holds no sem-run record ({RECORD_FILE} and {COMMAND_LOG_FILE})"
        )
    config = load_config(run_dir / TWIN_CONFIG_FILE, TwinConfig)
    twin = TwinMicroscope(config, command_log=run_dir / COMMAND_LOG_FILE)
    truth = twin.ground_truth
    entries = _records(run_dir)
    traced: dict[int, tuple[float, float, float]] = {}
    labels: dict[int, str] = {}
    for entry in entries:
        if entry["kind"] == "nav_point" and entry.get("exposure_id") is not None:
            exposure = truth.exposure(int(entry["exposure_id"]))
            col, row = (float(v) for v in entry["pixel"])
            traced[int(entry["map_id"])] = _trace(twin, exposure, col, row)
        if entry["kind"] in ("nav_point", "nav_label") and "label" in entry:
            labels[int(entry["map_id"])] = str(entry["label"])
    points = {labels.get(i, str(i)): p for i, p in traced.items()}
    by_file: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry["kind"] == "image" and entry.get("exposure_id") is not None:
            by_file.setdefault(str(entry["file"]), []).append(entry)
    series = [_judge_file(twin, run_dir, file, images, points) for file, images in by_file.items()]
    dose_by_area: dict[str, float] = {}
    for exposure in truth.exposures:
        dose_by_area[exposure.area] = dose_by_area.get(exposure.area, 0.0) + exposure.dose_e_a2
    return ScriptTruth(
        series=series,
        microscope_s=twin.clock.now_s(),
        n_exposures=len(truth.exposures),
        dose_by_area=dose_by_area,
    )
