"""k-nearest neighbours on encrypted queries: the selection network, the circuit and the estimator."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, load_wine
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from qfhe.deploy import FHEModelClient, FHEModelDev, FHEModelServer
from qfhe.deploy.processing import check_processing, vote_probabilities
from qfhe.errors import ArtifactError, ConfigurationError, InputValidationError
from qfhe.ir.ops import evaluate
from qfhe.neighbors.lower import build_knn
from qfhe.neighbors.network import selection_network
from qfhe.quant.preprocess import apply_preprocess, thermometer_levels
from qfhe.sklearn import KNeighborsClassifier
from sklearn.base import clone
from sklearn.neighbors import KNeighborsClassifier as SkKNN


def _wine(n_train: int = 60, seed: int = 0):
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    idx = np.random.RandomState(seed).permutation(len(X))
    return X[idx[:n_train]], y[idx[:n_train]], X[idx[n_train:]], y[idx[n_train:]]


@pytest.mark.parametrize("n", [1, 2, 5, 10, 33, 64, 100])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_selection_network_returns_the_k_smallest_in_order(n, k):
    if k > n:
        with pytest.raises(ConfigurationError, match=f"n_neighbors={k} must be between 1 and the number of training"):
            selection_network(n, k)
        return
    net = selection_network(n, k)
    rng = np.random.RandomState(n * 10 + k)
    values = rng.randint(0, 8, (300, n)) * 16 + rng.randint(0, 16, (300, n))  # many ties in the high part
    np.testing.assert_array_equal(net.apply(values), np.sort(values, axis=1)[:, :k])
    for layer in net.layers:  # a layer's comparators read disjoint wires
        wires = [w for a, b, _, _ in layer for w in (a, b)]
        assert len(wires) == len(set(wires))


def test_selection_network_costs_about_n_log_k_comparators():
    assert [selection_network(n, 3).n_comparators for n in (32, 64, 128, 256)] == [75, 155, 315, 635]
    assert [selection_network(n, 1).n_comparators for n in (32, 128)] == [31, 127]  # a tournament
    assert selection_network(128, 5).n_comparators < 3.5 * 128


@pytest.mark.parametrize("p", [1, 2])
def test_distances_are_one_matrix_product_of_the_unary_code(p):
    Xtr, ytr, Xte, _ = _wine()
    knn = build_knn(Xtr, ytr, 3, 3, 3, 8, p)
    bits = evaluate("quant", [apply_preprocess(knn.spec, Xte)], knn.graph["bits"].attrs)
    got = evaluate("qgemm", [bits], knn.graph["distances"].attrs)
    lq, lt = thermometer_levels(knn.spec, Xte), thermometer_levels(knn.spec, Xtr)
    np.testing.assert_array_equal(got, (np.abs(lq[:, None, :] - lt[None]) ** p).sum(axis=2))
    assert knn.graph.ops().count("qgemm") == 1  # no lookup before the distances
    # the corners reach the largest distance any query on the grid can have
    lc = thermometer_levels(knn.spec, knn.corners)
    worst = (np.abs(lc - lt) ** p).sum(axis=1)
    grid = np.arange(8)
    assert worst.max() == max((np.maximum(np.abs(grid[0] - t), np.abs(grid[-1] - t)) ** p).sum() for t in lt)


@pytest.mark.parametrize("p", [1, 2])
def test_close_to_scikit_learn(p):
    Xtr, ytr, Xte, yte = _wine(100)
    ours = KNeighborsClassifier(5, p=p).fit(Xtr, ytr)
    theirs = SkKNN(5, p=p).fit(Xtr, ytr)
    assert ours.score(Xte, yte) >= theirs.score(Xte, yte) - 0.06
    assert np.mean(ours.predict(Xte) == theirs.predict(Xte)) > 0.9
    np.testing.assert_allclose(ours.predict_proba(Xte).sum(axis=1), 1.0)


def _iris_small():
    """24 training samples of iris: the executed and the deployed tests share its circuit (and keys)."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    idx = np.random.RandomState(0).permutation(len(X))
    return X, y, idx[:24], idx[24:]


def test_simulate_equals_disable_and_execute_on_a_few_samples(fhe_config):
    X, y, tr, te = _iris_small()
    clf = KNeighborsClassifier(3, n_bits=3, distance_bits=6).fit(X[tr], y[tr])
    assert clf.quantized_module_.graph["distances_round"].attrs == {"lsbs": 2, "method": "exact"}
    clf.compile(X[tr], configuration=fhe_config)
    assert clf.quantized_module_.statistics["pbs_count"] >= clf.n_lookups_
    np.testing.assert_array_equal(clf.predict_proba(X[te], fhe="simulate"), clf.predict_proba(X[te]))
    clf.fhe_circuit.keygen()
    np.testing.assert_array_equal(clf.predict_proba(X[te[:2]], fhe="execute"), clf.predict_proba(X[te[:2]]))
    assert clf.score(X[te], y[te]) > clf.sklearn_model_.score(X[te], y[te]) - 0.15  # 24 samples, 6-bit distances


def test_far_queries_do_not_wrap():
    """The circuit is sized for the farthest query on the grid, not only for the calibration data."""
    Xtr, ytr, _, _ = _wine(40)
    clf = KNeighborsClassifier(3, distance_bits=6).fit(Xtr, ytr).compile(Xtr[:5])
    far = np.where(Xtr[:8] > 0, -50.0, 50.0)  # clipped by the client to the grid's far corners
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no OverflowRiskWarning
        np.testing.assert_array_equal(clf.predict(far, fhe="simulate"), clf.predict(far))


def test_pipeline_and_grid_search():
    X, y = load_wine(return_X_y=True)
    X, y = X[::3], y[::3]  # the circuit holds the whole training set: keep it small
    search = GridSearchCV(
        make_pipeline(StandardScaler(), KNeighborsClassifier()), {"kneighborsclassifier__n_neighbors": [1, 5]}, cv=3
    ).fit(X, y)
    assert search.best_score_ > 0.85
    best = search.best_estimator_
    best[-1].compile(best[0].transform(X))
    np.testing.assert_array_equal(best[-1].predict(best[0].transform(X[:20]), fhe="simulate"), best.predict(X[:20]))


def test_from_sklearn_model_keeps_the_training_set_and_parameters():
    Xtr, ytr, Xte, _ = _wine()
    sk = SkKNN(4, p=1).fit(Xtr, np.array(["a", "b", "c"])[ytr])
    clf = KNeighborsClassifier.from_sklearn_model(sk)
    assert (clf.n_neighbors, clf.p) == (4, 1) and clf.classes_.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(clf.fit_X_, Xtr)
    assert np.mean(clf.predict(Xte) == sk.predict(Xte)) > 0.85
    refit = clone(clf).fit(Xtr, np.array(["a", "b", "c"])[ytr])
    np.testing.assert_array_equal(refit.predict(Xte), clf.predict(Xte))
    with pytest.raises(ConfigurationError, match="takes a fitted sklearn.neighbors.KNeighborsClassifier, got SVC"):
        from sklearn.svm import SVC

        KNeighborsClassifier.from_sklearn_model(SVC())


def test_bad_settings_name_the_parameter():
    Xtr, ytr, _, _ = _wine(30)
    with pytest.raises(ConfigurationError, match="weights='distance' is not supported.*use weights='uniform'"):
        KNeighborsClassifier(weights="distance").fit(Xtr, ytr)
    with pytest.raises(ConfigurationError, match="metric='chebyshev' .*Euclidean"):
        KNeighborsClassifier(metric="chebyshev").fit(Xtr, ytr)
    with pytest.raises(ConfigurationError, match=r"metric='minkowski' \(p=3\) is not supported"):
        KNeighborsClassifier(p=3).fit(Xtr, ytr)
    with pytest.raises(InputValidationError, match="n_neighbors=31 is larger than the 30 training samples"):
        KNeighborsClassifier(31).fit(Xtr, ytr)
    with pytest.raises(ConfigurationError, match="2049 training samples.*at most 2048: fit on a subsample"):
        KNeighborsClassifier().fit(np.random.RandomState(0).rand(2049, 2), np.arange(2049) % 2)


def test_deployed_client_votes_as_the_estimator(tmp_path, fhe_config):
    X, y, tr, _ = _iris_small()
    clf = KNeighborsClassifier(3, n_bits=3, distance_bits=6).fit(X[tr], np.array(["s", "v", "g"])[y[tr]])
    clf.compile(X[tr], configuration=fhe_config)
    FHEModelDev(tmp_path, clf).save()
    client, server = FHEModelClient(tmp_path), FHEModelServer(tmp_path)
    out = server.run(client.quantize_encrypt_serialize(X[1:3]), client.get_serialized_evaluation_keys())
    np.testing.assert_array_equal(client.deserialize_decrypt_dequantize(out), clf.predict_proba(X[1:3], fhe="simulate"))
    np.testing.assert_array_equal(client.deserialize_decrypt_predict(out), clf.predict(X[1:3]))


def test_a_hostile_server_reply_cannot_break_the_vote():
    """Whatever classes a server returns, the client counts only valid indices."""
    out = np.array([[0, 1, 1], [2**40, -3, 1.5], [np.inf, -np.inf, 2]], dtype=np.float64)
    p = vote_probabilities(out, 3)
    np.testing.assert_allclose(p, [[1 / 3, 2 / 3, 0], [0, 0, 0], [0, 0, 1 / 3]])
    assert check_processing(None, {"kind": "classifier", "link": "vote", "classes": np.array([0, 1])})
    with pytest.raises(ArtifactError, match="unknown classifier link 'votes'"):
        check_processing(None, {"kind": "classifier", "link": "votes", "classes": np.array([0, 1])})


@parametrize_with_checks([KNeighborsClassifier()])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


def test_compile_warns_when_the_evaluation_keys_are_huge():
    """At the default error budget a 64-sample, k=3 circuit asks for 8.7 GB of keys (measured: 134 s
    of keygen, 8.6 GB peak memory). compile says so, with the remedy."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from qfhe.errors import LatencyWarning

    X, y = load_breast_cancer(return_X_y=True)
    Xtr, _, ytr, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    X, _, y, _ = train_test_split(StandardScaler().fit_transform(Xtr), ytr, train_size=64, random_state=0, stratify=ytr)
    clf = KNeighborsClassifier(3).fit(X, y)  # benchmarks/knn.py's N=64, k=3
    with pytest.warns(LatencyWarning, match=r"evaluation keys of this circuit take \d+\.\d GB .*p_error=1e-3"):
        clf.compile(X)
