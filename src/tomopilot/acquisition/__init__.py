"""Acquisition: tilt schemes, settings, plans, the engine and its strategies.

The engine executes a plan on any :class:`~tomopilot.instrument.Microscope` and emits typed
events; it never imports the database, the web monitor or the CLI (an import-linter contract
enforces it). Subscribers wired by the CLI write files, journals and progress displays.
"""
