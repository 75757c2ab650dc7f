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
from qfhe.passes.bitwidth import check_bitwidth_method, client_input_nodes
from qfhe.passes.input_scaling import scale_inputs
from qfhe.passes.pipelines import build_integer_graph, canonicalize, plan_rounding
from qfhe.quant.calibration import check_calibration, warn_outlier_features
from qfhe.quant.config import NBits, parse_n_bits, parse_rounding
from qfhe.quant.preprocess import apply_preprocess
from qfhe.tfhe.circuit import make_configuration
from qfhe.tune.metrics import resolve_metric
from qfhe.tune.rounding import plan_auto_rounding
from qfhe.validation import as_bool, as_float, as_int, check_inputset

#: concrete evaluates the traced function once per compile sample; qfhe gives concrete the ranges
#: predicted on the whole inputset (:func:`qfhe.tfhe.circuit.compile_with_ranges`), so a subset is
#: enough for concrete itself.
MAX_CONCRETE_INPUTSET = 128


def quantize_torch_model(
    model: torch.nn.Module,
    inputset,
    n_bits=6,
    rounding_threshold_bits=None,
    per_channel: bool = False,
    bitwidth_method: str = "calibration",
    calibration_margin: float = 0.0,
    X_val=None,
    y_val=None,
    rounding_tolerance: float = 0.01,
    rounding_metric=None,
    per_feature_inputs: bool = True,
    calibration: str = "minmax",
    calibration_percentile: float = 99.9,
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
    >>> _ = torch.manual_seed(0)
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> X = np.random.RandomState(0).randn(64, 4)
    >>> qm = qfhe.quantize_torch_model(m, X, n_bits=4, rounding_threshold_bits=3)
    >>> qm.is_compiled, [r["tlu_bits"] for r in qm.bitwidth_report()]
    (False, [3, None])
    """
    return _quantize(
        import_torch,
        model,
        inputset,
        parse_n_bits(n_bits),
        rounding_threshold_bits,
        as_bool("per_channel", per_channel),
        bitwidth_method,
        calibration_margin,
        qat=False,
        auto=(X_val, y_val, rounding_tolerance, rounding_metric),
        per_feature_inputs=as_bool("per_feature_inputs", per_feature_inputs),
        calibration=check_calibration(calibration, calibration_percentile),
    )


def quantize_brevitas_qat_model(
    model: torch.nn.Module,
    inputset,
    rounding_threshold_bits=None,
    bitwidth_method: str = "calibration",
    calibration_margin: float = 0.0,
    X_val=None,
    y_val=None,
    rounding_tolerance: float = 0.01,
    rounding_metric=None,
) -> QuantizedModule:
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
    # A QAT import takes every width from Brevitas: n_bits is not used.
    return _quantize(
        import_brevitas,
        model,
        inputset,
        None,
        rounding_threshold_bits,
        False,
        bitwidth_method,
        calibration_margin,
        qat=True,
        auto=(X_val, y_val, rounding_tolerance, rounding_metric),
    )


def compile_brevitas_qat_model(
    model: torch.nn.Module,
    inputset,
    rounding_threshold_bits=None,
    p_error: float | None = None,
    global_p_error: float | None = None,
    configuration=None,
    bitwidth_method: str = "calibration",
    simulate_batch_size: int = 64,
    calibration_margin: float = 0.0,
    X_val=None,
    y_val=None,
    rounding_tolerance: float = 0.01,
    rounding_metric=None,
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
    inputset : ndarray or torch.Tensor, shape (n, ...), or a tuple of them
        Representative inputs: they size the integer accumulators (not the quantizers). A tuple
        gives one array per argument of ``forward``.
    rounding_threshold_bits, p_error, global_p_error, configuration, bitwidth_method, simulate_batch_size, \
calibration_margin, X_val, y_val, rounding_tolerance, rounding_metric
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
    qm = quantize_brevitas_qat_model(
        model,
        inputset,
        rounding_threshold_bits,
        bitwidth_method,
        calibration_margin,
        X_val,
        y_val,
        rounding_tolerance,
        rounding_metric,
    )
    return qm.compile(p_error, global_p_error, configuration, simulate_batch_size)


def _compile_ckks(model, inputset, ckks_params, pipeline):
    from qfhe.ckks import CKKSCompiler, CKKSParameters, CompilationContext, FakeBackend, HEScheme
    from qfhe.ckks.passes import BootstrappingInsertionPass, default_pipeline

    if isinstance(inputset, tuple):
        raise ConfigurationError(
            "scheme='ckks' packs one input vector: a model with several inputs compiles with "
            "scheme='tfhe', or concatenate the inputs into one tensor and split it inside forward"
        )
    X = check_inputset(inputset)
    bootstraps = pipeline is not None and any(isinstance(p, BootstrappingInsertionPass) for p in pipeline.passes)
    if ckks_params is None and bootstraps:  # simulation only (SEAL cannot bootstrap): the long default chain
        ckks_params = CKKSParameters()
    elif ckks_params is None:  # the smallest secure parameters that fit the model without bootstrapping
        pipeline = pipeline or default_pipeline(bootstrapping=False)
        ckks_params = CKKSParameters.for_model(model, X, pipeline=pipeline)
    # simulate = the HE graph with CKKS-like noise, what execute on SEAL approaches
    context = CompilationContext(HEScheme.CKKS, ckks_params, FakeBackend(simulate_noise=True))
    return CKKSCompiler(context, pipeline or default_pipeline()).compile(model, X)


def _quantize(
    importer,
    model,
    inputset,
    nb,
    rounding_threshold_bits,
    per_channel,
    bitwidth_method,
    margin,
    qat,
    auto=(None, None, 0.01, None),
    per_feature_inputs: bool = False,
    calibration=("minmax", 99.9),
):
    if not isinstance(model, torch.nn.Module):
        raise ConfigurationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    X_val, y_val, tolerance, metric = auto
    is_auto = isinstance(rounding_threshold_bits, str) and rounding_threshold_bits.lower() == "auto"
    if is_auto and (X_val is None or y_val is None):
        raise ConfigurationError(
            "rounding_threshold_bits='auto' needs validation data: pass X_val and y_val "
            "(held-out inputs and targets) so each layer's rounding can be measured"
        )
    if not is_auto and (X_val is not None or y_val is not None):
        raise ConfigurationError("X_val and y_val are only used by rounding_threshold_bits='auto'")
    if is_auto and metric is not None:
        resolve_metric(metric)  # fail fast, before importing
    rounding = None if is_auto else parse_rounding(rounding_threshold_bits)
    method = check_bitwidth_method(bitwidth_method)
    margin = as_float("calibration_margin", margin, 0.0, 10.0, closed=True)
    Xs = check_inputsets(inputset)
    method_name, percentile = calibration
    if is_auto and len(Xs) > 1:
        raise ConfigurationError("rounding_threshold_bits='auto' supports models with one input; give a number")
    X = Xs[0] if len(Xs) == 1 else list(Xs)  # the interpreter's feed: an array, or one per input

    samples = tuple(torch.as_tensor(x[:2], dtype=torch.float32) for x in Xs)
    float_graph = canonicalize(importer(model, samples[0] if len(samples) == 1 else samples))
    specs = [None] * len(Xs)
    if per_feature_inputs:  # the client maps each feature onto [-1, 1]; the first layer absorbs the inverse
        float_graph, specs = scale_inputs(float_graph, list(Xs), percentile if method_name == "percentile" else None)
        float_graph = canonicalize(float_graph)
        if method_name == "minmax":
            for spec, x in zip(specs, Xs):
                if spec is not None:
                    warn_outlier_features(x)
        Xs = tuple(apply_preprocess(spec, x) for spec, x in zip(specs, Xs))
        X = Xs[0] if len(Xs) == 1 else list(Xs)
    names = [n.name for n in float_graph.nodes if n.op == "input"]
    fused = build_integer_graph(
        float_graph,
        X,
        nb or NBits(8, 8, 8, 8),
        per_channel,
        qat,
        method_name,
        percentile,
        checked_inputs=[n for n, spec in zip(names, specs) if spec is not None],
        input_margin=0.0 if qat else margin,
    )
    if not qat:  # a QAT input quantizer was trained with the model: what it collapses, training saw
        warn_collapsed_features(fused, Xs)
    inputs = [n.name for n in fused.nodes if n.op == "input"]
    codes = [_subsample(evaluate("quant", [Xs[inputs.index(q.inputs[0])]], q.attrs)) for q in client_input_nodes(fused)]
    codes = codes[0] if len(codes) == 1 else codes

    def build(r) -> QuantizedModule:
        graph, info = plan_rounding(fused, X, r, method, margin, qat)
        settings = {
            "n_bits": nb,
            "rounding": r,
            "per_channel": per_channel,
            "bitwidth_method": method,
            "calibration_margin": margin,
            "qat": qat,
        }
        return QuantizedModule(float_graph, fused, graph, info, Xs[0].shape[1:], settings, codes, specs)

    if is_auto:
        return plan_auto_rounding(build, X_val, y_val, metric, tolerance)[0]
    qm = build(rounding)
    if rounding is None:
        warn_wide_lookups(qm)
    return qm


#: Table lookups wider than this, left unrounded, get a word: each one costs several times a
#: 6-bit lookup (the last tuning benchmark: 450 samples simulated in 15 s at 15 bits, 0.1 s rounded
#: to 6, at the same accuracy).
WIDE_LOOKUP_BITS = 8


def warn_wide_lookups(qm: QuantizedModule) -> None:
    """Name the layers whose unrounded table lookups read more than ``WIDE_LOOKUP_BITS`` bits.

    Examples
    --------
    >>> import warnings, torch
    >>> m = torch.nn.Sequential(torch.nn.Linear(40, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     _ = quantize_torch_model(m, np.random.RandomState(0).randn(100, 40), n_bits=6)
    >>> [str(x.message).split(" up to")[0] for x in w if x.category.__name__ == "LatencyWarning"]
    ['1 table lookup reads']
    """
    import warnings

    from qfhe.errors import LatencyWarning
    from qfhe.validation import user_stacklevel

    wide = [r for r in qm.bitwidth_report() if r["tlu_bits"] is not None and r["tlu_bits"] > WIDE_LOOKUP_BITS]
    if wide:
        bits = max(r["tlu_bits"] for r in wide)
        layers = ", ".join(dict.fromkeys(str(r["layer"]) for r in wide))
        warnings.warn(
            f"{len(wide)} table lookup{'s read' if len(wide) > 1 else ' reads'} up to {bits} bits without rounding "
            f"(layer {layers}): each costs several times a lookup of {WIDE_LOOKUP_BITS} bits. rounding_threshold_bits=6 "
            "rounds them (about the same accuracy, much faster), or 'auto' with X_val, y_val searches per layer",
            LatencyWarning,
            stacklevel=user_stacklevel(),
        )


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
    calibration_margin: float = 0.0,
    X_val=None,
    y_val=None,
    rounding_tolerance: float = 0.01,
    rounding_metric=None,
    per_feature_inputs: bool = True,
    calibration: str = "minmax",
    calibration_percentile: float = 99.9,
):
    """Compile a float PyTorch model into a model that runs on encrypted data.

    Parameters
    ----------
    model : torch.nn.Module
        Float model (evaluated in eval mode; its training flag is restored).
    inputset : ndarray or torch.Tensor, shape (n, ...), or a tuple of them
        Representative inputs (at least 2; a few hundred is good). Sets every quantization range.
        For a model whose ``forward`` takes several tensors, a tuple with one array per input
        (same number of samples); ``forward`` then takes as many arrays.
    n_bits : int or dict
        Bit-width of everything, or a dict with keys ``model_inputs``, ``op_inputs``,
        ``op_weights``, ``model_outputs`` (defaults: op_inputs 6, op_weights and model_inputs
        follow op_inputs, model_outputs 8).
    rounding_threshold_bits : None, int, dict or "auto"
        Width (sign included) of the table lookup inputs: None (no rounding), an int 2..8 (exact
        rounding), ``{"n_bits": int, "method": "exact" | "approximate"}`` for every lookup, a
        per-layer dict ``{layer: int | {"n_bits", "method"} | None}`` (layers as in
        ``bitwidth_report()``; layers left out are not rounded), or ``"auto"``: a per-layer search
        for the fewest bits whose metric on ``X_val, y_val`` stays within ``rounding_tolerance``
        of the unrounded model (the plan is ``qm.rounding_plan``; ``qm.rounding_plan.as_dict()``
        passed back here reproduces the circuit).
    X_val, y_val : array-like, optional
        Validation data for ``rounding_threshold_bits="auto"`` (required there, refused elsewhere).
    rounding_tolerance : float
        Allowed metric loss of ``"auto"`` rounding against the unrounded model (0.01 = one point).
    rounding_metric : {"accuracy", "r2", "mse"}, callable or None
        The metric of ``"auto"`` rounding, as in :func:`qfhe.find_best_p_error`: by default
        ``accuracy`` (the argmax of the outputs against integer labels) when ``y_val`` holds
        class indices and the model has several outputs, ``r2`` otherwise.
    p_error, global_p_error : float, optional
        Error probability per table lookup, or for the whole circuit; give at most one. qfhe's
        default is ``global_p_error=1e-5``.
    configuration : concrete.fhe.Configuration, optional
        Passed through to concrete-python (qfhe only sets the error probabilities).
    per_channel : bool
        Quantize weights per output channel.
    per_feature_inputs : bool
        For an input of shape (n, F) read only by linear layers: the client maps each feature onto
        [-1, 1] by its calibrated range before quantizing (``qm.preprocess``), and the inverse map
        is folded into the first layer, so features in any units all get the full input code range
        at no cost to the server. Otherwise one input quantizer covers every feature, and features
        left with at most 2 codes are named in a ``CalibrationWarning``.
    bitwidth_method : {"calibration", "interval"}
        ``"calibration"`` sizes every accumulator from the range the calibration data reach
        (narrow, fast, accurate; an input that goes beyond is reported by every ``forward``
        mode); ``"interval"`` from worst-case interval bounds over the whole clipped input box
        (provably never wraps, but wider and slower).
    calibration_margin : float
        Widen the input quantizer's range and, with ``"calibration"``, every accumulator's range by
        this fraction of its width on each side (e.g. 0.1), for headroom against inputs unlike the
        calibration data; 0 by default. (Hidden activation quantizers keep their calibrated
        ranges: widening them would cost every value resolution.)
    calibration : {"minmax", "percentile"}
        How each quantizer's range is taken from the inputset: its min and max (every range is
        then checked, and one that a few outliers dominate is named in a ``CalibrationWarning``),
        or its ``[100 - calibration_percentile, calibration_percentile]`` percentiles, which clip
        the few values beyond.
    calibration_percentile : float
        The upper percentile of ``calibration="percentile"`` (default 99.9).
    simulate_batch_size : int
        Samples per call of the batch simulation circuit.
    scheme : {"tfhe", "ckks"}
        The FHE scheme. ``"ckks"`` returns a :class:`qfhe.ckks.CompiledCKKSModel` (approximate real
        arithmetic, polynomial activations); the TFHE-only arguments are ignored there.
    ckks_params : qfhe.ckks.CKKSParameters, optional
        CKKS parameters (default: ``CKKSParameters.for_model``, the smallest 128-bit-secure ring
        that holds the model without bootstrapping, with a 2^40 scale, so ``keygen()`` and
        ``forward(fhe="execute")`` run it on SEAL; with a ``pipeline`` that bootstraps, which only
        the FakeBackend can run, N = 2^15 with 19 levels of 40 bits).
    pipeline : qfhe.ckks.passes.PassPipeline, optional
        CKKS passes (default: the optimized pipeline, ``qfhe.ckks.passes.default_pipeline()``,
        without bootstrapping when the parameters are chosen for the model).

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
        given = {
            "n_bits": n_bits != 6,
            "rounding_threshold_bits": rounding_threshold_bits is not None,
            "p_error": p_error is not None,
            "global_p_error": global_p_error is not None,
            "configuration": configuration is not None,
            "per_channel": per_channel is not False,
            "bitwidth_method": bitwidth_method != "calibration",
            "simulate_batch_size": simulate_batch_size != 64,
            "calibration_margin": calibration_margin != 0.0,
            "X_val": X_val is not None,
            "y_val": y_val is not None,
            "per_feature_inputs": per_feature_inputs is not True,
            "calibration": calibration != "minmax",
            "calibration_percentile": calibration_percentile != 99.9,
        }
        if any(given.values()):
            raise ConfigurationError(
                f"{', '.join(k for k, v in given.items() if v)} only apply to scheme='tfhe'; the CKKS path takes "
                "ckks_params and pipeline (polynomial degree, packing and bootstrapping are passes)"
            )
        return _compile_ckks(model, inputset, ckks_params, pipeline)
    if scheme != "tfhe":
        raise ConfigurationError(f"scheme must be 'tfhe' or 'ckks', got {scheme!r}")
    if ckks_params is not None or pipeline is not None:
        raise ConfigurationError("ckks_params and pipeline only apply to scheme='ckks'")
    make_configuration(configuration, p_error, global_p_error)  # fail fast, before the slow steps
    as_int("simulate_batch_size", simulate_batch_size, 1, None, "a positive int")
    qm = quantize_torch_model(
        model,
        inputset,
        n_bits,
        rounding_threshold_bits,
        per_channel,
        bitwidth_method,
        calibration_margin,
        X_val,
        y_val,
        rounding_tolerance,
        rounding_metric,
        per_feature_inputs,
        calibration,
        calibration_percentile,
    )
    return qm.compile(p_error, global_p_error, configuration, simulate_batch_size)


def compile_onnx_model(model, inputset, **kwargs):
    """Compile an ONNX model like :func:`compile_torch_model`, with the same arguments and result.

    The ONNX graph becomes the torch module it stands for (:func:`qfhe.frontend.onnx.onnx_to_torch`)
    and goes through the torch frontend, so the torch exporter's graph compiles to the same circuit
    as the torch model it came from. Export with ``torch.onnx.export(model, example, path)`` and a
    fixed batch size: values computed from shapes must be constants.

    Parameters
    ----------
    model : onnx.ModelProto, bytes, str or pathlib.Path
        The ONNX model (standard ``ai.onnx`` operators), or the path of an ``.onnx`` file.
    inputset : ndarray, or a tuple of them for several inputs
        As in :func:`compile_torch_model`.
    **kwargs
        Every other argument of :func:`compile_torch_model` (``n_bits``, ``rounding_threshold_bits``,
        ``p_error``, ``scheme``...).

    Returns
    -------
    QuantizedModule or CompiledCKKSModel

    Raises
    ------
    ConfigurationError
        For something that is not an ONNX model, or a missing file.
    UnsupportedOpError
        Naming the ONNX node qfhe cannot take.

    Examples
    --------
    >>> import io, numpy as np, torch, qfhe
    >>> m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> f = io.BytesIO(); torch.onnx.export(m, torch.zeros(1, 3), f, dynamo=False)
    >>> X = np.random.RandomState(0).randn(100, 3)
    >>> qm = qfhe.compile_onnx_model(f.getvalue(), X, n_bits=6, rounding_threshold_bits=6)
    >>> same = qfhe.compile_torch_model(m, X, n_bits=6, rounding_threshold_bits=6)
    >>> bool((qm.forward(X[:5], fhe="simulate") == same.forward(X[:5])).all())
    True
    """
    from qfhe.frontend.onnx import onnx_to_torch

    return compile_torch_model(onnx_to_torch(model), inputset, **kwargs)


def check_inputsets(inputset) -> tuple[np.ndarray, ...]:
    """The calibration inputs: one array, or a tuple with one array per model input (same length).

    Examples
    --------
    >>> [x.shape for x in check_inputsets((np.zeros((3, 2)), np.zeros((3, 4))))]
    [(3, 2), (3, 4)]
    """
    if not isinstance(inputset, tuple):
        return (check_inputset(inputset, outliers=False),)
    if not inputset:
        raise ConfigurationError("inputset is an empty tuple; give one array per model input")
    arrays = tuple(check_inputset(x, outliers=False) for x in inputset)
    if len({len(x) for x in arrays}) > 1:
        raise ConfigurationError(
            f"the inputsets of the model's inputs have different numbers of samples: "
            f"{[len(x) for x in arrays]}; give the same samples for every input"
        )
    return arrays


def warn_collapsed_features(fused, Xs) -> None:
    """Warn when a shared input quantizer leaves features with at most 2 codes (their values collapse).

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "input", [], {"shape": (2,)}), Node("xq", "quant", ["x"],
    ...            {"scale": 10.0, "zero_point": 0, "qmin": 0, "qmax": 15, "side": "client"})], ["xq"])
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_collapsed_features(g, (np.array([[0.0, 0.0], [150.0, 1.0]]),))
    >>> str(w[0].message).split(":")[0]
    '1 of 2 input features get at most 2 of the 16 input codes'
    """
    import warnings

    from qfhe.errors import CalibrationWarning
    from qfhe.validation import user_stacklevel

    inputs = [n.name for n in fused.nodes if n.op == "input"]
    for q in client_input_nodes(fused):
        X = np.asarray(Xs[inputs.index(q.inputs[0])])
        if X.ndim != 2 or np.ndim(q.attrs["scale"]):
            continue
        spans = (X.max(axis=0) - X.min(axis=0)) / q.attrs["scale"]
        collapsed = np.flatnonzero((spans > 0) & (spans < 2))
        if len(collapsed):
            shown = ", ".join(str(int(j)) for j in collapsed[:10]) + (" ..." if len(collapsed) > 10 else "")
            warnings.warn(
                f"{len(collapsed)} of {X.shape[1]} input features get at most 2 of the "
                f"{q.attrs['qmax'] - q.attrs['qmin'] + 1} input codes: features {shown} vary over a small part of the "
                "range one input quantizer shares with much wider features, so their values collapse. Standardise the "
                "features before the model (per_feature_inputs=True does it on the client when only linear layers "
                "read the input)",
                CalibrationWarning,
                stacklevel=user_stacklevel(),
            )


def _subsample(codes: np.ndarray) -> np.ndarray:
    if len(codes) <= MAX_CONCRETE_INPUTSET:
        return codes
    return codes[np.linspace(0, len(codes) - 1, MAX_CONCRETE_INPUTSET).astype(int)]
