"""The client's clear-side steps, from plain data: standardise before quantization, and turn the
dequantized outputs into what the model's user expects (probabilities and labels for a classifier,
targets in their units for a regressor). numpy only.

The estimators describe these steps as plain data (``_client_postprocessing``); a test checks that
the deployed client's results equal the estimator's ``predict_proba``/``predict``.

Examples
--------
>>> import numpy as np
>>> post = {"kind": "classifier", "link": "softmax", "classes": np.array(["a", "b"])}
>>> p = postprocess(post, np.array([[0.0, 2.0]]))
>>> p.round(3).tolist(), labels(post, p).tolist()
([[0.119, 0.881]], ['b'])
"""

from __future__ import annotations

import numpy as np

from qfhe.errors import ArtifactError, InputValidationError

LINKS = ("softmax", "sigmoid", "ovr")


def preprocess(spec: dict | None, X: np.ndarray) -> np.ndarray:
    """Apply the client-side input transform (``None``, or ``{"kind": "standardize", mean, scale}``).

    Examples
    --------
    >>> preprocess({"kind": "standardize", "mean": np.array([1.0]), "scale": np.array([2.0])}, np.array([[5.0]]))
    array([[2.]])
    """
    if spec is None:
        return X
    if spec.get("kind") == "standardize":
        mean, scale = np.asarray(spec["mean"], np.float64), np.asarray(spec["scale"], np.float64)
        if X.ndim != 2 or X.shape[1] != mean.shape[0]:
            raise InputValidationError(f"X must have shape (n_samples, {mean.shape[0]}), got {X.shape}")
        return (X - mean) / scale
    raise ArtifactError(f"model.json: unknown preprocessing {spec.get('kind')!r}")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def postprocess(spec: dict, out: np.ndarray) -> np.ndarray:
    """Dequantized circuit outputs → the model's outputs.

    ``{"kind": "none"}``: unchanged. ``classifier``: probabilities, shape (n, n_classes), by
    ``link`` (``softmax`` of logits; ``sigmoid`` of one binary score; ``ovr``: normalised
    sigmoids). ``regressor``: ``out * scale + mean`` in the target's ``shape``.

    Examples
    --------
    >>> postprocess({"kind": "classifier", "link": "sigmoid", "classes": np.array([0, 1])}, np.array([[0.0]]))
    array([[0.5, 0.5]])
    >>> postprocess({"kind": "regressor", "mean": 1.0, "scale": 2.0, "shape": []}, np.array([[3.0]]))
    array([7.])
    """
    kind = spec.get("kind")
    if kind == "none":
        return out
    if kind == "classifier":
        link = spec.get("link")
        if link == "softmax":
            return _softmax(out)
        if link == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-out.reshape(len(out))))
            return np.stack([1 - p, p], axis=1)
        if link == "ovr":
            p = 1.0 / (1.0 + np.exp(-out))
            return p / p.sum(axis=1, keepdims=True)
        raise ArtifactError(f"model.json: unknown classifier link {link!r}; expected one of {LINKS}")
    if kind == "regressor":
        y = out * np.asarray(spec["scale"]) + np.asarray(spec["mean"])
        return y.reshape((len(y),) + tuple(spec.get("shape", ())))
    raise ArtifactError(f"model.json: unknown postprocessing {kind!r}")


def labels(spec: dict, outputs: np.ndarray) -> np.ndarray:
    """Predicted labels from :func:`postprocess`'s probabilities (a classifier), else the outputs.

    Examples
    --------
    >>> labels({"kind": "none"}, np.array([[1.0]]))
    array([[1.]])
    """
    if spec.get("kind") == "classifier":
        return np.asarray(spec["classes"])[outputs.argmax(axis=1)]
    return outputs


def plain_classes(classes) -> np.ndarray:
    """Class labels as an array that saves without pickle (numbers, booleans or strings).

    Examples
    --------
    >>> plain_classes(np.array(["a", "b"], dtype=object)).dtype.kind
    'U'
    """
    arr = np.asarray(classes)
    if arr.dtype.hasobject:
        if all(isinstance(c, str) for c in arr.tolist()):
            return arr.astype(str)
        raise ArtifactError(f"classes_ {arr.tolist()[:5]} mix types; a deployed classifier needs numeric or string "
                            "labels (convert y before fit)")
    return arr
