"""Sources: where a producer's records come from.

- :mod:`framework.sources.http`: a chunked JSON Lines HTTP stream with resume by position.
"""
