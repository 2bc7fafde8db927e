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
        "0.4 s before every exposure",
        "K3T (K3, 1.55 s exposure, 15 frames saved as MRC, 30 shots): SerialEM's log, "
        "'start asking' to 'start acquiring' 0.05-0.12 s; DM's log, its asynchronous start to "
        "the first frame 0.44 s, the frame's own 'elapsed T' 0.14-0.16 s, so the beam reaches "
        "the detector 0.40-0.44 s after SerialEM asks (the two logs' clocks matched at the "
        "camera-inserted query; 3 shots). SEM-P's 'SerialEM adds 0.8 s before each "
        "exposure' is not added on top: K3T's whole overhead per shot is about 1.1 s",
        "image-shift settling overlaps it (settle_in_startup)",
        "ShiftManager image-shift time-out counted from the shift, camera start-up included "
        "(property StartupForISDelays)",
    ),
    TimeCost(
        "read-out and processing (readout_s)",
        "0.4 s after every exposure, frame writing aside",
        "K3T: the last frame reaches DM about 0.23 s after the exposure's end, DM finishes "
        "and hands the 47 MB sum over, and SerialEM has it ('got image') 0.53-0.62 s after the "
        "exposure's end, DM's frame writing (0.19-0.21 s for 15 frames) included. With the "
        "start-up and the frames: 0.4 + 1.55 + 15 x 0.014 + 0.4 = 2.56 s per shot against "
        "2.50-2.63 s measured from 'start asking' to 'got image' (2.63-2.70 s shot to shot, "
        "the script's own loop included)",
        "early return, for an exposure that saves frames: the full sum is handed back after "
        "sum_return_s (0.3 s, est.); the rest, and the frame writing, go on in the background "
        "while the stage tilts and the image shift moves; the next exposure that saves frames "
        "waits for the writing, a single shot does not (early_return). An exposure without "
        "frames reads out in full",
        "EarlyReturnNextShot -1 before the shot (SerialEM's script-command help: only for a "
        "K2/K3 shot that aligns or saves dose-fractionation frames; -1 returns the full sum, "
        "GMS 2.31 or later; the next dose-fractionation shot waits until the saving is done, a "
        "single shot only until the frame stack was accessed)",
    ),
    TimeCost(
        "frame writing",
        "0.014 s per saved frame",
        "K3T: DM's 'save' 0.19-0.21 s for 15 frames (MRC); 0.26 s for 20",
        "in the background with early return",
        "EarlyReturnNextShot; frames saved asynchronously by the camera computer",
    ),
    TimeCost(
        "image-shift settling",
        "by the larger axis of the move: 0.1 µm 0 s, 0.3 µm 0.4 s, ≥ 0.5 µm 0.5 s; plus 0.1 s "
        "per halving of a Record pixel below 1 nm (0.23 s at 2 Å); the beam on no earlier than "
        "0.25 s after that (a 1.6 nm Record pixel: 0.75 s after a jump between targets)",
        "SEM-P (Thermo's newer IS delay table); SerialEM's ShiftManager::ComputeISDelay (the "
        "larger axis, the table, DelayPerMagDoubling capped at 0.1 s on Thermo scopes with the "
        "newer table, ISdelayScaleFactor 0.2 on JEOL) and StartupForISDelays (0.25 s with the "
        "newer table: the camera start-up the table takes as built in; CameraController waits "
        "for the IS time-out plus it, less the camera's own start-up, before starting the camera)",
        "overlapped with the camera start-up (settle_in_startup): only what outlasts the start-up "
        "is waited. Ordering the targets does not pay: targets are microns apart, on the flat end "
        "of the table. The dewar check runs after the shift, inside the settling (as PACEtomo "
        "checks between its image shift and its delayIS); the tilt's first shift (fused's "
        "tracking spot) is set before the stage tilts, so it settles during the tilt",
        "SetImageShift / ImageShiftByMicrons with a delay factor (their 3rd argument, 1 = the "
        "table's delay): SerialEM sets the IS time-out and the next shot waits it out during the "
        "start-up. Without the argument SerialEM sets no time-out (PACEtomo relies on delayIS); "
        "a shot that does not wait sees the rest of the settling (image_shift_settling.py: a lag "
        "of 0.5 % of the move, est., decaying with τ 0.36 s from the table's own shape)",
    ),
    TimeCost(
        "image shift to the next target after a Record",
        "its settling (above) after the Record's hand-over, not during it",
        "mastcu/SerialEM: CameraController::QueueImageShift applies a shift at the end of an "
        "exposure (post-exposure actions, K2/K3); it is called only by Multiple Records "
        "(ParticleTasks::SetUpMultiShotShift), montaging and IS calibration",
        "none: no script command queues a shift after a plain Record. MultipleRecords with "
        "SetCustomHoleShifts / SetCustomHoleDefocus would, but fixes every target's shift and "
        "defocus at a tilt before the first is exposed (no learning from the Records of that "
        "tilt), so the twin offers no queued shift",
        "MultipleRecords (custom hole shifts, OpenMultiShotFiles) only",
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
        "its stage drift decays over 45–90 s, which 0.3 s does not change. The twin models the "
        "image's motion within SerialEM's IS settling but none beyond it, so this saving is only "
        "as good as that model",
        "no Delay in the script; SerialEM's own post-tilt delay (TiltDelay properties, 0.2 + "
        "0.8 s minimum, SEM-P) and IS delay table still apply",
    ),
)


__all__ = ["TIME_COSTS", "TimeCost"]
