"""Frontend coverage (issue 13): every group compiles, runs exactly in simulation, and stays close
to the float model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import qfhe
from qfhe.errors import UnsupportedOpError

RS = np.random.RandomState(0)
X4 = RS.randn(200, 4)  # drawn at import: the same in every test and order


def _float(model, *X):
    with torch.no_grad():
        return model.eval()(*[torch.tensor(x, dtype=torch.float32) for x in X]).numpy()


def _check_exact_and_close(qm, model, X, rel=0.1, rel_mean=0.02):
    """simulate == disable bit for bit; the quantized output within ``rel`` of the output range
    everywhere and within ``rel_mean`` on average."""
    clear = qm.forward(X)
    np.testing.assert_array_equal(qm.forward(X, fhe="simulate"), clear)
    ref = _float(model, X)
    err, span = np.abs(clear - ref), np.ptp(ref)
    assert err.max() <= rel * span and err.mean() <= rel_mean * span, (err.max(), err.mean(), span)
    return clear


class Activations(nn.Module):
    """The activations issue 13 lists, each on its own branch of one linear layer."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.prelu = nn.PReLU(4, init=0.1)
        self.mods = nn.ModuleList(
            [
                nn.Hardshrink(0.3),
                nn.Softshrink(0.2),
                nn.Threshold(0.1, -0.5),
                nn.RReLU(0.1, 0.3),
                nn.Tanhshrink(),
                nn.LogSigmoid(),
                nn.Softsign(),
                nn.CELU(0.5),
                nn.SELU(),
                nn.Mish(),
                nn.ReLU6(),
                nn.Hardtanh(-0.5, 0.5),
            ]
        )

    def forward(self, x):
        y = self.fc(x)
        outs = [
            self.prelu(y),
            torch.clamp(y, -0.5, 0.7),
            torch.abs(y),
            torch.neg(y),
            torch.exp(y / 2),
            torch.log1p(y.abs()),
            y**2,
            torch.erf(y),
        ] + [m(y) for m in self.mods]
        return torch.cat(outs, dim=1)


def test_activations_compile_exactly(fhe_config):
    torch.manual_seed(0)
    m = Activations()
    qm = qfhe.compile_torch_model(m, X4, n_bits=7, rounding_threshold_bits=6, configuration=fhe_config)
    assert sum(n.op == "tlu" for n in qm.graph.nodes) >= 20
    # Threshold and Hardshrink jump (by 0.6 and 0.3): an input one step from the jump lands on the
    # other side, so their worst case is the jump; everything else stays within a few steps.
    _check_exact_and_close(qm, m, X4[:64], rel=0.11, rel_mean=0.01)


class Constants(nn.Module):
    """Stored tensors and constant expressions: folded, never encrypted."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4, bias=False)
        self.register_buffer("bias_vec", torch.tensor([0.5, -1.0, 2.0, 0.0]))
        self.scale = nn.Parameter(torch.tensor([1.0, 2.0, -1.0, 0.5]))

    def forward(self, x):
        y = torch.relu(self.fc(x) + self.bias_vec)
        return (y - torch.ones(4) * 0.25) * self.scale + 1.0 / (1.0 + y)


def test_constants_fold_and_difference_of_encrypted_tensors(fhe_config):
    torch.manual_seed(0)
    m = Constants()
    qm = qfhe.compile_torch_model(m, X4, n_bits=7, configuration=fhe_config)
    # the buffer became the first layer's bias: no extra node for it
    assert qm.float_graph.ops()[:3] == ["input", "gemm", "activation"]
    _check_exact_and_close(qm, m, X4[:64])

    class Diff(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            return torch.relu(self.a(x)) - torch.sigmoid(self.b(x))

    d = Diff()
    qd = qfhe.compile_torch_model(d, X4, n_bits=6, rounding_threshold_bits=5, configuration=fhe_config)
    assert "sub" in qd.graph.ops()
    _check_exact_and_close(qd, d, X4[:64])


def test_constant_that_varies_across_samples_is_refused():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("c", torch.ones(2, 4))

        def forward(self, x):
            return torch.relu(x + self.c)

    with pytest.raises(
        UnsupportedOpError, match=r"node 'add' .* constant of shape \(2, 4\) that differs across samples"
    ):
        qfhe.compile_torch_model(M(), X4)


class Shapes(nn.Module):
    """transpose, permute, chunk, split, stack, unsqueeze/squeeze, flatten(start_dim), slicing,
    expand, repeat, F.pad: all only move encrypted values."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):  # (4, 6)
        y = torch.relu(self.fc(x))
        a, b = y.chunk(2, dim=2)
        c, d = torch.split(y, [1, 3], dim=1)
        s = torch.stack([b, a], dim=1).flatten(start_dim=1)
        t = y.transpose(1, 2)[:, ::2, 1:3].permute(0, 2, 1).flatten(1)
        p = F.pad(y, (1, 2), value=0.0)[..., ::3].reshape(x.shape[0], -1)
        e = y[:, :1].expand(-1, 3, -1).repeat(1, 1, 2).flatten(1)
        u = y.unsqueeze(1).squeeze(1)[:, 1, :].flip(1)
        return torch.cat([s, t, p, e, u, c.flatten(1) - d[:, :1].flatten(1)], 1)


def test_shape_operations_compile_exactly(fhe_config):
    torch.manual_seed(0)
    m = Shapes()
    X = np.random.RandomState(2).randn(100, 4, 6)
    qm = qfhe.compile_torch_model(m, X, n_bits=6, rounding_threshold_bits=6, configuration=fhe_config)
    assert {"gather", "concat", "sub"} <= set(qm.graph.ops())
    _check_exact_and_close(qm, m, X[:32], rel=0.08)


class Univariate(nn.Module):
    """Concrete ML's UnivariateModule: the view moves the sample axis."""

    def forward(self, x):
        x = x.view(-1, 1)
        x = torch.reshape(x, (-1, 1))
        x = x.flatten(1)
        return torch.relu(torch.abs(torch.exp(torch.log(1.0 + torch.sigmoid(x)))))


def test_model_moving_the_sample_axis_compiles_per_sample(fhe_config):
    m = Univariate()
    qm = qfhe.compile_torch_model(m, X4, n_bits=6, configuration=fhe_config)
    out = qm.forward(X4[:16], fhe="simulate")
    np.testing.assert_array_equal(out, qm.forward(X4[:16]))
    ref = np.stack([_float(m, X4[i : i + 1]) for i in range(16)])
    assert out.shape == ref.shape == (16, 4, 1)
    assert np.abs(out - ref).max() <= 0.05 * np.ptp(ref)


class Pools(nn.Module):
    """MaxPool2d with padding and ceil_mode, MaxPool1d, AvgPool1d, uneven AdaptiveAvgPool1d/2d."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.mp = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.ap = nn.AdaptiveAvgPool2d((3, 2))
        self.mp1 = nn.MaxPool1d(3, 2)
        self.ap1 = nn.AdaptiveAvgPool1d(4)

    def forward(self, x):  # (1, 5, 5)
        y = torch.relu(self.conv(x))
        z = y.flatten(2)  # (2, 25)
        outs = [self.mp(y), self.ap(y), self.mp1(z), F.avg_pool1d(z, 5), self.ap1(z), F.max_pool2d(self.conv(x), 2)]
        return torch.cat([o.flatten(1) for o in outs], 1)


def test_pooling_and_padding_compile_exactly(fhe_config):
    torch.manual_seed(0)
    m = Pools()
    X = np.random.RandomState(3).rand(100, 1, 5, 5)
    qm = qfhe.compile_torch_model(m, X, n_bits=6, rounding_threshold_bits=6, configuration=fhe_config)
    assert qm.graph.ops().count("maxpool") == 3
    _check_exact_and_close(qm, m, X[:32], rel=0.1)


def test_maxpool_and_shape_errors():
    class Indices(nn.Module):
        def forward(self, x):
            return F.max_pool2d(x, 2, return_indices=True)[0]

    with pytest.raises(UnsupportedOpError, match="returns max pooling indices; use return_indices=False"):
        qfhe.compile_torch_model(Indices(), RS.randn(10, 1, 4, 4))

    class Reflect(nn.Module):
        def forward(self, x):
            return F.pad(x, (1, 1), mode="reflect")

    with pytest.raises(UnsupportedOpError, match="pads with mode='reflect'; only mode='constant'"):
        qfhe.compile_torch_model(Reflect(), RS.randn(10, 2, 4))
    with pytest.raises(UnsupportedOpError, match=r"node '1' \(maxpool\) has no CKKS lowering.*use AvgPool2d"):
        qfhe.compile_torch_model(
            nn.Sequential(nn.Conv2d(1, 1, 1), nn.MaxPool2d(2)), RS.randn(10, 1, 4, 4), scheme="ckks"
        )


class TwoInputs(nn.Module):
    """Concrete ML's MultiInputNNDifferentSize: two encrypted inputs of different shapes."""

    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(4, 4)
        self.layer2 = nn.Linear(3, 4)

    def forward(self, x, y):
        return self.layer1(torch.relu(self.layer1(x) + self.layer2(y)))


def test_multi_input_model_executes_like_simulate(fhe_config, tmp_path):
    torch.manual_seed(0)
    m = TwoInputs()
    rs = np.random.RandomState(1)
    X1, X2 = rs.randn(100, 4), rs.randn(100, 3)
    qm = qfhe.compile_torch_model(m, (X1, X2), n_bits=6, rounding_threshold_bits=6, configuration=fhe_config)
    assert qm.input_shape == ((4,), (3,))
    clear = qm.forward(X1[:16], X2[:16])
    np.testing.assert_array_equal(qm.forward(X1[:16], X2[:16], fhe="simulate"), clear)
    ref = _float(m, X1[:16], X2[:16])
    assert np.abs(clear - ref).max() <= 0.1 * np.ptp(ref)
    qm.fhe_circuit.keygen()
    np.testing.assert_array_equal(qm.forward(X1[:1], X2[:1], fhe="execute"), clear[:1])
    with pytest.raises(
        qfhe.errors.ConfigurationError, match=r"this model takes 2 input\(s\) \(shapes \(4,\), \(3,\)\); got 1"
    ):
        qm.forward(X1)
    with pytest.raises(qfhe.errors.ConfigurationError, match="pass fhe, strict and progress by keyword"):
        qm.forward(X1, "simulate")
    with pytest.raises(
        qfhe.errors.InputsetError,
        match=r"forward takes 2 tensor argument\(s\) \(x, y\) but the inputset "
        r"gives 1; pass a tuple",
    ):
        qfhe.compile_torch_model(m, X1)
    with pytest.raises(qfhe.errors.ConfigurationError, match="different numbers of samples"):
        qfhe.compile_torch_model(m, (X1, X2[:50]))
    with pytest.raises(qfhe.errors.ConfigurationError, match="scheme='ckks' packs one input vector"):
        qfhe.compile_torch_model(m, (X1, X2), scheme="ckks")
    from qfhe.deploy import FHEModelDev

    with pytest.raises(
        qfhe.errors.ConfigurationError, match="has 2 circuit inputs .* deployment artifacts support one"
    ):
        FHEModelDev(tmp_path, qm).save()


def test_brevitas_input_with_two_quantizers_is_exact():
    """Concrete ML's DoubleQuantQATMixNet: the client quantizes the input once per quantizer."""
    import brevitas.nn as qnn

    class DoubleQuant(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant1 = qnn.QuantIdentity(bit_width=3)
            self.quant2 = qnn.QuantIdentity(bit_width=4)
            self.quant3 = qnn.QuantIdentity(bit_width=3)
            self.mixing = qnn.QuantLinear(4, 4, bias=True, weight_bit_width=3)

        def forward(self, x):
            return self.mixing(self.quant3(self.quant1(x) + self.quant2(x)))

    torch.manual_seed(0)
    m = DoubleQuant().eval()
    qm = qfhe.compile_brevitas_qat_model(m, X4)
    assert len(qm._input_nodes) == 2
    clear = qm.forward(X4[:64])
    np.testing.assert_array_equal(qm.forward(X4[:64], fhe="simulate"), clear)
    np.testing.assert_allclose(clear, _float(m, X4[:64]), atol=1e-5)


def _step(x, bias):
    y = torch.zeros_like(x)
    mask = torch.gt(x - bias, 0.0)
    y[mask] = 1.0
    return y


class SimpleQAT(nn.Module):
    """Concrete ML's SimpleQAT: a step quantizer written with comparisons and item assignment."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)

    def forward(self, x):
        x_q = _step(x, -5)
        for i in range(1, 3):
            x_q += _step(x, (i - 1) * 5)
        return torch.relu(self.fc1(x_q.mul(5)))


class Masks(nn.Module):
    """torch.where, (x > 0).float(), x[x < 0] = 0, and logical combinations of masks."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        z = torch.where(y > 0, y, 0.1 * y) + (y < -1).float() * 3
        y2 = y.clone()
        y2[y2 < 0] = 0
        return torch.cat([z, y2, ((y > 0.3) & (y < 1.0)).float()], 1)


def test_data_dependent_elementwise_functions_are_one_lookup(fhe_config):
    torch.manual_seed(0)
    m = SimpleQAT()
    X = np.random.RandomState(4).randn(200, 4) * 8
    qm = qfhe.compile_torch_model(m, X, n_bits=6, configuration=fhe_config)
    assert qm.graph.ops() == ["input", "quant", "tlu", "qgemm", "tlu", "dequant"]  # the whole step: one lookup
    clear = qm.forward(X[:64])
    np.testing.assert_array_equal(qm.forward(X[:64], fhe="simulate"), clear)
    # the steps are reproduced exactly away from the thresholds (-5, 0, 5), where input quantization may flip them
    ref, far = _float(m, X[:64]), np.all(np.abs(X[:64, :, None] - np.array([-5, 0, 5])) > 0.3, axis=(1, 2))
    np.testing.assert_allclose(clear[far], ref[far], atol=0.05 * np.ptp(ref))

    masks = Masks()
    qm = qfhe.compile_torch_model(masks, X4, n_bits=6, configuration=fhe_config)
    assert qm.graph.ops().count("tlu") == 3
    # (y < -1) * 3 jumps by the whole output range: a value one step from -1 may land on either side,
    # so only the mean error says something here
    _check_exact_and_close(qm, masks, X4[:64], rel=1.01, rel_mean=0.02)


def test_expressions_of_two_tensors_and_ckks_are_refused():
    class Two(nn.Module):
        def forward(self, x, y):
            return torch.where(x > 0, y, 0.0)

    with pytest.raises(
        UnsupportedOpError,
        match=r"node 'where' combines values computed from different encrypted "
        r"tensors \(x, y\) with 'where'",
    ):
        qfhe.compile_torch_model(Two(), (X4, X4))
    with pytest.raises(UnsupportedOpError, match=r"comparison, mask or torch.where.*use scheme='tfhe'"):
        qfhe.compile_torch_model(Masks(), X4, scheme="ckks")


class Products(nn.Module):
    """x * y and x @ y between encrypted tensors, and x @ x.T on a batch of vectors (Concrete ML's
    matmul test: each sample's squared norm)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        u, v = torch.sigmoid(self.a(x)), self.b(x)
        norms = u @ u.T  # (1, 1) per sample
        outer = u.unsqueeze(2) @ v.unsqueeze(1)  # (3, 3) per sample
        return torch.cat([u * v, u * u, outer.flatten(1), norms], 1)  # per sample: (1, 16)


def test_products_of_encrypted_tensors(fhe_config):
    torch.manual_seed(0)
    m = Products()
    qm = qfhe.compile_torch_model(m, X4, n_bits=6, rounding_threshold_bits=6, configuration=fhe_config)
    ops = qm.graph.ops()
    assert ops.count("qmul") == 1 and ops.count("qmatmul") == 2  # u * u is one lookup of u's source
    clear = qm.forward(X4[:32])
    np.testing.assert_array_equal(qm.forward(X4[:32], fhe="simulate"), clear)
    ref = np.stack([_float(m, X4[i : i + 1]) for i in range(32)])
    assert clear.shape == ref.shape == (32, 1, 16) and np.abs(clear - ref).max() <= 0.1 * np.ptp(ref)
    with pytest.raises(UnsupportedOpError, match=r"multiplies two encrypted tensors; .* use scheme='tfhe'"):
        qfhe.compile_torch_model(m, X4, scheme="ckks")
    with pytest.raises(UnsupportedOpError, match="divides two encrypted tensors"):
        qfhe.compile_torch_model(Wrap2(lambda x, y: x / y), (X4, X4))


class Wrap2(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, y):
        return self.fn(x, y)


def test_maxpool_model_executes_like_simulate(fhe_config):
    torch.manual_seed(0)
    # small on purpose: keygen and execution cost grow with the widest value (here the 4-bit codes)
    m = nn.Sequential(nn.MaxPool2d(2, padding=1), nn.Flatten(), nn.Linear(9, 3))
    X = np.random.RandomState(5).rand(100, 1, 4, 4)
    qm = qfhe.compile_torch_model(m, X, n_bits=4, configuration=fhe_config)
    assert qm.graph.ops().count("maxpool") == 1
    clear = qm.forward(X[:16])
    np.testing.assert_array_equal(qm.forward(X[:16], fhe="simulate"), clear)
    qm.fhe_circuit.keygen()
    np.testing.assert_array_equal(qm.forward(X[:1], fhe="execute"), clear[:1])


def test_digits_cnn_with_maxpool_reaches_95_percent_simulated(fhe_config):
    """The MaxPool digits CNN of benchmarks/maxpool.py (trained for fewer epochs here)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from maxpool import accuracy, load_images, train

    Xtr, Xte, ytr, yte = load_images()
    model = train("max", Xtr, ytr, epochs=150)
    qm = qfhe.compile_torch_model(model, Xtr, n_bits=6, rounding_threshold_bits=6, configuration=fhe_config)
    assert qm.statistics["pbs_count_per_layer"]["pool"] > 0
    sim = qm.forward(Xte, fhe="simulate")
    assert accuracy(sim, yte) >= 0.95, accuracy(sim, yte)
