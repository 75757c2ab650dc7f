"""What the tree estimators share: fit the wrapped library's model, read its trees, quantize them.

The estimators themselves (their parameter lists) are in :mod:`qfhe.sklearn.tree_models`.

Each estimator fits the library's own model (scikit-learn's, or xgboost's) with the same
parameters, reads its trees (:func:`qfhe.trees.ensemble.read_ensemble`) and builds qfhe's integer
graph from them (:mod:`qfhe.trees.lower`). The client sends each feature as the unary code of its
level on a uniform ``2**n_bits`` grid, so the circuit compares nothing: it adds bits along each
root-to-leaf path and makes one small lookup per pair of sibling leaves. ``fhe="disable"`` is the
quantized model (every threshold moved to the grid, every leaf value quantized to ``n_bits``);
``simulate`` and ``execute`` equal it exactly.

Examples
--------
>>> import numpy as np
>>> from qfhe.sklearn import DecisionTreeClassifier
>>> X = np.random.RandomState(0).rand(200, 3); y = (X[:, 0] + X[:, 1] > 1).astype(int)
>>> clf = DecisionTreeClassifier(max_depth=3, n_bits=5).fit(X, y).compile(X)
>>> bool((clf.predict(X[:20], fhe="simulate") == clf.predict(X[:20])).all()), clf.score(X, y) > 0.9
(True, True)
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import r2_score
from sklearn.utils.validation import _check_sample_weight

from qfhe.errors import ConfigurationError, InputValidationError, NotFittedError
from qfhe.sklearn.base import ClientProbabilitiesMixin, FHEEstimatorMixin, check_class_labels
from qfhe.trees.ensemble import read_ensemble
from qfhe.trees.lower import quantize_ensemble
from qfhe.validation import as_int
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin


def _library_class(path: str):
    module, name = path.rsplit(".", 1)
    if module == "xgboost":
        try:
            import xgboost
        except ImportError as exc:  # an optional dependency
            raise ConfigurationError(
                "the XGB estimators need xgboost: pip install 'qfhe[trees]' (or xgboost-cpu)"
            ) from exc
        return getattr(xgboost, name)
    import importlib

    return getattr(importlib.import_module(module), name)


def _store(estimator, params: dict) -> None:
    """``__init__`` only stores its arguments (scikit-learn's contract); ``params`` is its ``locals()``."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def _refuse_nan(X, where: str) -> None:
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError):
        return
    if arr.dtype.kind != "f":  # strings, objects, complex: the validation that follows says what is wrong
        return
    if np.isnan(arr).any():
        raise InputValidationError(
            f"{where}: X contains NaN. Encrypted trees take no missing values (xgboost's missing-value branch "
            "is not supported): impute them first, e.g. with sklearn.impute.SimpleImputer"
        )


class _TreeModel(FHEEstimatorMixin, BaseEstimator):
    """Fit the wrapped library's model, read its trees, quantize them on ``n_bits``-level features."""

    #: dotted path of the wrapped class; its parameters are this class's, except ``n_bits``
    _library: str
    #: how raw outputs become probabilities: "proba" (trees and forests average probabilities) or
    #: "margin" (boosting: sigmoid / softmax)
    _link = "proba"

    def _library_params(self) -> dict:
        return {k: v for k, v in self.get_params().items() if k != "n_bits"}

    def _validate_X(self, X, where: str, reset: bool = False) -> np.ndarray:
        _refuse_nan(X, f"{type(self).__name__}.{where}")
        return super()._validate_X(X, where, reset)

    def _check_n_bits(self) -> int:
        return as_int("n_bits", self.n_bits, 2, 8)

    def fit(self, X, y, sample_weight=None):
        """Fit the wrapped model on ``(X, y)`` and quantize its trees (calibrated on ``X``).

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import RandomForestRegressor
        >>> X = np.random.RandomState(0).rand(100, 2)
        >>> RandomForestRegressor(n_estimators=3, max_depth=2).fit(X, X[:, 0]).score(X, X[:, 0]) > 0.7
        True
        """
        self._check_n_bits()
        _refuse_nan(X, f"{type(self).__name__}.fit")
        X, y = self._validate_Xy(X, y, "fit", multi_output=False)
        target = y
        if isinstance(self, ClassifierMixin):
            self.classes_, target = check_class_labels(self, y, type(self).__name__.replace("Classifier", "Regressor"))
        if sample_weight is not None:
            weights = _check_sample_weight(sample_weight, X, dtype=np.float64)
            if not np.any(weights > 0):
                raise InputValidationError(
                    f"{type(self).__name__}.fit: Sample weights must contain at least one non-zero number"
                )
            if isinstance(self, ClassifierMixin) and len(np.unique(target[weights > 0])) < 2:
                raise InputValidationError(
                    f"{type(self).__name__}.fit: the samples with a non-zero sample_weight are "
                    "of one class; a classifier needs samples of at least 2 classes"
                )
        model = self._new_model()
        model.fit(X, target, sample_weight=sample_weight)
        return self._import(model, X)

    def _new_model(self):
        return _library_class(self._library)(**self._library_params())

    def _float_twin(self, X, y, sample_weight=None):
        """The wrapped library's model with the same parameters, fitted in float."""
        X = self._validate_X(X, "fit_benchmark")
        return _library_class(self._library)(**self._library_params()).fit(X, y, sample_weight=sample_weight)

    def _import(self, model, X: np.ndarray):
        self.sklearn_model_ = model
        self.ensemble_ = read_ensemble(model, X)
        self._check_link(model, X[:64])
        self.quantized_module_ = quantize_ensemble(self.ensemble_, X, self._check_n_bits())
        return self

    def _check_link(self, model, X: np.ndarray) -> None:
        """Refuse a model whose outputs are not the link this class applies to its trees' sum (an
        xgboost objective such as ``count:poisson`` or ``binary:hinge``)."""
        raw = self.ensemble_.raw(X)
        if isinstance(self, ClassifierMixin):
            ours, theirs = self._probabilities(raw), model.predict_proba(X)
        else:
            ours, theirs = raw[:, 0], model.predict(X)
        if not np.allclose(ours, theirs, atol=1e-4):
            objective = getattr(model, "objective", None)
            raise ConfigurationError(
                f"{type(self).__name__}: the fitted model's outputs are not "
                f"{'its trees summed' if self._link == 'proba' else 'the link of its trees sum'}"
                f"{f' (objective={objective!r})' if objective else ''}; use an objective with "
                "the default link (binary:logistic, multi:softprob, reg:squarederror)"
            )

    @classmethod
    def from_sklearn_model(cls, sklearn_model, X, n_bits=6):
        """Import an already fitted model of the wrapped class (scikit-learn's or xgboost's).

        Parameters
        ----------
        sklearn_model : fitted estimator
            Of the class this one wraps (``sklearn.tree.DecisionTreeClassifier`` for
            :class:`DecisionTreeClassifier`, ``xgboost.XGBClassifier`` for :class:`XGBClassifier`...).
        X : array-like, shape (n_samples, n_features)
            Calibration data (e.g. the training set): it sets each feature's grid.
        n_bits : int
            Levels per feature (``2**n_bits``) and width of the quantized leaf values, 2..8.

        Returns
        -------
        estimator
            Fitted, not compiled, with the imported model's parameters (``clone`` refits the
            same model).

        Raises
        ------
        ConfigurationError
            For a model of another class (naming the qfhe class to use) or an unfitted one.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.ensemble import RandomForestClassifier as SkForest
        >>> from qfhe.sklearn import RandomForestClassifier
        >>> X = np.random.RandomState(0).rand(200, 3); y = (X[:, 0] > 0.5).astype(int)
        >>> clf = RandomForestClassifier.from_sklearn_model(SkForest(5, max_depth=3).fit(X, y), X)
        >>> clf.n_estimators, float((clf.predict(X) == y).mean()) > 0.9
        (5, True)
        """
        wrapped = _library_class(cls._library)
        if type(sklearn_model) is not wrapped:
            raise ConfigurationError(
                f"{cls.__name__}.from_sklearn_model takes a fitted {cls._library}, got "
                f"{type(sklearn_model).__module__}.{type(sklearn_model).__name__}"
                f"{_suggest(sklearn_model)}"
            )
        params = {k: v for k, v in sklearn_model.get_params().items() if k in cls._get_param_names()}
        est = cls(n_bits=n_bits, **params)
        est._check_n_bits()
        X = est._validate_X(X, "from_sklearn_model", reset=True)
        try:
            n_in = int(getattr(sklearn_model, "n_features_in_"))
        except Exception as exc:  # noqa: BLE001 - scikit-learn's and xgboost's own not-fitted errors
            raise NotFittedError(f"{type(sklearn_model).__name__} is not fitted; call fit first") from exc
        if X.shape[1] != n_in:
            raise InputValidationError(
                f"{cls.__name__}.from_sklearn_model: X has {X.shape[1]} features but the model was fitted on {n_in}"
            )
        if len(X) < 2:
            raise InputValidationError(
                f"{cls.__name__}.from_sklearn_model: X has 1 sample; calibration needs at least 2 (ideally hundreds)"
            )
        if isinstance(est, ClassifierMixin):
            est.classes_ = np.asarray(sklearn_model.classes_)
        return est._import(sklearn_model, X)


def _suggest(model) -> str:
    from qfhe.sklearn.tree_models import TREE_ESTIMATORS

    name = type(model).__name__
    known = {c._library.rsplit(".", 1)[1] for c in TREE_ESTIMATORS}
    return f"; use qfhe.sklearn.{name}.from_sklearn_model" if name in known else ""


class _TreeClassifier(ClientProbabilitiesMixin, ClassifierMixin, _TreeModel):
    def _client_postprocessing(self) -> dict:
        """What a deployed client does with the decrypted outputs (plain data, see qfhe.deploy.processing)."""
        link = "proba" if self._link == "proba" else ("sigmoid" if len(self.classes_) == 2 else "softmax")
        return {"kind": "classifier", "link": link, "classes": np.asarray(self.classes_)}


class _TreeRegressor(RegressorMixin, _TreeModel):
    def predict(self, X, fhe: str = "disable") -> np.ndarray:
        """Predicted targets, in an FHE mode.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import DecisionTreeRegressor
        >>> X = np.random.RandomState(0).rand(100, 2)
        >>> DecisionTreeRegressor(max_depth=2).fit(X, X[:, 0]).predict(X[:3]).shape
        (3,)
        """
        return self._decode_output(self._forward(X, fhe, "predict"))

    def _decode_output(self, out: np.ndarray) -> np.ndarray:
        return out[:, 0]

    def score(self, X, y, sample_weight=None, fhe: str = "disable") -> float:
        """R² in an FHE mode.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import DecisionTreeRegressor
        >>> X = np.random.RandomState(0).rand(100, 2)
        >>> DecisionTreeRegressor(max_depth=4).fit(X, X[:, 0]).score(X, X[:, 0]) > 0.9
        True
        """
        return float(r2_score(y, self.predict(X, fhe=fhe), sample_weight=sample_weight))

    def _client_postprocessing(self) -> dict:
        """What a deployed client does with the decrypted outputs (plain data, see qfhe.deploy.processing)."""
        return {"kind": "regressor", "mean": 0.0, "scale": 1.0, "shape": []}


class _XGBParams:
    _link = "margin"  # boosting: the circuit sums margins, the client applies sigmoid / softmax

    def _library_params(self) -> dict:
        # None is xgboost's "its own default"; the objective is left to xgboost when not given
        return {k: v for k, v in super()._library_params().items() if v is not None}


class _MarginClassifier(_TreeClassifier):
    def decision_function(self, X, fhe: str = "disable") -> np.ndarray:
        """The boosted model's margins before the sigmoid / softmax (one column for two classes,
        squeezed to shape (n,) as scikit-learn does).

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import XGBClassifier
        >>> X = np.random.RandomState(0).rand(100, 2); y = (X[:, 0] > 0.5).astype(int)
        >>> XGBClassifier(n_estimators=3, max_depth=2).fit(X, y).decision_function(X[:4]).shape
        (4,)
        """
        out = self._forward(X, fhe, "decision_function")
        return out[:, 0] if out.shape[1] == 1 else out
