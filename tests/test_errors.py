"""Bad input gets a clear error that names the parameter or node; messages are pinned."""

import numpy as np
import pytest
import torch
from torch import nn

import qfhe
from qfhe.errors import (
    BitWidthError,
    ConfigurationError,
    InputClippingWarning,
    InputsetError,
    InputValidationError,
    KeysNotGeneratedError,
    QfheError,
    SmallInputsetWarning,
    UnsupportedOpError,
)


def test_errors_importable_from_both_places():
    import qfhe.errors as errors

    for name in (
        "UnsupportedOpError",
        "BitWidthError",
        "ConfigurationError",
        "InputValidationError",
        "InputsetError",
        "CircuitOverflowError",
        "KeysNotGeneratedError",
        "NotCompiledError",
    ):
        assert getattr(qfhe, name) is getattr(errors, name)
        assert issubclass(getattr(errors, name), QfheError)
    assert issubclass(UnsupportedOpError, ValueError) and issubclass(KeysNotGeneratedError, RuntimeError)
    for name in (
        "InsecureParametersWarning",
        "NarrowCalibrationWarning",
        "PolynomialRangeWarning",
        "CalibrationWarning",
        "OverflowRiskWarning",
        "InputClippingWarning",
        "SmallInputsetWarning",
    ):
        assert getattr(qfhe, name) is getattr(errors, name) and issubclass(getattr(errors, name), qfhe.QfheWarning)
    from qfhe import ckks

    assert ckks.InsecureParametersWarning is errors.InsecureParametersWarning


@pytest.fixture(scope="module")
def tiny(fhe_config):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    X = np.random.RandomState(0).randn(64, 4)
    return qfhe.compile_torch_model(m, X, n_bits=4, rounding_threshold_bits=4, configuration=fhe_config), m, X


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"p_error": 0.01, "global_p_error": 0.01}, "give p_error .* or global_p_error .*, not both"),
        ({"p_error": 2.0}, r"p_error must be a number in \(0, 1\), got 2.0"),
        ({"p_error": "0.01"}, r"p_error must be a number in \(0, 1\), got '0.01' \(str\)"),
        ({"global_p_error": True}, r"global_p_error must be a number in \(0, 1\), got True"),
        ({"configuration": "x"}, r"configuration must be a concrete.fhe.Configuration, got 'x' \(str\)"),
        ({"per_channel": "yes"}, r"per_channel must be True or False, got 'yes'"),
        ({"calibration_margin": "0.1"}, r"calibration_margin must be a number in \[0, 10\]"),
        ({"n_bits": 4.0}, "n_bits must be an int from 2 to 16"),
        ({"scheme": "ckks", "n_bits": 4, "p_error": 0.1}, r"n_bits, p_error only apply to scheme='tfhe'"),
        ({"pipeline": []}, r"ckks_params and pipeline only apply to scheme='ckks'"),
        ({"n_bits": 1}, "n_bits must be an int from 2 to 16"),
        ({"n_bits": {"op_inputs": 4, "weights": 3}}, "n_bits has unknown key 'weights'"),
        ({"n_bits": {"op_inputs": 20}}, r"n_bits\['op_inputs'\] must be an int from 2 to 16, got 20"),
        ({"rounding_threshold_bits": 9}, "rounding_threshold_bits must be None, an int from 2 to 8"),
        (
            {"rounding_threshold_bits": {"n_bits": 4, "method": "fast"}},
            r"rounding_threshold_bits\['method'\] must be 'exact' or 'approximate'",
        ),
        (
            {"rounding_threshold_bits": {"bits": 4}},
            r"unknown layer\(s\) \['bits'\]; the layers with a table lookup are",
        ),
        ({"rounding_threshold_bits": {"n_bits": 4, "mode": 1}}, "needs the key 'n_bits'"),
        ({"bitwidth_method": "guess"}, "bitwidth_method must be one of"),
        ({"scheme": "bgv"}, "scheme must be 'tfhe' or 'ckks'"),
        ({"simulate_batch_size": 0}, "simulate_batch_size must be a positive int"),
    ],
)
def test_bad_compile_parameters(kwargs, match):
    m = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ConfigurationError, match=match):
        qfhe.compile_torch_model(m, np.random.randn(40, 4), **kwargs)


def test_rounding_method_is_case_insensitive():
    from qfhe.quant import parse_rounding

    assert parse_rounding({"n_bits": 4, "method": "Approximate"}).method == "approximate"
    assert parse_rounding(5).method == "exact"


@pytest.mark.parametrize(
    "X,match",
    [
        (np.zeros((0, 4)), "the inputset has 0 samples"),
        (np.zeros((1, 4)), "the inputset has 1 sample;"),
        (np.full((10, 4), np.nan), "inputset contains 40 NaN or infinite values"),
        (np.array([["a"] * 4] * 4), "inputset must be numeric"),
        (np.zeros(4), r"the inputset must have shape \(n_samples, ...\)"),
    ],
)
def test_bad_inputset(X, match):
    with pytest.raises(InputsetError, match=match):
        qfhe.compile_torch_model(nn.Sequential(nn.Linear(4, 2)), X)


def test_wrong_inputset_shape_for_model():
    with pytest.raises(
        InputsetError,
        match=r"the model failed on inputset samples of shape \(2, 5\): RuntimeError: mat1 and mat2 shapes cannot be multiplied",
    ):
        qfhe.compile_torch_model(nn.Sequential(nn.Linear(4, 2)), np.zeros((40, 5)))


def test_ragged_inputset():
    with pytest.raises(InputsetError, match=r"inputset is ragged \(its rows have different lengths\)"):
        qfhe.compile_torch_model(nn.Sequential(nn.Linear(2, 2)), [[1.0, 2.0], [1.0]] * 20)


def test_numpy_scalars_are_accepted_wherever_python_numbers_are(fhe_config):
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    X = np.random.RandomState(0).randn(40, 4)
    qm = qfhe.compile_torch_model(
        m,
        X,
        n_bits=np.int64(4),
        rounding_threshold_bits=np.int32(3),
        p_error=np.float32(0.01),
        simulate_batch_size=np.int64(8),
        per_channel=np.bool_(False),
        calibration_margin=np.float64(0.1),
        configuration=fhe_config,
    )
    assert qm.settings["n_bits"].op_inputs == 4 and type(qm.settings["n_bits"].op_inputs) is int
    qm.compile(global_p_error=np.float64(1e-6))  # at 0.01 one run in about 30 differs by a lookup step
    np.testing.assert_array_equal(qm.forward(X[:3], fhe="simulate"), qm.forward(X[:3]))
    assert qfhe.quantize_torch_model(m, X, n_bits={"op_inputs": np.int8(3)}).settings["n_bits"].op_inputs == 3


@pytest.mark.parametrize("fhe", ["disable", "simulate", "execute"])
def test_empty_batch_gives_an_empty_result(tiny, fhe):
    qm, _, _ = tiny
    out = qm.forward(np.zeros((0, 4)), fhe=fhe)  # no keys needed: nothing is encrypted
    assert out.shape == (0, 2)


def test_two_input_model_needs_one_inputset_per_input():
    from qfhe.errors import InputsetError

    class TwoInputs(nn.Module):
        def forward(self, a, b):
            return a + b

    with pytest.raises(
        InputsetError,
        match=r"forward takes 2 tensor argument\(s\) \(a, b\) but the inputset gives 1; "
        r"pass a tuple with one array per argument",
    ):
        qfhe.compile_torch_model(TwoInputs(), np.zeros((40, 4)))


def test_brevitas_model_through_compile_torch_model_points_to_the_qat_entry():
    import brevitas.nn as qnn

    m = nn.Sequential(qnn.QuantIdentity(bit_width=3, return_quant_tensor=True), qnn.QuantLinear(4, 2, bias=True))
    with pytest.raises(
        UnsupportedOpError,
        match=r"module '0' \(QuantIdentity\) is a Brevitas quantized layer: compile a "
        r"Brevitas QAT model with qfhe.compile_brevitas_qat_model",
    ):
        qfhe.compile_torch_model(m, np.random.randn(40, 4))


def test_double_model_compiles(fhe_config):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    X = np.random.RandomState(0).randn(40, 4)
    qm = qfhe.compile_torch_model(m, X, n_bits=6, configuration=fhe_config)
    ref = m(torch.tensor(X[:5])).detach().numpy()
    assert np.abs(qm.forward(X[:5], fhe="simulate") - ref).max() < 0.2


def test_outliers_in_the_inputset_are_named():
    X = np.random.RandomState(0).randn(200, 4)
    X[17, 3] = 1e30
    with pytest.warns(
        qfhe.CalibrationWarning,
        match=r"input features dominated by outliers: feature 3 \(\d+x, e.g. "
        r"sample 17 = 1e\+30\).* Remove the outlying samples",
    ):
        qfhe.quantize_torch_model(nn.Sequential(nn.Linear(4, 2)), X)
    with pytest.warns(
        qfhe.CalibrationWarning,
        match=r"calibrated ranges dominated by outliers: 'input_1' .*"
        r"calibration='percentile'",
    ):
        qm = qfhe.quantize_torch_model(nn.Sequential(nn.Linear(4, 2)), X, per_feature_inputs=False)
    assert len(np.unique(qm.forward(X[:10]).round(6), axis=0)) == 1  # what the warning is about


def test_constant_features_are_named():
    X = np.random.RandomState(0).randn(200, 4)
    X[:, 1] = 3.0
    with pytest.warns(qfhe.CalibrationWarning, match=r"1 of 4 features never vary in the inputset: feature 1 \(= 3\)"):
        qfhe.quantize_torch_model(nn.Sequential(nn.Linear(4, 2)), X)
    with pytest.warns(qfhe.CalibrationWarning, match="features never vary"):
        qfhe.compile_torch_model(nn.Sequential(nn.Linear(4, 2)), X, scheme="ckks")


def test_small_inputset_warns(fhe_config):
    with pytest.warns(SmallInputsetWarning, match="the inputset has only 5 samples"):
        qfhe.compile_torch_model(
            nn.Sequential(nn.Linear(4, 2)), np.random.randn(5, 4), n_bits=3, configuration=fhe_config
        )


def test_bad_forward_inputs(tiny):
    qm, _, X = tiny
    with pytest.raises(InputValidationError, match=r"X contains 1 NaN or infinite values \(first at index \(0, 2\)\)"):
        bad = X[:2].copy()
        bad[0, 2] = np.nan
        qm.forward(bad)
    with pytest.raises(InputValidationError, match=r"per-sample shape \(5,\) but the model expects \(4,\)"):
        qm.forward(np.zeros((2, 5)))
    with pytest.raises(InputValidationError, match=r"X has 1 dimensions but the model expects 2"):
        qm.forward(np.zeros(4))
    with pytest.raises(InputValidationError, match="X must be numeric, got dtype <U1"):
        qm.forward(np.array([["a", "b", "c", "d"]]))
    with pytest.raises(ConfigurationError, match=r"fhe must be one of \('disable', 'simulate', 'execute'\)"):
        qm.forward(X[:2], fhe="encrypt")


def test_torch_input_accepted(tiny):
    qm, _, X = tiny
    np.testing.assert_array_equal(qm.forward(torch.tensor(X[:3])), qm.forward(X[:3]))


def test_clipping_warning_counts(tiny):
    qm, _, X = tiny
    big = X[:3].copy()
    big[0, 0] = 1e3
    big[2, :2] = -1e3
    with pytest.warns(
        InputClippingWarning, match="3 input values in 2 of 3 samples lie outside their feature's calibrated"
    ):
        qm.forward(big)


def test_execute_without_keygen_is_an_error(fhe_config):
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(3, 2))
    qm = qfhe.compile_torch_model(m, np.random.RandomState(1).randn(40, 3), n_bits=3, configuration=fhe_config)
    assert not qm.fhe_circuit.keys.are_generated
    with pytest.raises(KeysNotGeneratedError, match=r"call qm.fhe_circuit.keygen\(\) once before executing"):
        qm.forward(np.zeros((1, 3)), fhe="execute")
    assert not qm.fhe_circuit.keys.are_generated  # nothing generated behind the user's back


def test_bitwidth_error_names_layer_and_remedies():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(256, 4), nn.ReLU(), nn.Linear(4, 2))
    X = np.random.RandomState(0).rand(64, 256)
    with pytest.raises(
        BitWidthError,
        match=r"layer '0' feeds a table lookup of \d+ bits .* at most 16 bits\. "
        r"Remedies: set rounding_threshold_bits .* at most 1 active input at 8-bit weights",
    ):
        qfhe.compile_torch_model(m, X, n_bits=8, bitwidth_method="interval")


def test_bitwidth_error_never_suggests_zero_active_inputs():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(BitWidthError, match=r"Remedies: set rounding_threshold_bits \(e.g. 6\) or lower n_bits$"):
        qfhe.quantize_torch_model(m, np.random.RandomState(0).rand(64, 8), n_bits=16)


def test_qat_bitwidth_error_uses_the_models_own_widths():
    import brevitas.nn as qnn

    torch.manual_seed(0)
    m = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantLinear(512, 4, bias=False, weight_bit_width=8),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(4, 2, bias=False),
    )
    X = np.random.RandomState(0).randn(64, 512)
    with pytest.raises(
        BitWidthError,
        match=r"lower the Brevitas layers' bit-widths or prune each neuron to at most 1 "
        r"active input at 8-bit weights and 8-bit inputs",
    ):
        qfhe.quantize_brevitas_qat_model(m, X, bitwidth_method="interval")


def test_unsupported_op_through_compile():
    class M(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    with pytest.raises(UnsupportedOpError, match=r"node 'cumsum' \(call_function cumsum\) is not supported"):
        qfhe.compile_torch_model(M(), np.random.randn(40, 3))


def test_quantized_only_model_needs_compile():
    from qfhe.errors import NotCompiledError

    m = nn.Sequential(nn.Linear(3, 2))
    qm = qfhe.quantize_torch_model(m, np.random.RandomState(0).randn(40, 3), n_bits=3)
    qm.forward(np.zeros((1, 3)))  # the clear reference works
    for action in (lambda: qm.forward(np.zeros((1, 3)), fhe="simulate"), lambda: qm.statistics, lambda: qm.fhe_circuit):
        with pytest.raises(NotCompiledError, match=r"call qm.compile\(\)"):
            action()
