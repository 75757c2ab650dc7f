"""k-nearest neighbours on encrypted queries: a selection network (:mod:`qfhe.neighbors.network`)
and the integer graph built from it (:mod:`qfhe.neighbors.lower`)."""
