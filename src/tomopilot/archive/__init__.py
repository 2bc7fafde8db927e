"""Between the engine and the archive: the live recorder, run-folder import, ground truth.

This package sits above ``acquisition/`` (it reads its events and journals) and below the user
interfaces; ``acquisition/`` never imports it or ``store/``.
"""
