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
>>> from concrete import fhe
>>> opts = compile_options(fhe.Configuration(p_error=0.01), compress=True)
>>> opts["p_error"], opts["compress_evaluation_keys"], opts["parameter_selection_strategy"]
(0.01, True, 'multi')
"""

from __future__ import annotations

import enum
import json

import numpy as np
from concrete import fhe
from concrete.fhe.compilation import configuration as _cfg

from qfhe.deploy.concrete_wire import check_evaluation_keys, check_value
from qfhe.errors import ArtifactError, CiphertextError, ConfigurationError

#: Configuration fields that only print, debug, time or choose where keys are cached: never carried.
_NOT_CARRIED = {"verbose", "show_graph", "show_bit_width_constraints", "show_bit_width_assignments",
                "show_assigned_graph", "show_mlir", "show_optimizer", "show_statistics",
                "dump_artifacts_on_unexpected_failures", "enable_unsafe_features", "use_insecure_key_cache",
                "insecure_key_cache_location", "show_progress", "progress_title", "progress_tag", "fhe_simulation",
                "fhe_execution", "compiler_debug_mode", "compiler_verbose_mode", "print_tlu_fusing",
                "simulate_encrypt_run_decrypt", "additional_pre_processors", "additional_post_processors",
                "range_restriction", "keyset_restriction"}
#: Fields holding lists of strategies, and the enum of their items.
_ENUM_LISTS = {"comparison_strategy_preference": fhe.ComparisonStrategy, "bitwise_strategy_preference": fhe.BitwiseStrategy,
               "multivariate_strategy_preference": fhe.MultivariateStrategy,
               "min_max_strategy_preference": fhe.MinMaxStrategy}


def _carried_fields() -> dict:
    """Every Configuration field that shapes the compiled circuit, with its default value."""
    import inspect

    default = fhe.Configuration()
    return {k: getattr(default, k) for k in inspect.signature(fhe.Configuration.__init__).parameters
            if k not in _NOT_CARRIED and k not in ("self", "kwargs")}


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
            raise ConfigurationError(f"a circuit compiled with configuration.{name} set cannot be deployed by qfhe; "
                                     "compile without it")
    out = {}
    for name, default in _carried_fields().items():
        value = getattr(configuration, name)
        if name in _ENUM_LISTS:
            out[name] = [_ENUM_LISTS[name](v).value for v in value]
        elif isinstance(value, _cfg.ApproximateRoundingConfig):
            out[name] = {k: getattr(value, k) for k in ("logical_clipping", "approximate_clipping_start_precision",
                                                        "reduce_precision_after_approximate_clipping",
                                                        "symetrize_deltas")}
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
            elif isinstance(default, _cfg.ApproximateRoundingConfig):
                if not isinstance(v, dict) or set(v) != set(vars(default)) or \
                        not all(type(v[k]) is type(getattr(default, k)) for k in v):
                    raise TypeError
                kwargs[name] = _cfg.ApproximateRoundingConfig(**v)
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


MAX_NODES = 20_000
MAX_TABLE_BITS = 17  # a 16-bit lookup plus the carry bit of its rounding


# -- the circuit graph as checked plain data ------------------------------------------------------------
def _is_int(v) -> bool:
    return type(v) is int and -(1 << 40) < v < (1 << 40)


def _ints(n: int | None = None):
    return lambda v: isinstance(v, (tuple, list)) and (n is None or len(v) == n) and all(
        _is_int(d) and d >= 0 for d in v) and len(v) <= 8


def _int_array(*ndims):
    return lambda v: isinstance(v, np.ndarray) and v.dtype.kind in "iu" and (not ndims or v.ndim in ndims)


def _optional(check):
    return lambda v: v is None or check(v)


def _table(v) -> bool:
    return _int_array()(v) and v.ndim >= 1 and v.shape[0] >= 2 and v.shape[0] & (v.shape[0] - 1) == 0 and \
        v.shape[0] <= 1 << MAX_TABLE_BITS


#: Every op a circuit graph may hold, with the checks of its attributes (all required, none other).
_OPS = {
    "input": {"shape": _ints(), "dtype": lambda v: v == "int"},
    "qgemm": {"weight": _int_array(2), "bias": _optional(_int_array(1)), "zero_point": _is_int},
    "qconv": {"weight": _int_array(4), "bias": _optional(_int_array()), "zero_point": _is_int, "stride": _ints(2),
              "padding": _ints(2), "dilation": _ints(2), "groups": lambda v: _is_int(v) and v >= 1},
    "add": {}, "sub": {},
    "qmul": {"zero_point_a": _is_int, "zero_point_b": _is_int},
    "qmatmul": {"zero_point_a": _is_int, "zero_point_b": _is_int},
    "pack": {"b_bits": lambda v: _is_int(v) and 0 < v <= 16, "b_lo": _is_int},
    "concat": {"axis": lambda v: _is_int(v) and 1 <= v <= 8},
    "reshape": {"shape": _ints()},
    "gather": {"index": _int_array(), "fill": _optional(_is_int)},
    "maxpool": {"kernel": _ints(2), "stride": _ints(2), "padding": _ints(2), "dilation": _ints(2),
                "ceil_mode": lambda v: type(v) is bool},
    "round": {"lsbs": lambda v: _is_int(v) and 0 <= v <= 16, "method": lambda v: v in ("exact", "approximate")},
    "table": {"table": _table, "bits": lambda v: _is_int(v) and 1 <= v <= MAX_TABLE_BITS},
}
_ARITY = {"input": 0, "add": 2, "sub": 2, "qmul": 2, "qmatmul": 2, "pack": 2}


def circuit_to_plain(graph) -> dict:
    """A circuit graph as plain data, keeping exactly the attributes :data:`_OPS` lists.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> circuit_to_plain(Graph([Node("x", "input", [], {"shape": (2,), "dtype": "int", "note": 1})], ["x"]))
    {'nodes': [{'name': 'x', 'op': 'input', 'inputs': [], 'attrs': {'shape': (2,), 'dtype': 'int'}}], 'outputs': ['x']}
    """
    nodes = []
    for n in graph.nodes:
        if n.op not in _OPS:
            raise ConfigurationError(f"node '{n.name}' has op '{n.op}', which a deployed TFHE circuit cannot hold")
        nodes.append({"name": n.name, "op": n.op, "inputs": list(n.inputs),
                      "attrs": {k: n.attrs.get(k) for k in _OPS[n.op]}})
    return {"nodes": nodes, "outputs": list(graph.outputs)}


def circuit_from_plain(data) -> tuple:
    """Check and rebuild a circuit graph from :func:`circuit_to_plain`'s plain data (arrays decoded).

    Returns the graph and its bit-width table. Every node must use a known op with exactly its
    attributes, of the right types; names must be unique and read only earlier nodes.

    Raises
    ------
    ArtifactError
        Naming the node and what is wrong.

    Examples
    --------
    >>> g = {"nodes": [{"name": "x", "op": "input", "inputs": [], "attrs": {"shape": [2], "dtype": "int"}},
    ...                {"name": "y", "op": "shell", "inputs": ["x"], "attrs": {}}], "outputs": ["y"]}
    >>> circuit_from_plain({"graph": g, "bitwidths": {}})
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: server.zip: circuit node 'y' has op 'shell', which is not in qfhe's circuit vocabulary
    """
    from qfhe.ir.graph import Graph, Node
    from qfhe.passes.bitwidth import ValueInfo

    try:
        raw_nodes, outputs, raw_info = data["graph"]["nodes"], data["graph"]["outputs"], data["bitwidths"]
    except (KeyError, TypeError):
        raise ArtifactError("server.zip: circuit.json has no graph (nodes, outputs) and bitwidths") from None
    if not isinstance(raw_nodes, list) or not 0 < len(raw_nodes) <= MAX_NODES or not isinstance(raw_info, dict):
        raise ArtifactError(f"server.zip: the circuit graph must have 1 to {MAX_NODES} nodes")
    nodes, seen = [], set()
    for i, n in enumerate(raw_nodes):
        if not isinstance(n, dict) or not isinstance(n.get("name"), str) or not 0 < len(n["name"]) <= 200:
            raise ArtifactError(f"server.zip: circuit node {i} has no valid name")
        name, op, inputs, attrs = n["name"], n.get("op"), n.get("inputs"), n.get("attrs")
        if name in seen:
            raise ArtifactError(f"server.zip: circuit node name '{name[:80]}' is used twice")
        if op not in _OPS:
            raise ArtifactError(f"server.zip: circuit node '{name[:80]}' has op '{str(op)[:40]}', which is not in "
                                "qfhe's circuit vocabulary")
        if not isinstance(inputs, list) or not all(isinstance(x, str) and x in seen for x in inputs) or \
                len(inputs) != _ARITY.get(op, len(inputs) if op == "concat" else 1) or (op != "input" and not inputs):
            raise ArtifactError(f"server.zip: circuit node '{name[:80]}' reads values that are not defined before it")
        if not isinstance(attrs, dict) or set(attrs) != set(_OPS[op]):
            raise ArtifactError(f"server.zip: circuit node '{name[:80]}' ({op}) must have exactly the attributes "
                                f"{sorted(_OPS[op])}")
        for key, check in _OPS[op].items():
            if not check(attrs[key]):
                raise ArtifactError(f"server.zip: circuit node '{name[:80]}' ({op}) has an invalid '{key}'")
        if op == "table" and attrs["table"].shape[0] != 1 << attrs["bits"]:
            raise ArtifactError(f"server.zip: circuit node '{name[:80]}' has a table of {attrs['table'].shape[0]} "
                                f"entries for {attrs['bits']} bits")
        seen.add(name)
        attrs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()}
        nodes.append(Node(name, op, list(inputs), attrs))
    if not isinstance(outputs, list) or len(outputs) != 1 or outputs[0] not in seen:
        raise ArtifactError("server.zip: the circuit graph must have exactly one output, one of its nodes")
    info = {}
    for name in seen:
        v = raw_info.get(name)
        if not (isinstance(v, list) and len(v) == 4 and all(_is_int(x) for x in v[:3]) and type(v[3]) is bool
                and v[0] <= v[1] and 1 <= v[2] <= 64):
            raise ArtifactError(f"server.zip: the bit-width of '{name[:80]}' is missing or invalid")
        info[name] = ValueInfo(*v)
    return Graph(nodes, outputs), info


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
    return {"graph": circuit_to_plain(fn.graph), "bitwidths": info, "bounds": qm._compiled.bounds,
            "options": compile_options(qm.fhe_circuit.configuration, compress)}


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
            isinstance(b, list) and len(b) == 3 and b[0] in ("int", "float", "bool") for b in bounds):
        raise ArtifactError("server.zip: circuit.json has no valid value bounds")
    shapes = [n.attrs["shape"] for n in graph.nodes if n.op == "input"]
    try:
        fn = make_circuit_function(graph, info)
        return compile_from_bounds(fn, shapes, bounds, configuration)
    except Exception as exc:  # noqa: BLE001 - anything concrete raises on hostile data means the same thing
        raise ArtifactError(f"server.zip: the circuit does not compile with qfhe's lowering ({type(exc).__name__}); "
                            "save the model again with this qfhe") from None


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
        raise CiphertextError("these evaluation keys do not load; send FHEModelClient.get_serialized_evaluation_keys()") \
            from None


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
        raise CiphertextError("the circuit refused an encrypted sample: it was encrypted for another circuit or with "
                              "other parameters") from None
