"""Options of the CTF-estimation job (RELION 5's CtfFind job, with a tilt-aware mode).

Examples
--------
>>> options = CtfOptions()
>>> options.search_range_um(nominal_um=-4.0)
(-6.0, -2.0)
>>> round(options.resolution_limit_a(pre_exposure_e_a2=100.0), 2)  # RELION's dose dependence
13.59
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from tomopilot.core.config import ConfigModel


class CtfOptions(ConfigModel):
    """Settings of one CTF-estimation job (shared by every tilt of the job)."""

    source: Literal["auto", "power_spectra", "images"] = Field(
        default="auto",
        description="fit the _PS sums (auto when present) or the corrected images",
    )
    tilt_aware: bool = Field(
        default=False, description="model the defocus gradient across tilted images"
    )
    tile_px: int = Field(default=512, ge=64, description="tile of the images' local spectra")
    min_resolution_a: float = Field(default=40.0, gt=0, description="lowest frequency fitted")
    max_resolution_a: float = Field(default=5.0, gt=0, description="highest frequency fitted")
    dose_dependent_resolution: bool = Field(
        default=True, description="raise max resolution as exp(pre-exposure / 100), as RELION"
    )
    defocus_min_um: float = Field(default=0.5, gt=0, description="least underfocus searched")
    defocus_max_um: float = Field(default=8.0, gt=0, description="most underfocus searched")
    nominal_search_um: float = Field(
        default=2.0, ge=0, description="search ± this around the nominal defocus (0 = off)"
    )
    max_astigmatism_um: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _check(self) -> CtfOptions:
        if self.max_resolution_a >= self.min_resolution_a:
            raise ValueError("max_resolution_a must be finer (smaller) than min_resolution_a")
        if self.defocus_min_um >= self.defocus_max_um:
            raise ValueError("defocus_min_um must be below defocus_max_um")
        return self

    def search_range_um(self, nominal_um: float | None) -> tuple[float, float]:
        """(most, least) underfocus searched, negative µm, narrowed around the nominal defocus."""
        low, high = -self.defocus_max_um, -self.defocus_min_um
        if nominal_um is not None and math.isfinite(nominal_um) and self.nominal_search_um > 0:
            centre = -abs(nominal_um)
            low = max(low, centre - self.nominal_search_um)
            high = min(high, centre + self.nominal_search_um)
            if low >= high:
                low, high = -self.defocus_max_um, -self.defocus_min_um
        return low, high

    def resolution_limit_a(self, pre_exposure_e_a2: float = 0.0) -> float:
        """Finest resolution fitted for a tilt, coarser after dose (capped at 0.9 · min)."""
        if not self.dose_dependent_resolution:
            return self.max_resolution_a
        value = self.max_resolution_a * math.exp(max(pre_exposure_e_a2, 0.0) / 100.0)
        return min(value, 0.9 * self.min_resolution_a)
