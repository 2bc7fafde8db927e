"""What each of the twin's time costs is, what a controlling program can do about it, and why.

Every entry gives the magnitude the twin uses, where it comes from (source keys of
``reference/twin_magnitudes.md``; *est.* = our estimate), and the SerialEM setting or command
that lets a real microscope make the saving the twin allows. A saving counts only if a real
microscope can make it: where SerialEM offers nothing, the twin offers nothing either.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimeCost:
    """One time cost of the microscope and the lever against it (if any)."""

    name: str
    magnitude: str
    source: str
    lever: str
    serialem: str


TIME_COSTS: tuple[TimeCost, ...] = (
    TimeCost(
        "camera start-up (pre_exposure_s)",
        "0.8 s before every exposure",
        "SEM-P (SerialEM adds 0.8 s before each exposure)",
        "image-shift settling overlaps it (settle_in_startup)",
        "ShiftManager image-shift time-out counted from the shift, camera start-up included "
        "(property StartupForISDelays)",
    ),
    TimeCost(
        "read-out and processing (readout_s)",
        "1.1 s after every exposure (K3, 1.6 s shot with 20 frames: 2.7 s per shot)",
        "K3T (processing 0.8 s, save 0.26 s), SEM-P",
        "early return: the sum is handed back after sum_return_s (0.3 s, est.); the rest, and "
        "the frame writing, go on in the background while the stage tilts and the image shift "
        "moves; the next exposure waits for the camera (early_return)",
        "EarlyReturn script command before the shot (K2/K3, Falcon, DE cameras)",
    ),
    TimeCost(
        "frame writing",
        "0.02 s per saved frame",
        "K3T (0.26 s for 20 frames, rounded up)",
        "in the background with early return",
        "EarlyReturn; frames saved asynchronously by the camera computer",
    ),
    TimeCost(
        "image-shift settling",
        "by the shift: 0.1 µm 0 s, 0.3 µm 0.4 s, ≥ 0.5 µm 0.5 s",
        "SEM-P (Thermo's newer IS delay table)",
        "short jumps settle faster (ordering the targets); overlapped with the camera start-up "
        "(settle_in_startup)",
        "IS delay table in the properties; SetImageShift's settling factor",
    ),
    TimeCost(
        "stage tilt",
        "30 °/s plus a settle (0.3 s autoloader, 1 s side-entry)",
        "LEG, PACE, MED",
        "none: the tilting is the physics of a tilt series",
        "TiltTo / TiltBy",
    ),
    TimeCost(
        "script delays after a tilt and an image shift",
        "PACEtomo delayTilt 0.3 s, delayIS 0.3 s (0.1–0.5 s at facilities)",
        "PACE, MED",
        "dropped (builtin_settling): the twin's own settling (tilt settle, IS table) stays, and "
        "its stage drift decays over 45–90 s, which 0.3 s does not change. The twin models no "
        "residual motion beyond its settling, so this saving is only as good as that model",
        "no Delay in the script; SerialEM's own post-tilt delay (TiltDelay properties, 0.2 + "
        "0.8 s minimum, SEM-P) and IS delay table still apply",
    ),
)


__all__ = ["TIME_COSTS", "TimeCost"]
