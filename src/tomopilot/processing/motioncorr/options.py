"""Options of the motion-correction job: every option of RELION 5's Motion correction job.

Names follow RELION's command-line options (``--bfactor``, ``--patch_x``, ``--group_frames``,
``--bin_factor``, ``--gainref``/``--gain_rot``/``--gain_flip``, ``--defect_file``,
``--grouping_for_ps``, ``--float16``, ``--even_odd_split``, ``--eer_grouping``,
``--eer_upsampling``, ``--dose_weighting``, ``--save_noDW``), with units in the field names.
Defaults are the tomography GUI's (float16 on, power spectra every 4 frames, B = 150 px²,
1 × 1 patches, no binning, EER fractionation 32).

Examples
--------
>>> MotionCorrOptions().float16, MotionCorrOptions().ps_every_n_frames
(True, 4)
>>> MotionCorrOptions(float16=True, power_spectra=False)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for MotionCorrOptions
  Value error, float16 output needs the power spectra (CTF estimation ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tomopilot.core.config import ConfigModel


class MotionCorrOptions(ConfigModel):
    """Settings of one motion-correction job (shared by every movie of the job)."""

    eer_fractionation: int = Field(default=32, ge=1, description="EER hardware frames per fraction")
    eer_upsampling: Literal[1, 2, 4] = Field(
        default=1, description="EER rendering: 1 = 4K, 2 = 8K super-resolution, 4 = 16K"
    )
    float16: bool = Field(default=True, description="write sums as MRC mode 12 (IEEE half)")
    even_odd: bool = Field(default=False, description="write _EVN/_ODD sums for denoising")
    power_spectra: bool = Field(default=True, description="write _PS amplitude-spectrum sums")
    ps_every_n_frames: int = Field(default=4, ge=1, description="frames summed per spectrum block")
    ps_size_px: int = Field(default=512, ge=64, description="side of the _PS images")
    bfactor_px2: float = Field(default=150.0, ge=0, description="B-factor of the alignment, px²")
    patches: tuple[int, int] = Field(default=(1, 1), description="patches along (x, y)")
    group_frames: int = Field(
        default=1, ge=1, description="frames summed per local-alignment group"
    )
    bin_factor: float = Field(default=1.0, ge=1.0, description="binning by Fourier cropping")
    weighting: Literal["optimal", "bfactor"] = Field(
        default="optimal",
        description="optimal: B-factor passes then SSNR weighting; bfactor: RELION's weighting",
    )
    smooth_trajectory: bool = Field(
        default=True, description="smooth the frame trajectory in time (GCV Whittaker)"
    )
    max_iterations: int = Field(default=10, ge=1, le=100)
    tolerance_px: float = Field(default=0.01, gt=0, description="stop when increments are below")
    max_shift_px: float = Field(default=50.0, gt=0, description="largest shift searched")
    gain_path: Path | None = Field(default=None, description="gain reference (MRC or TIFF)")
    gain_rotation: Literal[0, 1, 2, 3] = Field(default=0, description="× 90° clockwise")
    gain_flip: Literal[0, 1, 2] = Field(default=0, description="1 upside down, 2 left-right")
    defect_path: Path | None = Field(
        default=None, description="MotionCor2 defect text (x y w h) or a defect map image"
    )
    remove_hot_pixels: bool = Field(default=True, description="RELION's hot-pixel removal")
    hot_pixel_sigma: float = Field(default=6.0, gt=0)
    dose_weighting: bool = Field(default=False, description="Grant & Grigorieff dose weighting")
    dose_per_tilt_e_a2: float | None = Field(
        default=None, gt=0, description="dose of each tilt; else from the mdoc or pre-exposures"
    )
    save_no_dw: bool = Field(default=False, description="also write the sum without weighting")
    output_format: Literal["mrc"] = "mrc"

    @model_validator(mode="after")
    def _check(self) -> MotionCorrOptions:
        if self.float16 and not self.power_spectra:
            raise ValueError(
                "float16 output needs the power spectra (CTF estimation cannot read MRC mode 12):"
                " turn power spectra on or float16 off"
            )
        px, py = self.patches
        if px < 1 or py < 1:
            raise ValueError("the number of patches must be at least 1 × 1")
        if self.save_no_dw and not self.dose_weighting:
            raise ValueError("save_no_dw only makes sense with dose weighting")
        return self

    @property
    def local_motion(self) -> bool:
        """Whether patches are aligned: RELION does it only for more than 2 × 2 patches."""
        px, py = self.patches
        return px > 2 and py > 2
