"""What a run will do, decided before anything is exposed.

Settings (every PACEtomo setting, units in the names), tilt schemes, the user's run
configuration, feasibility checks, the duration estimate of ``--dry-run``, target defocus per
series, and the benchmark scenarios.
"""
