"""ONNX models through the torch frontend: the torch exporter's graph compiles to the torch path's circuit."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

import qfhe
import test_coverage as cov
from conftest import SmallCNN
from qfhe.errors import ConfigurationError, UnsupportedOpError
from qfhe.frontend.onnx import onnx_to_torch


class ExportableActivations(cov.Activations):
    """test_coverage's activations without nn.Threshold, which torch's ONNX exporter refuses (non-zero threshold)."""

    def __init__(self):
        super().__init__()
        self.mods = nn.ModuleList([m for m in self.mods if not isinstance(m, nn.Threshold)])


class EvenPools(nn.Module):
    """test_coverage's pools with even adaptive windows (the exporter refuses uneven ones)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.mp, self.ap, self.mp1 = nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.AdaptiveAvgPool2d(3), nn.MaxPool1d(3, 2)

    def forward(self, x):  # (1, 6, 6)
        y = torch.relu(self.conv(x))
        z = y.flatten(2)
        outs = [self.mp(y), self.ap(y), self.mp1(z), nn.functional.avg_pool1d(z, 4), nn.functional.max_pool2d(y, 2)]
        return torch.cat([o.flatten(1) for o in outs], 1)


class DigitsCNN(nn.Module):
    """Issue 25's digits CNN, with a BatchNorm (folded by the exporter, by qfhe on the torch path)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn, self.conv2 = nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 16, 3, padding=1)
        self.pool, self.fc = nn.AvgPool2d(2), nn.Linear(144, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv1(x))))
        return self.fc(torch.relu(self.conv2(x)).flatten(1))


RS = np.random.RandomState(0)
MODELS = {  # name: (model, inputset)
    "Activations": (ExportableActivations, RS.randn(150, 4)),
    "Constants": (cov.Constants, RS.randn(150, 4)),
    "Shapes": (cov.Shapes, RS.randn(150, 4, 6)),
    "Univariate": (cov.Univariate, RS.randn(150, 4)),
    "Pools": (EvenPools, RS.rand(150, 1, 6, 6)),
    "TwoInputs": (cov.TwoInputs, (RS.randn(150, 4), RS.randn(150, 3))),
    "Masks": (cov.Masks, RS.randn(150, 4)),
    "Products": (cov.Products, RS.randn(150, 4)),
    "SmallCNN": (SmallCNN, RS.randn(150, 1, 6, 6)),
    "DigitsCNN": (DigitsCNN, RS.rand(150, 1, 8, 8)),
}
#: The exporter writes stack() as unsqueeze + concat: one reshape fewer, the same lookups and products
SAME_VALUES_ONLY = {"Shapes"}


def export(model: nn.Module, X, **kwargs) -> bytes:
    Xs = X if isinstance(X, tuple) else (X,)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, not gone
        torch.onnx.export(
            model.eval(), tuple(torch.tensor(x[:1], dtype=torch.float32) for x in Xs), f, dynamo=False, **kwargs
        )
    return f.getvalue()


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_export_compiles_to_the_torch_circuit(name, fhe_config):
    cls, X = MODELS[name]
    torch.manual_seed(0)
    model = cls().eval()
    if name == "DigitsCNN":
        with torch.no_grad():
            model.bn.running_mean.uniform_(-0.3, 0.3)
            model.bn.running_var.uniform_(0.5, 1.5)
    Xs = X if isinstance(X, tuple) else (X,)
    kwargs = {"n_bits": 6, "rounding_threshold_bits": 6, "configuration": fhe_config}
    ours = qfhe.compile_onnx_model(export(model, X), X, **kwargs)
    theirs = qfhe.compile_torch_model(model, X, **kwargs)
    assert ours.statistics["pbs_count"] == theirs.statistics["pbs_count"]
    sample = tuple(x[:40] for x in Xs)
    clear = ours.forward(*sample)
    np.testing.assert_array_equal(ours.forward(*sample, fhe="simulate"), clear)
    if name in SAME_VALUES_ONLY:
        np.testing.assert_array_equal(clear, theirs.forward(*sample))
        assert [o for o in ours.graph.ops() if o != "reshape"] == [o for o in theirs.graph.ops() if o != "reshape"]
    else:
        # the same circuit, to the byte; the client's float dequantization may differ in the last bits
        # where the exporter folded in float32 (BatchNorm into the convolution, float32 constants)
        assert ours.fhe_circuit.mlir == theirs.fhe_circuit.mlir
        np.testing.assert_allclose(clear, theirs.forward(*sample), rtol=1e-6, atol=1e-7)


@pytest.mark.execute
def test_onnx_model_executes_like_simulate(tmp_path, fhe_config):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    X = RS.randn(100, 4)
    path = tmp_path / "model.onnx"
    path.write_bytes(export(model, X))
    qm = qfhe.compile_onnx_model(path, X, n_bits=5, rounding_threshold_bits=5, configuration=fhe_config)
    qm.fhe_circuit.keygen()
    np.testing.assert_array_equal(qm.forward(X[:2], fhe="execute"), qm.forward(X[:2], fhe="simulate"))


def test_linear_on_a_3d_input_gets_its_bias_back():
    """The exporter writes nn.Linear on a (batch, n, d) input as MatMul then Add: one nn.Linear again."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3), nn.ReLU())
    gm = onnx_to_torch(export(model, RS.randn(4, 4, 6)))
    linears = [m for m in gm.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].bias is not None
    x = torch.randn(5, 4, 6)
    torch.testing.assert_close(gm(x), model(x))


def _graph(op_type: str, domain: str = "", **attrs) -> onnx.ModelProto:
    node = helper.make_node(op_type, ["x"], ["y"], name="the_node", domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph)


def test_errors_name_the_onnx_node_or_the_argument(tmp_path):
    X = RS.randn(20, 4)
    with pytest.raises(UnsupportedOpError, match=r"ONNX node 'the_node' \(Hardmax\) has no torch equivalent"):
        qfhe.compile_onnx_model(_graph("Hardmax"), X)
    with pytest.raises(UnsupportedOpError, match=r"ONNX node 'the_node' is in domain 'ai.onnx.ml' \(Normalizer\)"):
        qfhe.compile_onnx_model(_graph("Normalizer", domain="ai.onnx.ml"), X)
    with pytest.raises(UnsupportedOpError, match=r"ONNX node 'the_node' \(Flatten\) with axis=2"):
        qfhe.compile_onnx_model(_graph("Flatten", axis=2), X)
    with pytest.raises(ConfigurationError, match="no ONNX file at"):
        qfhe.compile_onnx_model(tmp_path / "missing.onnx", X)
    with pytest.raises(ConfigurationError, match=r"not an ONNX model \(DecodeError"):
        qfhe.compile_onnx_model(b"\x08\x07garbage\xff\xff", X)
    with pytest.raises(ConfigurationError, match="model must be an onnx.ModelProto, the bytes of one, or a path"):
        qfhe.compile_onnx_model(torch.nn.Linear(4, 2), X)
    # a dynamic batch axis: the graph computes a reshape's target from the input's run-time shape
    model = cov.Shapes()
    dynamic = export(model, RS.randn(4, 4, 6), input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(
        UnsupportedOpError,
        match=r"\(Shape\) reads the shape of an input at run time; export with a "
        r"fixed batch size",
    ):
        onnx_to_torch(dynamic)


def test_a_quotient_of_two_functions_of_one_tensor_is_one_lookup():
    """Softsign as the exporter writes it, x / (1 + |x|): the torch frontend makes it one lookup."""
    from qfhe.frontend import import_torch

    class Written(nn.Module):
        def forward(self, x):
            return x / (1 + torch.abs(x))

    assert import_torch(Written(), torch.zeros(2, 3)).ops() == ["input", "activation"]
    with pytest.raises(UnsupportedOpError, match="divides two encrypted tensors"):
        import_torch(cov.Wrap2(lambda x, y: x / y), (torch.ones(2, 3), torch.ones(2, 3)))
