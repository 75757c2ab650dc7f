"""k-nearest neighbours on encrypted queries: :class:`KNeighborsClassifier`.

The server holds the training set in the clear; the client sends an encrypted query and receives
its ``n_neighbors`` nearest training samples' classes (encrypted), then votes. How the circuit
finds them is in :mod:`qfhe.neighbors.lower`.

Examples
--------
>>> import numpy as np
>>> from qfhe.sklearn import KNeighborsClassifier
>>> X = np.random.RandomState(0).rand(40, 2); y = (X[:, 0] > 0.5).astype(int)
>>> clf = KNeighborsClassifier(n_neighbors=3).fit(X, y)
>>> clf.score(X, y) > 0.85
True
"""

from __future__ import annotations

import numpy as np

from qfhe.errors import ConfigurationError, InputValidationError, NotFittedError
from qfhe.sklearn.base import ClientProbabilitiesMixin, FHEEstimatorMixin, check_class_labels
from qfhe.validation import as_int
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import KNeighborsClassifier as _SkKNN

#: Largest training set a circuit is built for: the lookups grow about 4x as fast as the training
#: set (one per sample plus the selection network), see the cost table of docs/guides/estimators.md.
MAX_TRAINING_SAMPLES = 2048
_METRICS = {
    ("minkowski", 1): 1,
    ("minkowski", 2): 2,
    ("euclidean", None): 2,
    ("l2", None): 2,
    ("manhattan", None): 1,
    ("l1", None): 1,
    ("cityblock", None): 1,
}


class KNeighborsClassifier(ClientProbabilitiesMixin, ClassifierMixin, FHEEstimatorMixin, BaseEstimator):
    """scikit-learn's ``KNeighborsClassifier`` for encrypted queries against a clear training set.

    Parameters
    ----------
    n_neighbors : int, default 5
    weights : {"uniform"}
        Each neighbour has one vote. ``"distance"`` weights need the distances, which the circuit
        keeps encrypted and never returns.
    algorithm, leaf_size, n_jobs
        As in scikit-learn (they only affect the float twin: the circuit compares every sample).
    p : {1, 2}, default 2
        Manhattan or Euclidean distance (with ``metric="minkowski"``).
    metric : str, default "minkowski"
        ``"minkowski"``, ``"euclidean"``/``"l2"`` or ``"manhattan"``/``"l1"``/``"cityblock"``.
    metric_params : None
    n_bits : int, default 3
        Levels per feature (``2**n_bits`` on one grid step for all features; each query feature is
        sent as ``2**n_bits - 1`` encrypted bits), 2..6.
    distance_bits : int, default 8
        Width at which the circuit reads each distance (rounded over the range of all possible
        distances), 2..12: one lookup of this width per training sample. The selection network
        then compares keys that saturate beyond the usual neighbour distances, a few bits fewer
        (``bitwidth_report()`` shows them); high-dimensional data (e.g. 64 features) needs more.

    Attributes
    ----------
    classes_ : ndarray
    fit_X_ : ndarray
        The training samples the server holds.
    sklearn_model_ : sklearn.neighbors.KNeighborsClassifier
        scikit-learn's model on the same data (the float twin).
    n_lookups_ : int
        Table lookups per query.
    quantized_module_ : qfhe.QuantizedModule

    Notes
    -----
    Features should be on comparable scales, as for scikit-learn's model (put a
    ``StandardScaler`` before it in a ``Pipeline``): one grid step is shared by all features so
    distances keep their geometry.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from qfhe.sklearn import KNeighborsClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = KNeighborsClassifier(n_neighbors=3).fit(X[::3], y[::3]).compile(X[::3])
    >>> bool((clf.predict(X[1::10], fhe="simulate") == clf.predict(X[1::10])).all())
    True
    """

    def __init__(
        self,
        n_neighbors=5,
        *,
        weights="uniform",
        algorithm="auto",
        leaf_size=30,
        p=2,
        metric="minkowski",
        metric_params=None,
        n_jobs=None,
        n_bits=3,
        distance_bits=8,
    ):
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.p = p
        self.metric = metric
        self.metric_params = metric_params
        self.n_jobs = n_jobs
        self.n_bits = n_bits
        self.distance_bits = distance_bits

    def _sklearn_params(self) -> dict:
        return {k: v for k, v in self.get_params().items() if k not in ("n_bits", "distance_bits")}

    def _distance_p(self) -> int:
        if self.weights != "uniform":
            raise ConfigurationError(
                f"KNeighborsClassifier: weights={self.weights!r} is not supported; the circuit "
                "returns the neighbours' classes, never their distances: use weights='uniform'"
            )
        if self.metric_params:
            raise ConfigurationError("KNeighborsClassifier: metric_params is not supported; leave it None")
        key = (self.metric, self.p if self.metric == "minkowski" else None)
        if key not in _METRICS:
            raise ConfigurationError(
                f"KNeighborsClassifier: metric={self.metric!r} (p={self.p!r}) is not supported; use the Euclidean "
                "(metric='minkowski', p=2) or Manhattan (p=1) distance, which the circuit computes without lookups"
            )
        return _METRICS[key]

    def fit(self, X, y):
        """Keep the training set and build the circuit's integer graph (``fhe="disable"`` works at once).

        Returns
        -------
        self

        Raises
        ------
        ConfigurationError
            For an unsupported ``weights`` or ``metric``, ``n_neighbors`` larger than the training set,
            or more than :data:`MAX_TRAINING_SAMPLES` samples.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.RandomState(0).rand(30, 2); y = (X[:, 1] > 0.5).astype(int)
        >>> KNeighborsClassifier(n_neighbors=3).fit(X, y).n_lookups_
        103
        """
        p = self._distance_p()
        X, y = self._validate_Xy(X, y, "fit", multi_output=False)
        self.classes_, labels = check_class_labels(self, y, "KNeighborsRegressor (scikit-learn's, in the clear)")
        return self._build(X, labels, p, _SkKNN(**self._sklearn_params()).fit(X, y))

    def _build(self, X: np.ndarray, labels: np.ndarray, p: int, model):
        from qfhe.compile import _subsample
        from qfhe.ir.ops import evaluate
        from qfhe.model import QuantizedModule
        from qfhe.neighbors.lower import build_knn
        from qfhe.passes.pipelines import plan_rounding
        from qfhe.quant.preprocess import apply_preprocess

        k = as_int("n_neighbors", self.n_neighbors, 1, None)
        n_bits = as_int("n_bits", self.n_bits, 2, 6)
        distance_bits = as_int("distance_bits", self.distance_bits, 2, 12)
        if k > len(X):
            raise InputValidationError(
                f"KNeighborsClassifier.fit: n_neighbors={k} is larger than the {len(X)} "
                "training samples; lower n_neighbors"
            )
        if len(X) > MAX_TRAINING_SAMPLES:
            raise ConfigurationError(
                f"KNeighborsClassifier.fit: {len(X)} training samples; the circuit makes about 4 lookups per sample "
                f"and is built for at most {MAX_TRAINING_SAMPLES}: fit on a subsample (or per-class prototypes, "
                "e.g. KMeans centroids)"
            )
        knn = build_knn(X, labels, len(self.classes_), k, n_bits, distance_bits, p)
        self.sklearn_model_ = model
        self.fit_X_, self.n_lookups_, self._corners = X, knn.n_lookups, knn.corners
        calibration = self._compile_inputset(X)
        encoded = apply_preprocess(knn.spec, calibration)
        planned, info = plan_rounding(knn.graph, encoded, None)
        codes = _subsample(evaluate("quant", [encoded], knn.graph["bits"].attrs))
        settings = {
            "n_bits": n_bits,
            "rounding": None,
            "per_channel": False,
            "bitwidth_method": "calibration",
            "calibration_margin": 0.0,
            "qat": False,
            "distance_bits": distance_bits,
        }
        self.quantized_module_ = QuantizedModule(
            knn.graph, knn.graph, planned, info, (X.shape[1],), settings, codes, [knn.spec]
        )
        return self

    def _compile_inputset(self, X: np.ndarray) -> np.ndarray:
        # the training set (a query at distance 0 from each sample) and, for each sample, the query
        # farthest from it: the circuit is then sized for every distance a query can have
        return np.concatenate([X, self.fit_X_, self._corners])

    @classmethod
    def from_sklearn_model(cls, sklearn_model, n_bits=3, distance_bits=8):
        """Import a fitted ``sklearn.neighbors.KNeighborsClassifier`` with its training set.

        Parameters
        ----------
        sklearn_model : sklearn.neighbors.KNeighborsClassifier
            Fitted on a feature array (not on a precomputed distance matrix).
        n_bits, distance_bits : int
            As in :class:`KNeighborsClassifier`.

        Returns
        -------
        KNeighborsClassifier
            Fitted, not compiled, with the model's parameters.

        Raises
        ------
        ConfigurationError
            For another class, or a setting the circuit cannot keep.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.neighbors import KNeighborsClassifier as SkKNN
        >>> X = np.random.RandomState(0).rand(40, 2); y = (X[:, 0] > 0.5).astype(int)
        >>> clf = KNeighborsClassifier.from_sklearn_model(SkKNN(3).fit(X, y))
        >>> clf.n_neighbors, float((clf.predict(X) == y).mean()) > 0.85
        (3, True)
        """
        if type(sklearn_model) is not _SkKNN:
            raise ConfigurationError(
                "KNeighborsClassifier.from_sklearn_model takes a fitted "
                f"sklearn.neighbors.KNeighborsClassifier, got {type(sklearn_model).__name__}"
            )
        if not hasattr(sklearn_model, "classes_"):
            raise NotFittedError("KNeighborsClassifier is not fitted; call fit first")
        params = {k: v for k, v in sklearn_model.get_params().items() if k in cls._get_param_names()}
        est = cls(n_bits=n_bits, distance_bits=distance_bits, **params)
        p = est._distance_p()
        X = est._validate_X(np.asarray(sklearn_model._fit_X), "from_sklearn_model", reset=True)
        y = np.asarray(sklearn_model._y)
        if y.ndim != 1:
            raise ConfigurationError(
                "KNeighborsClassifier.from_sklearn_model: the model was fitted on several "
                "targets; fit one model per target"
            )
        est.classes_ = np.asarray(sklearn_model.classes_)
        return est._build(X, y.astype(np.int64), p, sklearn_model)

    def _float_twin(self, X, y, sample_weight=None):
        """scikit-learn's model with the same parameters, fitted in float."""
        return _SkKNN(**self._sklearn_params()).fit(X, y)

    def fit_benchmark(self, X, y, sample_weight=None):
        """Fit this model and scikit-learn's twin on the same data.

        Returns
        -------
        (self, twin)

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.RandomState(0).rand(40, 2); y = (X[:, 0] > 0.5).astype(int)
        >>> clf, twin = KNeighborsClassifier(3).fit_benchmark(X, y)
        >>> type(twin).__name__
        'KNeighborsClassifier'
        """
        self.fit(X, y)
        return self, self.sklearn_model_

    def _client_postprocessing(self) -> dict:
        """What a deployed client does with the decrypted classes (plain data, see qfhe.deploy.processing)."""
        return {"kind": "classifier", "link": "vote", "classes": np.asarray(self.classes_)}
