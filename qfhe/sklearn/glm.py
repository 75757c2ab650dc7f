"""Generalized linear models on encrypted data: Poisson, Gamma and Tweedie regression (0 PBS).

The server computes the linear predictor ``X @ coef_ + intercept_`` as one integer matrix product;
the inverse link (``exp`` for the Poisson, Gamma and log-link Tweedie models) runs on the client
after decryption rather than as a lookup on the server: ``exp`` of a dequantized score is exact in
float, it costs nothing encrypted, and the server never needs the mean (a lookup would have to
quantize a value whose range spans orders of magnitude onto a few bits, and would cost a PBS per
output).

Examples
--------
>>> import numpy as np
>>> from qfhe.sklearn import PoissonRegressor
>>> X = np.random.RandomState(0).randn(200, 2); y = np.random.RandomState(1).poisson(np.exp(0.5 * X[:, 0]))
>>> reg = PoissonRegressor().fit(X, y).compile(X)
>>> bool(np.allclose(reg.predict(X[:3], fhe="simulate"), reg.predict(X[:3])))
True
"""

from __future__ import annotations

import numpy as np
import sklearn.linear_model as sklm
from sklearn.metrics import d2_tweedie_score

from qfhe.deploy.processing import postprocess
from qfhe.sklearn.linear import _LinearRegressor


class _GLMRegressor(_LinearRegressor):
    """A generalized linear model: the server computes the linear predictor ``X @ coef_ + intercept_``,
    the client applies the inverse link (``exp`` for a log link) after decryption. Scored by D², the
    fraction of the family's deviance explained, as scikit-learn scores its GLMs."""

    _power: float

    # Poisson and Gamma share these parameters (scikit-learn's _GeneralizedLinearRegressor's);
    # TweedieRegressor adds power and link
    def __init__(self, n_bits=8, alpha=1.0, fit_intercept=True, solver="lbfgs", max_iter=100, tol=1e-4):
        self.n_bits = n_bits
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol

    def _log_link(self) -> bool:
        return True

    def _link(self) -> str:
        return "exp" if self._log_link() else "identity"

    def _decode_output(self, out: np.ndarray) -> np.ndarray:
        return postprocess(self._client_postprocessing(), out)

    def score(self, X, y, sample_weight=None, fhe: str = "disable") -> float:
        """D² (deviance explained, the GLM's R²) in an FHE mode, as scikit-learn's ``score``.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import PoissonRegressor
        >>> X = np.random.RandomState(0).randn(300, 2); y = np.random.RandomState(1).poisson(np.exp(X[:, 0]))
        >>> PoissonRegressor().fit(X, y).score(X, y) > 0.3
        True
        """
        return float(
            d2_tweedie_score(y, self.predict(X, fhe=fhe), sample_weight=sample_weight, power=self._family_power())
        )

    def _family_power(self) -> float:
        return self._power


class PoissonRegressor(_GLMRegressor):
    """Poisson regression (scikit-learn's ``PoissonRegressor``, log link) on encrypted data, 0 PBS.

    The server returns the encrypted linear predictor; the client decrypts it and returns its
    ``exp``, the expected count.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights.
    alpha, fit_intercept, solver, max_iter, tol
        As in ``sklearn.linear_model.PoissonRegressor``.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import PoissonRegressor
    >>> X = np.random.RandomState(0).randn(200, 2); y = np.random.RandomState(1).poisson(np.exp(0.5 * X[:, 0]))
    >>> bool((PoissonRegressor().fit(X, y).predict(X[:3]) > 0).all())
    True
    """

    _sklearn_class = sklm.PoissonRegressor
    _power = 1.0


class GammaRegressor(_GLMRegressor):
    """Gamma regression (scikit-learn's ``GammaRegressor``, log link) on encrypted data, 0 PBS.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights.
    alpha, fit_intercept, solver, max_iter, tol
        As in ``sklearn.linear_model.GammaRegressor``.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import GammaRegressor
    >>> X = np.random.RandomState(0).randn(200, 2); y = np.random.RandomState(1).gamma(2.0, np.exp(X[:, 0]) / 2)
    >>> GammaRegressor(alpha=0.01).fit(X, y).score(X, y) > 0.2
    True
    """

    _sklearn_class = sklm.GammaRegressor
    _power = 2.0


class TweedieRegressor(_GLMRegressor):
    """Tweedie regression (scikit-learn's ``TweedieRegressor``) on encrypted data, 0 PBS.

    ``link="auto"`` is the identity for ``power <= 0`` and the log link otherwise, as in
    scikit-learn; a log link's ``exp`` runs on the client after decryption.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights.
    power, alpha, fit_intercept, link, solver, max_iter, tol
        As in ``sklearn.linear_model.TweedieRegressor``.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import TweedieRegressor
    >>> X = np.random.RandomState(0).randn(200, 2); y = np.random.RandomState(1).poisson(np.exp(X[:, 0]))
    >>> reg = TweedieRegressor(power=1.5, alpha=0.01).fit(X, y)
    >>> bool(np.allclose(reg.predict(X[:3]), reg.sklearn_model_.predict(X[:3]), rtol=0.1))
    True
    """

    _sklearn_class = sklm.TweedieRegressor

    def __init__(
        self, n_bits=8, power=0.0, alpha=1.0, fit_intercept=True, link="auto", solver="lbfgs", max_iter=100, tol=1e-4
    ):
        self.n_bits = n_bits
        self.power = power
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.link = link
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol

    def _log_link(self) -> bool:
        return self.link == "log" or (self.link == "auto" and self.power > 0)

    def _family_power(self) -> float:
        return self.power
