"""Training a binary logistic-regression ``SGDClassifier`` on encrypted data.

One circuit call is one mini-batch gradient step of the log loss: the client encrypts a batch
``(X, y)`` and the current weights, the server computes

    z = X w + b,   e = sigmoid(z) - y,   w' = w - eta (X^T e / B + alpha w),   b' = b - eta mean(e)

(``X w`` and ``X^T e`` are products of two encrypted tensors: concrete makes each scalar product
with two lookups) and returns the new weights encrypted; the client decrypts them, keeps them in
``parameters_range`` and encrypts them again with the next batch. The server never sees a
feature, a label or a weight. ``max_iter`` epochs of ``ceil(n / batch_size)`` steps are as many
circuit calls. The step is an ordinary torch module compiled by :func:`qfhe.compile_torch_model`
(one importer, one quantizer, one lowering); features are mapped onto [-1, 1] per feature on the
client first, and the learned weights mapped back.

Examples
--------
>>> import numpy as np
>>> X = np.random.RandomState(0).randn(64, 3); y = (X[:, 0] > 0).astype(int)
>>> coef, intercept, steps = fit_encrypted(X, y, batch_size=8, epochs=2, eta=1.0, alpha=0.0,
...                                        parameters_range=(-4.0, 4.0), n_bits=6, random_state=0, fhe="disable")
>>> coef.shape, steps, bool(coef[0, 0] > 0)
((1, 3), 16, True)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from qfhe.quant.preprocess import range_spec


class SGDStep(nn.Module):
    """One mini-batch gradient step of the L2-regularised log loss, on tensors of a batch.

    Inputs (with a leading circuit-sample axis): ``X`` (B, F), ``y`` (B, 1), ``w`` (F, 1), ``b``
    (1, 1). Output: the new ``[w..., b]``, shape (F + 1,).

    Parameters
    ----------
    batch_size : int
    eta : float
        Step size.
    alpha : float
        L2 penalty.

    Examples
    --------
    >>> step = SGDStep(2, 1.0, 0.0)
    >>> X = torch.tensor([[[1.0], [-1.0]]]); y = torch.tensor([[[1.0], [0.0]]])
    >>> step(X, y, torch.zeros(1, 1, 1), torch.zeros(1, 1, 1)).tolist()
    [[0.5, 0.0]]
    """

    def __init__(self, batch_size: int, eta: float, alpha: float):
        super().__init__()
        self.batch_size, self.eta, self.alpha = batch_size, eta, alpha

    def forward(self, X, y, w, b):
        """The new weights and bias, flattened (see the class docstring).

        Examples
        --------
        >>> SGDStep(1, 0.5, 0.0)(torch.ones(1, 1, 2), torch.ones(1, 1, 1), torch.zeros(1, 2, 1),
        ...                      torch.zeros(1, 1, 1)).tolist()
        [[0.25, 0.25, 0.25]]
        """
        e = torch.sigmoid(torch.matmul(X, w) + b) - y
        grad_w = torch.matmul(X.transpose(1, 2), e) * (1.0 / self.batch_size)
        if self.alpha:
            grad_w = grad_w + self.alpha * w
        grad_b = e.mean(dim=1, keepdim=True)
        return torch.cat([(w - self.eta * grad_w).flatten(1), (b - self.eta * grad_b).flatten(1)], dim=1)


def _batches(n: int, batch_size: int, rng: np.random.RandomState):
    order = rng.permutation(n)
    for start in range(0, n - batch_size + 1, batch_size):
        yield order[start : start + batch_size]
    rest = n % batch_size
    if rest:  # the circuit takes full batches: the last one is topped up from the start of the epoch
        yield np.concatenate([order[n - rest :], order[: batch_size - rest]])


def training_circuit(
    X: np.ndarray,
    batch_size: int,
    eta: float,
    alpha: float,
    parameters_range: tuple,
    n_bits: int,
    random_state,
    compile_kwargs: dict | None = None,
):
    """The compiled (or, with ``compile_kwargs=None``, only quantized) step circuit for features ``X``
    already on [-1, 1].

    Returns
    -------
    qfhe.QuantizedModule
        With four inputs ``(X, y, w, b)`` and the new parameters as output.

    Examples
    --------
    >>> X = np.random.RandomState(0).uniform(-1, 1, (32, 2))
    >>> training_circuit(X, 4, 0.5, 0.0, (-2.0, 2.0), 5, 0).input_shape
    ((4, 2), (4, 1), (2, 1), (1, 1))
    """
    from qfhe.compile import compile_torch_model, quantize_torch_model

    rng = np.random.RandomState(random_state)
    n, f = X.shape
    lo, hi = parameters_range
    count = max(64, 2 * ((n + batch_size - 1) // batch_size))
    idx = rng.randint(0, n, (count, batch_size))
    inputset = (
        X[idx],
        rng.randint(0, 2, (count, batch_size, 1)).astype(np.float64),
        rng.uniform(lo, hi, (count, f, 1)),
        rng.uniform(lo, hi, (count, 1, 1)),
    )
    step = SGDStep(batch_size, eta, alpha).double()
    # the two products' accumulators are wide (B and F terms of two n_bits factors): their lookups
    # read them rounded to n_bits + 1 bits
    settings = {"n_bits": n_bits, "rounding_threshold_bits": min(n_bits + 1, 8)}
    if compile_kwargs is None:
        return quantize_torch_model(step, inputset, **settings)
    return compile_torch_model(step, inputset, **settings, **compile_kwargs)


def fit_encrypted(
    X: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    epochs: int,
    eta: float,
    alpha: float,
    parameters_range: tuple,
    n_bits: int,
    random_state,
    fhe: str,
    compile_kwargs: dict | None = None,
    coef_init=None,
    intercept_init=None,
    callback=None,
):
    """Train a binary logistic regression with one encrypted circuit call per mini-batch.

    Parameters
    ----------
    X : ndarray, shape (n, F)
    y : ndarray of {0, 1}, shape (n,)
    batch_size, epochs : int
    eta, alpha : float
        Step size and L2 penalty (on the features scaled to [-1, 1]).
    parameters_range : (float, float)
        The range weights are quantized on and kept in.
    n_bits : int
        Bit-width of the step circuit's values.
    random_state : int, RandomState or None
        Batch order and calibration samples.
    fhe : {"disable", "simulate", "execute"}
    compile_kwargs : dict, optional
        Passed to :func:`qfhe.compile_torch_model` (e.g. ``p_error``, ``configuration``).
    coef_init, intercept_init : optional
        Starting weights in the features' units (default zeros).
    callback : callable, optional
        Called as ``callback(step, coef, intercept)`` after every step (in the features' units).

    Returns
    -------
    coef : ndarray, shape (1, F)
    intercept : ndarray, shape (1,)
    steps : int
        Circuit calls made.

    Examples
    --------
    >>> X = np.random.RandomState(1).randn(40, 2); y = (X[:, 1] > 0).astype(int)
    >>> coef, b, steps = fit_encrypted(X, y, 10, 3, 1.0, 0.0, (-4.0, 4.0), 6, 0, "disable")
    >>> steps, bool(coef[0, 1] > abs(coef[0, 0]))
    (12, True)
    """
    spec = range_spec(np.asarray(X, np.float64))
    mean, scale = spec["mean"], spec["scale"]
    Xs = (X - mean) / scale
    qm = training_circuit(
        Xs, batch_size, eta, alpha, parameters_range, n_bits, random_state, compile_kwargs if fhe != "disable" else None
    )
    if fhe == "execute" and not qm.fhe_circuit.keys.are_generated:
        qm.fhe_circuit.keygen()
    lo, hi = parameters_range
    # weights on the scaled features: w_s = w * scale, b_s = b + w . mean
    w = np.zeros(X.shape[1]) if coef_init is None else np.asarray(coef_init, np.float64).reshape(-1) * scale
    b = (
        0.0
        if intercept_init is None
        else float(np.asarray(intercept_init).reshape(-1)[0])
        + float(np.asarray(coef_init, np.float64).reshape(-1) @ mean if coef_init is not None else 0.0)
    )
    rng = np.random.RandomState(random_state)
    steps = 0
    yf = np.asarray(y, np.float64).reshape(-1, 1)
    for _ in range(epochs):
        for rows in _batches(len(Xs), batch_size, rng):
            out = qm.forward(
                Xs[rows][None],
                yf[rows][None],
                np.clip(w, lo, hi).reshape(1, -1, 1),
                np.array([[[np.clip(b, lo, hi)]]]),
                fhe=fhe,
            )
            w, b = np.clip(out[0, :-1], lo, hi), float(np.clip(out[0, -1], lo, hi))
            steps += 1
            if callback is not None:
                callback(steps, (w / scale)[None, :], np.array([b - (w / scale) @ mean]))
    coef = (w / scale)[None, :]
    return coef, np.array([b - coef[0] @ mean]), steps
