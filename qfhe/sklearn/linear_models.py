"""The rest of scikit-learn's linear family: SVMs, sparse regressions and SGD models (GLMs: qfhe.sklearn.glm).

Each is scikit-learn's own model, fitted with the same parameters, then quantized and compiled like
:class:`~qfhe.sklearn.LinearRegression`: the server computes one integer matrix product of the
encrypted input codes (0 PBS), whatever the number of classes (one score per class, one-vs-rest,
as scikit-learn's ``decision_function``), and the client does the rest in the clear.

Examples
--------
>>> import numpy as np
>>> from qfhe.sklearn import LinearSVC
>>> X = np.random.RandomState(0).randn(120, 3); y = (X[:, 0] - X[:, 1] > 0).astype(int)
>>> clf = LinearSVC().fit(X, y).compile(X)
>>> bool((clf.predict(X[:5], fhe="simulate") == clf.predict(X[:5])).all())
True
"""

from __future__ import annotations

import numpy as np
import sklearn.linear_model as sklm
import sklearn.svm as sksvm
from sklearn.utils.metaestimators import available_if

from qfhe.deploy.processing import postprocess
from qfhe.errors import ConfigurationError
from qfhe.sklearn.glm import GammaRegressor, PoissonRegressor, TweedieRegressor
from qfhe.sklearn.linear import _LinearClassifier, _LinearRegressor
from qfhe.validation import as_int


class LinearSVC(_LinearClassifier):
    """Linear support vector classifier (scikit-learn's ``LinearSVC``) on encrypted data, 0 PBS.

    The server computes one score per class (one for two classes); the client takes their argmax
    (the sign for two classes). There are no probabilities, as in scikit-learn.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights (as in :func:`qfhe.compile_torch_model`).
    penalty, loss, dual, tol, C, multi_class, fit_intercept, intercept_scaling, class_weight, random_state, max_iter
        As in ``sklearn.svm.LinearSVC``.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import LinearSVC
    >>> X = np.random.RandomState(0).randn(150, 4); y = np.arange(150) % 3; X[np.arange(150), y] += 3
    >>> LinearSVC(C=0.5).fit(X, y).score(X, y) > 0.9
    True
    """

    _sklearn_class = sksvm.LinearSVC

    def __init__(
        self,
        n_bits=8,
        penalty="l2",
        loss="squared_hinge",
        dual="auto",
        tol=1e-4,
        C=1.0,
        multi_class="ovr",
        fit_intercept=True,
        intercept_scaling=1,
        class_weight=None,
        random_state=None,
        max_iter=1000,
    ):
        self.n_bits = n_bits
        self.penalty = penalty
        self.loss = loss
        self.dual = dual
        self.tol = tol
        self.C = C
        self.multi_class = multi_class
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.class_weight = class_weight
        self.random_state = random_state
        self.max_iter = max_iter


#: SGDClassifier's parameters of encrypted training (scikit-learn's model has none of them)
_ENCRYPTED_TRAINING = ("fit_encrypted", "parameters_range", "batch_size", "training_n_bits")


def _has_proba(est) -> bool:
    return est.loss in ("log_loss", "modified_huber")


class SGDClassifier(_LinearClassifier):
    """A linear classifier fitted by stochastic gradient descent (scikit-learn's ``SGDClassifier``), 0 PBS.

    Any loss scikit-learn offers; ``predict_proba`` exists for ``loss="log_loss"`` (one-vs-rest
    sigmoids) and ``"modified_huber"``, as in scikit-learn, computed on the client.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights.
    loss, penalty, alpha, l1_ratio, fit_intercept, max_iter, tol, shuffle, epsilon, random_state, learning_rate, eta0, power_t, early_stopping, validation_fraction, n_iter_no_change, class_weight, average
        As in ``sklearn.linear_model.SGDClassifier``.
    fit_encrypted : bool, default False
        Train on encrypted data (see :meth:`fit`): binary, ``loss="log_loss"``,
        ``learning_rate="constant"`` with step ``eta0``, ``max_iter`` epochs.
    parameters_range : (float, float), default (-4.0, 4.0)
        Encrypted training: the range the weights (on features mapped onto [-1, 1]) live in.
    batch_size : int, default 8
        Encrypted training: samples per circuit call.
    training_n_bits : int, default 5
        Encrypted training: bit-width of the training circuit's values.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import SGDClassifier
    >>> X = np.random.RandomState(0).randn(200, 3); y = (X[:, 0] > 0).astype(int)
    >>> clf = SGDClassifier(loss="log_loss", random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9, clf.predict_proba(X[:2]).shape
    (True, (2, 2))
    """

    _sklearn_class = sklm.SGDClassifier

    def __init__(
        self,
        n_bits=8,
        loss="hinge",
        penalty="l2",
        alpha=1e-4,
        l1_ratio=0.15,
        fit_intercept=True,
        max_iter=1000,
        tol=1e-3,
        shuffle=True,
        epsilon=0.1,
        random_state=None,
        learning_rate="optimal",
        eta0=0.01,
        power_t=0.5,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        class_weight=None,
        average=False,
        fit_encrypted=False,
        parameters_range=(-4.0, 4.0),
        batch_size=8,
        training_n_bits=5,
    ):
        self.n_bits = n_bits
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.epsilon = epsilon
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.average = average
        self.fit_encrypted = fit_encrypted
        self.parameters_range = parameters_range
        self.batch_size = batch_size
        self.training_n_bits = training_n_bits

    def _sklearn_params(self) -> dict:
        return {k: v for k, v in super()._sklearn_params().items() if k not in _ENCRYPTED_TRAINING}

    def fit(self, X, y, sample_weight=None, fhe: str = "disable", configuration=None, p_error=None, callback=None):
        """Fit scikit-learn's model on ``(X, y)``, or with ``fit_encrypted=True`` train on encrypted
        mini-batches, then quantize the model for encrypted inference.

        Encrypted training (binary ``loss="log_loss"`` with ``learning_rate="constant"``): one circuit
        call per mini-batch of ``batch_size`` samples, ``max_iter`` epochs; the client encrypts each
        batch and the current weights, the server returns the next weights encrypted (see
        :mod:`qfhe.sklearn.encrypted_training`). Weights are learned for the features mapped onto
        [-1, 1] per feature (so ``eta0`` and ``alpha`` are in those units) and kept in
        ``parameters_range``.

        Parameters
        ----------
        X, y, sample_weight
            As in scikit-learn (no ``sample_weight`` with ``fit_encrypted=True``).
        fhe : {"disable", "simulate", "execute"}
            How the training steps run (``fit_encrypted=True`` only): clear integers, simulated, or
            encrypted.
        configuration, p_error : optional
            Passed to the training circuit's compilation.
        callback : callable, optional
            ``callback(step, coef, intercept)`` after every training step.

        Returns
        -------
        self

        Raises
        ------
        ConfigurationError
            For ``fit_encrypted=True`` with a setting it cannot train (naming what to set).

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import SGDClassifier
        >>> X = np.random.RandomState(0).randn(96, 3); y = (X[:, 0] - X[:, 1] > 0).astype(int)
        >>> clf = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=1.0, max_iter=2,
        ...                     fit_encrypted=True, random_state=0).fit(X, y, fhe="disable")
        >>> clf.training_steps_, clf.score(X, y) > 0.85
        (24, True)
        """
        if not self.fit_encrypted:
            if fhe != "disable":
                raise ConfigurationError(
                    f"SGDClassifier.fit: fhe={fhe!r} trains on encrypted data only with fit_encrypted=True"
                )
            return super().fit(X, y, sample_weight=sample_weight)
        from qfhe.sklearn.base import check_class_labels, check_fhe
        from qfhe.sklearn.encrypted_training import fit_encrypted

        check_fhe(fhe)
        self._check_encrypted_training(sample_weight)
        X, y = self._validate_Xy(X, y, "fit", multi_output=False)
        classes, labels = check_class_labels(self, y, "a regressor")
        if len(classes) != 2:
            raise ConfigurationError(
                f"SGDClassifier(fit_encrypted=True) trains a binary model; y has {len(classes)} "
                "classes: train one model per class (one-vs-rest) or fit in the clear"
            )
        lo, hi = self.parameters_range
        kwargs = {"configuration": configuration, "p_error": p_error}
        coef, intercept, steps = fit_encrypted(
            X,
            labels,
            as_int("batch_size", self.batch_size, 1, len(X)),
            as_int("max_iter", self.max_iter, 1, None),
            float(self.eta0),
            float(self.alpha) if self.penalty == "l2" else 0.0,
            (float(lo), float(hi)),
            as_int("training_n_bits", self.training_n_bits, 2, 8),
            self.random_state,
            fhe,
            kwargs,
            callback=callback,
        )
        model = sklm.SGDClassifier(**self._sklearn_params())
        model.coef_, model.intercept_, model.classes_ = coef, intercept, classes
        model.n_iter_, model.t_ = self.max_iter, float(steps * self.batch_size)
        model.n_features_in_ = X.shape[1]
        self.training_steps_ = steps
        return self._import(model, X)

    def _check_encrypted_training(self, sample_weight) -> None:
        needs = {
            "loss": ("log_loss", "its gradient sigmoid(z) - y is what the circuit computes"),
            "learning_rate": ("constant", "the step is eta0 in every circuit call"),
        }
        for name, (value, why) in needs.items():
            if getattr(self, name) != value:
                raise ConfigurationError(
                    f"SGDClassifier(fit_encrypted=True) needs {name}={value!r} ({why}); got {getattr(self, name)!r}"
                )
        if self.penalty not in ("l2", None):
            raise ConfigurationError(
                f"SGDClassifier(fit_encrypted=True) trains with penalty='l2' or None; got {self.penalty!r}"
            )
        for name in ("class_weight", "early_stopping", "average"):
            if getattr(self, name):
                raise ConfigurationError(
                    f"SGDClassifier(fit_encrypted=True) does not support {name}; leave it at its default"
                )
        if sample_weight is not None:
            raise ConfigurationError("SGDClassifier(fit_encrypted=True) takes no sample_weight")
        rng = self.parameters_range
        if not (
            isinstance(rng, (tuple, list))
            and len(rng) == 2
            and all(isinstance(v, (int, float)) for v in rng)
            and np.isfinite(rng).all()
            and rng[0] < 0 < rng[1]
        ):
            raise ConfigurationError(f"parameters_range must be (low, high) with low < 0 < high; got {rng!r}")

    @available_if(_has_proba)
    def predict_proba(self, X, fhe: str = "disable") -> np.ndarray:
        """Class probabilities (``loss="log_loss"`` or ``"modified_huber"``), computed on the client
        from the decrypted scores as scikit-learn computes them.

        Examples
        --------
        >>> import numpy as np
        >>> from qfhe.sklearn import SGDClassifier
        >>> X = np.random.RandomState(0).randn(90, 2); y = np.arange(90) % 3
        >>> p = SGDClassifier(loss="modified_huber", random_state=0).fit(X, y).predict_proba(X[:4])
        >>> bool(np.allclose(p.sum(1), 1))
        True
        """
        scores = self._forward(X, fhe, "predict_proba")
        return postprocess({"kind": "classifier", "link": self._link()}, scores)

    def _link(self) -> str:
        if self.loss == "modified_huber":
            return "modified_huber"
        if self.loss == "log_loss":
            return "sigmoid" if np.atleast_2d(self.coef_).shape[0] == 1 else "ovr"
        return "decision"


class LinearSVR(_LinearRegressor):
    """Linear support vector regression (scikit-learn's ``LinearSVR``) on encrypted data, 0 PBS.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights.
    epsilon, tol, C, loss, fit_intercept, intercept_scaling, dual, random_state, max_iter
        As in ``sklearn.svm.LinearSVR``.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import LinearSVR
    >>> X = np.random.RandomState(0).randn(100, 3); y = X @ [1.0, -2.0, 0.5]
    >>> LinearSVR(random_state=0).fit(X, y).score(X, y) > 0.95
    True
    """

    _sklearn_class = sksvm.LinearSVR

    def __init__(
        self,
        n_bits=8,
        epsilon=0.0,
        tol=1e-4,
        C=1.0,
        loss="epsilon_insensitive",
        fit_intercept=True,
        intercept_scaling=1.0,
        dual="auto",
        random_state=None,
        max_iter=1000,
    ):
        self.n_bits = n_bits
        self.epsilon = epsilon
        self.tol = tol
        self.C = C
        self.loss = loss
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.dual = dual
        self.random_state = random_state
        self.max_iter = max_iter


class Lasso(_LinearRegressor):
    """L1-regularised least squares (scikit-learn's ``Lasso``) on encrypted data, 0 PBS.

    Features whose coefficient is 0 cost nothing in the circuit's accumulator.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights.
    alpha, fit_intercept, precompute, max_iter, tol, positive, random_state, selection
        As in ``sklearn.linear_model.Lasso``.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import Lasso
    >>> X = np.random.RandomState(0).randn(100, 5); y = 3 * X[:, 0]
    >>> reg = Lasso(alpha=0.1).fit(X, y)
    >>> int((reg.coef_ != 0).sum()), reg.score(X, y) > 0.99
    (1, True)
    """

    _sklearn_class = sklm.Lasso

    def __init__(
        self,
        n_bits=8,
        alpha=1.0,
        fit_intercept=True,
        precompute=False,
        max_iter=1000,
        tol=1e-4,
        positive=False,
        random_state=None,
        selection="cyclic",
    ):
        self.n_bits = n_bits
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.precompute = precompute
        self.max_iter = max_iter
        self.tol = tol
        self.positive = positive
        self.random_state = random_state
        self.selection = selection


class ElasticNet(_LinearRegressor):
    """L1+L2-regularised least squares (scikit-learn's ``ElasticNet``) on encrypted data, 0 PBS.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights.
    alpha, l1_ratio, fit_intercept, precompute, max_iter, tol, positive, random_state, selection
        As in ``sklearn.linear_model.ElasticNet``.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import ElasticNet
    >>> X = np.random.RandomState(0).randn(100, 3); y = X @ [1.0, 2.0, 0.0]
    >>> ElasticNet(alpha=0.01).fit(X, y).score(X, y) > 0.99
    True
    """

    _sklearn_class = sklm.ElasticNet

    def __init__(
        self,
        n_bits=8,
        alpha=1.0,
        l1_ratio=0.5,
        fit_intercept=True,
        precompute=False,
        max_iter=1000,
        tol=1e-4,
        positive=False,
        random_state=None,
        selection="cyclic",
    ):
        self.n_bits = n_bits
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.precompute = precompute
        self.max_iter = max_iter
        self.tol = tol
        self.positive = positive
        self.random_state = random_state
        self.selection = selection


class SGDRegressor(_LinearRegressor):
    """A linear regressor fitted by stochastic gradient descent (scikit-learn's ``SGDRegressor``), 0 PBS.

    Parameters
    ----------
    n_bits : int or dict
        Bit-width of the quantized inputs and weights.
    loss, penalty, alpha, l1_ratio, fit_intercept, max_iter, tol, shuffle, epsilon, random_state, learning_rate, eta0, power_t, early_stopping, validation_fraction, n_iter_no_change, average
        As in ``sklearn.linear_model.SGDRegressor``.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import SGDRegressor
    >>> X = np.random.RandomState(0).randn(200, 3); y = X @ [1.0, 2.0, 3.0] + 1
    >>> SGDRegressor(random_state=0).fit(X, y).score(X, y) > 0.99
    True
    """

    _sklearn_class = sklm.SGDRegressor

    def __init__(
        self,
        n_bits=8,
        loss="squared_error",
        penalty="l2",
        alpha=1e-4,
        l1_ratio=0.15,
        fit_intercept=True,
        max_iter=1000,
        tol=1e-3,
        shuffle=True,
        epsilon=0.1,
        random_state=None,
        learning_rate="invscaling",
        eta0=0.01,
        power_t=0.25,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        average=False,
    ):
        self.n_bits = n_bits
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.epsilon = epsilon
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.average = average


#: The linear family's estimators this module and qfhe.sklearn.glm add (see also qfhe.sklearn.linear)
LINEAR_FAMILY = (
    LinearSVC,
    SGDClassifier,
    LinearSVR,
    Lasso,
    ElasticNet,
    SGDRegressor,
    PoissonRegressor,
    GammaRegressor,
    TweedieRegressor,
)
