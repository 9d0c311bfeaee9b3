"""Sources: where a producer's records come from.

- :mod:`framework.sources.http`: a chunked JSON Lines HTTP stream with resume by position.
- :mod:`framework.sources.simulation`: a cadCAD model whose state transitions become messages,
  deterministic by seed, each at a stable position (run, timestep, substep, index).
"""
