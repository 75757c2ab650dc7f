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

import warnings

import numpy as np

from qfhe.errors import InputsetError, InputValidationError, SmallInputsetWarning

#: Below this many samples, calibration ranges are unreliable and qfhe warns.
SMALL_INPUTSET = 32


def to_numpy(X, name: str = "X") -> np.ndarray:
    """Convert numpy/torch/list input to a float64 array, rejecting non-numeric data.

    Examples
    --------
    >>> to_numpy([[1, 2]]).dtype
    dtype('float64')
    """
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    arr = np.asarray(X)
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


def check_inputset(X) -> np.ndarray:
    """Validate a calibration inputset: at least two samples, numeric, finite.

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
            stacklevel=3,
        )
    return arr
