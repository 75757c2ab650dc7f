"""What every qfhe estimator shares: data validation, client-side scaling, compile and the FHE modes.

An estimator owns a float torch model (``module_``) and the :class:`qfhe.QuantizedModule` built
from it (``quantized_module_``). ``fit`` trains and quantizes on the training data, so
``fhe="disable"`` works at once; :meth:`FHEEstimatorMixin.compile` builds the circuits. Every
method, and ``quantized_module_`` itself, takes raw features: the client scales them per feature in
the clear before quantization (``quantized_module_.preprocess``: the neural nets' standardisation,
the linear models' per-feature ranges), so an input quantizer spends its codes on every feature
alike, whatever their units.

Examples
--------
>>> from qfhe.sklearn.base import check_fhe
>>> check_fhe("simulate")
'simulate'
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import validate_data

from qfhe.errors import (
    ConfigurationError,
    InputValidationError,
    KeysNotGeneratedError,
    NotCompiledError,
    NotFittedError,
    OverflowRiskWarning,
)
from qfhe.model import FHE_MODES
from sklearn.base import is_classifier


def check_fhe(fhe: str) -> str:
    """Validate an ``fhe`` mode.

    Examples
    --------
    >>> check_fhe("execute")
    'execute'
    """
    if fhe not in FHE_MODES:
        raise ConfigurationError(f"fhe must be one of {FHE_MODES}, got {fhe!r}")
    return fhe


def fit_scaler(X: np.ndarray) -> StandardScaler:
    """A StandardScaler on ``X``; constant features keep scale 1 (sklearn's rule).

    Examples
    --------
    >>> fit_scaler(np.array([[0.0, 1.0], [2.0, 1.0]])).scale_.tolist()
    [1.0, 1.0]
    """
    return StandardScaler().fit(X)


def check_class_labels(estimator, y, regressors: str) -> tuple[np.ndarray, np.ndarray]:
    """The classes of ``y`` and each label's index, for a classifier's ``fit``; continuous targets and a
    single class are refused, the message naming the estimator and the ``regressors`` to use instead.

    Examples
    --------
    >>> from qfhe.sklearn import LogisticRegression
    >>> check_class_labels(LogisticRegression(), np.array(["b", "a", "b"]), "Ridge")[1].tolist()
    [1, 0, 1]
    >>> check_class_labels(LogisticRegression(), np.array([0.5, 1.5]), "Ridge")
    Traceback (most recent call last):
    ...
    qfhe.errors.InputValidationError: LogisticRegression.fit: y: Unknown label type: continuous. Maybe you are trying to fit a classifier, which expects discrete classes on a regression target with continuous values.. A classifier needs class labels; for a continuous target use Ridge
    """
    from sklearn.utils.multiclass import check_classification_targets

    name = type(estimator).__name__
    try:
        check_classification_targets(y)
    except ValueError as exc:
        raise InputValidationError(
            f"{name}.fit: y: {exc}. A classifier needs class labels; for a continuous target use {regressors}"
        ) from exc
    classes, indices = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise InputValidationError(
            f"{name}.fit: y has one class ({classes[0]!r}); a classifier needs samples of at least 2 classes"
        )
    return classes, indices


def label_indices(estimator, y, where: str) -> np.ndarray:
    """Index of each label of ``y`` in ``estimator.classes_``; an unknown label is an error naming it.

    Examples
    --------
    >>> class E: classes_ = np.array(["a", "b"])
    >>> label_indices(E(), ["b", "a"], "score").tolist()
    [1, 0]
    """
    y = np.asarray(y).ravel()
    classes = estimator.classes_
    idx = np.searchsorted(classes, y)
    idx = np.clip(idx, 0, len(classes) - 1)
    unknown = classes[idx] != y
    if unknown.any():
        shown = ", ".join(repr(v) for v in np.unique(y[unknown])[:5])
        raise InputValidationError(
            f"{type(estimator).__name__}.{where}: y contains labels not seen in fit: {shown}; the classes are "
            f"{classes.tolist()}"
        )
    return idx


def accuracy(estimator, X, y, sample_weight, fhe: str) -> float:
    """A classifier's accuracy in an FHE mode; a label of ``y`` not seen in ``fit`` is an error naming it.

    Examples
    --------
    >>> from qfhe.sklearn import LogisticRegression
    >>> X = np.random.RandomState(0).randn(60, 2); y = (X[:, 0] > 0).astype(int)
    >>> accuracy(LogisticRegression().fit(X, y), X, y, None, "disable") > 0.9
    True
    """
    label_indices(estimator, y, "score")
    return float(accuracy_score(np.asarray(y).ravel(), estimator.predict(X, fhe=fhe), sample_weight=sample_weight))


class FHEEstimatorMixin:
    """``compile``, validation and the FHE-mode forward shared by the qfhe estimators.

    Subclasses set ``module_`` (torch) and ``quantized_module_`` in ``fit`` and implement
    ``_quantize(X)`` (raw inputs to a :class:`qfhe.QuantizedModule` with its preprocessing).

    Examples
    --------
    >>> from qfhe.sklearn import LinearRegression
    >>> isinstance(LinearRegression(), FHEEstimatorMixin)
    True
    """

    # -- validation -------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "quantized_module_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet: call fit(X, y) (or from_sklearn_model) first"
            )

    def _validate_X(self, X, where: str, reset: bool = False) -> np.ndarray:
        """Float64 2-D finite X with the fitted number of features (the message names X and the method)."""
        try:
            return validate_data(self, X, reset=reset, dtype=np.float64)
        except ValueError as exc:
            raise InputValidationError(f"{type(self).__name__}.{where}: {exc}") from exc

    def _validate_Xy(self, X, y, where: str, multi_output: bool, reset: bool = True) -> tuple[np.ndarray, np.ndarray]:
        try:
            X, y = validate_data(
                self, X, y, reset=reset, dtype=np.float64, multi_output=multi_output, y_numeric=not is_classifier(self)
            )
        except ValueError as exc:
            raise InputValidationError(f"{type(self).__name__}.{where}: {exc}") from exc
        if len(X) < 2:
            raise InputValidationError(
                f"{type(self).__name__}.{where}: X has 1 sample; fitting and calibration need at least 2 samples "
                "(ideally hundreds)"
            )
        return X, y

    def _checked(self, X, where: str) -> np.ndarray:
        self._check_fitted()
        return self._validate_X(X, where)

    def fit_benchmark(self, X, y, sample_weight=None):
        """Fit this model and its float twin on the same data, to measure what quantization costs.

        The twin is scikit-learn's own model with the same parameters: the same linear model, or
        for the neural nets an ``MLPClassifier``/``MLPRegressor`` of the same architecture,
        activation, learning rate, batch size and epochs (float, no accumulator bound).

        Returns
        -------
        (self, twin)
            Both fitted.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import LogisticRegression
        >>> X = np.random.RandomState(0).randn(100, 3); y = (X[:, 0] > 0).astype(int)
        >>> clf, twin = LogisticRegression().fit_benchmark(X, y)
        >>> type(twin).__name__, clf.score(X, y) >= twin.score(X, y) - 0.05
        ('LogisticRegression', True)
        """
        self.fit(X, y, sample_weight=sample_weight)
        return self, self._float_twin(X, y, sample_weight)

    # -- circuit ------------------------------------------------------------------------------------
    def compile(
        self,
        X,
        p_error: float | None = None,
        global_p_error: float | None = None,
        configuration=None,
        simulate_batch_size: int = 64,
        bitwidth_method: str = "calibration",
        calibration_margin: float = 0.0,
    ):
        """Build the TFHE circuit, with ``X`` as the calibration inputset; returns self.

        ``X`` (raw features, e.g. the training set) sizes every integer range of the circuit; the
        weights, quantizers and preprocessing stay those ``fit`` produced, so ``fhe="disable"``
        predictions do not change. Afterwards ``fhe="simulate"`` and ``fhe="execute"`` work, and
        ``quantized_module_`` holds the compiled :class:`qfhe.QuantizedModule`.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Representative inputs, at least 2 (ideally hundreds).
        p_error, global_p_error, configuration, simulate_batch_size
            As in :meth:`qfhe.QuantizedModule.compile`.
        bitwidth_method, calibration_margin
            As in :func:`qfhe.compile_torch_model`: ``"interval"`` sizes every accumulator for
            any input in the input quantizer's range, ``"calibration"`` from ``X``.

        Returns
        -------
        self

        Raises
        ------
        NotFittedError
            Before ``fit``.
        InputValidationError
            For NaN/inf, a wrong number of features or a non-2-D ``X``.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import LinearRegression
        >>> X = np.random.RandomState(0).randn(50, 3); y = X @ [1.0, -2.0, 0.5]
        >>> reg = LinearRegression(n_bits=6).fit(X, y).compile(X)
        >>> reg.quantized_module_.statistics["pbs_count"]
        0
        """
        X = self._compile_inputset(self._checked(X, "compile"))
        qm = self.quantized_module_.with_ranges(X, bitwidth_method, calibration_margin)
        self.quantized_module_ = qm.compile(
            p_error=p_error,
            global_p_error=global_p_error,
            configuration=configuration,
            simulate_batch_size=simulate_batch_size,
        )
        return self

    def _compile_inputset(self, X: np.ndarray) -> np.ndarray:
        """The calibration set ``compile(X)`` sizes the circuit with (a model may add the inputs
        that reach its worst case)."""
        return X

    @property
    def fhe_circuit(self):
        """The compiled single-sample concrete-python circuit (``keygen()`` it before ``fhe="execute"``).

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import LinearRegression
        >>> X = np.random.RandomState(0).randn(50, 2)
        >>> LinearRegression(n_bits=4).fit(X, X.sum(1)).compile(X).fhe_circuit.keys.are_generated
        False
        """
        self._check_fitted()
        if not self.quantized_module_.is_compiled:
            raise NotCompiledError(
                f"{type(self).__name__} is fitted but not compiled: call {self._var()}.compile(X_train) first"
            )
        return self.quantized_module_.fhe_circuit

    def _var(self) -> str:
        """How messages name the estimator in code: ``clf`` or ``reg``."""
        return "clf" if is_classifier(self) else "reg"

    def _forward(self, X, fhe: str, where: str) -> np.ndarray:
        """Raw model outputs (logits / standardised targets) for raw X in an FHE mode."""
        check_fhe(fhe)
        X = self._checked(X, where)
        if fhe != "disable" and not self.quantized_module_.is_compiled:
            raise NotCompiledError(
                f"{type(self).__name__} is fitted but not compiled: call {self._var()}.compile(X_train) before "
                f"{self._var()}.{where}(X, fhe={fhe!r}) (fhe='disable' runs the clear integer model without compiling)"
            )
        if fhe == "execute" and not self.quantized_module_.fhe_circuit.keys.are_generated:
            raise KeysNotGeneratedError(
                f"fhe='execute' needs keys: call {self._var()}.fhe_circuit.keygen() once before "
                "executing (it can take a while)"
            )
        if not self.quantized_module_.is_compiled:
            with warnings.catch_warnings():
                # compile(X) plans the circuit's ranges again: those of fit are provisional, and a
                # value beyond them (every cross-validation fold has some) wraps in no circuit
                warnings.simplefilter("ignore", OverflowRiskWarning)
                return self.quantized_module_.forward(X, fhe=fhe)
        return self.quantized_module_.forward(X, fhe=fhe)

    def _input_codes(self, X, where: str) -> np.ndarray:
        """Circuit input codes of raw ``X``, as the client computes them (used by tuning)."""
        return self.quantized_module_.quantize_input(self._checked(X, where))


class ClientProbabilitiesMixin:
    """``predict_proba``, ``predict`` and ``score`` of a classifier whose probabilities the client
    computes from the decrypted outputs, as its ``_client_postprocessing()`` describes (the tree
    models, k-NN): a deployed client's results are these by construction.

    Examples
    --------
    >>> from qfhe.sklearn import KNeighborsClassifier
    >>> issubclass(KNeighborsClassifier, ClientProbabilitiesMixin)
    True
    """

    def predict_proba(self, X, fhe: str = "disable") -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), in an FHE mode.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import DecisionTreeClassifier
        >>> X = np.random.RandomState(0).rand(100, 2); y = (X[:, 0] > 0.5).astype(int)
        >>> DecisionTreeClassifier(max_depth=2).fit(X, y).predict_proba(X[:3]).shape
        (3, 2)
        """
        return self._probabilities(self._forward(X, fhe, "predict_proba"))

    def _probabilities(self, out: np.ndarray) -> np.ndarray:
        from qfhe.deploy.processing import postprocess

        return postprocess(self._client_postprocessing(), out)

    def predict(self, X, fhe: str = "disable") -> np.ndarray:
        """Predicted class labels, in an FHE mode.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import KNeighborsClassifier
        >>> X = np.random.RandomState(0).rand(40, 2); y = np.where(X[:, 0] > 0.5, "a", "b")
        >>> KNeighborsClassifier(3).fit(X, y).predict(X[:3]).tolist() == y[:3].tolist()
        True
        """
        return self._decode_output(self._forward(X, fhe, "predict"))

    def _decode_output(self, out: np.ndarray) -> np.ndarray:
        """Labels from dequantized outputs (also what tuning scores)."""
        return self.classes_[self._probabilities(out).argmax(axis=1)]

    def score(self, X, y, sample_weight=None, fhe: str = "disable") -> float:
        """Accuracy in an FHE mode.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import DecisionTreeClassifier
        >>> X = np.random.RandomState(0).rand(100, 2); y = (X[:, 0] > 0.5).astype(int)
        >>> DecisionTreeClassifier(max_depth=2).fit(X, y).score(X, y) > 0.9
        True
        """
        return accuracy(self, X, y, sample_weight, fhe)
