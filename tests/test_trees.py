"""Tree ensembles: the readers, the circuit (simulate == disable, execute == simulate), the estimator
contract, import from scikit-learn and xgboost, pickling, deployment and bad inputs."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks

from qfhe.errors import BitWidthError, ConfigurationError, InputValidationError, NotFittedError
from qfhe.quant.preprocess import level_values, thermometer_levels
from qfhe.sklearn import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    XGBClassifier,
    XGBRegressor,
)
from qfhe.trees.ensemble import read_ensemble
from qfhe.trees.lower import quantize_ensemble
from sklearn import ensemble as sk_ensemble
from sklearn import tree as sk_tree
from sklearn.base import clone, is_classifier, is_regressor


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


def _three_classes(n=300, seed=0):
    X = np.random.RandomState(seed).rand(n, 4)
    return X, (X[:, 0] > X[:, 1]).astype(int) + (X[:, 2] > 0.5).astype(int)


SMALL = [
    DecisionTreeClassifier(max_depth=4, random_state=0),
    RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0),
    XGBClassifier(n_estimators=5, max_depth=3, random_state=0),
    DecisionTreeRegressor(max_depth=4, random_state=0),
    RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0),
    XGBRegressor(n_estimators=5, max_depth=3, random_state=0),
    GradientBoostingClassifier(n_estimators=5, random_state=0),
    HistGradientBoostingRegressor(max_iter=5),
]


def _fit(est, cancer, classes=2):
    Xtr, Xte, ytr, yte = cancer
    if is_regressor(est):
        return clone(est).fit(Xtr, Xtr[:, 0] * 10 + ytr), Xte
    if classes == 3:
        X, y = _three_classes()
        return clone(est).fit(X, y), X
    return clone(est).fit(Xtr, ytr), Xte


# -- readers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model",
    [
        sk_tree.DecisionTreeClassifier(max_depth=4),
        sk_ensemble.RandomForestClassifier(5, max_depth=3),
        sk_ensemble.ExtraTreesRegressor(4, max_depth=3),
        sk_ensemble.GradientBoostingClassifier(n_estimators=5),
        sk_ensemble.HistGradientBoostingRegressor(max_iter=5),
        xgboost.XGBClassifier(n_estimators=4, max_depth=2),
        xgboost.XGBRegressor(n_estimators=4, num_parallel_tree=2),
        sk_ensemble.GradientBoostingRegressor(n_estimators=3),
    ],
    ids=lambda m: type(m).__name__,
)
@pytest.mark.parametrize("classes", [2, 3])
def test_readers_reproduce_the_library(model, classes):
    X, y = _three_classes()
    if classes == 2:
        y = (y > 0).astype(int)
    if not hasattr(model, "predict_proba"):
        y = X.sum(1) + y
    model = clone(model).fit(X, y)
    ens = read_ensemble(model, X[:100])
    if hasattr(model, "decision_function"):
        expected = model.decision_function(X[100:])
    elif hasattr(model, "predict_proba") and not isinstance(model, xgboost.XGBModel):
        p = model.predict_proba(X[100:])
        expected = p[:, 1] if p.shape[1] == 2 else p
    elif isinstance(model, xgboost.XGBModel):
        expected = model.predict(X[100:], output_margin=True)
    else:
        expected = model.predict(X[100:])
    np.testing.assert_allclose(ens.raw(X[100:]).reshape(np.shape(expected)), expected, atol=1e-5)


# -- the circuit --------------------------------------------------------------------------------------
def test_graph_is_the_tree_on_the_grid():
    """The clear integer model decides exactly as the float trees do on the grid's values."""
    X, y = _three_classes(400)
    for model in (
        sk_ensemble.RandomForestRegressor(6, max_depth=4, random_state=0).fit(X, X.sum(1)),
        xgboost.XGBRegressor(n_estimators=6, max_depth=3).fit(X, X.sum(1)),
    ):
        ens = read_ensemble(model, X)
        qm = quantize_ensemble(ens, X, n_bits=4, leaf_bits=12)
        spec = qm.preprocess[0]
        levels = thermometer_levels(spec, X)
        grid = np.stack([level_values(spec, f)[levels[:, f]] for f in range(X.shape[1])], axis=1)
        leaf_step = qm._output_node.attrs["scale"].max()
        # each of the 6 trees adds at most half a step of its leaf value's quantization
        assert np.abs(qm.forward(X)[:, 0] - ens.raw(grid)[:, 0]).max() <= 6 * leaf_step / 2 + 1e-9


def test_pbs_count_follows_the_formula():
    """One lookup per pair of sibling leaves, one per leaf whose sibling is a subtree."""
    X, y = _three_classes(400)
    model = sk_tree.DecisionTreeRegressor(max_leaf_nodes=7, random_state=0).fit(X, X @ [1, 2, 3, 4])
    t = model.tree_
    leaf = t.children_left == -1
    pairs = sum(
        1 for n in range(t.node_count) if not leaf[n] and leaf[t.children_left[n]] and leaf[t.children_right[n]]
    )
    singles = leaf.sum() - 2 * pairs
    qm = quantize_ensemble(read_ensemble(model, X), X, n_bits=6).compile(p_error=1e-5)
    assert qm.statistics["pbs_count"] == pairs + singles
    # three classes in a forest: one 0/1 indicator per leaf
    rf = sk_ensemble.RandomForestClassifier(2, max_depth=2, random_state=0).fit(X, y)
    n_leaves = sum(int((e.tree_.children_left == -1).sum()) for e in rf.estimators_)
    assert quantize_ensemble(read_ensemble(rf, X), X, 6).compile().statistics["pbs_count"] <= n_leaves


@pytest.mark.parametrize("est", SMALL, ids=lambda e: type(e).__name__)
def test_simulate_equals_disable(est, cancer):
    fitted, Xte = _fit(est, cancer)
    fitted.compile(cancer[0])
    if is_classifier(fitted):
        np.testing.assert_array_equal(fitted.predict_proba(Xte, fhe="simulate"), fitted.predict_proba(Xte))
        assert fitted.score(Xte, cancer[3]) >= fitted.sklearn_model_.score(Xte, cancer[3]) - 0.03
    else:
        np.testing.assert_array_equal(fitted.predict(Xte, fhe="simulate"), fitted.predict(Xte))
        y = Xte[:, 0] * 10 + cancer[3]
        assert fitted.score(Xte, y) >= fitted.sklearn_model_.score(Xte, y) - 0.05


@pytest.mark.parametrize("est", [SMALL[1], SMALL[2]], ids=lambda e: type(e).__name__)
def test_multiclass_simulate_equals_disable(est):
    X, y = _three_classes()
    fitted = clone(est).fit(X, y).compile(X)
    np.testing.assert_array_equal(fitted.predict_proba(X[:60], fhe="simulate"), fitted.predict_proba(X[:60]))
    assert fitted.predict_proba(X[:5]).shape == (5, 3)
    assert fitted.score(X, y) >= fitted.sklearn_model_.score(X, y) - 0.03


@pytest.mark.execute
def test_execute_equals_simulate(cancer):
    Xtr, Xte, ytr, _ = cancer
    for est in (
        XGBClassifier(n_estimators=3, max_depth=2, n_bits=4, random_state=0),
        RandomForestClassifier(n_estimators=2, max_depth=2, n_bits=4, random_state=0),
    ):
        est.fit(Xtr, ytr).compile(Xtr)
        est.fhe_circuit.keygen()
        executed = est.predict_proba(Xte[:2], fhe="execute")
        np.testing.assert_array_equal(executed, est.predict_proba(Xte[:2], fhe="simulate"))
        np.testing.assert_array_equal(executed, est.predict_proba(Xte[:2]))


# -- estimator contract -------------------------------------------------------------------------------
def test_from_sklearn_model_keeps_the_model_and_its_parameters(cancer):
    Xtr, Xte, ytr, yte = cancer
    sk = sk_ensemble.RandomForestClassifier(7, max_depth=3, min_samples_leaf=3, random_state=1).fit(Xtr, ytr)
    q = RandomForestClassifier.from_sklearn_model(sk, Xtr, n_bits=6)
    assert (q.n_estimators, q.min_samples_leaf, q.n_bits) == (7, 3, 6)
    assert (q.predict(Xte) == sk.predict(Xte)).mean() > 0.95
    refit = clone(q).fit(Xtr, ytr)
    np.testing.assert_array_equal(refit.predict_proba(Xte), q.predict_proba(Xte))
    xg = xgboost.XGBClassifier(n_estimators=6, max_depth=2, learning_rate=0.3).fit(Xtr, ytr)
    qx = XGBClassifier.from_sklearn_model(xg, Xtr)
    assert (qx.n_estimators, qx.learning_rate) == (6, 0.3)
    assert (qx.predict(Xte) == xg.predict(Xte)).mean() > 0.95
    with pytest.raises(
        ConfigurationError,
        match=r"takes a fitted xgboost.XGBClassifier.*use "
        r"qfhe.sklearn.RandomForestClassifier.from_sklearn_model",
    ):
        XGBClassifier.from_sklearn_model(sk, Xtr)
    hgb = sk_ensemble.HistGradientBoostingClassifier(max_iter=5, max_depth=2).fit(Xtr, ytr)
    qh = HistGradientBoostingClassifier.from_sklearn_model(hgb, Xtr)
    assert qh.max_iter == 5 and (qh.predict(Xte) == hgb.predict(Xte)).mean() > 0.95
    with pytest.raises(NotFittedError, match="not fitted"):
        DecisionTreeClassifier.from_sklearn_model(sk_tree.DecisionTreeClassifier(), Xtr)
    with pytest.raises(ConfigurationError, match=r"not the link of its trees sum"):
        GradientBoostingClassifier(loss="exponential", n_estimators=3).fit(Xtr, ytr)


def test_fit_benchmark_pickle_and_grid_search(cancer):
    Xtr, Xte, ytr, yte = cancer
    est, twin = DecisionTreeClassifier(max_depth=3, random_state=0).fit_benchmark(Xtr, ytr)
    assert type(twin).__name__ == "DecisionTreeClassifier" and type(twin).__module__.startswith("sklearn")
    assert abs(est.score(Xte, yte) - twin.score(Xte, yte)) < 0.05
    est.compile(Xtr)
    twin2 = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(twin2.predict_proba(Xte), est.predict_proba(Xte))
    search = GridSearchCV(RandomForestClassifier(n_estimators=3, random_state=0), {"max_depth": [2, 3]}, cv=2)
    search.fit(Xtr, ytr)
    assert search.best_params_["max_depth"] in (2, 3)


def test_find_best_p_error_tunes_a_forest(cancer):
    import qfhe

    Xtr, Xte, ytr, yte = cancer
    clf = XGBClassifier(n_estimators=4, max_depth=2, random_state=0).fit(Xtr, ytr).compile(Xtr)
    best = qfhe.find_best_p_error(clf, Xte, yte, max_metric_loss=0.01)
    assert best.found and clf.quantized_module_.statistics["p_error"] == pytest.approx(best.p_error, rel=0.5)
    assert clf.score(Xte, yte, fhe="simulate") >= clf.score(Xte, yte) - 0.02


def test_string_labels_and_sample_weight():
    X, y = _three_classes()
    labels = np.array(["low", "mid", "high"])[y]
    clf = XGBClassifier(n_estimators=4, max_depth=2).fit(X, labels, sample_weight=np.linspace(0.5, 1, len(X)))
    assert set(clf.predict(X[:20])) <= set(labels)


def test_deploys_like_every_model(tmp_path, cancer):
    from qfhe.deploy import FHEModelClient, FHEModelDev, FHEModelServer

    Xtr, Xte, ytr, _ = cancer
    clf = RandomForestClassifier(n_estimators=3, max_depth=2, n_bits=4, random_state=0).fit(Xtr, ytr)
    clf.compile(Xtr)
    FHEModelDev(tmp_path / "rf", clf).save()
    client, server = FHEModelClient(tmp_path / "rf"), FHEModelServer(tmp_path / "rf")
    out = server.run(client.quantize_encrypt_serialize(Xte[:2]), client.get_serialized_evaluation_keys())
    np.testing.assert_allclose(client.deserialize_decrypt_dequantize(out), clf.predict_proba(Xte[:2], fhe="simulate"))
    np.testing.assert_array_equal(client.deserialize_decrypt_predict(out), clf.predict(Xte[:2]))


# -- bad input ------------------------------------------------------------------------------------------
def test_bad_inputs_are_refused_with_the_fix(cancer):
    Xtr, Xte, ytr, _ = cancer
    with pytest.raises(NotFittedError, match=r"not fitted yet: call fit"):
        DecisionTreeClassifier().predict(Xte)
    with pytest.raises(ValueError, match="Invalid parameter 'max_dpth'"):
        DecisionTreeClassifier().set_params(max_dpth=3)
    with pytest.raises(ConfigurationError, match=r"n_bits must be an int from 2 to 8, got 9"):
        DecisionTreeClassifier(n_bits=9).fit(Xtr, ytr)
    bad = Xtr.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputValidationError, match=r"X contains NaN.*missing-value branch.*SimpleImputer"):
        XGBClassifier().fit(bad, ytr)
    fitted = DecisionTreeClassifier(max_depth=2).fit(Xtr, ytr)
    with pytest.raises(InputValidationError, match=r"predict: X contains NaN"):
        fitted.predict(bad)
    with pytest.raises(InputValidationError, match=r"30 features"):
        fitted.predict(Xte[:, :5])
    with pytest.raises(ConfigurationError, match=r"objective='count:poisson'.*default link"):
        XGBRegressor(objective="count:poisson", n_estimators=2).fit(Xtr, ytr + 1)
    constant = DecisionTreeRegressor().fit(Xtr, np.full(len(Xtr), 2.5)).compile(Xtr)  # one leaf: still a circuit
    np.testing.assert_allclose(constant.predict(Xte[:3], fhe="simulate"), 2.5, rtol=0.02)


def test_too_wide_a_sum_names_the_limit():
    X, y = _three_classes(200)
    forest = sk_ensemble.RandomForestRegressor(600, max_depth=2, random_state=0).fit(X, X.sum(1))
    with pytest.raises(BitWidthError, match=r"sum over 600 trees of 8-bit leaf values needs 1[7-9] bits.*fewer trees"):
        quantize_ensemble(read_ensemble(forest, X), X, n_bits=8)


_NOT_EQUIVALENT = (
    "the wrapped library's own model: bootstrap sampling (forests) and histogram binning (xgboost) "
    "make a weight of 2 differ from a repeated row; scikit-learn exempts its forests too"
)
EXCLUDED = {
    "RandomForestRegressor": {"check_sample_weight_equivalence_on_dense_data": _NOT_EQUIVALENT},
    "XGBClassifier": {"check_sample_weight_equivalence_on_dense_data": _NOT_EQUIVALENT},
}


@parametrize_with_checks(
    [
        DecisionTreeClassifier(max_depth=3),
        RandomForestRegressor(n_estimators=3),
        XGBClassifier(n_estimators=3, max_depth=2),
    ],
    expected_failed_checks=lambda e: EXCLUDED.get(type(e).__name__, {}),
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


def test_hostile_unary_encoding_in_a_client_artifact_is_refused():
    """A rewritten client.zip cannot make the client build a huge unary code or an odd one."""
    from qfhe.deploy.processing import check_processing
    from qfhe.errors import ArtifactError

    post = {"kind": "none"}
    good = {"kind": "thermometer", "mean": np.zeros(3), "scale": np.ones(3), "n_bits": 4}
    assert check_processing(good, post)[0] is good
    for bad in (
        {**good, "n_bits": 30},
        {**good, "n_bits": 4.0},
        {**good, "n_bits": True},
        {**good, "mean": np.zeros(1 << 13), "scale": np.ones(1 << 13), "n_bits": 8},
    ):
        with pytest.raises(ArtifactError, match=r"n_bits from 2 to 8 and at most 1048576 encrypted bits"):
            check_processing(bad, post)
    with pytest.raises(ArtifactError, match="non-zero scale per feature"):
        check_processing({**good, "scale": np.zeros(3)}, post)
