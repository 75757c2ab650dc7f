"""NonlinearToPolynomialPass: Chebyshev-fit each activation and evaluate it at optimal depth."""

from __future__ import annotations

import math

import numpy as np
from numpy.polynomial import Chebyshev, Polynomial

from qfhe.ckks.passes.base import HEPass, Rewriter, require
from qfhe.ir.activations import apply_activation
from qfhe.ir.graph import Graph
from qfhe.validation import as_float, as_int


def fit_activation(fn: str, params: dict, lo: float, hi: float, degree: int) -> tuple[Polynomial, float]:
    """Chebyshev interpolation of an activation on [lo, hi], returned in the power basis of x,
    with its maximum absolute error on a dense grid of the interval.

    Examples
    --------
    >>> p, err = fit_activation("tanh", {}, -2.0, 2.0, 8)
    >>> err < 0.01
    True
    """
    f = lambda x: apply_activation(fn, params, x)  # noqa: E731
    cheb = Chebyshev.interpolate(f, degree, domain=[lo, hi])
    poly = cheb.convert(kind=Polynomial, domain=[-1, 1], window=[-1, 1])
    grid = np.linspace(lo, hi, 4001)
    return poly, float(np.abs(poly(grid) - f(grid)).max())


def poly_depth(degree: int) -> int:
    """Multiplicative depth of the evaluation: ceil(log2(degree + 1)).

    Examples
    --------
    >>> [poly_depth(d) for d in (1, 2, 3, 7, 8)]
    [1, 2, 2, 3, 4]
    """
    return math.ceil(math.log2(degree + 1))


def _is_one(c: float) -> bool:
    """A coefficient equal to 1 up to round-off (Chebyshev interpolation of x² gives 1 ± 1e-16)."""
    return abs(float(c) - 1.0) <= 1e-12


class _PolyEmitter:
    """Evaluates c_0 + c_1 x + … + c_d x^d by splitting at the largest power of two P ≤ d:
    p = q_0 + x^P · q_1 (giant step x^P by repeated squaring, baby steps c_k·x^k folded into the
    lower factor), which reaches depth ceil(log2(d + 1))."""

    def __init__(self, rw: Rewriter, x: str, layer: str, period: int, tol: float):
        self.rw, self.layer, self.period, self.tol = rw, layer, period, tol
        self.powers = {1: x}

    def power(self, p: int) -> str:
        if p not in self.powers:
            half = self.power(p // 2)
            self.powers[p] = self.rw.emit(
                f"{self.layer}_x{p}", "ciphertext_mult", [half, half], self.layer, period=self.period
            )
        return self.powers[p]

    def scaled(self, v: str, c: float) -> str:
        """c·v, or v itself when c is 1 (no multiply, no level)."""
        return v if _is_one(c) else self.scalar(v, c)

    def scalar(self, v: str, c: float) -> str:
        return self.rw.emit(
            f"{self.layer}_c", "plaintext_mult", [v], self.layer, value=float(c), encode="prime", period=self.period
        )

    def add(self, a: str | None, b: str | None) -> str | None:
        if a is None or b is None:
            return a if b is None else b
        return self.rw.emit(f"{self.layer}_sum", "ciphertext_add", [a, b], self.layer, period=self.period)

    def mult(self, a: str, b: str) -> str:
        return self.rw.emit(f"{self.layer}_prod", "ciphertext_mult", [a, b], self.layer, period=self.period)

    def evaluate(self, c: np.ndarray) -> tuple[str | None, float]:
        """Ciphertext of the non-constant part (or None) and the constant term."""
        c = np.where(np.abs(c) > self.tol, c, 0.0)
        nz = np.flatnonzero(c[1:])
        if nz.size == 0:
            return None, float(c[0])
        d = int(nz[-1]) + 1
        if d == 1:
            return self.scaled(self.power(1), c[1]), float(c[0])
        P = 1 << (d.bit_length() - 1)
        low, const = self.evaluate(c[:P])
        high_c = c[P : d + 1]
        if len(high_c) == 1 and _is_one(high_c[0]):  # x^P itself (a square costs one level, not two)
            high = self.power(P)
        elif len(high_c) == 1:  # c_P x^P = (c_P x^(P/2)) · x^(P/2)
            high = self.mult(self.scalar(self.power(P // 2), high_c[0]), self.power(P // 2))
        else:
            q1, q1_const = self.evaluate(high_c)
            high = self.mult(q1, self.power(P)) if q1 is not None else None
            if q1_const != 0.0:
                high = self.add(high, self.scalar(self.power(P), q1_const))
        return self.add(low, high), const


class NonlinearToPolynomialPass(HEPass):
    """Replace each activation by a Chebyshev fit of ``degree`` on its calibrated input range.

    The range is the calibration range widened by ``margin`` of its width on each side. The fit
    is evaluated with ciphertext multiplies at depth ceil(log2(degree + 1)). Per layer, the fitted
    range and the maximum approximation error go to ``context.meta["polynomials"]``.

    Requires: a packed graph. Ensures: no ``activation`` node remains. Idempotent.

    Examples
    --------
    >>> NonlinearToPolynomialPass(degree=8).degree
    8
    """

    def __init__(self, degree: int = 8, margin: float = 0.1, coefficient_tol: float = 1e-12):
        self.degree = as_int(f"{self.name} degree", degree, 1, 63)
        self.margin = as_float(f"{self.name} margin", margin, 0.0, 10.0, closed=True)
        self.coefficient_tol = as_float(f"{self.name} coefficient_tol", coefficient_tol, 0.0, 1.0, closed=True)

    def __call__(self, graph: Graph, context) -> Graph:
        require(graph, self.name)
        rw = Rewriter({n.name for n in graph.nodes})
        report = context.meta.setdefault("polynomials", {})
        functions = context.meta.setdefault("poly_functions", {})
        for n in graph.nodes:
            if n.op != "activation":
                rw.keep(n)
                continue
            lo, hi = n.attrs["range"]
            width = max(hi - lo, 1e-3)
            lo, hi = lo - self.margin * width, hi + self.margin * width
            poly, err = fit_activation(n.attrs["fn"], n.attrs["params"], lo, hi, self.degree)
            report[n.name] = {
                "fn": n.attrs["fn"],
                "range": (lo, hi),
                "degree": self.degree,
                "max_error": err,
                "depth": poly_depth(self.degree),
            }
            functions[n.name] = poly
            em = _PolyEmitter(rw, n.inputs[0], n.name, n.attrs["period"], self.coefficient_tol)
            ct, const = em.evaluate(np.asarray(poly.coef, np.float64))
            if ct is None:
                ct = em.scalar(n.inputs[0], 0.0)
            rw.emit(n.name, "plaintext_add", [ct], n.name, name=n.name, value=const, period=n.attrs["period"])
        return Graph(rw.nodes, graph.outputs)
