"""Tree ensembles on encrypted data: read a fitted model (:mod:`qfhe.trees.ensemble`), then build
its integer circuit graph (:mod:`qfhe.trees.lower`)."""
