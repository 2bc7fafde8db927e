"""Acquisition: the engine on top, and its parts in folders named for what they do.

- ``engine.py`` runs a plan on any :class:`~tomopilot.instrument.Microscope`, tilt by tilt and
  target by target, and emits typed events (``events.py``); ``run.py`` wires a configuration into
  a running engine; ``control.py`` is pause / resume / abort / skip; ``quality.py`` judges a
  finished twin run against ground truth. The engine's per-tilt helpers sit beside it
  (``branch_ends``, ``housekeeping_ops``, ``record_ctf``).
- ``plan/``: what a run will do, decided before any exposure: settings, tilt schemes, the run
  configuration, feasibility, the time estimate, target defocus, benchmark scenarios.
- ``setup/``: set-up of an area: reaching it and realigning, refineVec, measureGeo, refineGeo.
- ``output/``: stacks, mdocs and side files as SerialEM writes them, saved images read back, the
  journal and the resume built on it.
- ``strategies/``: how targets are tracked and focused (``base`` is the interface and the toolkit
  the engine lends; ``pace``, ``fused``, ``none``).

The engine never imports the database, the web monitor or the CLI (an import-linter contract
enforces it). Subscribers wired by the CLI write files, journals and progress displays.
"""
