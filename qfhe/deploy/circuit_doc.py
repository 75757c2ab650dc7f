"""The circuit of a TFHE server artifact as checked plain data: qfhe's op vocabulary and nothing else.

A server artifact carries the graph qfhe lowered (:func:`qfhe.tfhe.lower.make_circuit_function`'s
``f.graph``): circuit inputs, integer linear layers, roundings and materialized lookup tables.
:func:`circuit_from_plain` accepts exactly the ops below, each with exactly its attributes and
their types, before anything is lowered. This module needs neither concrete-python nor torch, so
the HTTP server's main process checks an artifact without loading either.

Examples
--------
>>> from qfhe.ir import Graph, Node
>>> plain = circuit_to_plain(Graph([Node("x", "input", [], {"shape": (2,), "dtype": "int"})], ["x"]))
>>> circuit_from_plain({"graph": plain, "bitwidths": {"x": [0, 3, 2, False]}})[1]["x"].bits
2
"""

from __future__ import annotations

import numpy as np

from qfhe.errors import ArtifactError, ConfigurationError

MAX_NODES = 20_000
MAX_TABLE_BITS = 17  # a 16-bit lookup plus the carry bit of its rounding


def _is_int(v) -> bool:
    return type(v) is int and -(1 << 40) < v < (1 << 40)


def _ints(n: int | None = None):
    return lambda v: (
        isinstance(v, (tuple, list))
        and (n is None or len(v) == n)
        and all(_is_int(d) and d >= 0 for d in v)
        and len(v) <= 8
    )


def _int_array(*ndims):
    return lambda v: isinstance(v, np.ndarray) and v.dtype.kind in "iu" and (not ndims or v.ndim in ndims)


def _optional(check):
    return lambda v: v is None or check(v)


def _table(v) -> bool:
    return (
        _int_array()(v)
        and v.ndim >= 1
        and v.shape[0] >= 2
        and v.shape[0] & (v.shape[0] - 1) == 0
        and v.shape[0] <= 1 << MAX_TABLE_BITS
    )


#: Every op a circuit graph may hold, with the checks of its attributes (all required, none other).
_OPS = {
    "input": {"shape": _ints(), "dtype": lambda v: v == "int"},
    "qgemm": {"weight": _int_array(2), "bias": _optional(_int_array(1)), "zero_point": _is_int},
    "qconv": {
        "weight": _int_array(4),
        "bias": _optional(_int_array()),
        "zero_point": _is_int,
        "stride": _ints(2),
        "padding": _ints(2),
        "dilation": _ints(2),
        "groups": lambda v: _is_int(v) and v >= 1,
    },
    "add": {},
    "sub": {},
    "qmul": {"zero_point_a": _is_int, "zero_point_b": _is_int},
    "qmatmul": {"zero_point_a": _is_int, "zero_point_b": _is_int},
    "pack": {"b_bits": lambda v: _is_int(v) and 0 < v <= 16, "b_lo": _is_int},
    "concat": {"axis": lambda v: _is_int(v) and 1 <= v <= 8},
    "reshape": {"shape": _ints()},
    "gather": {"index": _int_array(), "fill": _optional(_is_int)},
    "maxpool": {
        "kernel": _ints(2),
        "stride": _ints(2),
        "padding": _ints(2),
        "dilation": _ints(2),
        "ceil_mode": lambda v: type(v) is bool,
        "mode": lambda v: v in (None, "max", "min"),
    },
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
        nodes.append(
            {"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": {k: n.attrs.get(k) for k in _OPS[n.op]}}
        )
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
        if not isinstance(op, str) or op not in _OPS:
            raise ArtifactError(
                f"server.zip: circuit node '{name[:80]}' has op '{str(op)[:40]}', which is not in "
                "qfhe's circuit vocabulary"
            )
        if (
            not isinstance(inputs, list)
            or not all(isinstance(x, str) and x in seen for x in inputs)
            or len(inputs) != _ARITY.get(op, len(inputs) if op == "concat" else 1)
            or (op != "input" and not inputs)
        ):
            raise ArtifactError(f"server.zip: circuit node '{name[:80]}' reads values that are not defined before it")
        if not isinstance(attrs, dict) or set(attrs) != set(_OPS[op]):
            raise ArtifactError(
                f"server.zip: circuit node '{name[:80]}' ({op}) must have exactly the attributes {sorted(_OPS[op])}"
            )
        for key, check in _OPS[op].items():
            if not check(attrs[key]):
                raise ArtifactError(f"server.zip: circuit node '{name[:80]}' ({op}) has an invalid '{key}'")
        if op == "table" and attrs["table"].shape[0] != 1 << attrs["bits"]:
            raise ArtifactError(
                f"server.zip: circuit node '{name[:80]}' has a table of {attrs['table'].shape[0]} "
                f"entries for {attrs['bits']} bits"
            )
        seen.add(name)
        attrs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()}
        nodes.append(Node(name, op, list(inputs), attrs))
    if not isinstance(outputs, list) or len(outputs) != 1 or not isinstance(outputs[0], str) or outputs[0] not in seen:
        raise ArtifactError("server.zip: the circuit graph must have exactly one output, one of its nodes")
    info = {}
    for name in seen:
        v = raw_info.get(name)
        if not (
            isinstance(v, list)
            and len(v) == 4
            and all(_is_int(x) for x in v[:3])
            and type(v[3]) is bool
            and v[0] <= v[1]
            and 1 <= v[2] <= 64
        ):
            raise ArtifactError(f"server.zip: the bit-width of '{name[:80]}' is missing or invalid")
        info[name] = ValueInfo(*v)
    return Graph(nodes, outputs), info
