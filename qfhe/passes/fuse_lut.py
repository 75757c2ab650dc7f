"""Fuse each ``dequant → (float elementwise ops) → quant`` chain into ONE table lookup.

A chain may also start with ``unpack_add`` (two quantized values packed into one integer), which
makes the lookup a function of both.

Examples
--------
>>> import numpy as np
>>> from qfhe.ir import Graph, Node
>>> g = Graph([Node("x", "input", [], {"shape": (2,), "dtype": "int"}),
...            Node("d", "dequant", ["x"], {"scale": 0.5, "offset": 0.0}),
...            Node("r", "activation", ["d"], {"fn": "relu", "params": {}}),
...            Node("q", "quant", ["r"], {"scale": 1.0, "zero_point": 0, "qmin": 0, "qmax": 3})], ["q"])
>>> print(fuse_lut(g).format())
%x = input() {shape=(2,), dtype=int}
%q = tlu(%x) {chain=[dequant -> relu -> quant]}
return %q
"""

from __future__ import annotations

from qfhe.ir.graph import Graph, Node
from qfhe.ir.ops import DECODE_OPS
from qfhe.passes.dce import dce

_CHAIN_OPS = ("activation", "affine")


def fuse_lut(graph: Graph) -> Graph:
    """Replace every requantization chain by a ``tlu`` node that evaluates the chain on integers.

    Requires: a quantized graph (see :func:`qfhe.passes.quantize.quantize_graph`).
    Ensures: no float node remains between integer ops; no lookup reads a lookup that nothing else
    reads (the two chains are composed into one); each fused ``tlu`` keeps the name of the last
    ``quant`` it replaces and stores its ``chain`` as plain data (op + attrs per step), so the
    table can be materialised for any input domain. Client-side ``quant``/``dequant`` nodes (input
    and output borders) are left alone. Values are bit-identical to the unfused graph. Idempotent.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> fuse_lut(Graph([Node("x", "input", [])], ["x"])).ops()
    ['input']
    """
    out: list[Node] = []
    for n in graph.nodes:
        if n.op != "quant" or n.attrs.get("side") == "client":
            out.append(n.clone())
            continue
        chain = [n]
        cur = graph[n.inputs[0]]
        while cur.op in _CHAIN_OPS:
            chain.append(cur)
            cur = graph[cur.inputs[0]]
        if cur.op not in DECODE_OPS or cur.attrs.get("side") == "client":
            out.append(n.clone())  # not an integer-to-integer chain (e.g. reads the float input)
            continue
        chain.append(cur)
        steps = [{"op": c.op, "attrs": dict(c.attrs)} for c in reversed(chain)]
        out.append(Node(n.name, "tlu", [cur.inputs[0]], {"chain": steps}))
    return _merge_consecutive(dce(Graph(out, graph.outputs))).verify("fuse_lut")


def _merge_consecutive(graph: Graph) -> Graph:
    """A lookup whose only reader is another lookup folds into it: one PBS instead of two."""
    users = graph.consumers()
    by_name = {n.name: n for n in graph.nodes}
    merged: set[str] = set()
    out: list[Node] = []
    for n in graph.nodes:
        if n.op == "tlu":
            src = by_name[n.inputs[0]]
            if src.op == "tlu" and len(users[src.name]) == 1 and src.name not in graph.outputs:
                n = n.clone(inputs=list(src.inputs), attrs={"chain": src.attrs["chain"] + n.attrs["chain"]})
                merged.add(src.name)
            by_name[n.name] = n
        out.append(n)
    return Graph([n for n in out if n.name not in merged], graph.outputs)
