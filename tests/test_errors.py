"""Bad input gets a clear error that names the parameter or node; messages are pinned."""

import numpy as np
import pytest
import torch
from torch import nn

import qfhe
from qfhe.errors import (BitWidthError, ConfigurationError, InputClippingWarning, InputsetError, InputValidationError,
                         KeysNotGeneratedError, QfheError, SmallInputsetWarning, UnsupportedOpError)


def test_errors_importable_from_both_places():
    import qfhe.errors as errors
    for name in ("UnsupportedOpError", "BitWidthError", "ConfigurationError", "InputValidationError",
                 "InputsetError", "CircuitOverflowError", "KeysNotGeneratedError", "NotCompiledError"):
        assert getattr(qfhe, name) is getattr(errors, name)
        assert issubclass(getattr(errors, name), QfheError)
    assert issubclass(UnsupportedOpError, ValueError) and issubclass(KeysNotGeneratedError, RuntimeError)


@pytest.fixture(scope="module")
def tiny(fhe_config):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    X = np.random.RandomState(0).randn(64, 4)
    return qfhe.compile_torch_model(m, X, n_bits=4, rounding_threshold_bits=4, configuration=fhe_config), m, X


@pytest.mark.parametrize("kwargs,match", [
    ({"p_error": 0.01, "global_p_error": 0.01}, "give p_error .* or global_p_error .*, not both"),
    ({"p_error": 2.0}, r"p_error must be in \(0, 1\), got 2.0"),
    ({"n_bits": 1}, "n_bits must be an int from 2 to 16"),
    ({"n_bits": {"op_inputs": 4, "weights": 3}}, "n_bits has unknown key 'weights'"),
    ({"n_bits": {"op_inputs": 20}}, r"n_bits\['op_inputs'\] must be an int from 2 to 16, got 20"),
    ({"rounding_threshold_bits": 9}, "rounding_threshold_bits must be None, an int from 2 to 8"),
    ({"rounding_threshold_bits": {"n_bits": 4, "method": "fast"}}, r"rounding_threshold_bits\['method'\] must be 'exact' or 'approximate'"),
    ({"rounding_threshold_bits": {"bits": 4}}, "needs the key 'n_bits'"),
    ({"bitwidth_method": "guess"}, "bitwidth method must be one of"),
    ({"scheme": "bgv"}, "scheme must be 'tfhe' or 'ckks'"),
    ({"simulate_batch_size": 0}, "simulate_batch_size must be a positive int"),
])
def test_bad_compile_parameters(kwargs, match):
    m = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ConfigurationError, match=match):
        qfhe.compile_torch_model(m, np.random.randn(40, 4), **kwargs)


def test_rounding_method_is_case_insensitive():
    from qfhe.quant import parse_rounding
    assert parse_rounding({"n_bits": 4, "method": "Approximate"}).method == "approximate"
    assert parse_rounding(5).method == "exact"


@pytest.mark.parametrize("X,match", [
    (np.zeros((0, 4)), "the inputset has 0 samples"),
    (np.zeros((1, 4)), "the inputset has 1 sample;"),
    (np.full((10, 4), np.nan), "inputset contains 40 NaN or infinite values"),
    (np.array([["a"] * 4] * 4), "inputset must be numeric"),
    (np.zeros(4), r"the inputset must have shape \(n_samples, ...\)"),
])
def test_bad_inputset(X, match):
    with pytest.raises(InputsetError, match=match):
        qfhe.compile_torch_model(nn.Sequential(nn.Linear(4, 2)), X)


def test_wrong_inputset_shape_for_model():
    with pytest.raises(InputsetError, match=r"the model failed on inputset samples of shape \(2, 5\): mat1 and mat2 shapes cannot be multiplied"):
        qfhe.compile_torch_model(nn.Sequential(nn.Linear(4, 2)), np.zeros((40, 5)))


def test_small_inputset_warns(fhe_config):
    with pytest.warns(SmallInputsetWarning, match="the inputset has only 5 samples"):
        qfhe.compile_torch_model(nn.Sequential(nn.Linear(4, 2)), np.random.randn(5, 4), n_bits=3,
                                 configuration=fhe_config)


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
    with pytest.warns(InputClippingWarning, match="3 input values in 2 of 3 samples lie outside the calibrated"):
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
    with pytest.raises(BitWidthError, match=r"layer '0' feeds a table lookup of \d+ bits .* at most 16 bits\. "
                                            r"Remedies: set rounding_threshold_bits .* at most 1 active input at 8-bit weights"):
        qfhe.compile_torch_model(m, X, n_bits=8, bitwidth_method="interval")


def test_unsupported_op_through_compile():
    class M(nn.Module):
        def forward(self, x):
            return torch.exp(x)

    with pytest.raises(UnsupportedOpError, match=r"node 'exp' \(call_function exp\) is not supported"):
        qfhe.compile_torch_model(M(), np.random.randn(40, 3))


def test_quantized_only_model_needs_compile():
    from qfhe.errors import NotCompiledError
    m = nn.Sequential(nn.Linear(3, 2))
    qm = qfhe.quantize_torch_model(m, np.random.RandomState(0).randn(40, 3), n_bits=3)
    qm.forward(np.zeros((1, 3)))  # the clear reference works
    for action in (lambda: qm.forward(np.zeros((1, 3)), fhe="simulate"), lambda: qm.statistics,
                   lambda: qm.fhe_circuit):
        with pytest.raises(NotCompiledError, match=r"call qm.compile\(\)"):
            action()
