"""Decision trees, random forests and gradient boosting on encrypted data: the estimators.

Each class is the wrapped library's model with its parameters (plus ``n_bits``); what they do is in
:mod:`qfhe.sklearn.trees` and :mod:`qfhe.trees`.

Examples
--------
>>> from qfhe.sklearn.tree_models import TREE_ESTIMATORS
>>> sorted(c._library.split(".")[0] for c in TREE_ESTIMATORS)[-2:]
['xgboost', 'xgboost']
"""

from __future__ import annotations

from qfhe.sklearn.trees import _MarginClassifier, _store, _TreeClassifier, _TreeRegressor, _XGBParams


class DecisionTreeClassifier(_TreeClassifier):
    """scikit-learn's ``DecisionTreeClassifier``, run on encrypted data.

    Parameters
    ----------
    n_bits : int, default 6
        Levels per feature (``2**n_bits``, each sent as ``2**n_bits - 1`` encrypted bits) and width
        of the quantized leaf values, 2..8.
    criterion, splitter, max_depth, min_samples_split, min_samples_leaf, min_weight_fraction_leaf, \
max_features, random_state, max_leaf_nodes, min_impurity_decrease, class_weight, ccp_alpha, monotonic_cst
        As in scikit-learn. The circuit makes about one lookup per pair of leaves: ``max_depth``
        or ``max_leaf_nodes`` bound it.

    Attributes
    ----------
    classes_ : ndarray
    sklearn_model_ : sklearn.tree.DecisionTreeClassifier
    ensemble_ : qfhe.trees.ensemble.TreeEnsemble
    quantized_module_ : qfhe.QuantizedModule

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from qfhe.sklearn import DecisionTreeClassifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y).compile(X)
    >>> bool((clf.predict(X[:50], fhe="simulate") == clf.predict(X[:50])).all())
    True
    """

    _library = "sklearn.tree.DecisionTreeClassifier"

    def __init__(
        self,
        *,
        n_bits=6,
        criterion="gini",
        splitter="best",
        max_depth=None,
        min_samples_split=2,
        min_samples_leaf=1,
        min_weight_fraction_leaf=0.0,
        max_features=None,
        random_state=None,
        max_leaf_nodes=None,
        min_impurity_decrease=0.0,
        class_weight=None,
        ccp_alpha=0.0,
        monotonic_cst=None,
    ):
        _store(self, locals())


class DecisionTreeRegressor(_TreeRegressor):
    """scikit-learn's ``DecisionTreeRegressor``, run on encrypted data.

    Parameters are ``n_bits`` (see :class:`DecisionTreeClassifier`) and scikit-learn's.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import DecisionTreeRegressor
    >>> X = np.random.RandomState(0).rand(200, 2)
    >>> reg = DecisionTreeRegressor(max_depth=4).fit(X, X.sum(1)).compile(X)
    >>> bool(np.allclose(reg.predict(X[:5], fhe="simulate"), reg.predict(X[:5])))
    True
    """

    _library = "sklearn.tree.DecisionTreeRegressor"

    def __init__(
        self,
        *,
        n_bits=6,
        criterion="squared_error",
        splitter="best",
        max_depth=None,
        min_samples_split=2,
        min_samples_leaf=1,
        min_weight_fraction_leaf=0.0,
        max_features=None,
        random_state=None,
        max_leaf_nodes=None,
        min_impurity_decrease=0.0,
        ccp_alpha=0.0,
        monotonic_cst=None,
    ):
        _store(self, locals())


class RandomForestClassifier(_TreeClassifier):
    """scikit-learn's ``RandomForestClassifier``, run on encrypted data.

    Parameters are ``n_bits`` (see :class:`DecisionTreeClassifier`) and scikit-learn's, with
    smaller defaults (``n_estimators=20, max_depth=4``, as Concrete ML's): a lookup costs per pair
    of leaves, so a default forest of 100 unbounded trees would cost thousands.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import RandomForestClassifier
    >>> X = np.random.RandomState(0).rand(200, 3); y = (X[:, 0] > 0.5).astype(int)
    >>> RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y).score(X, y) > 0.9
    True
    """

    _library = "sklearn.ensemble.RandomForestClassifier"

    def __init__(
        self,
        n_estimators=20,
        *,
        n_bits=6,
        criterion="gini",
        max_depth=4,
        min_samples_split=2,
        min_samples_leaf=1,
        min_weight_fraction_leaf=0.0,
        max_features="sqrt",
        max_leaf_nodes=None,
        min_impurity_decrease=0.0,
        bootstrap=True,
        oob_score=False,
        n_jobs=None,
        random_state=None,
        verbose=0,
        warm_start=False,
        class_weight=None,
        ccp_alpha=0.0,
        max_samples=None,
        monotonic_cst=None,
    ):
        _store(self, locals())


class RandomForestRegressor(_TreeRegressor):
    """scikit-learn's ``RandomForestRegressor``, run on encrypted data.

    Parameters are ``n_bits`` and scikit-learn's, with the defaults of
    :class:`RandomForestClassifier` (``n_estimators=20, max_depth=4``).

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import RandomForestRegressor
    >>> X = np.random.RandomState(0).rand(200, 2)
    >>> RandomForestRegressor(n_estimators=5, random_state=0).fit(X, X.sum(1)).score(X, X.sum(1)) > 0.8
    True
    """

    _library = "sklearn.ensemble.RandomForestRegressor"

    def __init__(
        self,
        n_estimators=20,
        *,
        n_bits=6,
        criterion="squared_error",
        max_depth=4,
        min_samples_split=2,
        min_samples_leaf=1,
        min_weight_fraction_leaf=0.0,
        max_features=1.0,
        max_leaf_nodes=None,
        min_impurity_decrease=0.0,
        bootstrap=True,
        oob_score=False,
        n_jobs=None,
        random_state=None,
        verbose=0,
        warm_start=False,
        ccp_alpha=0.0,
        max_samples=None,
        monotonic_cst=None,
    ):
        _store(self, locals())


class XGBClassifier(_XGBParams, _MarginClassifier):
    """xgboost's ``XGBClassifier`` (gradient-boosted trees), run on encrypted data.

    Parameters are ``n_bits`` (see :class:`DecisionTreeClassifier`) and xgboost's tree
    parameters (None: xgboost's default), with ``n_estimators=20, max_depth=3`` by default (as
    Concrete ML's). The margin is summed in the circuit; the client applies the sigmoid (two
    classes) or softmax. Needs ``xgboost`` (``pip install xgboost-cpu``).

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import XGBClassifier
    >>> X = np.random.RandomState(0).rand(200, 3); y = (X[:, 0] + X[:, 2] > 1).astype(int)
    >>> clf = XGBClassifier(n_estimators=10, max_depth=2).fit(X, y).compile(X)
    >>> bool((clf.predict_proba(X[:5], fhe="simulate") == clf.predict_proba(X[:5])).all())
    True
    """

    _library = "xgboost.XGBClassifier"

    def __init__(
        self,
        *,
        n_bits=6,
        n_estimators=20,
        max_depth=3,
        learning_rate=None,
        objective=None,
        n_jobs=None,
        gamma=None,
        min_child_weight=None,
        max_delta_step=None,
        subsample=None,
        colsample_bytree=None,
        colsample_bylevel=None,
        colsample_bynode=None,
        reg_alpha=None,
        reg_lambda=None,
        base_score=None,
        random_state=None,
        num_parallel_tree=None,
        max_leaves=None,
        max_bin=None,
        grow_policy=None,
        tree_method=None,
        verbosity=None,
    ):
        _store(self, locals())


class XGBRegressor(_XGBParams, _TreeRegressor):
    """xgboost's ``XGBRegressor``, run on encrypted data.

    Parameters as :class:`XGBClassifier`'s; objectives with the identity link only
    (``reg:squarederror``, the default, ``reg:absoluteerror``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import XGBRegressor
    >>> X = np.random.RandomState(0).rand(200, 2)
    >>> XGBRegressor(n_estimators=10).fit(X, X.sum(1)).score(X, X.sum(1)) > 0.8
    True
    """

    _library = "xgboost.XGBRegressor"

    def __init__(
        self,
        *,
        n_bits=6,
        n_estimators=20,
        max_depth=3,
        learning_rate=None,
        objective=None,
        n_jobs=None,
        gamma=None,
        min_child_weight=None,
        max_delta_step=None,
        subsample=None,
        colsample_bytree=None,
        colsample_bylevel=None,
        colsample_bynode=None,
        reg_alpha=None,
        reg_lambda=None,
        base_score=None,
        random_state=None,
        num_parallel_tree=None,
        max_leaves=None,
        max_bin=None,
        grow_policy=None,
        tree_method=None,
        verbosity=None,
    ):
        _store(self, locals())


class GradientBoostingClassifier(_MarginClassifier):
    """scikit-learn's ``GradientBoostingClassifier``, run on encrypted data.

    Parameters are ``n_bits`` (see :class:`DecisionTreeClassifier`) and scikit-learn's, with
    ``n_estimators=20`` by default (one lookup per pair of leaves, per class and stage). The
    exponential loss is refused (its probabilities are not the sigmoid of the margin).

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import GradientBoostingClassifier
    >>> X = np.random.RandomState(0).rand(200, 3); y = (X[:, 0] > 0.5).astype(int)
    >>> GradientBoostingClassifier(n_estimators=5).fit(X, y).score(X, y) > 0.9
    True
    """

    _library = "sklearn.ensemble.GradientBoostingClassifier"
    _link = "margin"

    def __init__(
        self,
        *,
        n_bits=6,
        loss="log_loss",
        learning_rate=0.1,
        n_estimators=20,
        subsample=1.0,
        criterion="friedman_mse",
        min_samples_split=2,
        min_samples_leaf=1,
        min_weight_fraction_leaf=0.0,
        max_depth=3,
        min_impurity_decrease=0.0,
        init=None,
        random_state=None,
        max_features=None,
        verbose=0,
        max_leaf_nodes=None,
        warm_start=False,
        validation_fraction=0.1,
        n_iter_no_change=None,
        tol=1e-4,
        ccp_alpha=0.0,
    ):
        _store(self, locals())


class GradientBoostingRegressor(_TreeRegressor):
    """scikit-learn's ``GradientBoostingRegressor``, run on encrypted data.

    Parameters as :class:`GradientBoostingClassifier`'s (``n_estimators=20`` by default).

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import GradientBoostingRegressor
    >>> X = np.random.RandomState(0).rand(200, 2)
    >>> GradientBoostingRegressor().fit(X, X.sum(1)).score(X, X.sum(1)) > 0.8
    True
    """

    _library = "sklearn.ensemble.GradientBoostingRegressor"
    _link = "margin"

    def __init__(
        self,
        *,
        n_bits=6,
        loss="squared_error",
        learning_rate=0.1,
        n_estimators=20,
        subsample=1.0,
        criterion="friedman_mse",
        min_samples_split=2,
        min_samples_leaf=1,
        min_weight_fraction_leaf=0.0,
        max_depth=3,
        min_impurity_decrease=0.0,
        init=None,
        random_state=None,
        max_features=None,
        alpha=0.9,
        verbose=0,
        max_leaf_nodes=None,
        warm_start=False,
        validation_fraction=0.1,
        n_iter_no_change=None,
        tol=1e-4,
        ccp_alpha=0.0,
    ):
        _store(self, locals())


class HistGradientBoostingClassifier(_MarginClassifier):
    """scikit-learn's ``HistGradientBoostingClassifier``, run on encrypted data.

    Parameters are ``n_bits`` and scikit-learn's, with ``max_iter=20, max_depth=3`` by default.
    Categorical splits cannot be read (they are sets, not thresholds): one-hot encode instead.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import HistGradientBoostingClassifier
    >>> X = np.random.RandomState(0).rand(200, 3); y = (X[:, 0] > 0.5).astype(int)
    >>> HistGradientBoostingClassifier(max_iter=5).fit(X, y).score(X, y) > 0.9
    True
    """

    _library = "sklearn.ensemble.HistGradientBoostingClassifier"
    _link = "margin"

    def __init__(
        self,
        *,
        n_bits=6,
        loss="log_loss",
        learning_rate=0.1,
        max_iter=20,
        max_leaf_nodes=31,
        max_depth=3,
        min_samples_leaf=20,
        l2_regularization=0.0,
        max_features=1.0,
        max_bins=255,
        categorical_features=None,
        monotonic_cst=None,
        interaction_cst=None,
        warm_start=False,
        early_stopping="auto",
        scoring="loss",
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-7,
        verbose=0,
        random_state=None,
        class_weight=None,
    ):
        _store(self, locals())


class HistGradientBoostingRegressor(_TreeRegressor):
    """scikit-learn's ``HistGradientBoostingRegressor``, run on encrypted data.

    Parameters as :class:`HistGradientBoostingClassifier`'s; losses with the identity link only
    (``squared_error``, ``absolute_error``, ``quantile``).

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn import HistGradientBoostingRegressor
    >>> X = np.random.RandomState(0).rand(200, 2)
    >>> HistGradientBoostingRegressor().fit(X, X.sum(1)).score(X, X.sum(1)) > 0.8
    True
    """

    _library = "sklearn.ensemble.HistGradientBoostingRegressor"
    _link = "margin"

    def __init__(
        self,
        *,
        n_bits=6,
        loss="squared_error",
        quantile=None,
        learning_rate=0.1,
        max_iter=20,
        max_leaf_nodes=31,
        max_depth=3,
        min_samples_leaf=20,
        l2_regularization=0.0,
        max_features=1.0,
        max_bins=255,
        categorical_features=None,
        monotonic_cst=None,
        interaction_cst=None,
        warm_start=False,
        early_stopping="auto",
        scoring="loss",
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-7,
        verbose=0,
        random_state=None,
    ):
        _store(self, locals())


#: every tree estimator (``from_sklearn_model`` names the right one for a model of another class)
TREE_ESTIMATORS = (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    XGBClassifier,
    XGBRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
