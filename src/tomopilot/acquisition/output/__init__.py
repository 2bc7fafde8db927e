"""What a run leaves on disk, and how a run continues from it after a crash.

Tilt-series stacks and mdocs as SerialEM writes them (``tilt_series_files``, ``record_output``),
PACEtomo's side files, saved images read back as references, the append-only journal and the
resume that rebuilds a run from it.
"""
