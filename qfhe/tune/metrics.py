"""What tuning measures: the metric, and how circuit outputs become predictions.

A tuning target is the circuit's integer graph, the validation inputs already quantized, and the
client-side decoding that turns output codes into predictions (argmax for a classifier, the
estimator's own post-processing for ``qfhe.sklearn`` estimators). Every candidate is then scored
by running the reference interpreter, exactly or with the lookup-error model
(:mod:`qfhe.tfhe.noise`).

Examples
--------
>>> fn, higher = resolve_metric("mse")
>>> fn([1.0, 2.0], [1.0, 4.0]), higher
(2.0, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
from sklearn.metrics import accuracy_score, mean_squared_error, r2_score

from qfhe.errors import ConfigurationError, InputValidationError
from qfhe.model import QuantizedModule
from qfhe.tfhe.noise import run_with_lookup_errors
from qfhe.validation import to_numpy

#: name -> (function of (y_true, y_pred), higher is better)
METRICS: dict[str, tuple[Callable, bool]] = {
    "accuracy": (accuracy_score, True),
    "r2": (r2_score, True),
    "mse": (mean_squared_error, False),
}


def resolve_metric(metric, higher_is_better: bool = True) -> tuple[Callable, bool]:
    """A metric name or callable, as ``(fn(y_true, y_pred) -> float, higher_is_better)``.

    Names: ``accuracy`` and ``r2`` (higher is better), ``mse`` (lower is better). A callable is
    taken as higher-is-better unless ``higher_is_better=False``.

    Raises
    ------
    ConfigurationError
        For an unknown name (the message lists the valid ones) or a non-callable.

    Examples
    --------
    >>> resolve_metric("f1")
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: metric 'f1' is unknown; use one of accuracy, r2, mse, or a callable (y_true, y_pred) -> float
    """
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ConfigurationError(
                f"metric {metric!r} is unknown; use one of {', '.join(METRICS)}, or a callable "
                "(y_true, y_pred) -> float"
            )
        return METRICS[metric]
    if not callable(metric):
        raise ConfigurationError(
            f"metric must be a name ({', '.join(METRICS)}) or a callable (y_true, y_pred) -> float, got {metric!r}"
        )
    return metric, bool(higher_is_better)


class LossEstimate(NamedTuple):
    """A candidate's loss against the reference on the validation samples, and what is judged.

    ``loss`` is the reference's metric minus the candidate's (mean over its simulations), signed
    so that positive is worse. ``bound`` is the one-sided upper estimate the searches compare
    with the tolerance (see :func:`paired_loss`); ``se`` is its standard error.

    Examples
    --------
    >>> LossEstimate(loss=0.002, se=0.003, bound=0.008).bound <= 0.01
    True
    """

    loss: float
    se: float
    bound: float


def paired_loss(
    metric: str | None,
    fn: Callable,
    higher: bool,
    y: np.ndarray,
    reference_pred: np.ndarray,
    candidate_preds: list[np.ndarray],
    n_boot: int = 100,
    seed: int = 0,
) -> LossEstimate:
    """Loss of a candidate against the reference on the same validation samples, and its upper bound.

    A search picks the cheapest candidate that passes, so it favours candidates whose loss the
    validation set happens to underestimate; and a few hundred samples measure a loss of a point
    or so with an error of about half a point. So the searches judge an upper estimate, one
    standard error (over the choice of validation samples) above the loss:

    * ``accuracy``: the *harm*, the fraction of samples the reference classifies correctly and
      the candidate does not (averaged over its simulations), plus its standard error. Lookup
      errors that happen to fix a wrong prediction are luck, not accuracy to spend, so they are
      not counted: the harm bounds the accuracy loss from above, and varies less than it.
    * ``mse``: the mean of the per-sample increases of the squared error, plus its standard error.
    * other names and callables: the loss plus the standard deviation over ``n_boot`` seeded
      bootstrap resamples.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.metrics import accuracy_score
    >>> y = np.array([0, 1, 1, 0]); ref = np.array([0, 1, 1, 1]); cand = [np.array([0, 1, 0, 0])]
    >>> est = paired_loss("accuracy", accuracy_score, True, y, ref, cand)
    >>> float(est.loss), float(est.bound)      # one gained, one lost: no loss, but a harm of 1/4
    (0.0, 0.5)
    """
    sign = 1.0 if higher else -1.0
    loss = sign * (float(fn(y, reference_pred)) - float(np.mean([fn(y, p) for p in candidate_preds])))
    n = len(y)
    if metric in ("accuracy", "mse"):

        def per_sample(pred):
            if metric == "accuracy":
                return (np.asarray(pred).reshape(n, -1) == np.asarray(y).reshape(n, -1)).all(axis=1).astype(float)
            return -((np.asarray(pred, float).reshape(n, -1) - np.asarray(y, float).reshape(n, -1)) ** 2).mean(axis=1)

        ref = per_sample(reference_pred)
        cand = np.mean([per_sample(p) for p in candidate_preds], axis=0)
        d = ref * (1.0 - cand) if metric == "accuracy" else ref - cand
        se = float(np.std(d, ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        return LossEstimate(loss, se, float(d.mean()) + se)
    if n < 2:
        return LossEstimate(loss, 0.0, loss)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        boots.append(float(fn(y[i], reference_pred[i])) - float(np.mean([fn(y[i], p[i]) for p in candidate_preds])))
    se = float(np.std(boots, ddof=1))
    return LossEstimate(loss, se, loss + se)


@dataclass
class TuningTarget:
    """A quantized model, validation data quantized for it, and how outputs become predictions.

    Examples
    --------
    >>> import numpy as np, torch, qfhe
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3))
    >>> X = np.random.RandomState(0).randn(50, 4)
    >>> t = make_target(qfhe.quantize_torch_model(m, X, n_bits=6), X, X.argmax(1) % 3, "find_best_p_error")
    >>> t.predict(t.reference_codes()).shape
    (50,)
    """

    module: QuantizedModule
    codes: np.ndarray
    y: np.ndarray
    decode: Callable[[np.ndarray], np.ndarray]

    def predict(self, output_codes: np.ndarray) -> np.ndarray:
        """Predictions from circuit output codes.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> X = np.random.RandomState(0).randn(20, 4)
        >>> t = make_target(qfhe.quantize_torch_model(torch.nn.Linear(4, 3), X, n_bits=6), X, np.zeros(20), "doc")
        >>> t.predict(t.reference_codes()).shape
        (20,)
        """
        return self.decode(self.module.dequantize_output(output_codes))

    def reference_codes(self) -> np.ndarray:
        """Exact output codes (``fhe="disable"``, no range check).

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> X = np.random.RandomState(0).randn(20, 4)
        >>> t = make_target(qfhe.quantize_torch_model(torch.nn.Linear(4, 3), X, n_bits=6), X, np.zeros(20), "doc")
        >>> t.reference_codes().shape
        (20, 3)
        """
        from qfhe.ir.interpreter import run

        return run(self.module._server_graph, [self.codes])[0]

    def noisy_codes(self, p_error: float, rng: np.random.Generator) -> np.ndarray:
        """Output codes with modelled lookup errors at per-lookup ``p_error``.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> X = np.random.RandomState(0).randn(20, 4)
        >>> t = make_target(qfhe.quantize_torch_model(torch.nn.Linear(4, 3), X, n_bits=6), X, np.zeros(20), "doc")
        >>> bool((t.noisy_codes(0.1, np.random.default_rng(0)) == t.reference_codes()).all())  # no lookup
        True
        """
        return run_with_lookup_errors(self.module._server_graph, self.module.bitwidths, self.codes, p_error, rng)


def _argmax_decode(out: np.ndarray) -> np.ndarray:
    out = out.reshape(len(out), -1)
    return out.argmax(axis=1) if out.shape[1] > 1 else (out[:, 0] > 0).astype(int)


def _outputs(out: np.ndarray) -> np.ndarray:
    return out.ravel() if out.ndim == 2 and out.shape[1] == 1 else out


def _is_labels(y: np.ndarray) -> bool:
    """Integer class indices, shape (n,)."""
    return (
        y.ndim == 1 and y.dtype.kind in "iub" or (y.dtype.kind == "f" and y.ndim == 1 and bool(np.all(y == np.rint(y))))
    )


def default_metric(model, y) -> str:
    """``"accuracy"`` for a classifier (or class labels against several outputs), ``"r2"`` otherwise.

    Examples
    --------
    >>> import numpy as np, torch, qfhe
    >>> X = np.random.RandomState(0).randn(20, 4)
    >>> qm = qfhe.quantize_torch_model(torch.nn.Linear(4, 1), X)
    >>> default_metric(qm, X[:, 0]), default_metric(qfhe.quantize_torch_model(torch.nn.Linear(4, 3), X), X[:, 0] > 0)
    ('r2', 'accuracy')
    """
    from sklearn.base import is_classifier

    if not isinstance(model, QuantizedModule):
        if not hasattr(model, "_decode_output"):
            return "accuracy"  # not a model qfhe tunes: make_target says so
        return "accuracy" if is_classifier(model) else "r2"
    y = np.asarray(y)
    n_out = int(np.prod(model.output_shape)) if model.output_shape else 1
    return "accuracy" if _is_labels(y) and n_out > 1 or y.dtype.kind in "bOUS" else "r2"


def _module_decoder(model: QuantizedModule, y: np.ndarray, metric_name: str | None, where: str):
    """How a QuantizedModule's outputs become what the metric compares with ``y`` (and ``y`` itself)."""
    n_out = int(np.prod(model.output_shape)) if model.output_shape else 1
    shape = (len(y), n_out) if n_out > 1 else (len(y),)
    one_hot = y.ndim == 2 and y.shape[1] == n_out > 1 and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()
    if metric_name == "accuracy":
        if one_hot:
            return _argmax_decode, y.argmax(axis=1)
        if not _is_labels(y):
            raise ConfigurationError(
                f"{where}: metric='accuracy' compares y_val with the index of the largest output, so y_val must hold "
                f"integer class indices (or be one-hot); got dtype {y.dtype} and shape {y.shape}. Encode string labels "
                "as indices (sklearn.preprocessing.LabelEncoder), or use metric='r2'/'mse' for a regression model"
            )
        if n_out > 1 and (y.min() < 0 or y.max() >= n_out):
            raise ConfigurationError(
                f"{where}: y_val holds class indices {int(y.min())}..{int(y.max())}, but the "
                f"model has {n_out} outputs (indices 0..{n_out - 1}); check metric and y_val"
            )
        return _argmax_decode, y
    if metric_name in ("r2", "mse"):
        if y.dtype.kind not in "iufb" or y.reshape(len(y), -1).shape[1] != n_out:
            raise ConfigurationError(
                f"{where}: metric={metric_name!r} compares y_val with the model's outputs, shape {shape}, but y_val has "
                f"shape {y.shape} (dtype {y.dtype}); for class labels use metric='accuracy'"
            )
        return _outputs, y
    # a callable: class labels against several outputs get labels, anything else the outputs
    if one_hot:
        return _argmax_decode, y.argmax(axis=1)
    return (_argmax_decode if n_out > 1 and _is_labels(y) else _outputs), y


def make_target(model, X, y, where: str, metric_name: str | None = "accuracy") -> TuningTarget:
    """Build the :class:`TuningTarget` of a ``QuantizedModule`` or a fitted ``qfhe.sklearn`` estimator.

    What the metric compares with ``y`` (``y_pred``):

    * an estimator: its predictions (labels of a classifier, values of a regressor); ``accuracy``
      on a regressor, ``r2``/``mse`` on a classifier and labels not seen in ``fit`` are refused;
    * a ``QuantizedModule`` with ``accuracy``: the index of the largest output (a single output
      column is a logit: positive means class 1); ``y`` holds integer class indices, or is one-hot;
    * a ``QuantizedModule`` with ``r2``/``mse``: the outputs (one column flattened), whose shape
      ``y`` must have;
    * a callable: class indices when ``y`` holds integer labels (or one-hot) and the model has
      several outputs, the outputs otherwise.

    Raises
    ------
    InputValidationError
        For empty validation data, ``X`` and ``y`` of different lengths, or an estimator's unknown label.
    ConfigurationError
        For a model that is neither, or a ``metric`` that does not fit ``y`` or the model (the
        message names both).

    Examples
    --------
    >>> import numpy as np, torch, qfhe
    >>> X = np.random.RandomState(0).randn(20, 4)
    >>> make_target(qfhe.quantize_torch_model(torch.nn.Linear(4, 3), X), X, np.zeros(19), "doc")
    Traceback (most recent call last):
    ...
    qfhe.errors.InputValidationError: doc: X_val has 20 samples but y_val has 19; they must match
    """
    y_arr = np.asarray(y)
    n_x = len(X) if hasattr(X, "__len__") else None
    if n_x == 0 or y_arr.size == 0:
        raise InputValidationError(
            f"{where}: the validation data is empty; pass a held-out X_val and y_val with at least one sample"
        )
    if n_x != len(y_arr):
        raise InputValidationError(f"{where}: X_val has {n_x} samples but y_val has {len(y_arr)}; they must match")
    if isinstance(model, QuantizedModule):
        arr = to_numpy(X, "X_val")
        decode, y_arr = _module_decoder(model, y_arr, metric_name, where)
        return TuningTarget(model, model.quantize_input(arr), y_arr, decode)
    if hasattr(model, "_decode_output") and hasattr(model, "_input_codes"):
        from sklearn.base import is_classifier

        model._check_fitted()
        name = type(model).__name__
        if is_classifier(model):
            if metric_name in ("r2", "mse"):
                raise ConfigurationError(
                    f"{where}: metric={metric_name!r} needs a regressor, but {name} predicts "
                    "class labels; use metric='accuracy' or a callable (y_true, y_pred)"
                )
            from qfhe.sklearn.base import label_indices

            label_indices(model, y_arr, where)  # labels not seen in fit are an error, as in score
        elif metric_name == "accuracy":
            raise ConfigurationError(
                f"{where}: metric='accuracy' needs a classifier, but {name} predicts values; use "
                "metric='r2' or 'mse', or a callable (y_true, y_pred)"
            )
        return TuningTarget(model.quantized_module_, model._input_codes(X, where), y_arr, model._decode_output)
    raise ConfigurationError(
        f"{where}: model must be a qfhe.QuantizedModule or a fitted qfhe.sklearn estimator, got {type(model).__name__}"
    )
