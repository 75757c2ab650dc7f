import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qfhe.errors import UnsupportedOpError
from qfhe.frontend import import_torch
from qfhe.ir import run
from qfhe.ir.activations import ACTIVATIONS
from qfhe.passes import canonicalize


def _check(model, X, atol=1e-5):
    g = import_torch(model, torch.tensor(X, dtype=torch.float32))
    with torch.no_grad():
        ref = model.double().eval()(torch.tensor(X)).numpy()
    np.testing.assert_allclose(run(g, X)[0], ref, atol=atol, rtol=1e-6)
    np.testing.assert_allclose(run(canonicalize(g), X)[0], ref, atol=atol, rtol=1e-6)
    model.float()
    return g


class Wrap(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.fc(x))


X3 = np.random.RandomState(0).randn(8, 3) * 3

MODULES = [
    nn.ReLU(),
    nn.ReLU6(),
    nn.LeakyReLU(0.3),
    nn.GELU(),
    nn.GELU(approximate="tanh"),
    nn.SiLU(),
    nn.Sigmoid(),
    nn.Tanh(),
    nn.ELU(alpha=0.7),
    nn.Hardswish(),
    nn.Hardsigmoid(),
    nn.Softplus(beta=2.0),
    nn.ReLU(inplace=True),
    nn.LeakyReLU(0.1, inplace=True),
    nn.Hardtanh(-0.5, 2.0),
    nn.Mish(),
    nn.CELU(0.5),
    nn.SELU(),
    nn.Hardshrink(0.3),
    nn.Softshrink(0.4),
    nn.Threshold(0.1, -1.0),
    nn.RReLU(0.1, 0.3),
    nn.Tanhshrink(),
    nn.LogSigmoid(),
    nn.Softsign(),
    nn.PReLU(),
    nn.PReLU(3, init=0.1),
]


@pytest.mark.parametrize("act", MODULES, ids=lambda m: repr(m))
def test_activation_modules(act):
    g = _check(nn.Sequential(nn.Linear(3, 3), act), X3)
    assert g.ops()[-1] == "activation"


FUNCTIONS = [
    lambda x: F.relu(x),
    lambda x: torch.relu(x),
    lambda x: x.relu(),
    lambda x: x.relu_(),
    lambda x: torch.relu_(x),
    lambda x: F.relu(x, inplace=True),
    lambda x: F.relu6(x),
    lambda x: F.leaky_relu(x, 0.2),
    lambda x: F.leaky_relu(x, negative_slope=0.05),
    lambda x: F.leaky_relu_(x, 0.2),
    lambda x: F.gelu(x),
    lambda x: F.gelu(x, approximate="tanh"),
    lambda x: F.silu(x),
    lambda x: torch.sigmoid(x),
    lambda x: x.sigmoid(),
    lambda x: x.sigmoid_(),
    lambda x: F.sigmoid(x),
    lambda x: torch.tanh(x),
    lambda x: x.tanh(),
    lambda x: x.tanh_(),
    lambda x: F.tanh(x),
    lambda x: F.elu(x, 0.5),
    lambda x: F.elu(x, alpha=2.0),
    lambda x: F.hardswish(x),
    lambda x: F.hardsigmoid(x),
    lambda x: F.softplus(x, beta=3.0),
    lambda x: F.softplus(x, 0.5, 1.0),
    lambda x: F.hardtanh(x, -1.0, 0.5),
    lambda x: F.hardshrink(x, 0.2),
    lambda x: F.softshrink(x, lambd=0.3),
    lambda x: F.threshold(x, 0.5, 2.0),
    lambda x: F.rrelu(x, 0.1, 0.2),
    lambda x: F.rrelu(x, training=False),
    lambda x: torch.clamp(x, -1, 0.5),
    lambda x: x.clamp(min=0.2),
    lambda x: torch.clip(x, max=0.3),
    lambda x: x.clip(-1, 1),
    lambda x: x.clamp_(-1, 1),
    lambda x: torch.abs(x),
    lambda x: abs(x),
    lambda x: x.abs(),
    lambda x: -x,
    lambda x: torch.neg(x),
    lambda x: torch.exp(x),
    lambda x: x.exp(),
    lambda x: torch.log1p(x.abs()),
    lambda x: torch.pow(x, 3),
    lambda x: x**2,
    lambda x: x.pow(2.0),
    lambda x: torch.erf(x),
    lambda x: torch.special.erf(x),
    lambda x: F.logsigmoid(x),
    lambda x: F.softsign(x),
    lambda x: F.tanhshrink(x),
    lambda x: F.celu(x, 0.4),
    lambda x: F.selu(x),
    lambda x: F.mish(x),
    lambda x: torch.log(x.abs() + 1),
    lambda x: torch.sqrt(x.abs()),
    lambda x: torch.sign(x),
]


@pytest.mark.parametrize("i", range(len(FUNCTIONS)))
def test_activation_functional_forms(i):
    g = _check(Wrap(FUNCTIONS[i]), X3)
    assert g.ops()[-1] == "activation"


def test_every_registered_activation_has_a_module_form():
    assert {
        "relu",
        "relu6",
        "leaky_relu",
        "gelu",
        "silu",
        "sigmoid",
        "tanh",
        "elu",
        "hardswish",
        "hardsigmoid",
        "softplus",
        "hardtanh",
        "hardshrink",
        "softshrink",
        "tanhshrink",
        "threshold",
        "logsigmoid",
        "softsign",
        "celu",
        "selu",
        "mish",
        "prelu",
        "rrelu",
        "clamp",
        "abs",
        "neg",
        "exp",
        "log1p",
        "pow",
        "erf",
    } <= set(ACTIVATIONS)
    every = {m for m in vars(nn.modules.activation).values() if isinstance(m, type) and issubclass(m, nn.Module)}
    elementwise = (
        every
        - {
            nn.Module,
            nn.MultiheadAttention,
            nn.GLU,
            nn.Softmax,
            nn.Softmin,
            nn.LogSoftmax,
            nn.Softmax2d,
            nn.Identity,
            nn.Parameter,
        }
        - {m for m in every if m.__name__ in ("Tensor", "NonDynamicallyQuantizableLinear")}
    )
    mapped = {a.module for a in ACTIVATIONS.values()} | {nn.PReLU}
    assert not {m.__name__ for m in elementwise - mapped}


def test_prelu_per_channel_slopes_and_constants_fold():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 1)
            self.act = nn.PReLU(3, init=0.2)
            self.register_buffer("bias_vec", torch.tensor([0.5, -1.0, 2.0]))
            self.gain = nn.Parameter(torch.tensor(1.5))

        def forward(self, x):
            y = self.act(self.conv(x)).flatten(1)
            return F.prelu(y * self.gain + self.bias_vec.repeat(4), self.gain) - 2 / (1 + y.abs())

    m = M()
    with torch.no_grad():
        m.act.weight.copy_(torch.tensor([0.1, 0.2, 0.3]))
    g = _check(m, np.random.RandomState(0).randn(6, 1, 2, 2))
    assert [n.attrs["fn"] for n in g.nodes if n.op == "activation"] == ["prelu", "leaky_relu", "abs", "reciprocal"]


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1, stride=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 4, 3, padding="same", groups=2)
        self.pool = nn.AvgPool2d(2)
        self.apool = nn.AdaptiveAvgPool2d((1, 1))
        self.c1d = nn.Conv1d(4, 3, 3, padding=1)
        self.bn1d = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3 * 4 + 4 + 4 * 2 * 2, 5)

    def forward(self, x):
        x = F.gelu(self.bn(self.c1(x)))
        x = x + torch.sigmoid(self.c2(x))
        x = self.pool(x)  # (4, 2, 2)
        a = self.apool(x).view(x.size(0), -1)  # (4,)
        s = x.reshape(x.shape[0], 4, 4)
        s = F.relu(self.bn1d(self.c1d(s))).flatten(1)  # (12,)
        u = F.avg_pool2d(x, 1) * 0.5 + 1.0  # scalar affine
        return self.fc(torch.cat([s, a, torch.flatten(u, 1)], dim=1))


def test_conv_pool_bn_residual_cat_graph_matches_torch():
    torch.manual_seed(0)
    m = ConvNet().eval()
    with torch.no_grad():
        for bn in (m.bn, m.bn1d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    X = np.random.RandomState(1).randn(5, 2, 4, 4)
    g = _check(m, X)
    ops = canonicalize(g).ops()
    assert "affine" not in ops[: ops.index("add")]  # BatchNorm2d folded into conv c1
    assert ops.count("conv") == 6  # c1, c2, pool, apool, conv1d (as 2-D), avg_pool2d


def test_batchnorm1d_folds_into_linear():
    m = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU()).eval()
    m[1].running_mean.fill_(0.3)
    m[1].running_var.fill_(2.0)
    g = canonicalize(_check(m, np.random.RandomState(0).randn(6, 4)))
    assert g.ops() == ["input", "gemm", "activation"]


class Bad(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.fc(x), x)


@pytest.mark.parametrize(
    "fn,match",
    [
        (lambda y, x: y / x, r"node 'truediv' \(call_function truediv\) divides two encrypted tensors"),
        (
            lambda y, x: torch.softmax(y, 1),
            r"node 'softmax' \(call_function softmax\) is not supported.*apply softmax on "
            r"the client",
        ),
        (lambda y, x: y.cumsum(1), r"node 'cumsum' \(call_method cumsum\) is not supported"),
        (
            lambda y, x: y.max(dim=1).values,
            r"node '.*' \(call_method max\) returns values and indices; use x.amax\(dim\)",
        ),
    ],
)
def test_unsupported_ops_name_node_and_op(fn, match):
    with pytest.raises(UnsupportedOpError, match=match):
        import_torch(Bad(fn), torch.zeros(2, 3))


def test_unsupported_module_and_batch_mixing():
    with pytest.raises(UnsupportedOpError, match="node 'pool' calls module LPPool2d"):
        import_torch(_pool_model(nn.LPPool2d(2, 2)), torch.zeros(2, 1, 4, 4))
    with pytest.raises(
        UnsupportedOpError,
        match=r"node 'pool' \(MaxPool2d\) reads a value whose first axis is no longer "
        "the sample axis",
    ):
        import_torch(_Images(), torch.zeros(2, 32))


class _Images(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(x.view(-1, 1, 4, 4))  # two images per sample: the batch axis moves


def _pool_model(pool):
    m = nn.Sequential()
    m.add_module("conv", nn.Conv2d(1, 1, 1))
    m.add_module("pool", pool)
    return m


def test_per_sample_semantics_when_the_model_moves_the_sample_axis():
    """x.view(-1, 1) (Concrete ML's UnivariateModule) compiles per sample: outputs are stacked."""
    m = Wrap(lambda x: torch.sigmoid(torch.cat([x, x * 2], dim=0).view(-1, 1)))
    X = np.random.RandomState(0).randn(5, 3)
    out = run(import_torch(m, torch.tensor(X, dtype=torch.float32)), X)[0]
    with torch.no_grad():
        ref = np.stack([m.double()(torch.tensor(X[i : i + 1])).numpy() for i in range(len(X))])
    m.float()
    assert out.shape == (5, 6, 1)
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_untraceable_model_message():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedOpError, match="torch.fx could not trace Branchy"):
        import_torch(Branchy(), torch.zeros(2, 3))


def test_training_flag_restored():
    m = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5)).train()
    import_torch(m, torch.zeros(2, 3))
    assert m.training
