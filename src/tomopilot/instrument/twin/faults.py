"""Faults on demand: dark images, camera time-outs, stage errors and jumps, forced refills.

Faults come from the configuration (``faults:`` in YAML) or are injected while running. Each
fires when its trigger is reached (an exposure index, a move index or a time) and then for
``count`` consecutive opportunities.
"""

from __future__ import annotations

from tomopilot.instrument.twin.config import FaultSpec


class FaultInjector:
    """Keeps pending faults and says which fire now."""

    def __init__(self, faults: list[FaultSpec]) -> None:
        self._pending: list[list[object]] = [[spec, spec.count] for spec in faults]
        self.fired: list[tuple[str, float]] = []

    def inject(self, spec: FaultSpec) -> None:
        """Add a fault while running."""
        self._pending.append([spec, spec.count])

    def _take(
        self,
        kinds: set[str],
        *,
        exposure: int | None = None,
        move: int | None = None,
        time_s: float | None = None,
    ) -> FaultSpec | None:
        for entry in self._pending:
            spec, remaining = entry
            assert isinstance(spec, FaultSpec) and isinstance(remaining, int)
            if spec.kind not in kinds or remaining <= 0:
                continue
            due = (
                (
                    spec.at_exposure is not None
                    and exposure is not None
                    and exposure >= spec.at_exposure
                )
                or (spec.at_move is not None and move is not None and move >= spec.at_move)
                or (spec.at_time_s is not None and time_s is not None and time_s >= spec.at_time_s)
            )
            if due:
                entry[1] = remaining - 1
                return spec
        return None

    def on_exposure(self, index: int, time_s: float) -> FaultSpec | None:
        """A camera fault due at this exposure (dark image, time-out, no beam), if any."""
        spec = self._take(
            {"dark_image", "camera_timeout", "no_beam"}, exposure=index, time_s=time_s
        )
        if spec is not None:
            self.fired.append((spec.kind, time_s))
        return spec

    def on_move(self, index: int, time_s: float) -> FaultSpec | None:
        """A stage fault due at this move (error or jump), if any."""
        spec = self._take({"stage_error", "stage_jump"}, move=index, time_s=time_s)
        if spec is not None:
            self.fired.append((spec.kind, time_s))
        return spec

    def on_time(self, time_s: float) -> FaultSpec | None:
        """A forced dewar refill due by now, if any."""
        spec = self._take({"dewar_refill"}, time_s=time_s)
        if spec is not None:
            self.fired.append((spec.kind, time_s))
        return spec
