"""The client's clear-side input transform: per-feature scaling before the input quantizer.

A model input may carry ``{"kind": "standardize", "mean": m, "scale": s}``: the client computes
``(x - m) / s`` per feature, in the clear, and quantizes the result. Two things put it there:

* the estimators, whose networks are trained on standardised features (so a
  :class:`qfhe.QuantizedModule` and a deployed client both take raw features);
* post-training quantization of a vector input read only by linear layers
  (``per_feature_inputs=True``): each feature is mapped onto [-1, 1] by its calibrated range, so a
  per-tensor input quantizer gives every feature its full code range whatever its units, and the
  inverse map is folded into the first layer's weights (it costs the server nothing).

numpy only: a deployed client runs it without torch or concrete.

Examples
--------
>>> spec = standardize_spec(np.array([1.0, 10.0]), np.array([2.0, 5.0]))
>>> apply_preprocess(spec, np.array([[5.0, 20.0]])).tolist()
[[2.0, 2.0]]
"""

from __future__ import annotations

import numpy as np

from qfhe.errors import InputValidationError


def standardize_spec(mean, scale) -> dict:
    """The spec of ``(x - mean) / scale`` (a scale of 0 is taken as 1: a constant feature).

    Examples
    --------
    >>> standardize_spec([0.0], [0.0])["scale"].tolist()
    [1.0]
    """
    mean, scale = np.asarray(mean, np.float64), np.asarray(scale, np.float64)
    return {"kind": "standardize", "mean": mean, "scale": np.where(scale > 0, scale, 1.0)}


def range_spec(X: np.ndarray, percentile: float | None = None) -> dict:
    """Per-feature map of the calibrated range of ``X`` (n, F) onto [-1, 1].

    The range is min/max, or the ``[100 - percentile, percentile]`` percentiles (min/max where
    those coincide).

    Examples
    --------
    >>> range_spec(np.array([[0.0, 100.0], [2.0, 300.0]]))["mean"].tolist()
    [1.0, 200.0]
    >>> range_spec(np.arange(101.0).reshape(-1, 1), percentile=99.0)["scale"].tolist()
    [49.0]
    """
    lo, hi = X.min(axis=0), X.max(axis=0)
    if percentile is not None:
        plo, phi = np.percentile(X, [100.0 - percentile, percentile], axis=0)
        # a sparse feature's percentiles can coincide: keep its full range rather than none
        lo, hi = np.where(phi > plo, plo, lo), np.where(phi > plo, phi, hi)
    return standardize_spec((lo + hi) / 2, (hi - lo) / 2)


def apply_preprocess(spec: dict | None, X: np.ndarray) -> np.ndarray:
    """Apply a spec (``None`` leaves ``X`` as it is).

    Raises
    ------
    InputValidationError
        When ``X``'s features do not match the spec's.

    Examples
    --------
    >>> apply_preprocess(None, np.ones((1, 2))).tolist()
    [[1.0, 1.0]]
    """
    if spec is None:
        return X
    mean = np.asarray(spec["mean"], np.float64)
    if X.shape[1:] != mean.shape:
        raise InputValidationError(f"X must have shape (n_samples, {', '.join(map(str, mean.shape))}), got {X.shape}")
    return (X - mean) / np.asarray(spec["scale"], np.float64)
