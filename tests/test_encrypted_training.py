"""SGDClassifier(fit_encrypted=True): gradient steps on encrypted mini-batches."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.linear_model as sklm
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from qfhe.errors import ConfigurationError
from qfhe.sklearn import SGDClassifier

ENCRYPTED = {"loss": "log_loss", "learning_rate": "constant", "eta0": 1.0, "fit_encrypted": True, "random_state": 0}


def _small(n=48, seed=0):
    X = np.random.RandomState(seed).randn(n, 3) * [1.0, 10.0, 0.1]
    return X, (X[:, 0] - X[:, 1] / 10 + X[:, 2] * 5 > 0).astype(int)


def test_close_to_scikit_learn_on_breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    ours = SGDClassifier(max_iter=1, **ENCRYPTED).fit(Xtr, ytr)
    scaler = StandardScaler().fit(Xtr)
    theirs = sklm.SGDClassifier(loss="log_loss", random_state=0).fit(scaler.transform(Xtr), ytr)
    assert ours.training_steps_ == 57  # one epoch of 455 samples in batches of 8
    assert ours.score(Xte, yte) >= theirs.score(scaler.transform(Xte), yte) - 0.06


def test_steps_follow_the_gradient_of_the_log_loss():
    """Each circuit call moves the weights as a float mini-batch step would (up to quantization)."""
    import torch

    from qfhe.sklearn.encrypted_training import SGDStep, fit_encrypted

    X, y = _small()
    seen = []
    fit_encrypted(X, y, 8, 1, 0.5, 0.0, (-4.0, 4.0), 8, 0, "disable", callback=lambda s, c, b: seen.append((c, b)))
    assert len(seen) == 6
    mean, scale = (X.max(0) + X.min(0)) / 2, (X.max(0) - X.min(0)) / 2
    Xs = (X - mean) / scale
    order = np.random.RandomState(0).permutation(len(X))
    w, b = np.zeros(3), 0.0
    step = SGDStep(8, 0.5, 0.0).double()
    for i, (coef, intercept) in enumerate(seen[:3]):
        rows = order[8 * i : 8 * i + 8]
        out = step(*(torch.tensor(a[None]) for a in (Xs[rows], y[rows, None] * 1.0, w[:, None], np.array([[b]]))))
        w, b = out[0, :3].detach().numpy(), float(out[0, 3])
        np.testing.assert_allclose(coef[0] * scale, w, atol=0.15)
        assert abs(intercept[0] + coef[0] @ mean - b) < 0.15


def test_simulate_equals_disable_and_execute(fhe_config):
    # 3-bit values in batches of 4: 92 lookups and 1.3 GB of keys at p_error 1e-4 (at 5 bits, batches of 8
    # and the default error budget the keys take 14.7 GB and exhausted the test machine's memory)
    X, y = _small(8)
    kwargs = dict(ENCRYPTED, max_iter=1, batch_size=4, training_n_bits=3)
    clear = SGDClassifier(**kwargs).fit(X, y, fhe="disable")
    simulated = SGDClassifier(**kwargs).fit(X, y, fhe="simulate", configuration=fhe_config, p_error=1e-4)
    executed = SGDClassifier(**kwargs).fit(X, y, fhe="execute", configuration=fhe_config, p_error=1e-4)
    np.testing.assert_array_equal(simulated.coef_, clear.coef_)
    np.testing.assert_array_equal(executed.coef_, simulated.coef_)
    np.testing.assert_array_equal(executed.intercept_, simulated.intercept_)
    assert executed.training_steps_ == 2
    assert executed.compile(X).quantized_module_.statistics["pbs_count"] == 0  # inference: 0 PBS as ever


def test_settings_it_cannot_train_are_refused():
    X, y = _small()
    with pytest.raises(ConfigurationError, match=r"needs loss='log_loss' .*got 'hinge'"):
        SGDClassifier(**{**ENCRYPTED, "loss": "hinge"}).fit(X, y)
    with pytest.raises(ConfigurationError, match=r"needs learning_rate='constant' .*got 'optimal'"):
        SGDClassifier(**{**ENCRYPTED, "learning_rate": "optimal"}).fit(X, y)
    with pytest.raises(ConfigurationError, match="trains a binary model; y has 3 classes"):
        SGDClassifier(**ENCRYPTED).fit(X, np.arange(len(X)) % 3)
    with pytest.raises(ConfigurationError, match="takes no sample_weight"):
        SGDClassifier(**ENCRYPTED).fit(X, y, sample_weight=np.ones(len(X)))
    with pytest.raises(ConfigurationError, match=r"parameters_range must be \(low, high\) with low < 0 < high"):
        SGDClassifier(**{**ENCRYPTED, "parameters_range": (1.0, 2.0)}).fit(X, y)
    with pytest.raises(ConfigurationError, match="penalty='l2' or None; got 'l1'"):
        SGDClassifier(**{**ENCRYPTED, "penalty": "l1"}).fit(X, y)
    with pytest.raises(
        ConfigurationError, match="fhe='simulate' trains on encrypted data only with fit_encrypted=True"
    ):
        SGDClassifier().fit(X, y, fhe="simulate")
