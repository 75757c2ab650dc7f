"""The rest of scikit-learn's linear family: SVMs, Lasso/ElasticNet, SGD models and GLMs (0 PBS)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.linear_model as sklm
import sklearn.svm as sksvm
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from qfhe.deploy import FHEModelClient, FHEModelDev, FHEModelServer
from qfhe.deploy.processing import check_processing
from qfhe.errors import ArtifactError, ConfigurationError
from qfhe.sklearn import (
    ElasticNet,
    GammaRegressor,
    Lasso,
    LinearSVC,
    LinearSVR,
    LogisticRegression,
    PoissonRegressor,
    SGDClassifier,
    SGDRegressor,
    TweedieRegressor,
)
from qfhe.sklearn.linear_models import LINEAR_FAMILY
from sklearn.base import clone


def _data(kind: str, n: int = 300, seed: int = 0):
    """Features in different units; a target of the kind each model fits."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 5) * [1e-2, 1.0, 30.0, 1.0, 5.0]
    z = X / X.std(0)
    eta = z @ [0.8, -0.5, 0.3, 0.0, 0.4]
    if kind == "binary":
        return X, (eta + 0.3 * rng.randn(n) > 0).astype(int)
    if kind == "multiclass":
        return X, np.digitize(eta + 0.2 * rng.randn(n), [-0.5, 0.5])
    if kind == "counts":
        return X, rng.poisson(np.exp(0.5 + eta))
    if kind == "positive":
        return X, rng.gamma(3.0, np.exp(eta) / 3.0)
    return X, 2.0 * eta + 1.0 + 0.1 * rng.randn(n)


CASES = [  # (ours, scikit-learn's twin, data)
    (LinearSVC, sksvm.LinearSVC(C=0.5), "multiclass"),
    (LinearSVC, sksvm.LinearSVC(), "binary"),
    (SGDClassifier, sklm.SGDClassifier(loss="log_loss", random_state=0), "multiclass"),
    (SGDClassifier, sklm.SGDClassifier(loss="modified_huber", random_state=0), "binary"),
    (SGDClassifier, sklm.SGDClassifier(random_state=0), "multiclass"),
    (LinearSVR, sksvm.LinearSVR(C=2.0, random_state=0), "regression"),
    (Lasso, sklm.Lasso(alpha=0.05), "regression"),
    (ElasticNet, sklm.ElasticNet(alpha=0.05, l1_ratio=0.3), "regression"),
    (SGDRegressor, sklm.SGDRegressor(random_state=0), "regression"),
    (PoissonRegressor, sklm.PoissonRegressor(alpha=0.01), "counts"),
    (GammaRegressor, sklm.GammaRegressor(alpha=0.01), "positive"),
    (TweedieRegressor, sklm.TweedieRegressor(power=1.5, alpha=0.01), "counts"),
    (TweedieRegressor, sklm.TweedieRegressor(power=0.0, alpha=0.01), "regression"),
]


def _twin(theirs, X, y):
    """scikit-learn's model, fitted on standardised features as a user would (SGD and SVMs need it)."""
    return make_pipeline(StandardScaler(), clone(theirs)).fit(X, y)[-1], StandardScaler().fit(X).transform(X)


@pytest.mark.parametrize("ours, theirs, kind", CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_matches_scikit_learn_with_one_matrix_product(ours, theirs, kind):
    X, y = _data(kind)
    theirs, Xs = _twin(theirs, X, y)
    est = ours.from_sklearn_model(theirs, Xs, n_bits=8)
    params = est.get_params()
    assert est.sklearn_model_ is theirs and params["n_bits"] == 8
    assert all(params[k] == v for k, v in theirs.get_params().items() if k in params)
    ref = theirs.predict(Xs)
    if kind in ("binary", "multiclass"):
        assert (est.predict(Xs) == ref).mean() >= 0.97
        np.testing.assert_allclose(
            est.decision_function(Xs), theirs.decision_function(Xs), atol=0.05 * np.ptp(theirs.decision_function(Xs))
        )
        if hasattr(theirs, "predict_proba"):
            # modified_huber's probabilities clip scores to [-1, 1]: a score step is a large probability step there
            gap = np.abs(est.predict_proba(Xs) - theirs.predict_proba(Xs))
            assert gap.mean() < 0.01 and gap.max() < 0.3
        else:
            assert not hasattr(est, "predict_proba")
    else:
        assert np.abs(est.predict(Xs) - ref).max() < 0.05 * np.ptp(ref)
        assert abs(est.score(Xs, y) - theirs.score(Xs, y)) < 0.03  # R², or D² for a GLM
    # fit = import: the same scikit-learn model, refitted from the copied parameters
    refit = clone(est).fit(Xs, y)
    np.testing.assert_allclose(refit.coef_, theirs.coef_)
    est.compile(Xs)
    assert est.quantized_module_.statistics["pbs_count"] == 0
    np.testing.assert_array_equal(est.predict(Xs[:30], fhe="simulate"), est.predict(Xs[:30]))


#: Every new estimator with data it fits and the method whose decrypted output is compared
ALL = [
    (LinearSVC(n_bits=6), "multiclass", "decision_function"),
    (SGDClassifier(n_bits=6, loss="modified_huber", random_state=0), "binary", "predict_proba"),
    (LinearSVR(n_bits=6, random_state=0), "regression", "predict"),
    (Lasso(n_bits=6, alpha=0.05), "regression", "predict"),
    (ElasticNet(n_bits=6, alpha=0.05), "regression", "predict"),
    (SGDRegressor(n_bits=6, random_state=0), "regression", "predict"),
    (PoissonRegressor(n_bits=6, alpha=0.01), "counts", "predict"),
    (GammaRegressor(n_bits=6, alpha=0.01), "positive", "predict"),
    (TweedieRegressor(n_bits=6, power=1.5, alpha=0.01), "counts", "predict"),
]
IDS = [type(e).__name__ for e, _, _ in ALL]


@pytest.mark.execute
@pytest.mark.parametrize("est, kind, method", ALL, ids=IDS)
def test_execute_equals_simulate_and_disable(est, kind, method):
    """Real encryption on a few samples, for every new estimator."""
    X, y = _data(kind, 150)
    X = StandardScaler().fit_transform(X)
    est = clone(est).fit(X, y).compile(X)
    est.fhe_circuit.keygen()
    run = getattr(est, method)
    executed, simulated, clear = (run(X[:2], fhe=m) for m in ("execute", "simulate", "disable"))
    np.testing.assert_array_equal(executed, simulated)
    np.testing.assert_array_equal(simulated, clear)


@pytest.mark.parametrize("est, kind, method", ALL, ids=IDS)
def test_pipeline_and_grid_search(est, kind, method):
    X, y = _data(kind, 120)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), clone(est)), {f"{type(est).__name__.lower()}__n_bits": [5, 8]}, cv=2
    ).fit(X, y)
    best = search.best_estimator_
    best[-1].compile(best[0].transform(X))
    Xs = best[0].transform(X[:10])
    np.testing.assert_array_equal(best[-1].predict(Xs, fhe="simulate"), best.predict(X[:10]))


def test_glm_links_follow_scikit_learn():
    """A log link's exp runs on the client; Tweedie's link='auto' is the identity at power 0."""
    X, y = _data("counts")
    Xs = StandardScaler().fit_transform(X)
    for power, link in ((0.0, "identity"), (1.0, "exp"), (2.0, "exp")):
        y_pos = y + 1.0 if power == 2.0 else y
        est = TweedieRegressor(power=power, alpha=0.01).fit(Xs, y_pos)
        assert est._client_postprocessing().get("link", "identity") == link
        np.testing.assert_allclose(est.predict(Xs), est.sklearn_model_.predict(Xs), rtol=0.05, atol=0.05)
    est = TweedieRegressor(power=1.0, link="identity", alpha=0.01).fit(Xs, y + 5.0)
    assert "link" not in est._client_postprocessing()


def test_probabilities_only_where_scikit_learn_has_them():
    X, y = _data("binary")
    assert not hasattr(SGDClassifier().fit(X, y), "predict_proba")  # hinge loss
    assert hasattr(SGDClassifier(loss="log_loss").fit(X, y), "predict_proba")
    assert not hasattr(LinearSVC().fit(X, y), "predict_proba")


def test_import_errors_name_the_class_to_use():
    X, y = _data("binary")
    with pytest.raises(
        ConfigurationError,
        match=r"LinearSVC.from_sklearn_model needs a fitted sklearn.svm.LinearSVC, "
        r"got LogisticRegression: use qfhe.sklearn.LogisticRegression",
    ):
        LinearSVC.from_sklearn_model(sklm.LogisticRegression().fit(X, y), X)
    with pytest.raises(ConfigurationError, match=r"got SGDRegressor: use qfhe.sklearn.SGDRegressor.from_sklearn_model"):
        Lasso.from_sklearn_model(sklm.SGDRegressor().fit(X, y), X)
    with pytest.raises(ConfigurationError, match="the Lasso is not fitted: call its fit first"):
        Lasso.from_sklearn_model(sklm.Lasso(), X)


def test_pipeline_and_grid_search_on_breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    search = GridSearchCV(make_pipeline(StandardScaler(), LinearSVC(n_bits=6)), {"linearsvc__C": [0.01, 1.0]}, cv=3)
    search.fit(X, y)
    best = search.best_estimator_
    best[-1].compile(best[0].transform(X))
    assert search.best_score_ > 0.95 and search.score(X, y) > 0.95
    np.testing.assert_array_equal(best[-1].predict(best[0].transform(X[:20]), fhe="simulate"), best.predict(X[:20]))


@pytest.mark.parametrize("est, kind, method", ALL, ids=IDS)
def test_deployed_client_returns_what_the_estimator_returns(est, kind, method, tmp_path):
    X, y = _data(kind, 150)
    X = StandardScaler().fit_transform(X)
    est = clone(est).fit(X, y).compile(X)
    FHEModelDev(tmp_path, est).save()
    client, server = FHEModelClient(tmp_path), FHEModelServer(tmp_path)
    out = server.run(client.quantize_encrypt_serialize(X[:3]), client.get_serialized_evaluation_keys())
    values = client.deserialize_decrypt_dequantize(out)
    if method == "predict":
        np.testing.assert_allclose(values, est.predict(X[:3], fhe="simulate"))
        return
    if method == "predict_proba":
        np.testing.assert_allclose(values, est.predict_proba(X[:3], fhe="simulate"))
    else:  # no probabilities: the scores, as the client's "decision" link returns them
        np.testing.assert_allclose(values, est.decision_function(X[:3], fhe="simulate"))
    np.testing.assert_array_equal(client.deserialize_decrypt_predict(out), est.predict(X[:3], fhe="simulate"))


def test_hostile_postprocessing_in_a_client_artifact_is_refused():
    """A rewritten client.zip cannot name another function for the client to apply."""
    good = {"kind": "regressor", "mean": 0.0, "scale": 1.0, "shape": [], "link": "exp"}
    assert check_processing(None, good)[1] is good
    for link in ("eval", "__import__", 3, None):
        with pytest.raises(ArtifactError, match=r"unknown regressor link .*expected one of \('identity', 'exp'\)"):
            check_processing(None, {**good, "link": link})
    with pytest.raises(ArtifactError, match="unknown classifier link 'system'"):
        check_processing(None, {"kind": "classifier", "link": "system", "classes": np.array([0, 1])})


_SK_SGD = "scikit-learn exempts its own SGD models: stochastic updates are not sample-weight equivalent"
EXCLUDED_CHECKS = {
    "SGDClassifier": {"check_sample_weight_equivalence_on_dense_data": _SK_SGD},
    "SGDRegressor": {"check_sample_weight_equivalence_on_dense_data": _SK_SGD},
    "LinearSVC": {"check_sample_weight_equivalence_on_dense_data": "liblinear: as scikit-learn's own LinearSVC"},
    "LinearSVR": {"check_sample_weight_equivalence_on_dense_data": "liblinear: as scikit-learn's own LinearSVR"},
}


@parametrize_with_checks(
    [cls() for cls in LINEAR_FAMILY], expected_failed_checks=lambda est: EXCLUDED_CHECKS.get(type(est).__name__, {})
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # calibration notes on tiny random datasets
        check(estimator)


def test_every_estimator_is_exported_and_refits_its_twin():
    import qfhe.sklearn

    for cls in LINEAR_FAMILY + (LogisticRegression,):
        assert cls.__name__ in qfhe.sklearn.__all__
        own = {"n_bits", "fit_encrypted", "parameters_range", "batch_size", "training_n_bits"}
        assert set(cls().get_params()) - own <= set(cls._sklearn_class().get_params())
