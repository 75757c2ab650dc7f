"""Brevitas QAT models compile exactly as trained: layer by layer, end to end, and encrypted."""

import importlib.util
from pathlib import Path

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from torch import nn

import qfhe
from qat_models import QCNN, QMLP, QAdaptive, calibrate
from qfhe.errors import UnsupportedOpError
from qfhe.ir import run
from qfhe.passes import quantize_graph
from qfhe.quant import parse_n_bits

LOW_P_ERROR = 1e-9
ROOT = Path(__file__).resolve().parents[1]


def _brevitas_ints(model, X):
    """Brevitas' integer codes of every QuantTensor a leaf module returns (one entry per call, named
    like qfhe names repeated calls: name, name_1, ...), and the model output."""
    ints, hooks = {}, []
    for name, mod in model.named_modules():
        if type(mod).__module__.startswith("brevitas.nn"):
            hooks.append(
                mod.register_forward_hook(
                    lambda m, i, o, name=name: (
                        ints.setdefault(name, []).append(o.int().numpy()) if hasattr(o, "scale") else None
                    )
                )
            )
    with torch.no_grad():
        out = model(X).numpy()
    for h in hooks:
        h.remove()
    named = {}
    for name, calls in ints.items():
        for k, codes in enumerate(calls):
            named[name if k == 0 else f"{name}_{k}"] = codes
    return named, out


def _check_exact(model, X):
    ints, ref = _brevitas_ints(model, X)
    Xn = X.numpy().astype(np.float64)
    qm = qfhe.quantize_brevitas_qat_model(model, Xn)
    # layer by layer on the quantized graph before fusion (fusion is bit-exact, see test_passes)
    unfused = quantize_graph(qm.float_graph, {}, parse_n_bits(8), qat=True)
    seen = {}
    run(unfused, Xn, lambda n, v: seen.__setitem__(n.name, v) if n.op == "quant" else None)
    seen[next(iter(ints))] = seen["x_q"]  # the input QuantIdentity runs on the client
    compared = 0
    for name, codes in ints.items():
        # the quantizer keeps the module's name (sink_reshapes renames one moved before a reshape "_pre")
        ours = next((seen[k] for k in (name, f"{name}_out", f"{name}_pre") if k in seen), None)
        if ours is not None:
            ours = ours.reshape(codes.shape)
        if ours is None:  # an accumulator (a layer without output quantizer), not a quantizer's output
            assert unfused[name].op in ("qgemm", "qconv"), name
            continue
        assert np.array_equal(ours, codes), f"{name}: {(ours != codes).sum()} of {codes.size} codes differ"
        compared += codes.size
    np.testing.assert_allclose(qm.forward(Xn), ref, atol=1e-5, rtol=1e-5)
    return qm, compared


@pytest.mark.parametrize("kind", ["mlp", "mlp_bn", "mlp_per_channel", "cnn", "adaptive_pool"])
def test_bit_exact_against_brevitas(kind):
    torch.manual_seed(0)
    if kind == "cnn":
        model, X = QCNN(), torch.randn(128, 1, 8, 8)
    elif kind == "adaptive_pool":
        model, X = QAdaptive(), torch.randn(128, 1, 6, 6)
    else:
        model = QMLP(bn=kind == "mlp_bn", per_channel=kind == "mlp_per_channel")
        X = torch.randn(256, 10)
    calibrate(model, X)
    qm, compared = _check_exact(model, X)
    assert compared > 1000
    if kind == "mlp_bn":
        tlu = qm.graph["act1"]
        assert [s["op"] for s in tlu.attrs["chain"]] == ["dequant", "affine", "activation", "quant"]
        assert "weight_int" in qm.float_graph["fc1"].attrs  # BatchNorm was not folded into the weights


def test_qat_cnn_uses_packed_add_and_merged_lookups():
    torch.manual_seed(0)
    model = calibrate(QCNN(), torch.randn(64, 1, 8, 8))
    qm = qfhe.quantize_brevitas_qat_model(model, np.random.RandomState(0).randn(64, 1, 8, 8))
    ops = qm.graph.ops()
    assert "pack" in ops  # z.value + h.value re-quantized: one two-input lookup
    assert [n.name for n in qm.graph.nodes if n.op == "add"][0] == "add"  # shared-scale residual: integer add
    # TruncAvgPool's requantization and the sigmoid after it became one lookup
    assert "pool" not in qm.graph and qm.graph["sig"].inputs == ["pool_sum"]


@pytest.fixture(scope="module")
def qat_example():
    spec = importlib.util.spec_from_file_location("qat_mlp", ROOT / "examples" / "qat_mlp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(qat_example):
    Xtr, Xte, ytr, yte = qat_example.load_data()
    return qat_example.train_qat(Xtr, ytr, epochs=150), (Xtr, Xte, ytr, yte)


@pytest.mark.parametrize("rounding", [None, 6])
def test_digits_qat_accuracy_and_simulation(trained, qat_example, rounding, fhe_config):
    model, (Xtr, Xte, _, yte) = trained
    with torch.no_grad():
        brevitas_out = model(torch.tensor(Xte, dtype=torch.float32)).numpy()
    qm = qfhe.compile_brevitas_qat_model(
        model, Xtr, rounding_threshold_bits=rounding, p_error=LOW_P_ERROR, configuration=fhe_config
    )
    clear = qm.forward(Xte)
    sim = qm.forward(Xte, fhe="simulate")
    np.testing.assert_array_equal(clear, sim)
    acc = qat_example.accuracy(sim, yte)
    assert acc >= 0.90
    rows = qm.bitwidth_report()
    if rounding is None:
        np.testing.assert_allclose(clear, brevitas_out, atol=1e-4)  # exactly the trained model
        assert all(r["lsbs_removed"] == 0 for r in rows)
    else:
        assert all(r["tlu_bits"] <= 6 for r in rows if r["tlu_bits"] is not None)
    assert all(r["acc_bits"] >= 7 for r in rows)


@pytest.mark.execute
def test_qat_execute_equals_simulate(trained, fhe_config):
    model, (Xtr, Xte, _, _) = trained
    qm = qfhe.compile_brevitas_qat_model(
        model, Xtr, rounding_threshold_bits=6, p_error=LOW_P_ERROR, configuration=fhe_config
    )
    qm.fhe_circuit.keygen()
    np.testing.assert_array_equal(qm.forward(Xte[:2], fhe="execute"), qm.forward(Xte[:2], fhe="simulate"))


def test_qat_cnn_simulates_like_the_clear_integers(fhe_config):
    torch.manual_seed(0)
    model = calibrate(QCNN(), torch.randn(64, 1, 8, 8))
    X = np.clip(np.random.RandomState(1).randn(64, 1, 8, 8), -3, 3)
    qm = qfhe.compile_brevitas_qat_model(
        model, X, rounding_threshold_bits=5, p_error=LOW_P_ERROR, configuration=fhe_config
    )
    np.testing.assert_array_equal(qm.forward(X), qm.forward(X, fhe="simulate"))


class NoInputQuant(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = qnn.QuantLinear(4, 2, bias=True, weight_bit_width=3)

    def forward(self, x):
        return self.fc(x)


class FloatBetween(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = qnn.QuantIdentity(bit_width=3, return_quant_tensor=True)
        self.fc1 = qnn.QuantLinear(4, 4, bias=True, weight_bit_width=3)
        self.fc2 = qnn.QuantLinear(4, 2, bias=True, weight_bit_width=3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.q(x))))


def test_unquantized_inputs_name_the_node_and_the_fix():
    X = np.random.RandomState(0).randn(40, 4)
    with pytest.raises(
        UnsupportedOpError,
        match=r"the model input 'x' feeds \['fc'\] without an input quantizer; "
        r"start a QAT model with a QuantIdentity",
    ):
        qfhe.quantize_brevitas_qat_model(NoInputQuant().eval(), X)
    with pytest.raises(
        UnsupportedOpError,
        match=r"node 'fc2' reads 'relu', which is not quantized; .*put a "
        r"QuantIdentity \(or a quantized activation\) after 'relu'",
    ):
        qfhe.quantize_brevitas_qat_model(FloatBetween().eval(), X)


def test_unsupported_brevitas_module():
    m = nn.Sequential(
        qnn.QuantIdentity(bit_width=3, return_quant_tensor=True),
        qnn.QuantLinear(4, 4, bias=False, weight_bit_width=3),
        qnn.QuantHardSwish() if hasattr(qnn, "QuantHardSwish") else nn.Identity(),
    )
    with pytest.raises(UnsupportedOpError, match=r"node '2' is a Brevitas QuantHardSwish"):
        qfhe.quantize_brevitas_qat_model(m.eval(), np.random.RandomState(0).randn(40, 4))


def test_qat_example_short(qat_example, capsys):
    result = qat_example.main(["--short"])
    out = capsys.readouterr().out
    assert "rounding_threshold_bits=None" in out and "rounding_threshold_bits=6" in out and "acc_bits" in out
    assert result["acc_clear_None"] == result["acc_brevitas"]
    assert result["acc_sim"] >= 0.9
    assert len(result["encrypted"]) == 1


def test_fusion_with_packing_and_merging_is_exact_and_idempotent():
    from qfhe.passes import fuse_lut

    torch.manual_seed(0)
    model = calibrate(QCNN(), torch.randn(64, 1, 8, 8))
    X = np.random.RandomState(2).randn(64, 1, 8, 8)
    qm = qfhe.quantize_brevitas_qat_model(model, X)
    unfused = quantize_graph(qm.float_graph, {}, parse_n_bits(8), qat=True)
    fused = fuse_lut(unfused)
    assert fused.ops().count("tlu") < sum(1 for n in unfused.nodes if n.op == "quant") - 1  # merged lookups
    np.testing.assert_array_equal(run(unfused, X)[0], run(fused, X)[0])
    assert fuse_lut(fused).ops() == fused.ops()
