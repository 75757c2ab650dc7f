"""The TFHE side of deployment: the circuit as qfhe IR, rebuilt by qfhe's lowering on the server.

A server artifact carries the circuit graph exactly as qfhe lowered it (materialized integer
tables, weights, roundings), the bit-width table, the bounds concrete typed every traced value
from, and the compile options, all plain data. :func:`build_circuit` checks that data against the
op vocabulary below, lowers it with :func:`qfhe.tfhe.lower.make_circuit_function` and compiles it
with :func:`qfhe.tfhe.circuit.compile_from_bounds`; the result must reproduce the client specs
recorded at save time byte for byte, or the artifact is refused. Keys, ciphertexts and evaluation
keys are concrete's own serialized bytes, checked by :mod:`qfhe.deploy.concrete_wire` first.

Examples
--------
>>> from qfhe._concrete import fhe
>>> opts = compile_options(fhe.Configuration(p_error=0.01), compress=True)
>>> opts["p_error"], opts["compress_evaluation_keys"], opts["parameter_selection_strategy"]
(0.01, True, 'multi')
"""

from __future__ import annotations

import enum
import json

from qfhe._concrete import fhe
from qfhe.deploy.circuit_doc import circuit_from_plain, circuit_to_plain
from qfhe.deploy.concrete_wire import check_evaluation_keys, check_value
from qfhe.errors import ArtifactError, CiphertextError, ConfigurationError

#: Configuration fields that only print, debug, time or choose where keys are cached: never carried.
_NOT_CARRIED = {
    "verbose",
    "show_graph",
    "show_bit_width_constraints",
    "show_bit_width_assignments",
    "show_assigned_graph",
    "show_mlir",
    "show_optimizer",
    "show_statistics",
    "dump_artifacts_on_unexpected_failures",
    "enable_unsafe_features",
    "use_insecure_key_cache",
    "insecure_key_cache_location",
    "show_progress",
    "progress_title",
    "progress_tag",
    "fhe_simulation",
    "fhe_execution",
    "compiler_debug_mode",
    "compiler_verbose_mode",
    "print_tlu_fusing",
    "simulate_encrypt_run_decrypt",
    "additional_pre_processors",
    "additional_post_processors",
    "range_restriction",
    "keyset_restriction",
}
#: Fields holding lists of strategies, and the enum of their items.
_ENUM_LISTS = {
    "comparison_strategy_preference": fhe.ComparisonStrategy,
    "bitwise_strategy_preference": fhe.BitwiseStrategy,
    "multivariate_strategy_preference": fhe.MultivariateStrategy,
    "min_max_strategy_preference": fhe.MinMaxStrategy,
}


def _carried_fields() -> dict:
    """Every Configuration field that shapes the compiled circuit, with its default value."""
    import inspect

    default = fhe.Configuration()
    return {
        k: getattr(default, k)
        for k in inspect.signature(fhe.Configuration.__init__).parameters
        if k not in _NOT_CARRIED and k not in ("self", "kwargs")
    }


def compile_options(configuration: fhe.Configuration, compress: bool) -> dict:
    """The compile options of ``configuration`` as plain JSON data: every field that shapes the
    circuit (the server traces, converts and compiles again, so tracing options count too).

    ``compress`` turns on concrete's compressed evaluation keys and input ciphertexts (smaller
    uploads, the same crypto-parameters).

    Raises
    ------
    ConfigurationError
        For a keyset or range restriction or custom processors, which are not plain data.

    Examples
    --------
    >>> compile_options(fhe.Configuration(), compress=False)["security_level"]
    128
    """
    for name in ("keyset_restriction", "range_restriction", "additional_pre_processors", "additional_post_processors"):
        if getattr(configuration, name):
            raise ConfigurationError(
                f"a circuit compiled with configuration.{name} set cannot be deployed by qfhe; compile without it"
            )
    out = {}
    for name, default in _carried_fields().items():
        value = getattr(configuration, name)
        if name in _ENUM_LISTS:
            out[name] = [_ENUM_LISTS[name](v).value for v in value]
        elif isinstance(value, fhe.compilation.configuration.ApproximateRoundingConfig):
            out[name] = {
                k: getattr(value, k)
                for k in (
                    "logical_clipping",
                    "approximate_clipping_start_precision",
                    "reduce_precision_after_approximate_clipping",
                    "symetrize_deltas",
                )
            }
        elif isinstance(value, enum.Enum):
            out[name] = value.value
        else:
            out[name] = value
    if compress:
        out["compress_evaluation_keys"] = out["compress_input_ciphertexts"] = True
    return out


def configuration_from_options(options: dict) -> fhe.Configuration:
    """Inverse of :func:`compile_options`: every carried field, each type-checked against its default.

    Examples
    --------
    >>> configuration_from_options(compile_options(fhe.Configuration(p_error=0.1), False)).p_error
    0.1
    >>> configuration_from_options({})
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: server.zip: the compile options are invalid (field 'loop_parallelize')
    """
    if not isinstance(options, dict):
        raise ArtifactError("server.zip: the compile options are not a JSON object")
    kwargs, name = {}, "?"
    try:
        for name, default in _carried_fields().items():
            v = options[name]
            if name in ("p_error", "global_p_error"):
                if v is not None and (type(v) not in (int, float) or not 0 < v < 1):
                    raise ValueError
                kwargs[name] = None if v is None else float(v)
            elif name in _ENUM_LISTS:
                if not isinstance(v, list) or len(v) > 8:
                    raise TypeError
                kwargs[name] = [_ENUM_LISTS[name](x) for x in v]
            elif isinstance(default, fhe.compilation.configuration.ApproximateRoundingConfig):
                if (
                    not isinstance(v, dict)
                    or set(v) != set(vars(default))
                    or not all(type(v[k]) is type(getattr(default, k)) for k in v)
                ):
                    raise TypeError
                kwargs[name] = fhe.compilation.configuration.ApproximateRoundingConfig(**v)
            elif isinstance(default, enum.Enum):
                kwargs[name] = type(default)(v)
            elif isinstance(default, bool):
                if type(v) is not bool:
                    raise TypeError
                kwargs[name] = v
            elif isinstance(default, int):
                if type(v) is not int or not 0 <= v <= 64:
                    raise TypeError
                kwargs[name] = v
            else:
                raise TypeError
    except (KeyError, ValueError, TypeError):
        raise ArtifactError(f"server.zip: the compile options are invalid (field {name!r})") from None
    return fhe.Configuration(**kwargs)


def circuit_doc(qm, compress: bool) -> dict:
    """What a server needs to rebuild ``qm``'s circuit: graph, bit-widths, bounds, compile options.

    Examples
    --------
    >>> import numpy as np, torch, qfhe
    >>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(40, 3), n_bits=3, p_error=0.01)
    >>> sorted(circuit_doc(qm, compress=True))
    ['bitwidths', 'bounds', 'graph', 'options']
    """
    from qfhe.tfhe.lower import make_circuit_function

    fn = make_circuit_function(qm.graph, qm.bitwidths)
    info = {n.name: [v.lo, v.hi, v.bits, v.signed] for n in fn.graph.nodes for v in [qm.bitwidths[n.name]]}
    return {
        "graph": circuit_to_plain(fn.graph),
        "bitwidths": info,
        "bounds": qm._compiled.bounds,
        "options": compile_options(qm.fhe_circuit.configuration, compress),
    }


def build_circuit(doc: dict) -> fhe.Circuit:
    """Check the circuit document (:func:`circuit_doc`, arrays decoded) and compile it.

    Raises
    ------
    ArtifactError
        For a document that breaks the vocabulary, or that qfhe's lowering or concrete refuses.

    Examples
    --------
    >>> import numpy as np, torch, qfhe
    >>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(40, 3), n_bits=3, p_error=0.01)
    >>> build_circuit(circuit_doc(qm, compress=False)).mlir == qm.fhe_circuit.mlir
    True
    """
    from qfhe.tfhe.circuit import compile_from_bounds
    from qfhe.tfhe.lower import make_circuit_function

    graph, info = circuit_from_plain(doc)
    configuration = configuration_from_options(doc.get("options", {}))
    bounds = doc.get("bounds")
    if not isinstance(bounds, list) or not all(
        isinstance(b, list) and len(b) == 3 and b[0] in ("int", "float", "bool") for b in bounds
    ):
        raise ArtifactError("server.zip: circuit.json has no valid value bounds")
    shapes = [n.attrs["shape"] for n in graph.nodes if n.op == "input"]
    try:
        fn = make_circuit_function(graph, info)
        return compile_from_bounds(fn, shapes, bounds, configuration)
    except Exception as exc:  # noqa: BLE001 - anything concrete raises on hostile data means the same thing
        raise ArtifactError(
            f"server.zip: the circuit does not compile with qfhe's lowering ({type(exc).__name__}); "
            "save the model again with this qfhe"
        ) from None


def load_specs(data: bytes) -> fhe.ClientSpecs:
    """concrete's client specs from the artifact member (JSON, checked by qfhe first).

    Examples
    --------
    >>> load_specs(b"junk")
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: member client.specs.json is not valid concrete-python client specs
    """
    try:
        json.loads(bytes(data).decode("utf-8"))
        return fhe.ClientSpecs.deserialize(bytes(data))
    except (RuntimeError, ValueError, TypeError):
        raise ArtifactError("member client.specs.json is not valid concrete-python client specs") from None


def load_evaluation_keys(data: bytes, expected: dict) -> fhe.EvaluationKeys:
    """Check uploaded evaluation keys against the circuit's key set, then deserialize them.

    Examples
    --------
    >>> load_evaluation_keys(b"junk", {"infos": {}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qfhe.errors.CiphertextError: these evaluation keys cannot be read as a concrete-python ServerKeyset (its size, 4 bytes, ...
    """
    canonical = check_evaluation_keys(data, expected)
    try:
        return fhe.EvaluationKeys.deserialize(canonical)
    except (RuntimeError, ValueError):
        raise CiphertextError(
            "these evaluation keys do not load; send FHEModelClient.get_serialized_evaluation_keys()"
        ) from None


def run_sample(server: fhe.Server, data: bytes, gate: dict, keys: fhe.EvaluationKeys) -> bytes:
    """Run the circuit on one serialized encrypted sample; return the serialized encrypted result.

    Examples
    --------
    >>> callable(run_sample)
    True
    """
    value = check_value(data, gate, "an encrypted sample")
    try:
        return server.run(fhe.Value.deserialize(value), evaluation_keys=keys).serialize()
    except (RuntimeError, ValueError):
        raise CiphertextError(
            "the circuit refused an encrypted sample: it was encrypted for another circuit or with other parameters"
        ) from None
