"""Validation of user data: inputsets and ``forward`` inputs.

Examples
--------
>>> import numpy as np
>>> check_input(np.zeros((2, 3)), (3,)).shape
(2, 3)
>>> check_input(np.zeros((2, 4)), (3,))
Traceback (most recent call last):
...
qfhe.errors.InputValidationError: X has per-sample shape (4,) but the model expects (3,); pass an array of shape (n, 3)
"""

from __future__ import annotations

import numbers
import os
import sys
import warnings

import numpy as np

from qfhe.errors import (
    CalibrationWarning,
    ConfigurationError,
    InputsetError,
    InputValidationError,
    SmallInputsetWarning,
)

#: Below this many samples, calibration ranges are unreliable and qfhe warns.
SMALL_INPUTSET = 32
#: A calibration range this many times wider than the range of 99% of the values is dominated by outliers.
OUTLIER_RATIO = 50.0


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside qfhe.

    Examples
    --------
    >>> user_stacklevel() >= 1
    True
    """
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def as_int(name: str, value, lo: int | None = None, hi: int | None = None, what: str = "an int") -> int:
    """``value`` as a Python int (numpy integers accepted), or :class:`ConfigurationError`.

    Examples
    --------
    >>> as_int("n_bits", np.int64(4), 2, 16)
    4
    >>> as_int("n_bits", 4.0, 2, 16)
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: n_bits must be an int from 2 to 16, got 4.0 (float)
    """
    bounds = f" from {lo} to {hi}" if lo is not None and hi is not None else f" >= {lo}" if lo is not None else ""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Integral)
        or not ((lo is None or value >= lo) and (hi is None or value <= hi))
    ):
        raise ConfigurationError(f"{name} must be {what}{bounds}, got {value!r} ({type(value).__name__})")
    return int(value)


def as_float(name: str, value, lo: float, hi: float, closed: bool = False, what: str | None = None) -> float:
    """``value`` as a Python float in ``(lo, hi)`` (``[lo, hi]`` if closed), or :class:`ConfigurationError`
    (saying ``what`` the value must be, if given).

    Numpy floats and ints are accepted; strings, bools and NaN are not.

    Examples
    --------
    >>> as_float("p_error", np.float32(0.25), 0, 1)
    0.25
    >>> as_float("p_error", "0.01", 0, 1)
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: p_error must be a number in (0, 1), got '0.01' (str)
    """
    interval = f"[{lo:g}, {hi:g}]" if closed else f"({lo:g}, {hi:g})"
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if ok:
        v = float(value)
        ok = (lo <= v <= hi) if closed else (lo < v < hi)
    if not ok:
        raise ConfigurationError(
            f"{name} must be {what or 'a number in ' + interval}, got {value!r} ({type(value).__name__})"
        )
    return float(value)


def as_bool(name: str, value) -> bool:
    """``value`` as a bool (numpy bools accepted), or :class:`ConfigurationError`.

    Examples
    --------
    >>> as_bool("per_channel", np.True_)
    True
    >>> as_bool("per_channel", "yes")
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: per_channel must be True or False, got 'yes' (str)
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigurationError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def to_numpy(X, name: str = "X") -> np.ndarray:
    """Convert numpy/torch/list input to a float64 array, rejecting non-numeric data.

    Examples
    --------
    >>> to_numpy([[1, 2]]).dtype
    dtype('float64')
    """
    if hasattr(X, "__iter__") and hasattr(X, "dataset") and hasattr(X, "batch_size"):
        raise InputValidationError(
            f"{name} is a torch DataLoader; qfhe needs the samples themselves: pass an array or tensor, e.g. "
            "torch.cat([batch[0] for batch in loader])"
        )
    if hasattr(X, "detach"):
        X = X.detach().cpu()
        X = (X.double() if X.is_floating_point() else X).numpy()  # bfloat16/float16 have no numpy view
    try:
        arr = np.asarray(X)
    except ValueError as exc:  # a ragged nested list
        raise InputValidationError(
            f"{name} is ragged (its rows have different lengths): {exc}; pass a rectangular array"
        ) from exc
    if arr.dtype.kind not in "biuf":
        raise InputValidationError(f"{name} must be numeric, got dtype {arr.dtype}; convert it with .astype(float)")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputValidationError(
            f"{name} contains {int(bad.sum())} NaN or infinite values (first at index "
            f"{tuple(int(i) for i in np.argwhere(bad)[0])}); impute or drop them first"
        )
    return arr


def check_input(X, shape: tuple, name: str = "X") -> np.ndarray:
    """Validate a batch against the model's per-sample ``shape``; return float64 numpy.

    Raises
    ------
    InputValidationError
        For a non-numeric dtype, NaN/inf, a wrong rank or a wrong per-sample shape.

    Examples
    --------
    >>> check_input([[1, 2]], (2,))
    array([[1., 2.]])
    """
    arr = to_numpy(X, name)
    if arr.ndim != len(shape) + 1:
        raise InputValidationError(
            f"{name} has {arr.ndim} dimensions but the model expects {len(shape) + 1} (n, {', '.join(map(str, shape))}); "
            "add the batch axis, e.g. X[None] for a single sample"
        )
    if tuple(arr.shape[1:]) != tuple(shape):
        raise InputValidationError(
            f"{name} has per-sample shape {tuple(arr.shape[1:])} but the model expects {tuple(shape)}; "
            f"pass an array of shape (n, {', '.join(map(str, shape))})"
        )
    return arr


def check_inputset(X, outliers: bool = True) -> np.ndarray:
    """Validate a calibration inputset: at least two samples, numeric, finite.

    ``outliers=False`` leaves the outlier check to the caller (the TFHE quantizer checks every
    calibrated range, :mod:`qfhe.quant.calibration`).

    Examples
    --------
    >>> check_inputset(np.zeros((1, 3)))
    Traceback (most recent call last):
    ...
    qfhe.errors.InputsetError: the inputset has 1 sample; calibration needs at least 2 (ideally hundreds of representative samples)
    """
    try:
        arr = to_numpy(X, "inputset")
    except InputValidationError as exc:
        raise InputsetError(str(exc)) from exc
    if arr.ndim < 2:
        raise InputsetError(f"the inputset must have shape (n_samples, ...), got shape {arr.shape}")
    n = arr.shape[0]
    if n < 2:
        raise InputsetError(
            f"the inputset has {n} sample{'s' if n != 1 else ''}; calibration needs at least 2 "
            "(ideally hundreds of representative samples)"
        )
    if n < SMALL_INPUTSET:
        warnings.warn(
            f"the inputset has only {n} samples; quantization ranges may not cover real data. "
            f"Use at least {SMALL_INPUTSET}, ideally a few hundred representative samples",
            SmallInputsetWarning,
            stacklevel=user_stacklevel(),
        )
    warn_about_calibration(arr, outliers)
    return arr


def warn_about_calibration(X: np.ndarray, outliers: bool = True) -> None:
    """Warn when an inputset cannot calibrate well: outliers that dominate its range, constant features.

    Every range qfhe sizes comes from this data. A few huge values stretch a per-tensor input
    quantizer (or a polynomial's fitted range) so far that every ordinary input lands on one code;
    a feature that never varies sizes the accumulators as if it never will. Constant features are
    only reported for tabular (2-D) data: constant pixels at an image's border are normal.

    Examples
    --------
    >>> X = np.random.RandomState(0).randn(100, 3); X[7, 2] = 1e30
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_about_calibration(X)
    >>> print(w[0].message)  # doctest: +ELLIPSIS
    the inputset's range [..., 1e+30] is dominated by outliers: 1 value in 1 sample (first: sample 7, feature 2 = 1e+30) ...
    """
    flat = X.reshape(len(X), -1)
    if flat.size == 0:
        return
    if X.ndim == 2 and len(X) > 1:
        const = np.flatnonzero(flat.max(axis=0) == flat.min(axis=0))
        if const.size:
            shown = ", ".join(f"{j} (= {flat[0, j]:.4g})" for j in const[:5]) + (", ..." if const.size > 5 else "")
            warnings.warn(
                f"{const.size} of {flat.shape[1]} features never vary in the inputset: feature{'s' if const.size > 1 else ''} "
                f"{shown}. The circuit is sized as if they never will; if they vary in real data, calibrate on data "
                "where they do (or drop them)",
                CalibrationWarning,
                stacklevel=user_stacklevel(),
            )
    if not outliers:
        return
    lo, hi = float(flat.min()), float(flat.max())
    qlo, qhi = (float(v) for v in np.quantile(flat, [0.005, 0.995]))
    body = qhi - qlo
    if body > 0 and (hi - lo) > OUTLIER_RATIO * body:
        far = (flat > qhi + 10 * body) | (flat < qlo - 10 * body)
        rows = np.flatnonzero(far.any(axis=1))
        i, j = np.argwhere(far)[0]
        warnings.warn(
            f"the inputset's range [{lo:.4g}, {hi:.4g}] is dominated by outliers: {int(far.sum())} value"
            f"{'s' if far.sum() > 1 else ''} in {rows.size} sample{'s' if rows.size > 1 else ''} (first: sample {i}, "
            f"feature {j} = {flat[i, j]:.4g}) while 99% of the values lie in [{qlo:.4g}, {qhi:.4g}]. The quantizer "
            "spends its codes on them and ordinary inputs collapse onto a few codes: remove or clip these samples "
            "before calibrating",
            CalibrationWarning,
            stacklevel=user_stacklevel(),
        )
