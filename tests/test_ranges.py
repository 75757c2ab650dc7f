"""Compile ranges are trustworthy: calibration-sized by default, a sound interval mode whose circuit
agrees with the reference on the whole input box, overflow flagged in every mode, the real global
error probability."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import qfhe
from conftest import ResidualMLP, accuracy
from qfhe.errors import CircuitOverflowError, OverflowRiskWarning, SaturationWarning

LOW_P_ERROR = 1e-9


def two_neuron_model():
    """The issue's model: a first accumulator that the calibration data never make negative."""
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        m[0].weight[:] = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [0.05, 0.05]])
        m[0].bias.zero_()
        m[2].weight.fill_(1.0)
        m[2].bias.zero_()
    a = np.random.RandomState(0).uniform(0, 1, size=(100, 1))
    return m, np.hstack([a, a])  # calibrated on x1 == x2


def test_interval_mode_types_negative_accumulators_as_signed(fhe_config):
    m, X = two_neuron_model()
    qm = qfhe.compile_torch_model(
        m, X, n_bits=6, bitwidth_method="interval", p_error=LOW_P_ERROR, configuration=fhe_config
    )
    assert qm.bitwidths["0"].lo < 0  # predicted negative, never negative on the inputset
    x = np.array([[0.9, -0.9], [0.9, 0.1], [0.1, 0.9]])  # the first is clipped (warned) to the box
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverflowRiskWarning)
        warnings.simplefilter("ignore", qfhe.InputClippingWarning)
        np.testing.assert_array_equal(qm.forward(x, fhe="simulate"), qm.forward(x))
    acc = next(
        n for n in qm.fhe_circuit.graph.query_nodes(ordered=True) if n.tag == "0" and "bit_width_hint" in n.properties
    )
    assert acc.output.dtype.is_signed and acc.output.dtype.bit_width == qm.bitwidths["0"].bits


def _input_box(qm, n, seed):
    a = qfhe.passes.bitwidth.client_input_nodes(qm.graph)[0].attrs
    lo, hi = a["scale"] * (a["qmin"] - a["zero_point"]), a["scale"] * (a["qmax"] - a["zero_point"])
    box = np.random.RandomState(seed).uniform(lo, hi, size=(n,) + qm.input_shape)
    spec = qm.preprocess[0]  # the client's per-feature scaling: the box in the input's own units
    return box if spec is None else box * spec["scale"] + spec["mean"]


@pytest.mark.parametrize("kind", ["mlp", "cnn", "residual"])
def test_interval_mode_simulate_equals_disable_on_the_whole_input_box(kind, small_cnn, fhe_config):
    torch.manual_seed(0)
    if kind == "cnn":
        m, X = small_cnn
        kw = dict(n_bits=3, rounding_threshold_bits=4)
    else:
        m = (
            nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
            if kind == "mlp"
            else ResidualMLP()
        )
        X = np.random.RandomState(0).randn(200, 6) * 0.3  # calibration data far narrower than the box
        kw = dict(n_bits=4, rounding_threshold_bits=5)
    qm = qfhe.compile_torch_model(m, X, bitwidth_method="interval", p_error=LOW_P_ERROR, configuration=fhe_config, **kw)
    box = _input_box(qm, 500, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverflowRiskWarning)  # interval bounds: nothing ever leaves its range
        # (hidden activations of the box's far corners do saturate their calibrated quantizers: a
        # SaturationWarning, the same in both modes)
        warnings.simplefilter("ignore", SaturationWarning)
        ref = qm.forward(box)
        np.testing.assert_array_equal(qm.forward(box, fhe="simulate"), ref)


def test_calibration_is_the_default_and_adds_no_corners(digits, digits_mlp, fhe_config):
    Xtr, Xte, _, yte = digits
    qm = qfhe.quantize_torch_model(digits_mlp, Xtr, n_bits=6, rounding_threshold_bits=6, per_feature_inputs=False)
    assert qm.settings["bitwidth_method"] == "calibration"
    # the first accumulator is sized by what the calibration data reach, no more
    acc = {}
    qfhe.ir.run(qm.graph, Xtr, lambda n, v: acc.setdefault(n.name, (v.min(), v.max())) if n.name == "0" else None)
    assert (qm.bitwidths["0"].lo, qm.bitwidths["0"].hi) == tuple(int(v) for v in acc["0"])
    box_corners = np.stack([np.full(64, Xtr.min()), np.full(64, Xtr.max())])  # what "calibration" used to add
    corners = qfhe.quantize_torch_model(
        digits_mlp, np.concatenate([Xtr, box_corners]), n_bits=6, rounding_threshold_bits=6, per_feature_inputs=False
    )
    assert corners.bitwidths["0"].own_bits > qm.bitwidths["0"].own_bits  # what the corners used to cost


def test_calibration_margin_widens_ranges_and_concrete_follows(fhe_config):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    X = np.random.RandomState(0).randn(100, 4)
    wide = qfhe.compile_torch_model(
        m, X, n_bits=4, calibration_margin=0.5, p_error=LOW_P_ERROR, configuration=fhe_config
    )
    tight = wide.with_ranges(X, calibration_margin=0.0)  # the same quantizers (the margin widened the input's)
    t, w = tight.bitwidths["0"], wide.bitwidths["0"]
    pad = int(np.ceil(0.5 * (t.hi - t.lo)))
    assert (w.lo, w.hi) == (t.lo - pad, t.hi + pad)
    xq = qfhe.passes.bitwidth.client_input_nodes(wide.graph)[0]
    assert wide.bitwidths[xq.name].lo >= xq.attrs["qmin"]  # input codes stay in the quantizer
    for node in wide.fhe_circuit.graph.query_nodes(ordered=True):
        if node.tag in wide.bitwidths and "bit_width_hint" in node.properties:
            assert node.bounds[0] <= wide.bitwidths[node.tag].lo and node.bounds[1] >= wide.bitwidths[node.tag].hi
    with pytest.raises(qfhe.ConfigurationError, match=r"calibration_margin must be a number in \[0, 10\]"):
        qfhe.quantize_torch_model(m, X, calibration_margin=-1)


@pytest.fixture(scope="module")
def overflowing(digits, digits_mlp, fhe_config):
    Xtr = digits[0]
    qm = qfhe.compile_torch_model(digits_mlp, Xtr, n_bits=4, rounding_threshold_bits=4, configuration=fhe_config)
    w = digits_mlp[0].weight.detach().numpy()
    j = int(np.argmax(np.clip(w, 0, None).sum(1)))
    return qm, np.where(w[j] > 0, Xtr.max(), Xtr.min())[None]  # neuron j's worst case


@pytest.mark.parametrize("fhe", ["disable", "simulate", "execute"])
def test_every_mode_flags_an_overflow(overflowing, fhe):
    qm, x = overflowing
    if fhe == "execute":  # the check runs on the clear path before anything is encrypted
        with pytest.raises(CircuitOverflowError, match=r"layer '0': 1 of 1 samples leave the compiled range"):
            qm.forward(x, fhe=fhe, strict=True)
        return
    with pytest.warns(OverflowRiskWarning, match=r"layer '0': 1 of 1 samples leave the compiled range"):
        qm.forward(x, fhe=fhe)
    with pytest.raises(CircuitOverflowError, match=r"layer '0': 1 of 1 samples .* bitwidth_method='interval'"):
        qm.forward(x, fhe=fhe, strict=True)


def test_global_p_error_is_the_whole_circuit_figure(fhe_config):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    qm = qfhe.compile_torch_model(
        m, np.random.RandomState(0).randn(100, 8), n_bits=4, p_error=0.01, configuration=fhe_config
    )
    st = qm.statistics
    assert st["pbs_count"] > 1
    assert st["p_error"] <= 0.01 * 1.0001 < st["global_p_error"]
    # independent lookups: 1 - (1 - p)^n
    assert st["global_p_error"] == pytest.approx(1 - (1 - st["p_error"]) ** st["pbs_count"], rel=0.05)


def test_digits_mlp_at_6_bits_is_within_1_5_points_of_float(digits, fhe_config):
    from conftest import train

    Xtr, Xte, ytr, yte = digits
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = train(
            nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
            Xtr,
            ytr,
            seed=seed,
        )
        with torch.no_grad():
            acc_float = accuracy(m(torch.tensor(Xte, dtype=torch.float32)), yte)
        qm = qfhe.compile_torch_model(m, Xtr, n_bits=6, rounding_threshold_bits=6, configuration=fhe_config)
        assert accuracy(qm.forward(Xte, fhe="simulate"), yte) >= acc_float - 0.015, seed
