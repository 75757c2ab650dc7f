"""CKKS parameters and their 128-bit security check.

Conventions follow SEAL: ``coeff_modulus`` lists prime bit sizes; the **last** prime is the special
key-switching prime P and is not a level; the others q_0 … q_L are data primes. A fresh ciphertext
is at level ``L = len(coeff_modulus) - 2`` and each rescale divides by the prime of its current
level, ``q_level``, and drops one level. The fake backend takes each prime as exactly
``2 ** bits`` (real primes are within a fraction of a bit of that).

Examples
--------
>>> p = CKKSParameters(poly_modulus_degree=8192, coeff_modulus=[60, 40, 40, 60], scale=2**40)
>>> p.slots, p.max_level, p.log_qp, p.is_secure
(4096, 2, 200, True)
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from enum import Enum

from qfhe.errors import ConfigurationError, InsecureParametersWarning
from qfhe.validation import as_float, as_int, user_stacklevel

#: Largest log2(Q·P) with 128-bit classical security (HE standard, as SEAL enforces it).
MAX_LOG_QP_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
#: Levels a bootstrap consumes by default (its own circuit depth): the ciphertext comes back at
#: ``max_level - bootstrap_depth``.
DEFAULT_BOOTSTRAP_DEPTH = 4


class HEScheme(Enum):
    """Homomorphic encryption schemes of the expert API.

    Examples
    --------
    >>> HEScheme("ckks") is HEScheme.CKKS
    True
    """

    CKKS = "ckks"


@dataclass(frozen=True)
class CKKSParameters:
    """CKKS ring degree, modulus chain and scale.

    Parameters
    ----------
    poly_modulus_degree : int
        Ring degree N (a power of two); N/2 slots.
    coeff_modulus : list of int
        Prime bit sizes, SEAL order: data primes q_0 … q_L, then the special prime.
    scale : float
        The waterline: every ciphertext returns to this scale after a rescale.
    bootstrap_depth : int
        Levels a bootstrap consumes (default 4): it returns to ``max_level - bootstrap_depth``.
    allow_insecure : bool
        Permit parameters beyond the 128-bit bound for real encryption (never in production).
    prime_values : tuple of int
        The actual primes, when a backend generated them (SEAL's are within a fraction of a bit
        of ``2 ** bits``); empty means each prime is taken as exactly ``2 ** bits``. Scales are
        computed from these so that a rescale lands exactly on the waterline.

    Examples
    --------
    >>> CKKSParameters(8192, [60, 40, 40, 60], 2**40).prime_bits(2)
    40
    """

    poly_modulus_degree: int = 32768
    coeff_modulus: tuple = field(default=(60,) + (40,) * 19 + (60,))  # 880 bits: 128-bit secure at N = 2^15
    scale: float = 2.0**40
    bootstrap_depth: int = DEFAULT_BOOTSTRAP_DEPTH
    allow_insecure: bool = False
    prime_values: tuple = ()

    def __post_init__(self):
        try:
            object.__setattr__(
                self, "coeff_modulus", tuple(as_int("coeff_modulus bit sizes", b, 20, 60) for b in self.coeff_modulus)
            )
        except TypeError:
            raise ConfigurationError(
                f"coeff_modulus must be a list of prime bit sizes, got {self.coeff_modulus!r}"
            ) from None
        n = self.poly_modulus_degree
        if isinstance(n, numbers.Integral) and not isinstance(n, bool):
            n = int(n)
            object.__setattr__(self, "poly_modulus_degree", n)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1024 or n & (n - 1):
            raise ConfigurationError(f"poly_modulus_degree must be a power of two >= 1024, got {n!r}")
        if len(self.coeff_modulus) < 3:
            raise ConfigurationError(
                "coeff_modulus needs at least 3 primes: q_0, one rescaling prime, the special prime"
            )
        object.__setattr__(self, "scale", as_float("scale", self.scale, 1.0, math.inf))
        log_scale, rescaling = math.log2(self.scale), self.coeff_modulus[1:-1]
        if log_scale > min(rescaling) + 1e-9:
            raise ConfigurationError(
                f"scale 2^{log_scale:g} is larger than the smallest rescaling prime ({min(rescaling)} bits, "
                f"coeff_modulus[1:-1]): a rescale divides a product by that prime, so the scale would not come back "
                f"to the waterline. Use scale <= 2^{min(rescaling)}, or rescaling primes of at least {math.ceil(log_scale)} bits"
            )
        if self.coeff_modulus[0] <= log_scale:
            raise ConfigurationError(
                f"the first prime (q_0, {self.coeff_modulus[0]} bits) must exceed the scale (2^{log_scale:g}) by the "
                f"bits of the largest value it decrypts; use a q_0 of about {math.ceil(log_scale) + 20} bits or a smaller scale"
            )
        values = tuple(int(v) for v in self.prime_values)
        if values and (
            len(values) != len(self.coeff_modulus)
            or any(v.bit_length() != b for v, b in zip(values, self.coeff_modulus))
        ):
            raise ConfigurationError(
                f"prime_values must be one prime of each size in coeff_modulus "
                f"{list(self.coeff_modulus)}, got {list(values)}"
            )
        object.__setattr__(self, "prime_values", values)
        object.__setattr__(
            self, "bootstrap_depth", as_int("bootstrap_depth", self.bootstrap_depth, 1, None, "a positive int")
        )

    @classmethod
    def for_model(
        cls, model, X_calib, precision_bits: int = 30, pipeline=None, degree: int = 8, strategy: str = "row_major"
    ) -> "CKKSParameters":
        """The smallest 128-bit-secure parameters that run ``model`` without bootstrapping.

        Picks N (2^13, 2^14 or 2^15), one rescaling prime per level the compiled model consumes,
        the scale 2^(precision_bits + 10) and a last prime that holds the largest value seen on
        ``X_calib`` (see :mod:`qfhe.ckks.select`).

        Parameters
        ----------
        model : torch.nn.Module
        X_calib : array-like
            Calibration inputs (also what the compiled model will be calibrated on).
        precision_bits : int
            Bits of precision wanted in the values, 10..40 (default 30: a 2^40 scale).
        pipeline : PassPipeline, optional
            The passes the model will be compiled with (default: the optimized pipeline without
            bootstrapping, at ``degree`` and ``strategy``).

        Raises
        ------
        ConfigurationError
            When no secure ring holds the model, with the levels and bits it needs.

        Examples
        --------
        >>> import numpy as np, torch
        >>> _ = torch.manual_seed(0)
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GELU(), torch.nn.Linear(4, 2))
        >>> p = CKKSParameters.for_model(m, np.random.RandomState(0).randn(64, 4))
        >>> p.poly_modulus_degree, p.max_level, p.is_secure
        (16384, 6, True)
        """
        from qfhe.ckks.select import select_parameters

        return select_parameters(model, X_calib, precision_bits, pipeline, degree, strategy)

    @property
    def slots(self) -> int:
        """Number of complex slots, N/2.

        Examples
        --------
        >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
        >>> p.slots
        4096
        """
        return self.poly_modulus_degree // 2

    @property
    def max_level(self) -> int:
        """Level of a fresh ciphertext: the number of rescales it can take.

        Examples
        --------
        >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
        >>> p.max_level
        2
        """
        return len(self.coeff_modulus) - 2

    @property
    def bootstrap_level(self) -> int:
        """Level a bootstrapped ciphertext comes back at.

        Raises
        ------
        ConfigurationError
            If the modulus chain is too short to bootstrap at all.

        Examples
        --------
        >>> CKKSParameters(16384, [60] * 8, 2**40, bootstrap_depth=4).bootstrap_level
        2
        """
        if self.bootstrap_depth >= self.max_level:
            raise ConfigurationError(
                f"bootstrapping needs more than bootstrap_depth={self.bootstrap_depth} levels; these parameters have "
                f"{self.max_level}. Add primes to coeff_modulus or lower bootstrap_depth"
            )
        return self.max_level - self.bootstrap_depth

    @property
    def log_qp(self) -> int:
        """log2 of the whole modulus Q·P (what the security bound limits).

        Examples
        --------
        >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
        >>> p.log_qp
        200
        """
        return sum(self.coeff_modulus)

    def prime_bits(self, level: int) -> int:
        """Bits of q_level, the prime a rescale at ``level`` divides by.

        Examples
        --------
        >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
        >>> p.prime_bits(0)
        60
        """
        return self.coeff_modulus[level]

    def prime(self, level: int) -> float:
        """q_level: the real prime when ``prime_values`` is set, else exactly 2**bits.

        Examples
        --------
        >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
        >>> p.prime(1) == 2.0**40
        True
        """
        if self.prime_values:
            return float(self.prime_values[level])
        return 2.0 ** self.coeff_modulus[level]

    def log_q(self, level: int) -> int:
        """log2 of Q_level = q_0 · … · q_level (bounds a ciphertext's scale × magnitude).

        Examples
        --------
        >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
        >>> p.log_q(1)
        100
        """
        return sum(self.coeff_modulus[: level + 1])

    @property
    def security_bound(self) -> int | None:
        """Max log2(Q·P) for 128-bit security at this N, or None beyond the HE standard's table.

        Examples
        --------
        >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
        >>> p.security_bound
        218
        """
        return MAX_LOG_QP_128.get(self.poly_modulus_degree)

    @property
    def is_secure(self) -> bool:
        """Whether log2(Q·P) is within the 128-bit bound (False beyond the table, e.g. N = 2^16).

        Examples
        --------
        >>> CKKSParameters(8192, [60] * 5, 2**40).is_secure
        False
        """
        bound = self.security_bound
        return bound is not None and self.log_qp <= bound

    def check_security(self, real_encryption: bool) -> None:
        """Warn (fake backend) or raise (real encryption, unless ``allow_insecure``) if insecure.

        Raises
        ------
        ConfigurationError
            For real encryption with insecure parameters.

        Examples
        --------
        >>> CKKSParameters(8192, [60] * 5, 2**40).check_security(real_encryption=True)
        Traceback (most recent call last):
        ...
        qfhe.errors.ConfigurationError: CKKS parameters are not 128-bit secure: log2(QP) = 300 > 218 allowed at N = 8192. Use fewer or smaller primes, a larger poly_modulus_degree, or allow_insecure=True for experiments only
        """
        if self.is_secure:
            return
        bound = self.security_bound
        why = (
            f"log2(QP) = {self.log_qp} > {bound} allowed at N = {self.poly_modulus_degree}"
            if bound is not None
            else f"N = {self.poly_modulus_degree} is beyond the HE standard's 128-bit table"
        )
        msg = (
            f"CKKS parameters are not 128-bit secure: {why}. Use fewer or smaller primes, a larger "
            "poly_modulus_degree, or allow_insecure=True for experiments only"
        )
        if real_encryption and not self.allow_insecure:
            raise ConfigurationError(msg)
        warnings.warn(msg, InsecureParametersWarning, stacklevel=user_stacklevel())

    def ciphertext_bytes(self, level: int, size: int = 2) -> int:
        """Memory of a ciphertext: ``size`` polynomials of N coefficients per prime, 8 bytes each.

        Examples
        --------
        >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
        >>> p.ciphertext_bytes(2)
        393216
        """
        return size * (level + 1) * self.poly_modulus_degree * 8

    def describe(self) -> str:
        """One line for reports.

        Examples
        --------
        >>> CKKSParameters(8192, [60, 40, 40, 60], 2**40).describe()
        'N=8192, 2 levels, log2(QP)=200, scale=2^40'
        """
        return (
            f"N={self.poly_modulus_degree}, {self.max_level} levels, log2(QP)={self.log_qp}, "
            f"scale=2^{math.log2(self.scale):g}"
        )
