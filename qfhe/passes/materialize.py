"""Materialize every table lookup: replace each ``tlu`` (a float chain) by the integer table it computes.

Requires: a fused integer graph and its bit-width table (:func:`qfhe.passes.bitwidth.analyze_bitwidths`).
Ensures: no ``tlu`` node remains; each became a ``table`` node of the same name whose ``table``
attribute holds the lookup's output code for every input code its input's width can carry, plus
one more bit (a rounding may carry into it), indexed in two's complement; per-channel chains give
one column per channel (shape ``(size, *channels)``). Everything else is unchanged.

The circuit is lowered from this form, and it is what a server artifact carries: integer tables
rather than activation chains, so a server never evaluates an activation from an artifact's text.

Examples
--------
>>> import numpy as np
>>> from qfhe.ir import Graph, Node
>>> from qfhe.passes.bitwidth import ValueInfo
>>> chain = [{"op": "dequant", "attrs": {"scale": 1.0, "offset": 0.0}},
...          {"op": "activation", "attrs": {"fn": "relu", "params": {}}},
...          {"op": "quant", "attrs": {"scale": 1.0, "zero_point": 0, "qmin": 0, "qmax": 3}}]
>>> g = Graph([Node("x", "input", [], {"shape": (2,), "dtype": "int"}), Node("t", "tlu", ["x"], {"chain": chain})], ["t"])
>>> m = materialize_tables(g, {"x": ValueInfo(-2, 1, 2, True), "t": ValueInfo(0, 1, 1, False)})
>>> m["t"].op, m["t"].attrs["table"].tolist()       # codes 0, 1, 2, 3, -4, -3, -2, -1
('table', [0, 1, 2, 3, 0, 0, 0, 0])
"""

from __future__ import annotations

import numpy as np

from qfhe.ir.graph import Graph, Node, rebuild
from qfhe.ir.ops import chain_arrays, evaluate


def table_codes(bits: int) -> np.ndarray:
    """The input codes of a table over ``bits``-bit values plus one carry bit, in two's complement order.

    Examples
    --------
    >>> table_codes(1).tolist()
    [0, 1, -2, -1]
    """
    size = 1 << (bits + 1)
    idx = np.arange(size, dtype=np.int64)
    return np.where(idx >= size // 2, idx - size, idx)


def param_shape(chain: list[dict]) -> tuple:
    """Per-sample shape of a chain's per-channel parameters (``()`` for one table).

    Examples
    --------
    >>> param_shape([{"op": "affine", "attrs": {"scale": np.ones((1, 3, 1, 1)), "shift": 0.0}}])
    (3, 1, 1)
    """
    arrays = chain_arrays(chain)
    return tuple(np.broadcast_shapes(*[v.shape[1:] for v in arrays])) if arrays else ()


def _compact(table: np.ndarray) -> np.ndarray:
    """The table in the smallest signed integer type that holds it (artifacts stay small)."""
    lo, hi = int(table.min(initial=0)), int(table.max(initial=0))
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return table.astype(dtype)
    return table.astype(np.int64)


def materialize(node: Node, in_bits: int) -> Node:
    """The ``table`` node computing ``node``'s lookup for inputs of ``in_bits`` bits.

    Examples
    --------
    >>> chain = [{"op": "quant", "attrs": {"scale": 2.0, "zero_point": 0, "qmin": -8, "qmax": 7}}]
    >>> materialize(Node("t", "tlu", ["x"], {"chain": chain}), 2).attrs["table"].tolist()
    [0, 0, 1, 2, -2, -2, -1, 0]
    """
    shape = param_shape(node.attrs["chain"])
    codes = table_codes(in_bits)
    table = evaluate("tlu", [codes.reshape((len(codes),) + (1,) * len(shape))], node.attrs)
    table = np.ascontiguousarray(np.broadcast_to(table, (len(codes),) + shape))
    return Node(node.name, "table", list(node.inputs), {"table": _compact(table), "bits": in_bits + 1})


def materialize_tables(graph: Graph, info: dict) -> Graph:
    """Replace every ``tlu`` node by its ``table`` (see the module docstring). Idempotent.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "input", [], {"shape": (1,), "dtype": "int"})], ["x"])
    >>> materialize_tables(g, {}).ops()
    ['input']
    """
    nodes = [materialize(n, info[n.inputs[0]].bits) if n.op == "tlu" else n for n in graph.nodes]
    return rebuild(graph, nodes)
