"""Fitted tree ensembles read into one plain form: the trees' structure, thresholds and leaf values.

scikit-learn's decision trees, random forests, ``GradientBoosting*`` and ``HistGradientBoosting*``
models and xgboost's boosters all reduce to the same thing: a sum of trees, each routing a sample
by comparisons ``x[feature] <= threshold`` (xgboost: ``<``) to a leaf whose value vector is added
to the output, plus a constant. :func:`read_ensemble` reads any of them; :mod:`qfhe.trees.lower`
builds the circuit from the result, so a new tree library is one reader here.

The constant is measured rather than read (libraries store it in version-dependent places): it is
the library's own raw output minus the trees' sum, and :func:`read_ensemble` checks that it is
the same for every sample it is given.

Examples
--------
>>> import numpy as np
>>> from sklearn.tree import DecisionTreeRegressor
>>> X = np.arange(20.0).reshape(-1, 1)
>>> ens = read_ensemble(DecisionTreeRegressor(max_depth=1).fit(X, X[:, 0] > 9), X)
>>> len(ens.trees), ens.n_outputs, ens.raw(np.array([[3.0], [15.0]])).ravel().tolist()
(1, 1, [0.0, 1.0])
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from qfhe.errors import ConfigurationError, NotFittedError

#: Multi-output trees are out of scope: a leaf holds one value per output of one target.
_LEAF = -1


@dataclass
class Tree:
    """One tree, as arrays over its nodes (children are ``-1`` at leaves).

    Parameters
    ----------
    left, right : ndarray of int
        Child taken when the comparison holds / fails.
    feature : ndarray of int
    threshold : ndarray of float
    value : ndarray of float, shape (n_nodes, n_values)
        What a leaf adds to the outputs (already weighted: learning rate, ``1 / n_trees``).
    output : int or None
        The one output a single-valued tree adds to (a boosting round's class), or None when
        ``value`` has one column per output.

    Examples
    --------
    >>> t = Tree(np.array([1, -1, -1]), np.array([2, -1, -1]), np.array([0, 0, 0]),
    ...          np.array([0.5, 0.0, 0.0]), np.array([[0.0], [1.0], [2.0]]), None)
    >>> t.leaf_of(np.array([[0.2], [0.9]]), strict=False).tolist()
    [1, 2]
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    output: int | None = None

    def leaf_of(self, X: np.ndarray, strict: bool) -> np.ndarray:
        """The leaf each row of ``X`` reaches (float comparisons, as the library makes them).

        Examples
        --------
        >>> t = Tree(np.array([1, -1, -1]), np.array([2, -1, -1]), np.array([0, 0, 0]),
        ...          np.array([0.5, 0.0, 0.0]), np.zeros((3, 1)))
        >>> t.leaf_of(np.array([[0.5]]), strict=False).tolist(), t.leaf_of(np.array([[0.5]]), strict=True).tolist()
        ([1], [2])
        """
        node = np.zeros(len(X), np.int64)
        while True:
            inner = self.left[node] != _LEAF
            if not inner.any():
                return node
            idx = np.flatnonzero(inner)
            at = node[idx]
            x = X[idx, self.feature[at]]
            go_left = x < self.threshold[at] if strict else x <= self.threshold[at]
            node[idx] = np.where(go_left, self.left[at], self.right[at])


@dataclass
class TreeEnsemble:
    """A sum of trees plus a constant: ``raw(X) = base + sum of the reached leaves' values``.

    Parameters
    ----------
    trees : list of Tree
    n_features, n_outputs : int
    base : ndarray, shape (n_outputs,)
    strict : bool
        Samples go left when ``x < threshold`` (xgboost) rather than ``x <= threshold``.
    float32 : bool
        The library compares float32 features (scikit-learn's trees, forests and
        ``GradientBoosting*``, xgboost), not float64 (``HistGradientBoosting*``).

    Examples
    --------
    >>> t = Tree(np.array([-1]), np.array([-1]), np.array([0]), np.array([0.0]), np.array([[2.0]]))
    >>> TreeEnsemble([t], 1, 1, np.array([1.0]), False, False).raw(np.zeros((2, 1))).tolist()
    [[3.0], [3.0]]
    """

    trees: list
    n_features: int
    n_outputs: int
    base: np.ndarray
    strict: bool
    float32: bool = False

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The ensemble's raw output in float (margins, probabilities or predictions), shape (n, n_outputs).

        Examples
        --------
        >>> t = Tree(np.array([1, -1, -1]), np.array([2, -1, -1]), np.array([0, 0, 0]),
        ...          np.array([0.5, 0.0, 0.0]), np.array([[0.0], [1.0], [2.0]]), output=1)
        >>> TreeEnsemble([t], 1, 2, np.zeros(2), False).raw(np.array([[0.0], [1.0]])).tolist()
        [[0.0, 1.0], [0.0, 2.0]]
        """
        X = np.asarray(X, np.float32 if self.float32 else np.float64)
        out = np.tile(np.asarray(self.base, np.float64), (len(X), 1))
        for t in self.trees:
            v = t.value[t.leaf_of(X, self.strict)]
            if t.output is None:
                out += v
            else:
                out[:, t.output] += v[:, 0]
        return out


def _from_sklearn_tree(
    tree, weight: float, columns: slice | None = None, output: int | None = None, normalize: bool = False
) -> Tree:
    t = tree.tree_
    value = np.asarray(t.value, np.float64)[:, 0, :]  # one target
    if normalize:  # a classifier's leaf: class fractions (scikit-learn >= 1.4 already stores them)
        value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
    if columns is not None:
        value = value[:, columns]
    return Tree(
        np.asarray(t.children_left, np.int64),
        np.asarray(t.children_right, np.int64),
        np.asarray(t.feature, np.int64),
        np.asarray(t.threshold, np.float64),
        value * weight,
        output,
    )


def _check_single_target(model) -> None:
    if getattr(model, "n_outputs_", 1) != 1:
        raise ConfigurationError(
            f"{type(model).__name__} was fitted on {model.n_outputs_} targets; qfhe's trees "
            "take one target: fit one model per target"
        )


def _sklearn_trees(model) -> tuple[list, int, bool]:
    """Trees and the number of outputs of a scikit-learn tree model (raw output without its constant)."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import BaseDecisionTree

    if isinstance(model, BaseDecisionTree):
        _check_single_target(model)
        classifier = hasattr(model, "classes_")
        binary = classifier and len(model.classes_) == 2
        return (
            [_from_sklearn_tree(model, 1.0, slice(1, 2) if binary else None, None, classifier)],
            (1 if binary or not classifier else len(model.classes_)),
            False,
        )
    if isinstance(model, (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)):
        _check_single_target(model)
        classifier = hasattr(model, "classes_")
        binary = classifier and len(model.classes_) == 2
        w = 1.0 / len(model.estimators_)
        trees = [_from_sklearn_tree(e, w, slice(1, 2) if binary else None, None, classifier) for e in model.estimators_]
        return trees, (1 if binary or not classifier else len(model.classes_)), False
    if isinstance(model, (GradientBoostingClassifier, GradientBoostingRegressor)):
        stages = model.estimators_  # (n_stages, K) regression trees
        k = stages.shape[1]
        trees = [
            _from_sklearn_tree(stages[i, j], model.learning_rate, None, j if k > 1 else None)
            for i in range(stages.shape[0])
            for j in range(k)
        ]
        return trees, k, False
    if isinstance(model, (HistGradientBoostingClassifier, HistGradientBoostingRegressor)):
        return _hist_trees(model)
    raise ConfigurationError(f"cannot read trees from {type(model).__name__}")


def _hist_trees(model) -> tuple[list, int, bool]:
    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        raise ConfigurationError(
            "HistGradientBoosting with categorical features cannot be read: its categorical "
            "splits are sets, not thresholds; one-hot encode the features instead"
        )
    k = len(model._predictors[0])
    trees = []
    for stage in model._predictors:
        for j, pred in enumerate(stage):
            n = pred.nodes
            leaf = n["is_leaf"].astype(bool)
            trees.append(
                Tree(
                    np.where(leaf, _LEAF, n["left"]).astype(np.int64),
                    np.where(leaf, _LEAF, n["right"]).astype(np.int64),
                    n["feature_idx"].astype(np.int64),
                    n["num_threshold"].astype(np.float64),
                    np.where(leaf, n["value"], 0.0).astype(np.float64)[:, None],
                    j if k > 1 else None,
                )
            )
    return trees, k, False


def _xgb_trees(model) -> tuple[list, int, bool]:
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    config = json.loads(booster.save_config())
    learner = config["learner"]
    n_class = int(learner["learner_model_param"].get("num_class", "0"))
    if int(learner["learner_model_param"].get("num_target", "1")) > 1:
        raise ConfigurationError("xgboost model with several targets: qfhe's trees take one target")
    booster_kind = learner["gradient_booster"]["name"]
    if booster_kind != "gbtree":
        raise ConfigurationError(f"xgboost booster {booster_kind!r} is not a tree ensemble; use booster='gbtree'")
    parallel = int(learner["gradient_booster"]["gbtree_model_param"].get("num_parallel_tree", "1"))
    names = booster.feature_names
    index = {name: i for i, name in enumerate(names)} if names else None
    k = max(n_class, 1)
    trees = []
    for i, dump in enumerate(booster.get_dump(dump_format="json")):
        trees.append(_xgb_tree(json.loads(dump), index, (i // parallel) % k if k > 1 else None))
    return trees, k, True


def _xgb_tree(root: dict, index: dict | None, output: int | None) -> Tree:
    nodes: dict[int, dict] = {}
    stack = [root]
    while stack:
        n = stack.pop()
        nodes[int(n["nodeid"])] = n
        stack.extend(n.get("children", []))
    size = max(nodes) + 1
    left, right = np.full(size, _LEAF, np.int64), np.full(size, _LEAF, np.int64)
    feature, threshold, value = np.zeros(size, np.int64), np.zeros(size), np.zeros((size, 1))
    for i, n in nodes.items():
        if "leaf" in n:
            value[i, 0] = float(n["leaf"])
            continue
        split = n["split"]
        feature[i] = index[split] if index is not None and split in index else int(str(split).lstrip("f"))
        # xgboost compares float32 features with float32 thresholds; the dump prints them exactly
        threshold[i] = float(np.float32(n["split_condition"]))
        left[i], right[i] = int(n["yes"]), int(n["no"])
    return Tree(left, right, feature, threshold, value, output)


def _library_raw(model, X: np.ndarray) -> np.ndarray:
    """The model's raw output (before its link) as its library computes it."""
    if hasattr(model, "get_booster"):
        import xgboost

        raw = model.get_booster().predict(xgboost.DMatrix(X.astype(np.float32)), output_margin=True)
    elif hasattr(model, "decision_function"):  # scikit-learn gradient boosting classifiers: the margin
        raw = model.decision_function(X)
    elif hasattr(model, "predict_proba"):
        raw = model.predict_proba(X)
        raw = raw[:, 1:] if raw.shape[1] == 2 else raw
    else:
        raw = model.predict(X)
    raw = np.asarray(raw, np.float64)
    return raw.reshape(len(X), -1)


def read_ensemble(model, X: np.ndarray) -> TreeEnsemble:
    """Read a fitted scikit-learn or xgboost tree model into a :class:`TreeEnsemble`.

    Classifiers' raw outputs: one column for two classes (the second class's probability for
    trees and forests, the margin for boosting), else one column per class.

    Parameters
    ----------
    model : fitted tree model
    X : ndarray, shape (n_samples, n_features)
        Samples on which the ensemble's constant is measured and checked.

    Raises
    ------
    NotFittedError
        For an unfitted model.
    ConfigurationError
        For a model that is not a readable tree ensemble, or whose output the trees do not
        reproduce (the message names the model and the difference).

    Examples
    --------
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> ens = read_ensemble(RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, y), X)
    >>> len(ens.trees), ens.n_outputs
    (3, 3)
    """
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except Exception as exc:  # scikit-learn's and xgboost's own "not fitted" errors
        raise NotFittedError(f"{type(model).__name__} is not fitted; call fit first") from exc
    if hasattr(model, "get_booster"):
        trees, k, strict = _xgb_trees(model)
    else:
        trees, k, strict = _sklearn_trees(model)
    n_features = int(getattr(model, "n_features_in_", X.shape[1]))
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    float32 = not isinstance(model, (HistGradientBoostingClassifier, HistGradientBoostingRegressor))
    ens = TreeEnsemble(trees, n_features, k, np.zeros(k), strict, float32)
    X = np.asarray(X, np.float64)
    gap = _library_raw(model, X) - ens.raw(X)
    ens.base = gap.mean(axis=0)
    if np.abs(gap - ens.base).max() > 1e-4 * max(1.0, np.abs(gap).max()):
        raise ConfigurationError(
            f"could not read {type(model).__name__}: its trees do not reproduce its output "
            f"(differences up to {np.abs(gap - ens.base).max():.3g}); please report this model"
        )
    return ens
