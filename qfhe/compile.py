"""``compile_torch_model``: the one front door of the TFHE path (``quantize_torch_model`` stops
before the circuit)."""

from __future__ import annotations

import numpy as np
import torch

from qfhe.errors import ConfigurationError
from qfhe.frontend.brevitas import import_brevitas
from qfhe.frontend.torch_fx import import_torch
from qfhe.ir.ops import evaluate
from qfhe.model import QuantizedModule
from qfhe.passes.bitwidth import client_input_nodes
from qfhe.passes.pipelines import build_integer_graph, canonicalize, plan_rounding
from qfhe.quant.config import parse_n_bits, parse_rounding
from qfhe.tfhe.circuit import make_configuration
from qfhe.validation import check_inputset

#: concrete evaluates the traced function once per compile sample; the bit-width hints carry the
#: ranges of the whole inputset, so a subset is enough for concrete itself.
MAX_CONCRETE_INPUTSET = 128


def quantize_torch_model(
    model: torch.nn.Module,
    inputset,
    n_bits=6,
    rounding_threshold_bits=None,
    per_channel: bool = False,
    bitwidth_method: str = "calibration",
) -> QuantizedModule:
    """Import, quantize, fuse and round a float PyTorch model, without compiling a circuit.

    The result runs with ``fhe="disable"`` (the exact integer reference) and reports bit-widths;
    call :meth:`QuantizedModule.compile` to build the TFHE circuits. Parameters are those of
    :func:`compile_torch_model`.

    Returns
    -------
    QuantizedModule

    Examples
    --------
    >>> import numpy as np, torch, qfhe
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> X = np.random.RandomState(0).randn(64, 4)
    >>> qm = qfhe.quantize_torch_model(m, X, n_bits=4, rounding_threshold_bits=3)
    >>> qm.is_compiled, [r["tlu_bits"] for r in qm.bitwidth_report()]
    (False, [3, None])
    """
    return _quantize(import_torch, model, inputset, parse_n_bits(n_bits), rounding_threshold_bits, per_channel,
                     bitwidth_method, qat=False)


def quantize_brevitas_qat_model(model: torch.nn.Module, inputset, rounding_threshold_bits=None,
                                bitwidth_method: str = "calibration") -> QuantizedModule:
    """Import a Brevitas QAT model with its own quantizers, fuse and round it, without compiling.

    Parameters are those of :func:`compile_brevitas_qat_model`.

    Returns
    -------
    QuantizedModule

    Examples
    --------
    >>> import numpy as np, torch, brevitas.nn as qnn, qfhe
    >>> m = torch.nn.Sequential(qnn.QuantIdentity(bit_width=3, return_quant_tensor=True),
    ...                         qnn.QuantLinear(4, 4, bias=True, weight_bit_width=3),
    ...                         qnn.QuantReLU(bit_width=3, return_quant_tensor=True),
    ...                         qnn.QuantLinear(4, 2, bias=True, weight_bit_width=3))
    >>> qm = qfhe.quantize_brevitas_qat_model(m, np.random.RandomState(0).randn(50, 4))
    >>> [n.op for n in qm.graph.nodes][1:]
    ['quant', 'qgemm', 'tlu', 'qgemm', 'dequant']
    """
    # n_bits is unused by a QAT import (Brevitas gives every width); it only bounds the remedy text.
    return _quantize(import_brevitas, model, inputset, parse_n_bits(8), rounding_threshold_bits, False,
                     bitwidth_method, qat=True)


def compile_brevitas_qat_model(
    model: torch.nn.Module,
    inputset,
    rounding_threshold_bits=None,
    p_error: float | None = None,
    global_p_error: float | None = None,
    configuration=None,
    bitwidth_method: str = "calibration",
    simulate_batch_size: int = 64,
) -> QuantizedModule:
    """Compile a Brevitas quantization-aware-trained model exactly as it was trained.

    The quantizers (scale, zero point, bit-width, signedness, narrow range) and the integer weights
    are read from the Brevitas modules; nothing is re-quantized. The first quantizer (a
    ``QuantIdentity`` on the input) runs on the client. Every other requantization, with the
    activations and any BatchNorm between a layer and its activation quantizer, becomes one table
    lookup, rounding half to even like Brevitas.

    Parameters
    ----------
    model : torch.nn.Module
        Built from ``brevitas.nn`` layers.
    inputset : ndarray or torch.Tensor, shape (n, ...)
        Representative inputs: they size the integer accumulators (not the quantizers).
    rounding_threshold_bits, p_error, global_p_error, configuration, bitwidth_method, simulate_batch_size
        As in :func:`compile_torch_model`.

    Returns
    -------
    QuantizedModule

    Raises
    ------
    UnsupportedOpError
        For an unsupported Brevitas module, or a float value an integer op reads (the message names
        the node and where to put a ``QuantIdentity``).

    Examples
    --------
    >>> import numpy as np, torch, brevitas.nn as qnn, qfhe
    >>> m = torch.nn.Sequential(qnn.QuantIdentity(bit_width=3, return_quant_tensor=True),
    ...                         qnn.QuantLinear(4, 2, bias=True, weight_bit_width=3))
    >>> X = np.random.RandomState(0).randn(50, 4)
    >>> qm = qfhe.compile_brevitas_qat_model(m, X)
    >>> bool(np.array_equal(qm.forward(X), qm.forward(X, fhe="simulate")))
    True
    """
    make_configuration(configuration, p_error, global_p_error)  # fail fast, before the slow steps
    qm = quantize_brevitas_qat_model(model, inputset, rounding_threshold_bits, bitwidth_method)
    return qm.compile(p_error, global_p_error, configuration, simulate_batch_size)


def _compile_ckks(model, inputset, ckks_params, pipeline):
    from qfhe.ckks import CKKSCompiler, CKKSParameters, CompilationContext, FakeBackend, HEScheme
    from qfhe.ckks.passes import default_pipeline

    X = check_inputset(inputset)
    context = CompilationContext(HEScheme.CKKS, ckks_params or CKKSParameters(), FakeBackend())
    return CKKSCompiler(context, pipeline or default_pipeline()).compile(model, X)


def _quantize(importer, model, inputset, nb, rounding_threshold_bits, per_channel, bitwidth_method, qat):
    if not isinstance(model, torch.nn.Module):
        raise ConfigurationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rounding = parse_rounding(rounding_threshold_bits)
    X = check_inputset(inputset)

    float_graph = canonicalize(importer(model, torch.as_tensor(X[:2], dtype=torch.float32)))
    fused = build_integer_graph(float_graph, X, nb, per_channel, qat)
    X_compile = with_input_corners(fused, X)
    graph, info = plan_rounding(fused, X_compile, rounding, bitwidth_method, nb)

    codes = evaluate("quant", [X_compile], client_input_nodes(graph)[0].attrs)
    settings = {"n_bits": None if qat else nb, "rounding": rounding, "per_channel": per_channel,
                "bitwidth_method": bitwidth_method, "qat": qat}
    return QuantizedModule(float_graph, fused, graph, info, X.shape[1:], settings, _subsample(codes))


def compile_torch_model(
    model: torch.nn.Module,
    inputset,
    n_bits=6,
    rounding_threshold_bits=None,
    p_error: float | None = None,
    global_p_error: float | None = None,
    configuration=None,
    per_channel: bool = False,
    bitwidth_method: str = "calibration",
    simulate_batch_size: int = 64,
    scheme: str = "tfhe",
    ckks_params=None,
    pipeline=None,
):
    """Compile a float PyTorch model into a model that runs on encrypted data.

    Parameters
    ----------
    model : torch.nn.Module
        Float model (evaluated in eval mode; its training flag is restored).
    inputset : ndarray or torch.Tensor, shape (n, ...)
        Representative inputs (at least 2; a few hundred is good). Sets every quantization range.
    n_bits : int or dict
        Bit-width of everything, or a dict with keys ``model_inputs``, ``op_inputs``,
        ``op_weights``, ``model_outputs`` (defaults: op_inputs 6, op_weights and model_inputs
        follow op_inputs, model_outputs 8).
    rounding_threshold_bits : None, int or dict
        Width (sign included) of every table lookup input: None (no rounding), an int 2..8 (exact
        rounding) or ``{"n_bits": int, "method": "exact" | "approximate"}``.
    p_error, global_p_error : float, optional
        Error probability per table lookup, or for the whole circuit; give at most one. qfhe's
        default is ``global_p_error=1e-5``.
    configuration : concrete.fhe.Configuration, optional
        Passed through to concrete-python (qfhe only sets the error probabilities).
    per_channel : bool
        Quantize weights per output channel.
    bitwidth_method : {"calibration", "interval"}
        Size accumulators from the calibration data (plus input-range corners), or from
        worst-case interval bounds (safe for any input, wider).
    simulate_batch_size : int
        Samples per call of the batch simulation circuit.
    scheme : {"tfhe", "ckks"}
        The FHE scheme. ``"ckks"`` returns a :class:`qfhe.ckks.CompiledCKKSModel` (approximate real
        arithmetic, polynomial activations); the TFHE-only arguments are ignored there.
    ckks_params : qfhe.ckks.CKKSParameters, optional
        CKKS parameters (default: N = 2^15, 19 levels of 40 bits, 128-bit secure).
    pipeline : qfhe.ckks.passes.PassPipeline, optional
        CKKS passes (default: the fully optimized pipeline, ``qfhe.ckks.passes.default_pipeline()``).

    Returns
    -------
    QuantizedModule or qfhe.ckks.CompiledCKKSModel

    Raises
    ------
    UnsupportedOpError, ConfigurationError, InputsetError, BitWidthError

    Examples
    --------
    >>> import numpy as np, torch, qfhe
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> X = np.random.RandomState(0).randn(64, 4)
    >>> qm = qfhe.compile_torch_model(m, X, n_bits=4, rounding_threshold_bits=4)
    >>> bool(np.array_equal(qm.forward(X, fhe="disable"), qm.forward(X, fhe="simulate")))
    True
    """
    if scheme == "ckks":
        return _compile_ckks(model, inputset, ckks_params, pipeline)
    if scheme != "tfhe":
        raise ConfigurationError(f"scheme must be 'tfhe' or 'ckks', got {scheme!r}")
    make_configuration(configuration, p_error, global_p_error)  # fail fast, before the slow steps
    qm = quantize_torch_model(model, inputset, n_bits, rounding_threshold_bits, per_channel, bitwidth_method)
    return qm.compile(p_error, global_p_error, configuration, simulate_batch_size)


def with_input_corners(graph, X: np.ndarray) -> np.ndarray:
    """Append the two corners of the clipped input range (all-minimum, all-maximum) to ``X``.

    concrete sizes values from the inputset and silently wraps values beyond; the corners make
    saturated inputs part of what the circuit is sized for.

    Examples
    --------
    >>> import numpy as np, torch
    >>> qm = quantize_torch_model(torch.nn.Linear(2, 1), np.random.RandomState(0).rand(40, 2), n_bits=3)
    >>> with_input_corners(qm.graph, np.zeros((5, 2))).shape
    (7, 2)
    """
    a = client_input_nodes(graph)[0].attrs
    lo = a["scale"] * (a["qmin"] - a["zero_point"])
    hi = a["scale"] * (a["qmax"] - a["zero_point"])
    corners = np.stack([np.full(X.shape[1:], lo), np.full(X.shape[1:], hi)])
    return np.concatenate([X, corners])


def _subsample(codes: np.ndarray) -> np.ndarray:
    if len(codes) <= MAX_CONCRETE_INPUTSET:
        return codes
    keep = np.linspace(0, len(codes) - 3, MAX_CONCRETE_INPUTSET - 2).astype(int)
    return np.concatenate([codes[keep], codes[-2:]])  # the corners stay
