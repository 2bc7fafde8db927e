"""Motion correction of tilt movies, RELION 5 style: options, per-movie work, the job."""

from tomopilot.processing.motioncorr.correct_frames import MovieCorrection, correct_frames
from tomopilot.processing.motioncorr.job import MotionCorrSummary, run_motioncorr
from tomopilot.processing.motioncorr.options import MotionCorrOptions

__all__ = [
    "MotionCorrOptions",
    "MotionCorrSummary",
    "MovieCorrection",
    "correct_frames",
    "run_motioncorr",
]
