"""Exact numpy kernels shared by the reference interpreter and the analyses.

Examples
--------
>>> import numpy as np
>>> round_half_up_lsbs(np.array([5, 6, -6, -5]), 2)   # (x + 2) >> 2 << 2
array([ 4,  8, -4, -4])
>>> integer_bit_width(-4, 3), integer_bit_width(0, 7)
(3, 3)
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def round_half_up_lsbs(x: np.ndarray, lsbs: int) -> np.ndarray:
    """Reproduce ``fhe.round_bit_pattern`` exactly: ``((x + 2^(k-1)) >> k) << k`` (half up).

    Parameters
    ----------
    x : ndarray of int
    lsbs : int
        Number of least significant bits removed (0 is the identity).

    Examples
    --------
    >>> round_half_up_lsbs(np.array([2, 3]), 1)
    array([2, 4])
    """
    x = np.asarray(x, dtype=np.int64)
    if lsbs <= 0:
        return x
    return ((x + (1 << (lsbs - 1))) >> lsbs) << lsbs


def integer_bit_width(lo: int, hi: int) -> int:
    """Bits concrete-python uses for integers in ``[lo, hi]`` (sign bit included when lo < 0).

    Examples
    --------
    >>> integer_bit_width(0, 255), integer_bit_width(-128, 127), integer_bit_width(-129, 0)
    (8, 8, 9)
    """
    lo, hi = int(lo), int(hi)
    if lo >= 0:
        return max(1, hi.bit_length())
    return max(hi.bit_length() + 1 if hi > 0 else 1, (-lo - 1).bit_length() + 1)


def width_range(bits: int, signed: bool) -> tuple[int, int]:
    """Representable interval of a ``bits``-wide integer.

    Examples
    --------
    >>> width_range(4, True), width_range(4, False)
    ((-8, 7), (0, 15))
    """
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def conv2d(x: np.ndarray, w: np.ndarray, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1) -> np.ndarray:
    """Grouped 2-D cross-correlation of ``x`` (N, C, H, W) with ``w`` (O, C/groups, kh, kw).

    Exact for integer dtypes (no float round-trip). Zero padding.

    Examples
    --------
    >>> x = np.arange(16).reshape(1, 1, 4, 4); w = np.ones((1, 1, 2, 2), dtype=np.int64)
    >>> conv2d(x, w, stride=(2, 2))[0, 0]
    array([[10, 18],
           [42, 50]])
    """
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    ph, pw = padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dh, dw = dilation
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    win = sliding_window_view(x, (eff_h, eff_w), axis=(2, 3))[:, :, :: stride[0], :: stride[1], ::dh, ::dw]
    # win: (N, C, Ho, Wo, kh, kw)
    og = o // groups
    outs = []
    for g in range(groups):
        xs = win[:, g * cg : (g + 1) * cg]
        ws = w[g * og : (g + 1) * og]
        outs.append(np.einsum("nchwij,ocij->nohw", xs, ws, optimize=True))
    return np.concatenate(outs, axis=1)


def maxpool_padding(size: tuple, kernel, stride, padding, dilation, ceil_mode: bool) -> list[tuple[int, int]]:
    """(before, after) padding per spatial axis that makes torch's max pooling a plain window scan.

    With ``ceil_mode`` torch adds windows that start inside the input (or its left padding) and
    run past the end; extra right padding covers them.

    Examples
    --------
    >>> maxpool_padding((5,), (2,), (2,), (0,), (1,), True)
    [(0, 1)]
    """
    pads = []
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        span = d * (k - 1) + 1
        if ceil_mode:
            out = -(-(n + 2 * p - span) // s) + 1
            if (out - 1) * s >= n + p:  # torch drops a last window that starts in the right padding
                out -= 1
        else:
            out = (n + 2 * p - span) // s + 1
        pads.append((p, max(p, (out - 1) * s + span - n - p)))
    return pads


def maxpool2d(x: np.ndarray, kernel, stride, padding, dilation, ceil_mode: bool = False) -> np.ndarray:
    """Max pooling of a (N, C, H, W) array with torch's semantics (padding never wins a window).

    Examples
    --------
    >>> maxpool2d(np.arange(16).reshape(1, 1, 4, 4), (2, 2), (2, 2), (0, 0), (1, 1))[0, 0]
    array([[ 5,  7],
           [13, 15]])
    """
    pads = maxpool_padding(x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
    low = np.iinfo(np.int64).min if x.dtype.kind == "i" else -np.inf
    xp = np.pad(x, [(0, 0), (0, 0)] + pads, constant_values=low)
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))[..., ::dh, ::dw]
    return win[:, :, ::sh, ::sw].max(axis=(-1, -2))
