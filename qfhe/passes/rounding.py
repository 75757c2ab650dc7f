"""Insert ``fhe.round_bit_pattern`` before every table lookup whose input is too wide.

``rounding_threshold_bits`` has one meaning: the width, sign bit included, of what the table lookup
reads. For each lookup the pass removes ``lsbs = own_bits - n_bits`` least significant bits, where
``own_bits`` is the width of the accumulator's own range (nothing when it is already narrow
enough), clamped below the accumulator's width because concrete asserts
``bit_width > lsbs_to_remove``.

Rounding one layer changes the ranges of every layer after it, so lookups are planned in
topological order, re-analysing ranges after each insertion.

When concrete links an accumulator to a wider one (a value feeding both a wide convolution and an
add shares their width), the lookup reads ``linked_bits - lsbs`` bits, more than ``n_bits``;
removing more bits would erase the value, so the pass does not, and the bit-width report shows
the real width.

Examples
--------
>>> import numpy as np
>>> from qfhe.ir import Graph, Node
>>> from qfhe.quant import Rounding
>>> g = Graph([Node("x", "input", [], {"shape": (1,), "dtype": "float"}),
...            Node("xq", "quant", ["x"], {"scale": 1.0, "zero_point": 0, "qmin": 0, "qmax": 1023, "side": "client"}),
...            Node("t", "tlu", ["xq"], {"chain": []})], ["t"])
>>> r = insert_rounding(g, np.array([[0.0], [1000.0]]), Rounding(6))
>>> r.ops(), r["t_round"].attrs
(['input', 'quant', 'round', 'tlu'], {'lsbs': 4, 'method': 'exact'})
"""

from __future__ import annotations

import numpy as np

from qfhe.ir.graph import Graph, Node
from qfhe.passes.bitwidth import analyze_bitwidths
from qfhe.quant.config import Rounding


def lsbs_to_remove(own_bits: int, linked_bits: int, target_bits: int) -> int:
    """LSBs to drop so a value is read at ``target_bits``, clamped for concrete.

    Examples
    --------
    >>> lsbs_to_remove(10, 10, 6), lsbs_to_remove(5, 8, 6), lsbs_to_remove(3, 3, 1)
    (4, 0, 2)
    """
    return max(0, min(own_bits - target_bits, linked_bits - 1))


def insert_rounding(graph: Graph, inputset: np.ndarray, rounding: Rounding | None,
                    method: str = "calibration", margin: float = 0.0) -> Graph:
    """Put a ``round`` node in front of each ``tlu`` whose input is wider than ``rounding.n_bits``.

    Requires: a fused graph and the compile inputset (float) that sizes it.
    Ensures: every ``tlu`` reads an accumulator whose own range was cut to at most
    ``rounding.n_bits`` bits; a ``tlu`` already preceded by a ``round`` is left alone, so the
    pass is idempotent. With ``rounding=None`` the graph is returned unchanged.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> insert_rounding(Graph([Node("x", "input", [])], ["x"]), np.zeros((1, 1)), None).ops()
    ['input']
    """
    if rounding is None:
        return graph.copy()
    g = graph.copy()
    done: set[str] = {n.name for n in g.nodes if n.op == "tlu" and g[n.inputs[0]].op == "round"}
    while True:
        todo = [n for n in g.nodes if n.op == "tlu" and n.name not in done]
        if not todo:
            return g.verify("insert_rounding")
        info = analyze_bitwidths(g, inputset, method, margin)
        tlu = todo[0]
        done.add(tlu.name)
        src = info[tlu.inputs[0]]
        lsbs = lsbs_to_remove(src.own_bits, src.bits, rounding.n_bits)
        if lsbs == 0:
            continue
        attrs = {"lsbs": lsbs, "method": rounding.method}
        # Lookups reading the same accumulator share one rounding (exact rounding costs PBS).
        shared = next((n.name for n in g.nodes if n.op == "round" and n.inputs == tlu.inputs and n.attrs == attrs), None)
        rname = shared or g.fresh_name(f"{tlu.name}_round")
        nodes: list[Node] = []
        for n in g.nodes:
            if n.name == tlu.name:
                if shared is None:
                    nodes.append(Node(rname, "round", [tlu.inputs[0]], attrs))
                nodes.append(n.clone(inputs=[rname]))
            else:
                nodes.append(n)
        g = Graph(nodes, g.outputs)
