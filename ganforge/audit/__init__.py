"""The privacy audit: does the generator copy its training images?

:mod:`.neighbours` (chunked nearest neighbours, k-means), :mod:`.statistics` (data-copying test,
near-copy rate, memorization distance), :mod:`.distances` (distances per feature space, shared by
the metrics), :mod:`.pairs` (the closest pairs as a PNG), :mod:`.run` (the audit of a run:
:func:`ganforge.api.audit`, ``ganforge audit RUN``). The metrics and feature spaces themselves are
the bundled ``privacy`` plugin.
"""
