"""Uniform affine quantizers: ``real ≈ scale * (q - zero_point)``.

Rounding is half to even (``np.rint``), the convention of ``torch.round`` and Brevitas.

Examples
--------
>>> import numpy as np
>>> q = UniformQuantizer.from_range(-1.0, 3.0, n_bits=2)
>>> q.quantize(np.array([-1.0, 0.0, 3.0])), q.qmin, q.qmax
(array([0, 1, 3]), 0, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UniformQuantizer:
    """An affine integer quantizer.

    Parameters
    ----------
    n_bits : int
        Width of the integer codes.
    scale : float or ndarray
        Step size (per tensor, or per output channel for weights).
    zero_point : int
        Code that represents real 0.
    signed : bool
        Codes in ``[-2^(n-1), 2^(n-1) - 1]`` if True, else ``[0, 2^n - 1]``.
    narrow : bool
        Drop the most negative signed code so the range is symmetric.

    Examples
    --------
    >>> UniformQuantizer(3, 0.5, 0, signed=True, narrow=True).qmin
    -3
    """

    n_bits: int
    scale: float | np.ndarray
    zero_point: int = 0
    signed: bool = False
    narrow: bool = False

    @property
    def qmin(self) -> int:
        """Smallest code.

        Examples
        --------
        >>> UniformQuantizer(4, 1.0, signed=True).qmin
        -8
        """
        if not self.signed:
            return 0
        return -(1 << (self.n_bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        """Largest code.

        Examples
        --------
        >>> UniformQuantizer(4, 1.0).qmax
        15
        """
        return (1 << (self.n_bits - 1)) - 1 if self.signed else (1 << self.n_bits) - 1

    @classmethod
    def from_range(cls, lo: float, hi: float, n_bits: int) -> "UniformQuantizer":
        """Unsigned asymmetric quantizer covering ``[min(lo, 0), max(hi, 0)]`` exactly at 0.

        Real 0 is kept exactly representable, so zero padding and ReLU outputs are exact.

        Examples
        --------
        >>> UniformQuantizer.from_range(0.0, 1.5, 2).scale
        0.5
        """
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        levels = (1 << n_bits) - 1
        if hi - lo <= 0:
            return cls(n_bits, 1.0, 0)
        scale = (hi - lo) / levels
        zero_point = int(np.clip(np.rint(-lo / scale), 0, levels))
        return cls(n_bits, scale, zero_point)

    @classmethod
    def symmetric(cls, w: np.ndarray, n_bits: int, per_channel: bool = False) -> "UniformQuantizer":
        """Symmetric narrow-range quantizer for weights (zero point 0).

        With ``per_channel`` the scale has one entry per output channel (axis 0).

        Examples
        --------
        >>> UniformQuantizer.symmetric(np.array([[-1.0, 0.5]]), 3).scale
        0.3333333333333333
        """
        qmax = (1 << (n_bits - 1)) - 1
        if per_channel:
            m = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
            m = np.where(m > 0, m, 1.0)
            return cls(n_bits, m / qmax, 0, signed=True, narrow=True)
        m = float(np.abs(w).max()) or 1.0
        return cls(n_bits, m / qmax, 0, signed=True, narrow=True)

    def _bscale(self, x: np.ndarray):
        s = np.asarray(self.scale)
        return s.reshape((-1,) + (1,) * (x.ndim - 1)) if s.ndim else s

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Real → integer codes (round half to even, then clip).

        Examples
        --------
        >>> UniformQuantizer(2, 1.0).quantize(np.array([0.5, 1.5, 9.0]))
        array([0, 2, 3])
        """
        q = np.rint(np.asarray(x, np.float64) / self._bscale(np.asarray(x))) + self.zero_point
        return np.clip(q, self.qmin, self.qmax).astype(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Integer codes → real values.

        Examples
        --------
        >>> UniformQuantizer(2, 0.5, 1).dequantize(np.array([0, 3]))
        array([-0.5,  1. ])
        """
        q = np.asarray(q)
        return self._bscale(q) * (q.astype(np.float64) - self.zero_point)

    def to_dict(self) -> dict:
        """Plain-data form (JSON + numpy), for artifacts.

        Examples
        --------
        >>> sorted(UniformQuantizer(2, 0.5).to_dict())
        ['n_bits', 'narrow', 'scale', 'signed', 'zero_point']
        """
        return {
            "n_bits": self.n_bits,
            "scale": self.scale,
            "zero_point": self.zero_point,
            "signed": self.signed,
            "narrow": self.narrow,
        }


#: Values beyond a calibrated range by less than this fraction of its width are clipped without a
#: warning: they lose at most that much (about what 3-4 bits of quantization lose), and test data
#: spill that far past the calibration data's extremes all the time. Farther is worth a warning.
CLIP_SLACK = 0.1


def quantize_input_codes(arr: np.ndarray, attrs: dict, remedy: str, spec: dict | None = None) -> np.ndarray:
    """The client's input quantization: clip to the calibrated range and quantize; a warning counts
    the values clipped by more than ``CLIP_SLACK`` of the range.

    ``attrs`` are the ``quant`` node's (``scale``, ``zero_point``, ``qmin``, ``qmax``): plain data,
    so a deployed client (:mod:`qfhe.deploy`) quantizes exactly as the compiled model does. With
    ``spec`` (the per-feature scaling already applied to ``arr``), the warning names the features
    and their calibrated ranges in the input's own units.

    Parameters
    ----------
    arr : ndarray of float, shape (n, ...)
    attrs : dict
    remedy : str or None
        What the warning tells the user to do about clipped values; None: clip without a warning
        (a QAT input quantizer, trained to clip).
    spec : dict, optional
        A :mod:`qfhe.quant.preprocess` spec.

    Examples
    --------
    >>> a = {"scale": 0.5, "zero_point": 0, "qmin": -2, "qmax": 1}
    >>> quantize_input_codes(np.array([[-1.0, 0.5]]), a, "recalibrate").tolist()
    [[-2, 1]]
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     _ = quantize_input_codes(np.array([[-1.1, 0.9], [-5.0, 0.0]]), a, "recalibrate")
    >>> str(w[0].message).split(" lie")[0]
    '1 input values in 1 of 2 samples'

    """
    import warnings

    from qfhe.errors import InputClippingWarning
    from qfhe.validation import user_stacklevel

    lo = attrs["scale"] * (attrs["qmin"] - attrs["zero_point"] - 0.5)
    hi = attrs["scale"] * (attrs["qmax"] - attrs["zero_point"] + 0.5)
    tol = CLIP_SLACK * (hi - lo)
    outside = (arr < lo - tol) | (arr > hi + tol)
    if remedy is not None and outside.any():
        rows = int(outside.reshape(len(arr), -1).any(axis=1).sum())
        where = f"the calibrated input range [{lo:.4g}, {hi:.4g}]"
        if spec is not None and arr.ndim == 2:
            mean, scale = np.asarray(spec["mean"]), np.asarray(spec["scale"])
            feats = np.flatnonzero(outside.any(axis=0))
            where = (
                "their feature's calibrated range ("
                + ", ".join(
                    f"feature {j}: [{lo * scale[j] + mean[j]:.4g}, {hi * scale[j] + mean[j]:.4g}]" for j in feats[:5]
                )
                + (", ..." if len(feats) > 5 else "")
                + ")"
            )
        warnings.warn(
            f"{int(outside.sum())} input values in {rows} of {len(arr)} samples lie outside {where} and were "
            f"clipped; {remedy}",
            InputClippingWarning,
            stacklevel=user_stacklevel(),
        )
    q = np.rint(arr / attrs["scale"]) + attrs["zero_point"]
    return np.clip(q, attrs["qmin"], attrs["qmax"]).astype(np.int64)
