"""Pruning: the exact accumulator bound, per-neuron pruning whose width guarantee the interval analysis
proves after fine-tuning, structured pruning with torch-pruning, and clear errors."""

import importlib.util
import itertools
import warnings
from pathlib import Path

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from torch import nn

import qfhe
from conftest import ResidualMLP
from qfhe.errors import ConfigurationError, UnsupportedOpError
from qfhe.ir.numeric import integer_bit_width
from qfhe.prune import (
    accumulator_bound,
    accumulator_report,
    fine_tune,
    prune_structured,
    prune_to_accumulator,
    remove_masks,
)
from qfhe.prune.bound import input_code_range, weight_code_range

ROOT = Path(__file__).resolve().parents[1]
LOW_P_ERROR = 1e-9


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


qat_mlp = _load("qat_mlp")
prune_finetune = _load("prune_finetune")


def _brute_force_k(w, x, n_accum):
    """Grow the set of every reachable sum of k products until it no longer fits (no formula)."""
    products = {a * b for a in range(w[0], w[1] + 1) for b in range(x[0], x[1] + 1)}
    sums, k = {0}, 0
    while True:
        nxt = {s + p for s in sums for p in products}
        if integer_bit_width(min(nxt), max(nxt)) > n_accum:
            return k
        sums, k = nxt, k + 1
        if k > 300:
            return k


@pytest.mark.parametrize(
    "n_w,n_a,signed,narrow", list(itertools.product((2, 3), (1, 2, 3), (False, True), (True, False)))
)
def test_accumulator_bound_equals_brute_force(n_w, n_a, signed, narrow):
    for n_accum in (4, 5, 6, 7):
        expected = _brute_force_k(weight_code_range(n_w, narrow), input_code_range(n_a, signed), n_accum)
        assert accumulator_bound(n_w, n_a, n_accum, signed_inputs=signed, narrow_weights=narrow) == expected


def test_accumulator_bound_with_zero_point_and_bad_input():
    assert accumulator_bound(3, 3, 8, input_zero_point=4) == _brute_force_k((-3, 3), (-4, 3), 8)
    with pytest.raises(ConfigurationError, match=r"n_weight_bits must be an int from 2 to 16, got 1"):
        accumulator_bound(1, 3, 8)


@pytest.fixture(scope="module")
def digits01():
    return qat_mlp.load_data()


def _loader(X, y, batch=64):
    data = torch.utils.data.TensorDataset(torch.tensor(X, dtype=torch.float32), torch.tensor(y))
    return torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def pruned_qat_mlp(digits01):
    Xtr, Xte, ytr, yte = digits01
    torch.manual_seed(0)
    model = qat_mlp.QATMLP(bits=3)
    fine_tune(model, _loader(Xtr, ytr), epochs=30, lr=1e-2, progress=False)
    sparse = prune_to_accumulator(model, n_accum_bits=8)
    history = fine_tune(sparse, _loader(Xtr, ytr), epochs=40, lr=1e-2, val_data=(Xte, yte), progress=False)
    return model, sparse, history


def test_qat_mlp_pruned_to_8_bits_is_proved_8_bits(pruned_qat_mlp, digits01, fhe_config):
    Xtr, Xte, _, yte = digits01
    original, sparse, history = pruned_qat_mlp
    assert len(history) == 40 and history[-1]["metric"] > 0.85
    report = accumulator_report(sparse, n_accum_bits=8)
    assert [r["layer"] for r in report] == ["fc1", "fc2", "fc3"]
    for row, module in zip(report, (sparse.fc1, sparse.fc2, sparse.fc3)):
        nonzero = (module.weight != 0).sum(dim=1)
        assert int(nonzero.max()) <= row["k"] == 6  # 3-bit weights in [-3, 3], 3-bit inputs in [0, 7]
        assert row["worst_case_bits"] <= 8
    assert int((original.fc1.weight != 0).sum(dim=1).max()) == 64  # a copy was pruned, not the original
    qm = qfhe.compile_brevitas_qat_model(
        sparse, Xtr, bitwidth_method="interval", p_error=LOW_P_ERROR, configuration=fhe_config
    )
    assert qm.statistics["max_bit_width"] <= 8  # proved by the interval analysis, for every input
    assert all(r["lsbs_removed"] == 0 for r in qm.bitwidth_report())
    assert qat_mlp.accuracy(qm.forward(Xte, fhe="simulate"), yte) > 0.85


@pytest.mark.execute
def test_pruned_model_execute_equals_simulate(digits01, fhe_config):
    """A small 2-bit QAT MLP pruned to 6-bit accumulators (8-bit lookups would take minutes here)."""
    Xtr, Xte, ytr, _ = digits01
    torch.manual_seed(0)
    model = qat_mlp.QATMLP(bits=2, hidden=8)
    fine_tune(model, _loader(Xtr, ytr), epochs=5, lr=1e-2, progress=False)
    sparse = prune_to_accumulator(model, n_accum_bits=6)
    qm = qfhe.compile_brevitas_qat_model(
        sparse, Xtr, bitwidth_method="interval", p_error=LOW_P_ERROR, configuration=fhe_config
    )
    assert qm.statistics["max_bit_width"] <= 6
    qm.fhe_circuit.keygen()
    np.testing.assert_array_equal(qm.forward(Xte[:2], fhe="execute"), qm.forward(Xte[:2], fhe="simulate"))


def test_masks_survive_training_and_can_be_made_permanent(pruned_qat_mlp):
    _, sparse, _ = pruned_qat_mlp
    assert hasattr(sparse.fc1, "weight_mask")
    zeros = sparse.fc1.weight_mask == 0
    assert bool((sparse.fc1.weight[zeros] == 0).all())  # fine-tuning moved weight_orig, not the zeros
    permanent = remove_masks(__import__("copy").deepcopy(sparse))
    assert not hasattr(permanent.fc1, "weight_mask") and bool((permanent.fc1.weight[zeros] == 0).all())


def test_qat_cnn_structured_then_unstructured_is_proved_within_target(digits01, fhe_config):
    Xtr, Xte, ytr, yte = digits01
    torch.manual_seed(0)
    cnn = prune_finetune.QATCNN(bits=4)
    fine_tune(cnn, _loader(Xtr, ytr), epochs=3, lr=1e-2, progress=False)
    small = prune_structured(cnn, Xtr[:2], ratio=0.5)
    assert (small.conv1.out_channels, small.bn.num_features, small.conv2.in_channels) == (4, 4, 4)
    assert small.fc.out_features == 10 and small.conv1.in_channels == 1  # input and output never pruned
    with pytest.raises(ConfigurationError, match="example_input is needed"):
        prune_to_accumulator(small, n_accum_bits=10)
    sparse = prune_to_accumulator(small, n_accum_bits=10, example_input=Xtr[:2])
    fine_tune(sparse, _loader(Xtr, ytr), epochs=2, lr=1e-3, progress=False)
    for row in accumulator_report(sparse, 10, example_input=Xtr[:2]):
        assert row["max_nonzero"] <= row["k"] and row["worst_case_bits"] <= 10
    qm = qfhe.compile_brevitas_qat_model(
        sparse, Xtr, bitwidth_method="interval", p_error=LOW_P_ERROR, configuration=fhe_config
    )
    assert qm.statistics["max_bit_width"] <= 10
    np.testing.assert_array_equal(qm.forward(Xte[:50]), qm.forward(Xte[:50], fhe="simulate"))


def test_trained_qat_cnn_structured_pruning_stays_consistent(digits01):
    """After longer training a QuantTensor hid the conv→flatten→linear coupling from torch-pruning
    (it cut 2 of the linear layer's 128 inputs instead of 32); tracing with quantization off fixes it."""
    Xtr, _, ytr, _ = digits01
    torch.manual_seed(0)
    cnn = prune_finetune.QATCNN(bits=3)
    fine_tune(cnn, _loader(Xtr, ytr), epochs=40, lr=1e-2, progress=False)
    small = prune_structured(cnn, Xtr[:2], ratio=0.25)
    assert (small.conv2.out_channels, small.fc.in_features) == (6, 96)
    sparse = prune_to_accumulator(small, 8, example_input=Xtr[:2])
    again = prune_to_accumulator(sparse, 7, example_input=Xtr[:2])  # a masked model can be pruned further
    assert all(r["worst_case_bits"] <= 7 for r in accumulator_report(again, 7, example_input=Xtr[:2]))
    with pytest.raises(ConfigurationError, match=r"carries an unstructured pruning mask: prune_structured first"):
        prune_structured(sparse, Xtr[:2], ratio=0.25)


def test_float_model_is_pruned_for_ptq_widths():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    sparse = prune_to_accumulator(m, n_accum_bits=10, n_bits={"op_inputs": 3, "op_weights": 3})
    report = accumulator_report(sparse, 10, n_bits={"op_inputs": 3, "op_weights": 3})
    # the first layer's input zero point is unknown before calibration: [-7, 7]; after ReLU it is 0: [0, 7]
    assert [r["k"] for r in report] == [24, 24]
    assert all(r["max_nonzero"] <= r["k"] for r in report)


def test_digits_mlp_structured_half_width_keeps_accuracy(digits, fhe_config):
    from conftest import accuracy, train

    Xtr, Xte, ytr, yte = digits
    torch.manual_seed(0)
    model = train(
        nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), Xtr, ytr
    )
    small = prune_structured(model, Xtr[:2], ratio=0.5, importance="l1")
    assert [small[0].out_features, small[2].in_features, small[2].out_features, small[4].out_features] == [
        32,
        32,
        32,
        10,
    ]
    fine_tune(small, _loader(Xtr, ytr), epochs=30, lr=3e-3, progress=False)
    kw = dict(n_bits=6, rounding_threshold_bits=6, configuration=fhe_config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qfhe.CalibrationWarning)
        full = qfhe.compile_torch_model(model, Xtr, **kw)
        half = qfhe.compile_torch_model(small, Xtr, **kw)
    assert accuracy(half.forward(Xte, fhe="simulate"), yte) >= accuracy(full.forward(Xte, fhe="simulate"), yte) - 0.02
    assert half.statistics["pbs_count"] < full.statistics["pbs_count"]


def test_structured_pruning_keeps_residuals_and_concat_consistent():
    torch.manual_seed(0)
    res = prune_structured(ResidualMLP(), torch.randn(2, 6), ratio=0.5, importance="random")
    assert res.fc1.out_features == res.fc2.out_features == res.fc2.in_features == res.fc3.in_features
    assert res(torch.randn(3, 6)).shape == (3, 3)

    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(16, 2)

        def forward(self, x):
            return self.out(torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1))

    cat = prune_structured(Cat(), torch.randn(2, 4), ratio=0.5)
    assert cat.out.in_features == cat.a.out_features + cat.b.out_features < 16
    qfhe.quantize_torch_model(cat, np.random.RandomState(0).randn(64, 4), n_bits=4)  # still compiles


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"ratio": 1.0}, r"ratio must be in \[0, 1\), got 1.0"),
        ({"ratio": -0.1}, r"ratio must be a number in \[0, 1\], got -0.1"),
        ({"importance": "l3"}, r"importance must be one of \('l1', 'l2', 'random'\), got 'l3'"),
    ],
)
def test_structured_bad_parameters(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        prune_structured(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(2, 4), **kwargs)


def test_structured_untraceable_model_and_per_channel_quantizers():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return (
                self.fc(x)
                if x.sum() > 1e9
                else self.fc(x).flip(0).flip(0).reshape(-1)[: x.shape[0] * 4].view(-1, 4) @ torch.zeros(3, 3)
            )

    with pytest.raises(UnsupportedOpError, match=r"torch-pruning could not prune Branchy"):
        prune_structured(Branchy(), torch.randn(2, 4), ratio=0.5)
    per_channel = nn.Sequential(
        qnn.QuantIdentity(return_quant_tensor=True),
        qnn.QuantLinear(4, 8, bias=True, weight_scaling_per_output_channel=True),
        qnn.QuantReLU(return_quant_tensor=True),
        qnn.QuantLinear(8, 2, bias=True),
    )
    with pytest.raises(UnsupportedOpError, match=r"layer '1' \(QuantLinear\) has a per-channel quantizer parameter"):
        prune_structured(per_channel, torch.randn(2, 4), ratio=0.5)


def test_unstructured_errors_name_the_layer():
    m = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantLinear(4, 3, bias=False, weight_bit_width=8),
        nn.ReLU(),
        qnn.QuantLinear(3, 2, bias=False, weight_bit_width=8),
    )
    quantized = nn.Sequential(*list(m)[:2], qnn.QuantReLU(return_quant_tensor=True), m[3])
    with pytest.raises(
        ConfigurationError,
        match=r"n_accum_bits=10 is too small for layer '1': one \(-127, 127\) weight "
        r"times one \(-128, 127\) input already needs 15 bits\. Use n_accum_bits >= 15",
    ):
        prune_to_accumulator(quantized, n_accum_bits=10)
    with pytest.raises(UnsupportedOpError, match=r"layer '3' reads a value without a quantizer \('2', activation\)"):
        prune_to_accumulator(m, n_accum_bits=16)
