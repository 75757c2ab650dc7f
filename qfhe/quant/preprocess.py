"""The client's clear-side input transform: per-feature scaling before the input quantizer.

A model input may carry ``{"kind": "standardize", "mean": m, "scale": s}``: the client computes
``(x - m) / s`` per feature, in the clear, and quantizes the result. Two things put it there:

* the estimators, whose networks are trained on standardised features (so a
  :class:`qfhe.QuantizedModule` and a deployed client both take raw features);
* post-training quantization of a vector input read only by linear layers
  (``per_feature_inputs=True``): each feature is mapped onto [-1, 1] by its calibrated range, so a
  per-tensor input quantizer gives every feature its full code range whatever its units, and the
  inverse map is folded into the first layer's weights (it costs the server nothing).

A tree model's input carries ``{"kind": "thermometer", "mean", "scale", "n_bits"}`` instead: each
feature is mapped onto [-1, 1] as above, quantized to one of ``2**n_bits`` uniform levels, and sent
as the unary code of its level: bit ``j`` of a feature is 1 when its level is at most ``j``. Every
comparison a tree makes with a threshold on that grid is then one of the bits the client sent, so
the circuit needs no lookup to compare (:mod:`qfhe.trees.lower`). The grid is public (it depends
on the data's ranges only, as any input quantizer does); the thresholds stay on the server. The
per-sample shape grows from ``(F,)`` to ``(F * (2**n_bits - 1),)``.

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


def thermometer_spec(X: np.ndarray, n_bits: int) -> dict:
    """The thermometer encoding of ``n_bits`` levels per feature over the range of ``X`` (n, F).

    Examples
    --------
    >>> spec = thermometer_spec(np.array([[0.0], [3.0]]), 2)
    >>> apply_preprocess(spec, np.array([[0.0], [1.0], [2.9]])).tolist()   # levels 0, 1, 3
    [[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """
    return {**range_spec(X), "kind": "thermometer", "n_bits": int(n_bits)}


def thermometer_levels(spec: dict, X: np.ndarray) -> np.ndarray:
    """Each feature's level (0 .. ``2**n_bits - 1``) under a thermometer spec, shape (n, F).

    Examples
    --------
    >>> thermometer_levels(thermometer_spec(np.array([[0.0], [3.0]]), 2), np.array([[-9.0], [1.4]])).tolist()
    [[0], [1]]
    """
    top = (1 << spec["n_bits"]) - 1
    u = (X - np.asarray(spec["mean"], np.float64)) / np.asarray(spec["scale"], np.float64)
    return np.clip(np.rint((u + 1.0) * (top / 2.0)), 0, top).astype(np.int64)


def level_values(spec: dict, feature: int) -> np.ndarray:
    """The value (in the feature's own units) each level of ``feature`` stands for.

    Examples
    --------
    >>> level_values(thermometer_spec(np.array([[0.0], [3.0]]), 2), 0).tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    top = (1 << spec["n_bits"]) - 1
    u = np.arange(top + 1) * (2.0 / top) - 1.0
    return u * float(np.asarray(spec["scale"])[feature]) + float(np.asarray(spec["mean"])[feature])


def raw_shape(spec: dict | None, shape: tuple) -> tuple:
    """The per-sample shape a user passes for an input whose encoded shape is ``shape``.

    Examples
    --------
    >>> raw_shape(thermometer_spec(np.zeros((2, 3)), 2), (9,)), raw_shape(None, (4,))
    ((3,), (4,))
    """
    if spec is not None and spec.get("kind") == "thermometer":
        return tuple(np.shape(spec["mean"]))
    return tuple(shape)


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
    if spec["kind"] == "thermometer":
        levels = thermometer_levels(spec, X)
        bits = levels[:, :, None] <= np.arange((1 << spec["n_bits"]) - 1)
        return bits.reshape(len(X), -1).astype(np.float64)
    return (X - mean) / np.asarray(spec["scale"], np.float64)
