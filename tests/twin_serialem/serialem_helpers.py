"""Twin configurations for the serialem-module tests."""

from __future__ import annotations

from typing import Any

# 1024² camera, every area binned 4: 256² images.
SMALL: dict[str, Any] = {
    "seed": 5,
    "camera": {"size_px": [1024, 1024]},
    "presets": {
        area: {"binning": 4} for area in ("record", "preview", "view", "search", "focus", "trial")
    },
}
