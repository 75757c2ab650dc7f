"""scikit-learn estimators that run on encrypted data: ``fit``, ``compile``, ``predict(X, fhe=...)``.

- :class:`NeuralNetClassifier`, :class:`NeuralNetRegressor`: Brevitas quantization-aware-trained
  MLPs with a per-neuron accumulator bound, and ``prune()``.
- :class:`LogisticRegression`, :class:`LinearRegression`, :class:`Ridge`: scikit-learn's models,
  quantized, compiled without table lookups; ``from_sklearn_model`` imports a fitted one. So are
  :class:`LinearSVC`, :class:`SGDClassifier`, :class:`LinearSVR`, :class:`Lasso`,
  :class:`ElasticNet`, :class:`SGDRegressor` and the GLMs :class:`PoissonRegressor`,
  :class:`GammaRegressor`, :class:`TweedieRegressor` (inverse link on the client).
- :class:`DecisionTreeClassifier`, :class:`RandomForestClassifier`, :class:`XGBClassifier`,
  :class:`GradientBoostingClassifier`, :class:`HistGradientBoostingClassifier` and their
  regressors: the library's trees, one small lookup per pair of leaves (:mod:`qfhe.trees`).
- :class:`KNeighborsClassifier`: encrypted queries against the server's clear training set
  (distances without lookups, a selection network of comparisons: :mod:`qfhe.neighbors`).

Examples
--------
>>> import numpy as np
>>> from qfhe.sklearn import LogisticRegression
>>> X = np.random.RandomState(0).randn(100, 3); y = (X[:, 0] > 0).astype(int)
>>> clf = LogisticRegression(n_bits=6).fit(X, y).compile(X)
>>> clf.predict(X[:3], fhe="simulate").tolist() == clf.predict(X[:3]).tolist()
True
"""

from qfhe.sklearn.glm import GammaRegressor, PoissonRegressor, TweedieRegressor
from qfhe.sklearn.linear import LinearRegression, LogisticRegression, Ridge
from qfhe.sklearn.linear_models import ElasticNet, Lasso, LinearSVC, LinearSVR, SGDClassifier, SGDRegressor
from qfhe.sklearn.neighbors import KNeighborsClassifier
from qfhe.sklearn.neural_net import NeuralNetClassifier, NeuralNetRegressor, PruneReport
from qfhe.sklearn.tree_models import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    XGBClassifier,
    XGBRegressor,
)

__all__ = [
    "NeuralNetClassifier",
    "NeuralNetRegressor",
    "PruneReport",
    "LogisticRegression",
    "LinearRegression",
    "Ridge",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "XGBClassifier",
    "XGBRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "LinearSVC",
    "SGDClassifier",
    "LinearSVR",
    "Lasso",
    "ElasticNet",
    "SGDRegressor",
    "PoissonRegressor",
    "GammaRegressor",
    "TweedieRegressor",
    "KNeighborsClassifier",
]
