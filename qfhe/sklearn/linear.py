"""Linear models: fitted by scikit-learn, quantized, compiled to a circuit without table lookups.

What the server computes: one integer matrix product of the encrypted input codes with the
quantized weights, plus an integer bias, and nothing else (0 PBS). The client maps each feature
onto [-1, 1] by its calibrated range and quantizes it before encryption, and after decryption
dequantizes the scores and applies the link in the clear: the sigmoid/softmax and argmax of a
classifier. The per-feature map is folded into the weights (``w·x + b = (w·s)·z + (b + w·m)``,
:func:`qfhe.compile_torch_model`'s ``per_feature_inputs``), so the float model is exactly
scikit-learn's while the input quantizer spends its codes evenly over features of any units.

Examples
--------
>>> import numpy as np
>>> from sklearn.linear_model import LinearRegression as SkLinearRegression
>>> from qfhe.sklearn import LinearRegression
>>> X = np.random.RandomState(0).randn(100, 3); y = X @ [2.0, -1.0, 0.5] + 4
>>> reg = LinearRegression.from_sklearn_model(SkLinearRegression().fit(X, y), X, n_bits=8)
>>> float(np.abs(reg.predict(X) - y).max()) < 0.2
True
"""

from __future__ import annotations

import numpy as np
import sklearn.linear_model as sklm
import torch
from scipy.special import softmax
from sklearn.metrics import r2_score
from sklearn.utils.validation import _check_sample_weight, check_is_fitted
from torch import nn

from qfhe.compile import quantize_torch_model
from qfhe.errors import ConfigurationError, InputValidationError
from qfhe.model import QuantizedModule
from qfhe.sklearn.base import FHEEstimatorMixin, accuracy, check_class_labels
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

#: scikit-learn parameters that change how a model is fitted, not which model: not kept on import
NOT_MODEL_PARAMS = {"n_jobs", "verbose", "copy_X", "warm_start"}


def _cv_twin_params(model) -> dict:
    """The plain model a fitted cross-validated model refitted with its chosen hyper-parameters."""
    p = model.get_params()
    if isinstance(model, sklm.RidgeCV):
        if np.ndim(model.alpha_):
            raise ConfigurationError(
                "from_sklearn_model: this RidgeCV chose one alpha per target (alpha_per_target="
                "True), which one Ridge cannot hold; import one target at a time"
            )
        return {"alpha": float(model.alpha_), "fit_intercept": p["fit_intercept"]}
    C = np.unique(np.asarray(model.C_))
    ratios = np.unique(np.asarray(getattr(model, "l1_ratio_", [None]), dtype=object))
    if len(C) > 1 or len(ratios) > 1:
        raise ConfigurationError(
            "from_sklearn_model: this LogisticRegressionCV chose a different C per class, which "
            "one LogisticRegression cannot hold"
        )
    out = {
        k: p[k]
        for k in (
            "fit_intercept",
            "class_weight",
            "solver",
            "max_iter",
            "tol",
            "random_state",
            "dual",
            "intercept_scaling",
            "penalty",
        )
        if k in p
    }
    out["C"] = float(C[0])
    if ratios[0] is not None:
        out["l1_ratio"] = float(ratios[0])
    return out


def _imported_params(cls, model) -> dict:
    """The qfhe parameters of an imported scikit-learn model; refuses what the class cannot keep."""
    twins = {sklm.RidgeCV: "Ridge", sklm.LogisticRegressionCV: "LogisticRegression"}
    twin = twins.get(type(model))
    if twin == cls.__name__:
        params = _cv_twin_params(model)
    elif isinstance(model, cls._sklearn_class):
        params = model.get_params()
    else:
        hint = {**{c._sklearn_class: c.__name__ for c in _concrete_subclasses(_LinearModel)}, **twins}.get(type(model))
        raise ConfigurationError(
            f"{cls.__name__}.from_sklearn_model needs a fitted {cls._sklearn_class.__module__.split('.')[0]}."
            f"{cls._sklearn_class.__module__.split('.')[1].lstrip('_')}.{cls._sklearn_class.__name__}"
            + (
                f" or {next(k.__name__ for k, v in twins.items() if v == cls.__name__)}"
                if cls.__name__ in twins.values()
                else ""
            )
            + f", got {type(model).__name__}: "
            + (f"use qfhe.sklearn.{hint}.from_sklearn_model" if hint else "qfhe has no class that computes it")
        )
    try:
        check_is_fitted(model)
    except Exception as exc:
        raise ConfigurationError(
            f"{cls.__name__}.from_sklearn_model: the {type(model).__name__} is not fitted: call its fit first"
        ) from exc
    names = set(cls._get_param_names())
    defaults = cls._sklearn_class().get_params()
    lost = {
        k: v
        for k, v in params.items()
        if k not in names and k not in NOT_MODEL_PARAMS and k in defaults and not _same(v, defaults[k])
    }
    if lost:
        raise ConfigurationError(
            f"{cls.__name__}.from_sklearn_model: {', '.join(f'{k}={v!r}' for k, v in lost.items())} has no "
            f"{cls.__name__} parameter, so clone(model).fit would fit another model than the imported one"
        )
    return {k: v for k, v in params.items() if k in names}


def _concrete_subclasses(cls) -> list[type]:
    """Every estimator class of the linear family (those with a scikit-learn twin)."""
    out = []
    for sub in cls.__subclasses__():
        out += ([sub] if "_sklearn_class" in vars(sub) else []) + _concrete_subclasses(sub)
    return out


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays and other values without a plain truth value
        return a is b


class _LinearModel(FHEEstimatorMixin, BaseEstimator):
    """Fit with scikit-learn, quantize with ``n_bits`` (features scaled per feature on the client)."""

    _sklearn_class: type

    def _sklearn_params(self) -> dict:
        return {k: v for k, v in self.get_params().items() if k != "n_bits"}

    def fit(self, X, y, sample_weight=None):
        """Fit scikit-learn's model on ``(X, y)`` (with ``sample_weight``, if given), then quantize it
        (see :meth:`from_sklearn_model`). ``X`` may be a pandas DataFrame (column names are kept).

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import Ridge
        >>> X = np.random.RandomState(0).randn(60, 2)
        >>> Ridge(alpha=0.1).fit(X, X[:, 0]).coef_.shape
        (2,)
        """
        X, y = self._validate_Xy(X, y, "fit", multi_output=self._multi_output())
        if self._classifier:
            check_class_labels(self, y, "a regressor (Ridge, Lasso, ...)")
        model = self._sklearn_class(**self._sklearn_params())
        if sample_weight is None:
            return self._import(model.fit(X, y), X)
        model.fit(X, y, sample_weight=sample_weight)
        # calibrate on the rows the model was fitted on: a zero weight removes a row from both
        weights = np.asarray(_check_sample_weight(sample_weight, X, dtype=np.float64))
        kept = weights > 0
        return self._import(model, X[kept] if kept.sum() >= 2 else X)

    @classmethod
    def _multi_output(cls) -> bool:
        """Whether the scikit-learn twin fits several targets at once (then so does this class)."""
        return not cls._classifier and cls._sklearn_class().__sklearn_tags__().target_tags.multi_output

    def _float_twin(self, X, y, sample_weight=None):
        """scikit-learn's model with the same parameters, fitted in float."""
        model = self._sklearn_class(**self._sklearn_params())
        return model.fit(X, y) if sample_weight is None else model.fit(X, y, sample_weight=sample_weight)

    @classmethod
    def from_sklearn_model(cls, sklearn_model, X, n_bits=8):
        """Import an already fitted scikit-learn model: quantize it, calibrated on ``X``.

        Parameters
        ----------
        sklearn_model : fitted scikit-learn estimator
            Of the matching class, or a cross-validated twin that this class computes exactly
            (``RidgeCV`` for :class:`Ridge`, with its chosen ``alpha_``; ``LogisticRegressionCV``
            for :class:`LogisticRegression`, with its ``C_`` and ``l1_ratio_``).
        X : array-like, shape (n_samples, n_features)
            Calibration data (e.g. the training set): it sets the per-feature input ranges.
        n_bits : int or dict
            As in :func:`qfhe.compile_torch_model` (inputs and weights).

        Returns
        -------
        estimator
            Fitted, not compiled; its parameters copy the scikit-learn model's, so
            ``clone(est).fit(X, y)`` fits the same model again.

        Raises
        ------
        ConfigurationError
            For a model of another class (naming the qfhe class to use, if there is one), an
            unfitted one, or one with a setting this class cannot keep.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression as SkLogisticRegression
        >>> from qfhe.sklearn import LogisticRegression
        >>> X = np.random.RandomState(0).randn(80, 3); y = (X[:, 0] > 0).astype(int)
        >>> clf = LogisticRegression.from_sklearn_model(SkLogisticRegression().fit(X, y), X, n_bits=8)
        >>> float((clf.predict(X) == clf.sklearn_model_.predict(X)).mean()) > 0.95
        True
        """
        est = cls(n_bits=n_bits, **_imported_params(cls, sklearn_model))
        X = est._validate_X(X, "from_sklearn_model", reset=True)
        if X.shape[1] != np.shape(sklearn_model.coef_)[-1]:
            raise InputValidationError(
                f"{cls.__name__}.from_sklearn_model: X has {X.shape[1]} features but the model was fitted on "
                f"{np.shape(sklearn_model.coef_)[-1]}"
            )
        if len(X) < 2:
            raise InputValidationError(
                f"{cls.__name__}.from_sklearn_model: X has 1 sample; calibration needs at least 2 (ideally hundreds)"
            )
        return est._import(sklearn_model, X)

    def _import(self, model, X: np.ndarray):
        self.sklearn_model_ = model
        self.coef_, self.intercept_ = model.coef_, model.intercept_
        if getattr(model, "n_iter_", None) is not None:
            self.n_iter_ = model.n_iter_
        if self._classifier:
            self.classes_ = model.classes_
        W = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
        b = np.broadcast_to(np.asarray(model.intercept_, dtype=np.float64), (W.shape[0],))
        linear = nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(W))
            linear.bias.copy_(torch.as_tensor(np.array(b)))
        self.module_ = linear.double()
        self.quantized_module_ = self._quantize(X)
        return self

    def _quantize(self, X: np.ndarray) -> QuantizedModule:
        """scikit-learn's model as a QuantizedModule on raw features (scaled per feature on the client)."""
        return quantize_torch_model(self.module_, X, n_bits=self.n_bits, per_feature_inputs=True)

    def _scores(self, X, fhe: str, where: str) -> np.ndarray:
        """Decrypted scores ``X @ coef_.T + intercept_`` (quantized), in an FHE mode."""
        return self._shape_scores(self._forward(X, fhe, where))

    def _shape_scores(self, out: np.ndarray) -> np.ndarray:
        return out.ravel() if np.ndim(self.coef_) == 1 or (self._classifier and out.shape[1] == 1) else out

    def _client_postprocessing(self) -> dict:
        """What a deployed client does with the decrypted scores (plain data, see qfhe.deploy.processing)."""
        if self._classifier:
            return {"kind": "classifier", "link": self._link(), "classes": np.asarray(self.classes_)}
        post = {
            "kind": "regressor",
            "mean": 0.0,
            "scale": 1.0,
            "shape": [] if np.ndim(self.coef_) == 1 else [int(np.shape(self.coef_)[0])],
        }
        if self._link() != "identity":
            post["link"] = self._link()
        return post

    def _link(self) -> str:
        """How the client turns decrypted scores into outputs (see qfhe.deploy.processing.postprocess)."""
        return "identity"


class _LinearRegressor(RegressorMixin, _LinearModel):
    """A linear regressor: the decrypted scores are the predictions (see _GLMRegressor for links)."""

    _classifier = False

    def predict(self, X, fhe: str = "disable") -> np.ndarray:
        """Predicted targets, in an FHE mode.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import LinearRegression
        >>> X = np.random.RandomState(0).randn(50, 2)
        >>> LinearRegression().fit(X, X[:, 0]).predict(X[:3]).shape
        (3,)
        """
        return self._decode_output(self._forward(X, fhe, "predict"))

    def _decode_output(self, out: np.ndarray) -> np.ndarray:
        return self._shape_scores(out)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = self._multi_output()
        # a GLM's family needs y > 0 (Gamma) or y >= 0 (Poisson): as scikit-learn's twin says
        tags.target_tags.positive_only = self._sklearn_class().__sklearn_tags__().target_tags.positive_only
        return tags

    def score(self, X, y, sample_weight=None, fhe: str = "disable") -> float:
        """R² in an FHE mode.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import LinearRegression
        >>> X = np.random.RandomState(0).randn(50, 2)
        >>> LinearRegression().fit(X, X[:, 0]).score(X, X[:, 0]) > 0.99
        True
        """
        return float(r2_score(y, self.predict(X, fhe=fhe), sample_weight=sample_weight))


class LinearRegression(_LinearRegressor):
    """Ordinary least squares (scikit-learn's), run on encrypted data without table lookups.

    The server computes ``codes @ W_int + b_int`` on the encrypted input codes; the client maps
    each raw feature onto [-1, 1] by its calibrated range, quantizes it, and dequantizes the result.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights (as in :func:`qfhe.compile_torch_model`).
    fit_intercept, positive, tol
        As in ``sklearn.linear_model.LinearRegression``.

    Attributes
    ----------
    coef_, intercept_ : ndarray
        scikit-learn's float parameters.
    sklearn_model_ : sklearn.linear_model.LinearRegression
    quantized_module_ : qfhe.QuantizedModule

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import LinearRegression
    >>> X = np.random.RandomState(0).randn(100, 3); y = X @ [1.0, 2.0, 3.0]
    >>> reg = LinearRegression().fit(X, y).compile(X)
    >>> bool(np.allclose(reg.predict(X[:2], fhe="simulate"), reg.predict(X[:2])))
    True
    """

    _sklearn_class = sklm.LinearRegression

    def __init__(self, n_bits=8, fit_intercept=True, positive=False, tol=1e-6):
        self.n_bits = n_bits
        self.fit_intercept = fit_intercept
        self.positive = positive
        self.tol = tol


class Ridge(_LinearRegressor):
    """Ridge regression (scikit-learn's), run on encrypted data without table lookups.

    Parameters are ``n_bits`` and those of ``sklearn.linear_model.Ridge``; see
    :class:`LinearRegression` for what the server and the client compute.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import Ridge
    >>> X = np.random.RandomState(0).randn(100, 3); y = X @ [1.0, 2.0, 3.0]
    >>> Ridge(alpha=1.0).fit(X, y).score(X, y) > 0.99
    True
    """

    _sklearn_class = sklm.Ridge

    def __init__(
        self,
        n_bits=8,
        alpha=1.0,
        fit_intercept=True,
        solver="auto",
        max_iter=None,
        tol=1e-4,
        positive=False,
        random_state=None,
    ):
        self.n_bits = n_bits
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.positive = positive
        self.random_state = random_state


class _LinearClassifier(ClassifierMixin, _LinearModel):
    """A linear classifier: class scores from one matrix product, labels by their argmax (or sign)."""

    _classifier = True

    def decision_function(self, X, fhe: str = "disable") -> np.ndarray:
        """Class scores (shape (n,) for two classes), decrypted.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import LogisticRegression
        >>> X = np.random.RandomState(0).randn(60, 2); y = (X[:, 0] > 0).astype(int)
        >>> LogisticRegression().fit(X, y).decision_function(X[:3]).shape
        (3,)
        """
        return self._scores(X, fhe, "decision_function")

    def predict(self, X, fhe: str = "disable") -> np.ndarray:
        """Predicted labels, in an FHE mode.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import LogisticRegression
        >>> X = np.random.RandomState(0).randn(60, 2); y = np.where(X[:, 0] > 0, "a", "b")
        >>> LogisticRegression().fit(X, y).predict(X[:2]).tolist()
        ['a', 'a']
        """
        return self._decode_output(self._forward(X, fhe, "predict"))

    def _decode_output(self, out: np.ndarray) -> np.ndarray:
        scores = self._shape_scores(out)
        idx = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[idx]

    def score(self, X, y, sample_weight=None, fhe: str = "disable") -> float:
        """Accuracy in an FHE mode; a label not seen in ``fit`` is an error naming it.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import LogisticRegression
        >>> X = np.random.RandomState(0).randn(60, 2); y = (X[:, 0] > 0).astype(int)
        >>> LogisticRegression().fit(X, y).score(X, y) > 0.9
        True
        """
        return accuracy(self, X, y, sample_weight, fhe)

    def _link(self) -> str:
        return "decision"


class LogisticRegression(_LinearClassifier):
    """Logistic regression (scikit-learn's), run on encrypted data without table lookups.

    The server computes the class scores ``codes @ W_int + b_int``; the client decrypts them and
    applies the sigmoid (binary) or softmax (multiclass) and the argmax in the clear.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights.
    C, l1_ratio, penalty, fit_intercept, class_weight, solver, max_iter, tol, dual, intercept_scaling, random_state
        As in ``sklearn.linear_model.LogisticRegression``.

    Attributes
    ----------
    classes_, coef_, intercept_, sklearn_model_, quantized_module_

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import LogisticRegression
    >>> X = np.random.RandomState(0).randn(200, 4); y = np.where(X[:, 0] - X[:, 2] > 0, "pos", "neg")
    >>> clf = LogisticRegression().fit(X, y)
    >>> clf.score(X, y) > 0.95, clf.predict_proba(X[:2]).shape
    (True, (2, 2))
    """

    _sklearn_class = sklm.LogisticRegression

    def __init__(
        self,
        n_bits=8,
        C=1.0,
        l1_ratio=0.0,
        penalty="deprecated",
        fit_intercept=True,
        class_weight=None,
        solver="lbfgs",
        max_iter=100,
        tol=1e-4,
        dual=False,
        intercept_scaling=1,
        random_state=None,
    ):
        self.n_bits = n_bits
        self.C = C
        self.l1_ratio = l1_ratio
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.dual = dual
        self.intercept_scaling = intercept_scaling
        self.random_state = random_state

    def predict_proba(self, X, fhe: str = "disable") -> np.ndarray:
        """Class probabilities, computed on the client from the decrypted scores.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import LogisticRegression
        >>> X = np.random.RandomState(0).randn(90, 2); y = np.arange(90) % 3
        >>> bool(np.allclose(LogisticRegression().fit(X, y).predict_proba(X[:4]).sum(1), 1))
        True
        """
        scores = self._scores(X, fhe, "predict_proba")
        if scores.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-scores))
            return np.stack([1 - p, p], axis=1)
        if self.solver == "liblinear":  # one-vs-rest: independent sigmoids, normalised
            p = 1.0 / (1.0 + np.exp(-scores))
            return p / p.sum(axis=1, keepdims=True)
        return softmax(scores, axis=1)

    def _link(self) -> str:
        n_scores = np.atleast_2d(self.coef_).shape[0]
        return "sigmoid" if n_scores == 1 else ("ovr" if self.solver == "liblinear" else "softmax")
