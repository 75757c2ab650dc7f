"""The compiled model reads like the torch model: layer names agree everywhere, a readable repr, and
``qm(X)`` works."""

import numpy as np
import pytest
import torch
from torch import nn

import qfhe
from conftest import ResidualMLP
from qfhe.errors import OverflowRiskWarning


class PoolCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.AvgPool2d(3)  # 9 codes: requantized by its own lookup (a 2x2 pool would fold into fc)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


@pytest.mark.parametrize(
    "model,shape,layers",
    [
        (ResidualMLP, (6,), ["fc1", "fc2", "fc3"]),
        (PoolCNN, (1, 6, 6), ["conv", "pool", "fc"]),
    ],
)
def test_layer_names_are_module_names_everywhere(model, shape, layers, fhe_config):
    torch.manual_seed(0)
    X = np.random.RandomState(0).randn(100, *shape)
    qm = qfhe.compile_torch_model(model(), X, n_bits=4, rounding_threshold_bits=4, configuration=fhe_config)
    assert [r["layer"] for r in qm.bitwidth_report()] == layers  # each layer once, pooling named as such
    per_layer = qm.statistics["pbs_count_per_layer"]
    assert set(per_layer) <= set(layers) and sum(per_layer.values()) == qm.statistics["pbs_count"]


def test_overflow_messages_name_the_module():
    torch.manual_seed(0)
    m = ResidualMLP()
    X = np.random.RandomState(0).randn(100, 6) * 0.3
    qm = qfhe.quantize_torch_model(m, X, n_bits=4, rounding_threshold_bits=4)
    w = m.fc1.weight.detach().numpy()
    j = int(np.argmax(np.clip(w, 0, None).sum(1)))
    worst = np.where(w[j] > 0, X.max(), X.min())[None]  # neuron j's largest accumulator
    with pytest.warns(
        OverflowRiskWarning, match=r"layer 'fc1'( \(rounded accumulator\))?: 1 of 1 samples leave the compiled range"
    ):
        qm.forward(worst)


def test_repr_and_call(fhe_config):
    torch.manual_seed(0)
    m = ResidualMLP()
    X = np.random.RandomState(0).randn(100, 6)
    qm = qfhe.quantize_torch_model(m, X, n_bits=4, rounding_threshold_bits=4)
    text = repr(qm)
    assert text.startswith(
        "QuantizedModule(input (6,) -> output (3,), PTQ n_bits=4, bitwidth_method='calibration', not compiled"
    )
    for layer in ("fc1", "fc2", "fc3"):
        assert f"\n  {layer} " in text
    qm.compile(configuration=fhe_config)
    assert f"compiled: {qm.statistics['pbs_count']} PBS, max bit-width {qm.statistics['max_bit_width']}" in repr(qm)
    np.testing.assert_array_equal(qm(X[:4]), qm.forward(X[:4]))
    np.testing.assert_array_equal(qm(X[:4], fhe="simulate"), qm.forward(X[:4], fhe="simulate"))
