"""CTF estimation of tilt images, RELION 5 CtfFind style, with a tilt-aware mode."""

from tomopilot.processing.ctf.job import CtfSummary, run_ctf
from tomopilot.processing.ctf.options import CtfOptions

__all__ = ["CtfOptions", "CtfSummary", "run_ctf"]
