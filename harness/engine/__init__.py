"""The claims engine: the session's analysis, the families' decision functions, facets, calibration, and the public claims API."""
