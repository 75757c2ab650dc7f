"""Issue 23's repros: estimators, calibration, pruning and tuning on data nobody here chose.

Each test reproduces what a new user met (silently wrong results, errors that named the wrong fix)
and checks the behaviour that replaced it."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.model_selection import train_test_split

import qfhe
from qfhe.errors import CalibrationWarning, ConfigurationError, SaturationError, SaturationWarning
from qfhe.sklearn import LinearRegression, LogisticRegression, NeuralNetClassifier


def _recorded(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn()
    return out, w


def _train(model, X, y, epochs=100, loss=torch.nn.functional.cross_entropy):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    for _ in range(epochs):
        opt.zero_grad()
        loss(model(Xt), yt).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def digits01():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16, y, test_size=0.2, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def digits_mlp(digits01):
    Xtr, Xte, ytr, yte = digits01
    torch.manual_seed(0)
    return _train(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)), Xtr, ytr)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


# -- 2. the accumulator bound follows the bit-widths -------------------------------------------------
def test_4_bit_net_gets_an_accumulator_bound_that_keeps_weights(digits01):
    Xtr, Xte, ytr, yte = digits01
    clf = NeuralNetClassifier(n_w_bits=4, n_a_bits=4, max_epochs=20, random_state=0).fit(Xtr, ytr)
    first = clf.module_.layers[0].weight
    kept = int((first != 0).sum(1).max())
    print(
        f"n_w_bits=n_a_bits=4: n_accum_bits_={clf.n_accum_bits_}, {kept} of 64 weights per neuron, "
        f"accuracy {clf.score(Xte, yte):.3f}"
    )
    assert clf.n_accum_bits_ == 12 and kept >= 12
    assert clf.score(Xte, yte) >= 0.9  # was 0.176 with the fixed 8-bit bound


def test_explicit_bound_that_collapses_the_model_is_refused_with_the_numbers(digits01):
    Xtr, _, ytr, _ = digits01
    with pytest.raises(
        ConfigurationError,
        match=r"n_accum_bits=8 would keep at most 2 of 64 weights per neuron in "
        r"layer 'layers.0' \(n_w_bits=4, n_a_bits=4.*n_accum_bits='auto' "
        r"\(12 bits here",
    ):
        NeuralNetClassifier(n_w_bits=4, n_a_bits=4, n_accum_bits=8, max_epochs=1).fit(Xtr, ytr)


# -- 3. calibration outliers, percentile calibration, saturation at inference -------------------------
def test_one_bad_calibration_row_is_named_and_percentile_calibration_survives_it(digits01, digits_mlp):
    Xtr, Xte, ytr, yte = digits01
    bad = np.vstack([Xtr, np.full((1, 64), 50.0)])
    clean = qfhe.quantize_torch_model(digits_mlp, Xtr, n_bits=6)
    qm, w = _recorded(lambda: qfhe.quantize_torch_model(digits_mlp, bad, n_bits=6))
    outliers = [
        str(x.message) for x in w if issubclass(x.category, CalibrationWarning) and "outliers" in str(x.message)
    ]
    assert any("input features dominated by outliers: feature" in m for m in outliers)
    assert any("calibrated ranges dominated by outliers: '1'" in m for m in outliers)  # the hidden ReLU too
    robust, w = _recorded(lambda: qfhe.quantize_torch_model(digits_mlp, bad, n_bits=6, calibration="percentile"))
    assert not [x for x in w if "outliers" in str(x.message)]
    acc = {
        name: float((m.forward(Xte).argmax(1) == yte).mean())
        for name, m in (("clean", clean), ("minmax", qm), ("percentile", robust))
    }
    print("digits MLP calibrated with a row of 50s:", acc)
    assert acc["percentile"] >= acc["clean"] - 0.01


def test_one_outlying_value_warns_with_a_shared_input_quantizer(digits01, digits_mlp):
    Xtr = digits01[0]
    bad = np.vstack([Xtr, np.r_[50.0, np.zeros(63)][None]])
    _, w = _recorded(lambda: qfhe.quantize_torch_model(digits_mlp, bad, n_bits=6, per_feature_inputs=False))
    assert any("calibrated ranges dominated by outliers: 'input_1'" in str(x.message) for x in w)
    with pytest.raises(ConfigurationError, match=r"calibration must be one of \('minmax', 'percentile'\)"):
        qfhe.quantize_torch_model(digits_mlp, Xtr, calibration="p99")


def test_hidden_activation_saturation_is_counted_and_strict_raises():
    m = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0], [0.5, 0.5]]))
        m[0].bias.zero_()
        m[2].weight.copy_(torch.tensor([[1.0, 1.0, 0.1]]))
        m[2].bias.zero_()
    t = np.linspace(-1, 1, 200)
    # calibrated on x1 = x2; accumulators sized for the whole input box, so nothing wraps
    qm = qfhe.compile_torch_model(m, np.stack([t, t], 1), n_bits=6, bitwidth_method="interval")
    x = np.array([[0.9, -0.9]])  # inside the calibrated input box
    float_out = float(m(torch.tensor(x, dtype=torch.float32)).detach())
    clear, w = _recorded(lambda: qm.forward(x))
    assert abs(float_out - 1.8) < 1e-6 and abs(float(clear[0, 0]) - float_out) > 0.5
    assert any(issubclass(x.category, SaturationWarning) and "layer '0': 1 of 1" in str(x.message) for x in w)
    simulated, _ = _recorded(lambda: qm.forward(x, fhe="simulate"))
    np.testing.assert_array_equal(simulated, clear)
    with pytest.raises(SaturationError, match="hidden activations beyond their calibrated range"):
        qm.forward(x, strict=True)
    # calibrated data saturate nothing
    _, w = _recorded(lambda: qm.forward(np.stack([t, t], 1)))
    assert not [x for x in w if issubclass(x.category, SaturationWarning)]


def test_calibration_margin_widens_the_input_quantizer(digits01, digits_mlp):
    Xtr = digits01[0]
    narrow = qfhe.quantize_torch_model(digits_mlp, Xtr, n_bits=6, per_feature_inputs=False)
    wide = qfhe.quantize_torch_model(digits_mlp, Xtr, n_bits=6, per_feature_inputs=False, calibration_margin=0.25)
    assert wide._input_node.attrs["scale"] == pytest.approx(1.5 * narrow._input_node.attrs["scale"], rel=0.02)


# -- 9, 10, 11: raw inputs, per-feature input quantization, compile keeps fit's quantizers ------------
def test_estimator_quantized_module_takes_raw_features(cancer):
    Xtr, Xte, ytr, yte = cancer
    clf = NeuralNetClassifier(max_epochs=20, random_state=0).fit(Xtr, ytr)
    raw = (clf.quantized_module_.forward(Xte).argmax(1) == yte).mean()
    assert raw == pytest.approx(clf.score(Xte, yte)) and raw >= 0.9  # was 0.37 on raw features


def test_raw_tabular_features_are_quantized_per_feature(cancer):
    Xtr, Xte, ytr, yte = cancer
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.BatchNorm1d(30), torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
    )
    net = _train(net, Xtr, ytr, epochs=150)
    float_acc = float((net(torch.tensor(Xte, dtype=torch.float32)).argmax(1).numpy() == yte).mean())
    qm = qfhe.compile_torch_model(net, Xtr, n_bits=6)
    acc = float((qm.forward(Xte, fhe="simulate").argmax(1) == yte).mean())
    print(f"raw breast_cancer float MLP: float {float_acc:.3f}, per-feature inputs {acc:.3f}")
    assert acc >= float_acc - 0.03  # was 0.671 against 0.958
    _, w = _recorded(lambda: qfhe.quantize_torch_model(net, Xtr, n_bits=6, per_feature_inputs=False))
    assert any("input features get at most 2 of the 64 input codes" in str(x.message) for x in w)


def test_linear_compile_keeps_the_quantizers_of_fit_and_deepcopy_keeps_the_circuit():
    X, y = load_diabetes(return_X_y=True)
    reg = LinearRegression(n_bits=8).fit(X, y)
    before = reg.predict(X)
    reg.compile(X[:10])
    np.testing.assert_array_equal(reg.predict(X), before)  # moved by up to 94 before
    twin = copy.deepcopy(reg)
    assert twin.quantized_module_.is_compiled
    np.testing.assert_array_equal(twin.predict(X[:3], fhe="simulate"), reg.predict(X[:3], fhe="simulate"))
    clf = LogisticRegression().fit(*load_breast_cancer(return_X_y=True))
    assert clf.score(*load_breast_cancer(return_X_y=True)) >= 0.94


# -- 4. find_best_p_error that cannot meet the tolerance; a circuit without lookups ------------------
def test_p_error_search_that_fails_says_so_and_keeps_the_safest_value():
    from qfhe.errors import TuningWarning

    rs = np.random.RandomState(0)
    X = rs.randn(200, 6)
    y = rs.randint(0, 2, 200)  # labels the model cannot predict: lookup errors flip its near-ties
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    qm = qfhe.quantize_torch_model(m, X, n_bits=6, rounding_threshold_bits=4)
    best, w = _recorded(
        lambda: qfhe.find_best_p_error(
            qm, X, y, max_metric_loss=0.0, max_compilations=3, p_error_range=(0.05, 0.3), progress=False
        )
    )
    assert not best.found and best.p_error == pytest.approx(min(r["p_error"] for r in best.history), rel=1e-3)
    assert not np.isnan(best.score) and qm.is_compiled
    assert any(issubclass(x.category, TuningWarning) and "kept the safest value tried" in str(x.message) for x in w)
    lin = qfhe.quantize_torch_model(torch.nn.Linear(6, 2), X, n_bits=6)
    res, w = _recorded(lambda: qfhe.find_best_p_error(lin, X, y, progress=False))
    assert res.found and res.n_compilations == 1 and "no table lookup" in res.note
    assert any("p_error has no effect" in str(x.message) for x in w)


def test_tolerances_accept_numpy_scalars_and_auto_is_case_insensitive():
    X = np.random.RandomState(0).randn(120, 4)
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    y = X[:, 0] - X[:, 1]
    # a regression target picks r2 by itself (it was 'accuracy', which failed inside scikit-learn)
    qm = qfhe.quantize_torch_model(
        m, X, n_bits=6, rounding_threshold_bits="AUTO", X_val=X, y_val=y, rounding_tolerance=np.float32(0.05)
    )
    assert qm.rounding_plan.metric == "r2"
    best = qfhe.find_best_p_error(qm, X, y, max_metric_loss=np.float32(0.05), max_compilations=2, progress=False)
    assert best.p_error > 0


# -- metric and y_val kinds ---------------------------------------------------------------------------
def test_metric_and_targets_that_do_not_fit_are_refused_by_name():
    X, y = load_breast_cancer(return_X_y=True)
    clf = LogisticRegression().fit(X, y)
    with pytest.raises(
        ConfigurationError, match=r"metric='r2' needs a regressor, but LogisticRegression predicts class"
    ):
        qfhe.find_best_p_error(clf, X, y, metric="r2", progress=False)
    reg = LinearRegression().fit(X, y.astype(float) * 2.5)
    with pytest.raises(ConfigurationError, match=r"metric='accuracy' needs a classifier, but LinearRegression"):
        qfhe.find_best_p_error(reg, X, y, metric="accuracy", progress=False)
    from qfhe.errors import InputValidationError

    with pytest.raises(InputValidationError, match="labels not seen in fit: 7"):
        qfhe.find_best_p_error(clf, X, np.where(y == 1, 7, y), progress=False)
    qm = qfhe.quantize_torch_model(torch.nn.Linear(30, 2), X, n_bits=6)
    with pytest.raises(ConfigurationError, match=r"metric='accuracy' .* integer class indices .*LabelEncoder"):
        qfhe.find_best_p_error(qm, X, np.where(y == 1, "yes", "no"), progress=False)
    with pytest.raises(
        ConfigurationError, match=r"metric='r2' compares y_val with the model's outputs, shape \(569, 2\)"
    ):
        qfhe.find_best_p_error(qm, X, y, metric="r2", progress=False)
    from qfhe.tune.metrics import make_target

    one_hot = np.eye(2)[y]
    target = make_target(qm, X, one_hot, "doc", "accuracy")
    np.testing.assert_array_equal(target.y, y)  # one-hot labels are class indices
    seen = []
    target = make_target(qm, X, y, "doc", None)  # a callable gets labels for labels
    seen.append(target.predict(target.reference_codes()).shape)
    assert seen == [(569,)]


# -- 5, 6, 7: pruning -----------------------------------------------------------------------------------
def test_high_pruning_ratios_keep_one_neuron_and_pruned_estimators_unpickle():
    import pickle

    from qfhe.prune import prune_structured

    X, y = load_breast_cancer(return_X_y=True)
    clf = NeuralNetClassifier(hidden_sizes=(16, 16), max_epochs=3, random_state=0).fit(X, y)
    small = clf.prune(X, y, 0.95, max_epochs=1)  # returned the original widths
    assert small.hidden_sizes == (1, 1)
    again = pickle.loads(pickle.dumps(small))  # "size mismatch for layers.0.weight"
    np.testing.assert_array_equal(again.predict(X[:20]), small.predict(X[:20]))
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    assert prune_structured(m, torch.randn(2, 8), ratio=0.97)[0].out_features == 1
    with pytest.raises(ConfigurationError, match=r"example_input must have shape \(n_samples, ...\), got shape \(8,\)"):
        prune_structured(m, np.zeros(8), ratio=0.5)


def test_fine_tune_picks_a_regression_loss_and_refuses_a_tuple():
    from qfhe.prune import fine_tune

    torch.manual_seed(0)
    X = torch.randn(128, 3)
    y = 2 * X[:, 0]
    m = torch.nn.Linear(3, 1)
    h = fine_tune(m, [(X, y)], epochs=30, lr=0.05, progress=False)
    assert h[-1]["loss"] < 0.5 * h[0]["loss"]  # trained nothing (loss 0.0) with cross-entropy
    with pytest.raises(ConfigurationError, match="cross_entropy over a model with one output is always 0"):
        fine_tune(m, [(X, y)], loss_fn=torch.nn.functional.cross_entropy, progress=False)
    with pytest.raises(ConfigurationError, match=r"got one \(X, y\) tuple.*pass \[\(X, y\)\]"):
        fine_tune(m, (X, y), progress=False)


# -- 8. conflicting settings ------------------------------------------------------------------------------
def test_conflicting_settings_are_refused():
    from concrete import fhe
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression
    from sklearn.linear_model import RidgeCV

    from qfhe.sklearn import Ridge
    from sklearn.base import clone

    X = np.random.RandomState(0).randn(100, 4)
    y = (X[:, 0] > 0).astype(int)
    qm = qfhe.quantize_torch_model(torch.nn.Linear(4, 2), X, n_bits=6)
    with pytest.raises(
        ConfigurationError,
        match=r"given twice: configuration sets p_error=0.05 and the arguments say "
        r"p_error=0.01",
    ):
        qm.compile(configuration=fhe.Configuration(p_error=0.05), p_error=0.01)
    sk = SkLogisticRegression(l1_ratio=0.5, solver="saga", C=0.5, max_iter=3000).fit(X, y)
    q = LogisticRegression.from_sklearn_model(sk, X)
    assert (q.l1_ratio, q.solver, q.C) == (0.5, "saga", 0.5)
    np.testing.assert_allclose(clone(q).fit(X, y).coef_, sk.coef_, atol=1e-2)
    cv = RidgeCV(alphas=(0.1, 1.0, 10.0)).fit(X, X[:, 0])
    r = Ridge.from_sklearn_model(cv, X)
    assert r.alpha == cv.alpha_
    with pytest.raises(ConfigurationError, match=r"got RidgeCV: use qfhe.sklearn.Ridge.from_sklearn_model"):
        LinearRegression.from_sklearn_model(cv, X)
    from sklearn.linear_model import HuberRegressor, Lasso

    with pytest.raises(ConfigurationError, match="got Lasso: use qfhe.sklearn.Lasso.from_sklearn_model"):
        LinearRegression.from_sklearn_model(Lasso().fit(X, X[:, 0]), X)
    with pytest.raises(ConfigurationError, match="got HuberRegressor: qfhe has no class that computes it"):
        LinearRegression.from_sklearn_model(HuberRegressor().fit(X, X[:, 0]), X)
    from qfhe.errors import InputValidationError

    with pytest.raises(InputValidationError, match="y has one class"):
        LogisticRegression().fit(X, np.zeros(100))


# -- crashes and messages ---------------------------------------------------------------------------------
class _Index(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.kind, self.idx, self.fc = kind, torch.tensor([0, 2]), torch.nn.Linear(2, 2)

    def forward(self, x):
        if self.kind == "attr":
            return self.fc(x[:, self.idx])
        if self.kind == "index_select":
            return self.fc(torch.index_select(x, 1, self.idx))
        return self.fc(x[:, torch.tensor([0, 2])])


class _Reduce(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        # Seeded: built at collection time, the weights would otherwise follow whatever ran before.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.kind, self.fc = kind, torch.nn.Linear(4, 6)

    def forward(self, x):
        h = torch.relu(self.fc(x)).reshape(-1, 2, 3)
        if self.kind == "sum":
            return h.sum(1)
        if self.kind == "mean":
            return h.mean(dim=1)
        if self.kind == "torch.sum":
            return torch.sum(h, 2)
        if self.kind == "amax":
            return h.amax(1)
        return h.amin(dim=2, keepdim=True)


@pytest.mark.parametrize(
    "model",
    [
        _Index("attr"),
        _Index("index_select"),
        _Index("literal"),
        _Reduce("sum"),
        _Reduce("mean"),
        _Reduce("torch.sum"),
        _Reduce("amax"),
        _Reduce("amin"),
    ],
    ids=lambda m: m.kind,
)
def test_constant_indices_and_reductions_compile_exactly(model):
    X = np.random.RandomState(0).randn(100, 4)
    qm = qfhe.compile_torch_model(model, X, n_bits=6, rounding_threshold_bits=6)
    ref = model(torch.tensor(X, dtype=torch.float32)).detach().numpy()
    clear = qm.forward(X)
    assert clear.shape == ref.shape
    # 6-bit quantization of the hidden activations: a few steps of their range, whatever the reduction
    # leaves of it (a min over ReLUs spans a small part of it).
    if isinstance(model, _Reduce):
        hidden = np.ptp(torch.relu(model.fc(torch.tensor(X, dtype=torch.float32))).detach().numpy())
        assert np.abs(clear - ref).max() <= 4 * hidden / 63 * (3 if model.kind in ("sum", "torch.sum") else 1)
    else:
        assert np.abs(clear - ref).max() <= 0.15 * np.ptp(ref)
    np.testing.assert_array_equal(qm.forward(X[:8], fhe="simulate"), clear[:8])


def test_embedding_and_dataloader_name_the_real_cause():
    from qfhe.errors import InputsetError, UnsupportedOpError

    class Emb(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.e, self.fc = torch.nn.Embedding(10, 3), torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.e(x).mean(1))

    with pytest.raises(UnsupportedOpError, match=r"module 'e' \(Embedding\) looks rows up by integer indices.*one-hot"):
        qfhe.compile_torch_model(Emb(), np.random.randint(0, 10, (50, 4)))
    data = torch.utils.data.TensorDataset(torch.randn(40, 4))
    with pytest.raises(InputsetError, match="inputset is a torch DataLoader; qfhe needs the samples themselves"):
        qfhe.compile_torch_model(torch.nn.Linear(4, 2), torch.utils.data.DataLoader(data, batch_size=8))


def test_conv_bn_layer_keeps_its_name_in_every_report():
    from qfhe.prune import accumulator_report

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn, self.fc = torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(144, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.c1(x))).flatten(1))

    m = M().eval()
    X = np.random.RandomState(0).randn(50, 1, 8, 8)
    names = [r["layer"] for r in accumulator_report(m, 10, X[:2], n_bits=4)]
    assert [r["layer"] for r in qfhe.quantize_torch_model(m, X, n_bits=4).bitwidth_report()] == names == ["c1", "fc"]


def test_concrete_ml_shape_operations_and_multi_input_qat_models_compile_exactly():
    import brevitas.nn as qnn

    class ShapeOperationsNet(torch.nn.Module):  # Concrete ML's, with its channel shuffle
        def __init__(self, is_qat):
            super().__init__()
            self.is_qat = is_qat
            if is_qat:
                self.input_quant = qnn.QuantIdentity(bit_width=8)

        def forward(self, x):
            if self.is_qat:
                x = self.input_quant(x)
            c1, c2 = x.chunk(2, dim=1)
            x = torch.cat((c1, c2), dim=1)
            batchsize, num_channels, height, width = x.size()
            x = x.reshape(batchsize, 2, num_channels // 2, height, width)
            return torch.transpose(x, 1, 2).contiguous().reshape(batchsize, -1, height, width)

    class MultiInputNNDifferentSize(torch.nn.Module):  # Concrete ML's, is_brevitas_qat=True, n_bits=2
        def __init__(self):
            super().__init__()
            self.quant1, self.quant2, self.quant3 = (qnn.QuantIdentity(bit_width=2) for _ in range(3))
            self.layer1 = qnn.QuantLinear(5, 5, bias=False, weight_bit_width=2)
            self.layer2 = qnn.QuantLinear(10, 5, bias=False, weight_bit_width=2)

        def forward(self, x, y):
            return self.layer1(self.quant3(self.layer1(self.quant1(x)) + self.layer2(self.quant2(y))))

    X = np.random.RandomState(0).uniform(size=(100, 2, 2, 2))
    for qat in (False, True):
        m = ShapeOperationsNet(qat)
        qm = qfhe.compile_brevitas_qat_model(m, X) if qat else qfhe.compile_torch_model(m, X, n_bits=3)
        m.eval()
        ref = m(torch.tensor(X, dtype=torch.float32))
        ref = getattr(ref, "value", ref).detach().numpy()
        clear = qm.forward(X)
        np.testing.assert_array_equal(qm.forward(X[:8], fhe="simulate"), clear[:8])
        assert np.abs(clear - ref).max() <= (1e-5 if qat else 0.1)
    torch.manual_seed(0)
    m = MultiInputNNDifferentSize()
    X1, X2 = np.random.RandomState(1).randn(100, 5), np.random.RandomState(2).randn(100, 10)
    qm = qfhe.compile_brevitas_qat_model(m, (X1, X2))
    m.eval()
    ref = m(torch.tensor(X1, dtype=torch.float32), torch.tensor(X2, dtype=torch.float32)).detach().numpy()
    clear = qm.forward(X1, X2)
    np.testing.assert_allclose(clear, ref, atol=1e-5)  # bit for bit up to float32
    np.testing.assert_array_equal(qm.forward(X1[:8], X2[:8], fhe="simulate"), clear[:8])


# -- 1. defaults on small tabular data ----------------------------------------------------------------------
def test_default_classifier_holds_on_iris():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    clf = NeuralNetClassifier(random_state=0).fit(Xtr, ytr)
    assert clf.module_.spec["hidden_sizes"] == (64, 64)  # 0.5 x 4 features gave 2 neurons
    assert clf.score(Xte, yte) >= 0.9  # was 0.63


# -- noise -----------------------------------------------------------------------------------------------------
def test_no_noise_from_prune_qat_inputs_or_cross_validation():
    import brevitas.nn as qnn
    from sklearn.model_selection import GridSearchCV

    from qfhe.errors import InputClippingWarning, OverflowRiskWarning

    X, y = load_breast_cancer(return_X_y=True)
    clf = NeuralNetClassifier(hidden_sizes=(8, 8), max_epochs=2, random_state=0).fit(X, y)
    _, w = _recorded(lambda: clf.prune(X, y, 0.5, max_epochs=1))
    assert not [
        str(x.message)
        for x in w
        if "brevitas" in str(x.message).lower() or "Unwrapped" in str(x.message) or "fast_hadamard" in str(x.message)
    ]
    m = torch.nn.Sequential(
        qnn.QuantIdentity(bit_width=4, return_quant_tensor=True), qnn.QuantLinear(30, 2, bias=True, weight_bit_width=4)
    )
    qm = qfhe.compile_brevitas_qat_model(m, X[:100] / X.max(0))
    _, w = _recorded(lambda: qm.forward(X[100:200]))
    assert not [x for x in w if issubclass(x.category, InputClippingWarning)]  # its trained quantizer clips
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=3)
    _, w = _recorded(lambda: search.fit(X, y))
    assert not [x for x in w if issubclass(x.category, OverflowRiskWarning)]


def test_wide_unrounded_lookups_get_a_latency_warning():
    from qfhe.errors import LatencyWarning

    m = torch.nn.Sequential(torch.nn.Linear(40, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    X = np.random.RandomState(0).randn(100, 40)
    _, w = _recorded(lambda: qfhe.quantize_torch_model(m, X, n_bits=6))
    assert any(issubclass(x.category, LatencyWarning) and "rounding_threshold_bits=6" in str(x.message) for x in w)
    _, w = _recorded(lambda: qfhe.quantize_torch_model(m, X, n_bits=6, rounding_threshold_bits=6))
    assert not [x for x in w if issubclass(x.category, LatencyWarning)]


# -- what a scikit-learn user reaches for ------------------------------------------------------------------------
def test_sample_weight_class_weight_decision_function_fit_benchmark_and_pandas():
    pd = pytest.importorskip("pandas")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    assert isinstance(X, pd.DataFrame)
    w = np.where(y == 0, 5.0, 1.0)
    clf, twin = NeuralNetClassifier(max_epochs=10, random_state=0, class_weight="balanced").fit_benchmark(
        X, y, sample_weight=w
    )
    assert list(clf.feature_names_in_[:2]) == ["mean radius", "mean texture"]
    assert type(twin[-1]).__name__ == "MLPClassifier" and twin.score(X, y) > 0.9
    assert clf.decision_function(X.iloc[:3]).shape == (3,)  # two classes: one score, as in scikit-learn
    assert ((clf.decision_function(X.iloc[:3]) > 0).astype(int) == clf.predict(X.iloc[:3])).all()
    plain = NeuralNetClassifier(max_epochs=10, random_state=0).fit(X, y)
    # the weights move the model: class 0 (weighted up) gets more of the predictions
    assert (clf.predict(X) == 0).sum() > (plain.predict(X) == 0).sum()
    lr, sk = LogisticRegression().fit_benchmark(X, y, sample_weight=w)
    np.testing.assert_allclose(lr.coef_, sk.coef_)
    assert lr.score(X, y) >= sk.score(X, y) - 0.02
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        lr.predict(X.to_numpy()[:2])


def test_neural_net_auto_rounding_on_fit_data_or_held_out_data():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    clf = NeuralNetClassifier(max_epochs=10, rounding_threshold_bits="auto", random_state=0).fit(Xtr, ytr)
    plan = clf.quantized_module_.rounding_plan
    assert plan is not None and plan.metric == "accuracy"
    clf.compile(Xtr, X_val=Xte, y_val=yte)  # searched again, on held-out data
    held_out = clf.quantized_module_.rounding_plan
    assert held_out is not plan and held_out.reference_score == pytest.approx(clf.score(Xte, yte), abs=0.02)
    assert clf.score(Xte, yte, fhe="simulate") >= held_out.reference_score - 0.03
    with pytest.raises(ConfigurationError, match="X_val and y_val are only used by rounding_threshold_bits='auto'"):
        NeuralNetClassifier(max_epochs=1).fit(Xtr, ytr).compile(Xtr, X_val=Xte, y_val=yte)
