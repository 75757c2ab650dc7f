"""Lower the integer part of a quantized graph to a function concrete-python can trace.

Each server node becomes the concrete-python expression with the same integer semantics as the
reference interpreter (:mod:`qfhe.ir.ops`); every value gets ``fhe.hint(bit_width=...)`` with the
width the bit-width analysis predicted and is tagged with its node name
(``programmable_bootstrap_count_per_tag`` names layers). The function carries the predicted range
of every value (``f.predicted_ranges``), which :func:`qfhe.tfhe.circuit.compile_circuits` gives
concrete as bounds, so concrete's types (width *and sign*) are the ones qfhe predicted.
"""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

from qfhe._concrete import fhe
from qfhe.errors import UnsupportedOpError
from qfhe.ir.graph import Graph, Node
from qfhe.ir.numeric import maxpool_padding
from qfhe.ir.ops import evaluate
from qfhe.passes.bitwidth import ValueInfo, client_input_nodes, is_server_node, value_layers
from qfhe.passes.materialize import materialize_tables

_EXACTNESS = {"exact": fhe.Exactness.EXACT, "approximate": fhe.Exactness.APPROXIMATE}


def circuit_graph(graph: Graph) -> Graph:
    """The part of a quantized graph that runs encrypted: one integer ``input`` node per client
    quantizer (named after it, shaped like the model input it reads), the server nodes, and as
    output the value the client dequantizes. A circuit graph is returned unchanged.

    Raises
    ------
    UnsupportedOpError
        For a graph without client quantizers or without exactly one output.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "input", [], {"shape": (2,)}), Node("xq", "quant", ["x"], {"side": "client"}),
    ...            Node("y", "dequant", ["xq"], {"side": "client"})], ["y"])
    >>> print(circuit_graph(g))
    %xq = input() {shape=(2,), dtype=int}
    return %xq
    """
    if all(n.op == "input" or is_server_node(n) for n in graph.nodes):
        return graph
    ins = client_input_nodes(graph)
    if not ins or len(graph.outputs) != 1:
        raise UnsupportedOpError("the TFHE backend compiles graphs with at least one input and exactly one output")
    inputs = [
        Node(q.name, "input", [], {"shape": tuple(graph[q.inputs[0]].attrs["shape"]), "dtype": "int"}) for q in ins
    ]
    return Graph(inputs + [n for n in graph.nodes if is_server_node(n)], [graph[graph.outputs[0]].inputs[0]]).verify(
        "circuit"
    )


def parameter_names(n_inputs: int) -> list[str]:
    """The circuit function's parameter names, which concrete reads from its signature.

    Examples
    --------
    >>> parameter_names(1), parameter_names(2)
    (['x'], ['x0', 'x1'])
    """
    return ["x"] if n_inputs == 1 else [f"x{i}" for i in range(n_inputs)]


def _table(node: Node, x):
    table = np.asarray(node.attrs["table"], np.int64)
    if table.ndim == 1:
        # concrete evaluates the function over the input's whole type, as it did for the chain
        return fhe.univariate(lambda v: table[np.asarray(v, np.int64) & (len(table) - 1)])(x)
    # Per-channel tables (bias, BatchNorm) need one table per channel: a nested LookupTable shaped
    # like the channels (e.g. (C, 1, 1)), which concrete broadcasts over the input. Tables cover
    # 2^bits signed codes in two's complement order, so negative indices pick the right entry.
    size, channels = table.shape[0], table.shape[1:]
    columns = table.reshape(size, -1)
    luts = np.empty(columns.shape[1], dtype=object)
    for j in range(columns.shape[1]):
        luts[j] = fhe.LookupTable(columns[:, j])
    return fhe.LookupTable(luts.reshape(channels))[x]


def _pad2d(x, pads, value: int = 0):
    """Write an encrypted (N, C, H, W) tensor into a constant one padded by ``((top, bottom), (left, right))``."""
    (t, b), (left, r) = pads
    if not (t or b or left or r):
        return x
    n, c, h, w = x.shape
    padded = fhe.zeros((n, c, h + t + b, w + left + r)) + value if value else fhe.zeros((n, c, h + t + b, w + left + r))
    padded[:, :, t : t + h, left : left + w] = x
    return padded


def _maxpool(x, a: dict, low: int):
    if a.get("mode") == "min":  # min(x) = -max(-x): negation is leveled (never padded)
        return -fhe.maxpool(
            -x, kernel_shape=tuple(a["kernel"]), strides=tuple(a["stride"]), dilations=tuple(a["dilation"])
        )
    # concrete 2.11's maxpool mis-sizes padded outputs: pad by hand with the smallest value the
    # input can take, which never wins a window (torch's padding is -inf).
    pads = maxpool_padding(
        x.shape[2:], a["kernel"], a["stride"], a["padding"], a["dilation"], a.get("ceil_mode", False)
    )
    x = _pad2d(x, pads, low)
    return fhe.maxpool(x, kernel_shape=tuple(a["kernel"]), strides=tuple(a["stride"]), dilations=tuple(a["dilation"]))


#: Largest one-hot matrix (source values x gathered values) a gather after a lookup becomes.
MAX_ONE_HOT = 1 << 18


def _one_hot_gather(flat, index: np.ndarray, fill):
    """``flat[:, index]`` as a product with a 0/1 matrix (one 1 per column: no value grows).

    concrete 2.11 fails to lower a fancy index that reads a lookup's output ("must have one body
    argument per input dimension"); a matrix product with a clear one-hot matrix is leveled and
    exact, and lowers."""
    m = np.zeros((flat.shape[1], index.size), dtype=np.int64)
    cols = np.flatnonzero(index >= 0)
    m[index[cols], cols] = 1
    y = flat @ m
    return y + np.where(index < 0, int(fill), 0) if fill is not None and (index < 0).any() else y


def _lower(node: Node, xs: list, info: dict[str, ValueInfo], after_lookup: bool = False):
    a = node.attrs
    if node.op == "qgemm":
        x = xs[0] - a["zero_point"] if a["zero_point"] else xs[0]
        y = x @ a["weight"].T.astype(np.int64)
        return y + a["bias"] if a.get("bias") is not None else y
    if node.op == "qconv":
        x = xs[0] - a["zero_point"] if a["zero_point"] else xs[0]
        ph, pw = a["padding"]
        x = _pad2d(x, ((ph, ph), (pw, pw)))  # concrete's encrypted conv2d rejects padding
        y = fhe.conv(
            x, a["weight"].astype(np.int64), strides=list(a["stride"]), dilations=list(a["dilation"]), group=a["groups"]
        )
        return y + a["bias"].reshape(1, -1, 1, 1) if a.get("bias") is not None else y
    if node.op == "add":
        return xs[0] + xs[1]
    if node.op == "sub":
        return xs[0] - xs[1]
    if node.op in ("qmul", "qmatmul"):  # concrete's encrypted products (two lookups per product)
        x = xs[0] - a["zero_point_a"] if a["zero_point_a"] else xs[0]
        y = xs[1] - a["zero_point_b"] if a["zero_point_b"] else xs[1]
        return x * y if node.op == "qmul" else np.matmul(x, y)
    if node.op == "pack":
        return xs[0] * (1 << a["b_bits"]) + (xs[1] - a["b_lo"])
    if node.op == "concat":
        return np.concatenate(tuple(xs), axis=a["axis"])
    if node.op == "reshape":
        return xs[0].reshape((xs[0].shape[0],) + tuple(a["shape"]))
    if node.op == "gather":
        flat = xs[0].reshape((xs[0].shape[0], -1))
        index = a["index"].reshape(-1)
        if after_lookup and flat.shape[1] * index.size <= MAX_ONE_HOT:
            return _one_hot_gather(flat, index, a.get("fill")).reshape((flat.shape[0],) + a["index"].shape)
        if a.get("fill") is not None:  # an encrypted constant column to pick the padding from
            fill = fhe.zeros((flat.shape[0], 1)) + a["fill"]
            index = np.where(index < 0, flat.shape[1], index)
            flat = np.concatenate((flat, fill), axis=1)
        return flat[:, index].reshape((flat.shape[0],) + a["index"].shape)
    if node.op == "maxpool":
        return _maxpool(xs[0], a, info[node.inputs[0]].lo)
    if node.op == "round":
        return fhe.round_bit_pattern(xs[0], lsbs_to_remove=a["lsbs"], exactness=_EXACTNESS[a["method"]])
    if node.op == "table":
        return _table(node, xs[0])
    raise UnsupportedOpError(f"TFHE lowering: node '{node.name}' has op '{node.op}', which cannot run encrypted")


def make_circuit_function(graph: Graph, info: dict[str, ValueInfo]) -> Callable:
    """Return ``f(x)`` computing the circuit output from the circuit input codes.

    Parameters
    ----------
    graph : Graph
        Fused (and optionally rounded) quantized graph, or its :func:`circuit_graph` (tables
        materialized or not: :func:`qfhe.passes.materialize.materialize_tables` runs first).
    info : dict
        Bit-width side table from :func:`qfhe.passes.bitwidth.analyze_bitwidths`.

    Returns
    -------
    callable
        ``f(x)``, or ``f(x0, x1, ...)`` with one argument per circuit input; works on numpy int
        arrays (giving the reference result) and on concrete tracers.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> from qfhe.passes.bitwidth import ValueInfo
    >>> g = Graph([Node("x", "input", [], {"shape": (2,)}), Node("xq", "quant", ["x"], {"side": "client"}),
    ...            Node("s", "add", ["xq", "xq"]), Node("y", "dequant", ["s"], {"side": "client"})], ["y"])
    >>> f = make_circuit_function(g, {"xq": ValueInfo(0, 3, 3, False), "s": ValueInfo(0, 6, 3, False)})
    >>> f(np.array([[1, 2]]))
    array([[2, 4]])
    """
    cg = materialize_tables(circuit_graph(graph), info)
    x_names, out_name = cg.input_names, cg.outputs[0]
    server = [n for n in cg.nodes if n.op != "input"]
    lookups = {n.name for n in cg.nodes if n.op in ("tlu", "table")}
    tracing = fhe.tracing.Tracer

    params = parameter_names(len(x_names))

    def f(*xs, **named):
        xs = list(xs) + [named[p] for p in params[len(xs) :]]  # concrete passes them by name
        traced = isinstance(xs[0], tracing)
        if traced:
            xs = [fhe.hint(x, bit_width=info[name].bits) for x, name in zip(xs, x_names)]
        vals = dict(zip(x_names, xs))
        for n in server:
            if not traced:
                vals[n.name] = evaluate(n.op, [vals[i] for i in n.inputs], n.attrs)
                continue
            with fhe.tag(n.name):
                v = _lower(n, [vals[i] for i in n.inputs], info, after_lookup=bool(set(n.inputs) & lookups))
                vals[n.name] = fhe.hint(v, bit_width=info[n.name].bits)
        return vals[out_name]

    f.__signature__ = inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params])
    f.predicted_ranges = {name: (v.lo, v.hi) for name, v in info.items()}
    f.input_names = x_names
    f.layers = value_layers(graph)  # node tag -> layer, for pbs_count_per_layer
    f.graph = cg  # exactly what is lowered: a server artifact carries this graph
    return f
