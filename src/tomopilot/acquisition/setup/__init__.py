"""Set-up of an area before its tilt series, named after the PACEtomo step each one is.

Reaching the area and realigning to target 1 (``reach_area``), and the optional adjustments that
are journalled and re-applied on resume: ``refineVec`` (``refine_vec``), ``measureGeo``
(``measure_geo``) and ``refineGeo`` after the start round (``refine_geo``).
"""
