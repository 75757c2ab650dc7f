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

from qfhe.errors import ArtifactError
from qfhe.quant.preprocess import apply_preprocess

LINKS = ("softmax", "sigmoid", "ovr", "proba", "decision", "modified_huber", "vote")
#: How a regressor's client maps the dequantized score to the prediction (a GLM's inverse link)
REGRESSOR_LINKS = ("identity", "exp")
#: Largest unary code a client artifact may ask for (features x (2**n_bits - 1) encrypted bits)
MAX_UNARY_WIDTH = 1 << 20


def preprocess(spec: dict | None, X: np.ndarray) -> np.ndarray:
    """Apply the client-side input transform (``None``, ``{"kind": "standardize", mean, scale}`` or a
    tree model's ``{"kind": "thermometer", mean, scale, n_bits}``).

    See :mod:`qfhe.quant.preprocess`.

    Examples
    --------
    >>> preprocess({"kind": "standardize", "mean": np.array([1.0]), "scale": np.array([2.0])}, np.array([[5.0]]))
    array([[2.]])
    """
    if spec is not None and spec.get("kind") not in ("standardize", "thermometer"):
        raise ArtifactError(f"model.json: unknown preprocessing {spec.get('kind')!r}")
    return apply_preprocess(spec, X)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def postprocess(spec: dict, out: np.ndarray) -> np.ndarray:
    """Dequantized circuit outputs → the model's outputs.

    ``{"kind": "none"}``: unchanged. ``classifier``: probabilities, shape (n, n_classes), by
    ``link`` (``softmax`` of logits; ``sigmoid`` of one binary score; ``ovr``: normalised
    sigmoids; ``modified_huber``: scikit-learn's probabilities of that loss; ``decision``: the
    scores themselves, for a model without probabilities; ``vote``: the neighbours' class indices
    counted). ``regressor``: ``out * scale + mean``
    in the target's ``shape``, through ``exp`` if ``link`` is ``"exp"`` (a log-link GLM).

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
        if link == "proba":
            return tree_probabilities(out)
        if link == "decision":  # no probabilities (an SVM): the scores, two columns for a binary model
            return np.concatenate([-out, out], axis=1) if out.shape[1] == 1 else out
        if link == "modified_huber":
            return modified_huber_probabilities(out)
        if link == "vote":
            return vote_probabilities(out, len(spec["classes"]))
        raise ArtifactError(f"model.json: unknown classifier link {link!r}; expected one of {LINKS}")
    if kind == "regressor":
        y = out * np.asarray(spec["scale"]) + np.asarray(spec["mean"])
        if spec.get("link", "identity") == "exp":  # a log-link GLM's mean, in float on the client
            with np.errstate(over="ignore"):
                y = np.exp(y)
        return y.reshape((len(y),) + tuple(spec.get("shape", ())))
    raise ArtifactError(f"model.json: unknown postprocessing {kind!r}")


def tree_probabilities(out: np.ndarray) -> np.ndarray:
    """Class probabilities from a tree model's dequantized outputs: the second class's probability
    for two classes, else one (quantized, so not exactly normalised) probability per class.

    Examples
    --------
    >>> tree_probabilities(np.array([[0.25], [1.02]])).tolist()
    [[0.75, 0.25], [0.0, 1.0]]
    >>> tree_probabilities(np.array([[0.5, 0.3, -0.01]])).round(3).tolist()
    [[0.625, 0.375, 0.0]]
    """
    out = np.clip(np.asarray(out, np.float64), 0.0, 1.0)
    if out.shape[1] == 1:
        return np.concatenate([1.0 - out, out], axis=1)
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), 1.0 / out.shape[1])


def modified_huber_probabilities(scores: np.ndarray) -> np.ndarray:
    """scikit-learn's ``SGDClassifier(loss="modified_huber")`` probabilities from its scores:
    ``(clip(s, -1, 1) + 1) / 2`` per class, normalised (uniform where every class is at 0).

    Examples
    --------
    >>> modified_huber_probabilities(np.array([[0.5], [-3.0]])).tolist()
    [[0.25, 0.75], [1.0, 0.0]]
    """
    p = (np.clip(np.asarray(scores, np.float64), -1.0, 1.0) + 1.0) / 2.0
    if p.shape[1] == 1:
        return np.concatenate([1.0 - p, p], axis=1)
    total = p.sum(axis=1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[1])


def vote_probabilities(out: np.ndarray, n_classes: int) -> np.ndarray:
    """Class shares among the neighbours' class indices ``out`` (n, k); anything but an index in
    ``0 .. n_classes - 1`` (a server's reply is untrusted) counts for no class.

    Examples
    --------
    >>> vote_probabilities(np.array([[1.0, 0.0, 1.0], [2.0, 7.0, -1.0]]), 3).round(3).tolist()
    [[0.333, 0.667, 0.0], [0.0, 0.0, 0.333]]
    """
    out = np.asarray(out, np.float64)
    valid = (out >= 0) & (out < n_classes) & (out == np.floor(out))
    rows = np.broadcast_to(np.arange(len(out))[:, None], out.shape)
    counts = np.zeros((len(out), n_classes))
    np.add.at(counts, (rows[valid], out[valid].astype(np.int64)), 1.0)
    return counts / max(out.shape[1], 1)


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


def predict_labels(spec: dict, out: np.ndarray) -> np.ndarray:
    """A classifier's labels from its dequantized outputs, as its estimator's ``predict`` (else
    :func:`postprocess`'s outputs).

    The argmax of the scores, not of the probabilities, where the link can tie classes
    (``modified_huber`` clips every score above 1 to probability 1).

    Examples
    --------
    >>> spec = {"kind": "classifier", "link": "modified_huber", "classes": np.array(["a", "b", "c"])}
    >>> predict_labels(spec, np.array([[1.5, 3.0, -2.0]])).tolist()
    ['b']
    """
    if spec.get("kind") == "classifier" and spec.get("link") == "modified_huber":
        scores = np.asarray(out)
        idx = (scores[:, 0] > 0).astype(int) if scores.shape[1] == 1 else scores.argmax(axis=1)
        return np.asarray(spec["classes"])[idx]
    return labels(spec, postprocess(spec, out))


def _finite(v, what: str) -> None:
    arr = np.asarray(v) if isinstance(v, (int, float, np.ndarray)) and not isinstance(v, bool) else None
    if arr is None or arr.dtype.kind not in "iuf" or arr.ndim > 8 or not np.isfinite(arr).all():
        raise ArtifactError(f"client.zip: {what} must be finite numbers")


def check_processing(pre, post) -> tuple:
    """Check the client's pre- and post-processing descriptions (from an artifact); return them.

    Examples
    --------
    >>> check_processing(None, {"kind": "none"})
    (None, {'kind': 'none'})
    >>> check_processing(None, {"kind": "classifier", "link": "exec", "classes": np.array([0, 1])})
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: client.zip: unknown classifier link 'exec'; expected one of ('softmax', 'sigmoid', 'ovr', 'proba', 'decision', 'modified_huber', 'vote')
    """
    if pre is not None:
        if not isinstance(pre, dict) or pre.get("kind") not in ("standardize", "thermometer"):
            raise ArtifactError("client.zip: unknown preprocessing")
        for k in ("mean", "scale"):
            _finite(pre.get(k), f"the standardisation's {k}")
        if np.shape(pre["mean"]) != np.shape(pre["scale"]) or np.ndim(pre["mean"]) != 1 or not np.all(pre["scale"]):
            raise ArtifactError("client.zip: the standardisation needs a mean and a non-zero scale per feature")
        if pre["kind"] == "thermometer":
            bits = pre.get("n_bits")
            if type(bits) is not int or not 2 <= bits <= 8 or len(pre["mean"]) * ((1 << bits) - 1) > MAX_UNARY_WIDTH:
                raise ArtifactError(
                    "client.zip: the unary encoding needs n_bits from 2 to 8 and at most "
                    f"{MAX_UNARY_WIDTH} encrypted bits per sample"
                )
    if not isinstance(post, dict) or post.get("kind") not in ("none", "classifier", "regressor"):
        raise ArtifactError("client.zip: unknown postprocessing")
    if post["kind"] == "classifier":
        if post.get("link") not in LINKS:
            raise ArtifactError(
                f"client.zip: unknown classifier link {str(post.get('link'))[:20]!r}; expected one of {LINKS}"
            )
        classes = post.get("classes")
        if (
            not isinstance(classes, np.ndarray)
            or classes.ndim != 1
            or classes.dtype.kind not in "biufU"
            or len(classes) < 2
        ):
            raise ArtifactError("client.zip: a classifier needs at least two class labels (numbers or strings)")
    if post["kind"] == "regressor":
        _finite(post.get("mean"), "the target mean")
        _finite(post.get("scale"), "the target scale")
        if post.get("link", "identity") not in REGRESSOR_LINKS:
            raise ArtifactError(
                f"client.zip: unknown regressor link {str(post.get('link'))[:20]!r}; expected one of {REGRESSOR_LINKS}"
            )
        shape = post.get("shape", [])
        if not isinstance(shape, (list, tuple)) or not all(type(d) is int and 0 < d < 1 << 20 for d in shape):
            raise ArtifactError("client.zip: the regressor's target shape is invalid")
    return pre, post


def check_quantizers(quant, dequant) -> None:
    """Check a TFHE client's input quantizer and output dequantizer (from an artifact).

    Examples
    --------
    >>> check_quantizers({"scale": 0.5, "zero_point": 0, "qmin": 0, "qmax": 7}, {"scale": 1.0, "offset": 0.0})
    >>> check_quantizers({"scale": -1.0, "zero_point": 0, "qmin": 0, "qmax": 7}, {"scale": 1.0, "offset": 0.0})
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: client.zip: the input quantizer needs a positive scale and integer codes qmin <= qmax
    """
    if not isinstance(quant, dict) or not isinstance(dequant, dict):
        raise ArtifactError("client.zip: the input quantizer or output dequantizer is missing")
    ints = [quant.get(k) for k in ("zero_point", "qmin", "qmax")]
    scale = quant.get("scale")
    if (
        not all(type(v) is int and abs(v) < 1 << 20 for v in ints)
        or ints[1] > ints[2]
        or type(scale) not in (int, float)
        or not (0 < scale < float("inf"))
    ):
        raise ArtifactError("client.zip: the input quantizer needs a positive scale and integer codes qmin <= qmax")
    _finite(dequant.get("scale"), "the output dequantizer's scale")
    _finite(dequant.get("offset"), "the output dequantizer's offset")


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
        raise ArtifactError(
            f"classes_ {arr.tolist()[:5]} mix types; a deployed classifier needs numeric or string "
            "labels (convert y before fit)"
        )
    return arr
