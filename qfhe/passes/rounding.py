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

from qfhe.errors import ConfigurationError
from qfhe.ir.graph import Graph, Node
from qfhe.passes.bitwidth import analyze_bitwidths, value_layers
from qfhe.quant.config import Rounding


def lsbs_to_remove(own_bits: int, linked_bits: int, target_bits: int) -> int:
    """LSBs to drop so a value is read at ``target_bits``, clamped for concrete.

    Examples
    --------
    >>> lsbs_to_remove(10, 10, 6), lsbs_to_remove(5, 8, 6), lsbs_to_remove(3, 3, 1)
    (4, 0, 2)
    """
    return max(0, min(own_bits - target_bits, linked_bits - 1))


def lookup_layers(graph: Graph) -> list[str]:
    """Names of the layers whose accumulator a table lookup reads, in graph order: the keys a
    per-layer ``rounding_threshold_bits`` dict may use.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "input", []), Node("fc1", "qgemm", ["x"]), Node("t", "tlu", ["fc1"])], ["t"])
    >>> lookup_layers(g)
    ['fc1']
    """
    layers = value_layers(graph)
    return list(dict.fromkeys(layers[n.inputs[0]] for n in graph.nodes if n.op == "tlu"))


def _per_layer(graph: Graph, rounding) -> dict[str, Rounding | None]:
    valid = lookup_layers(graph)
    if isinstance(rounding, Rounding):
        return {layer: rounding for layer in valid}
    unknown = [k for k in rounding if k not in valid]
    if unknown:
        raise ConfigurationError(
            f"rounding_threshold_bits names unknown layer(s) {unknown}; the layers with a table lookup are "
            f"{valid} (see bitwidth_report())"
        )
    return dict(rounding)


def insert_rounding(
    graph: Graph,
    inputset: np.ndarray,
    rounding: Rounding | dict | None,
    method: str = "calibration",
    margin: float = 0.0,
) -> Graph:
    """Put a ``round`` node in front of each ``tlu`` whose input is wider than its target.

    ``rounding`` is one :class:`Rounding` for every lookup, or a dict from layer name (see
    :func:`lookup_layers`) to a :class:`Rounding` or None; layers it leaves out are not rounded.

    Requires: a fused graph and the compile inputset (float) that sizes it.
    Ensures: every ``tlu`` reads an accumulator whose own range was cut to at most its target
    ``n_bits``; a ``tlu`` already preceded by a ``round`` is left alone, so the pass is
    idempotent. With ``rounding=None`` the graph is returned unchanged.

    Raises
    ------
    ConfigurationError
        For a per-layer dict naming a layer without a table lookup (the message lists the valid ones).

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> insert_rounding(Graph([Node("x", "input", [])], ["x"]), np.zeros((1, 1)), None).ops()
    ['input']
    """
    if rounding is None:
        return graph.copy()
    targets = _per_layer(graph, rounding)
    layer_of = value_layers(graph)
    g = graph.copy()
    done: set[str] = {n.name for n in g.nodes if n.op == "tlu" and g[n.inputs[0]].op == "round"}
    while True:
        todo = [n for n in g.nodes if n.op == "tlu" and n.name not in done]
        if not todo:
            return g.verify("insert_rounding")
        tlu = todo[0]
        done.add(tlu.name)
        target = targets.get(layer_of[tlu.inputs[0]])
        if target is None:
            continue
        src = analyze_bitwidths(g, inputset, method, margin)[tlu.inputs[0]]
        lsbs = lsbs_to_remove(src.own_bits, src.bits, target.n_bits)
        if lsbs == 0:
            continue
        attrs = {"lsbs": lsbs, "method": target.method}
        # Lookups reading the same accumulator share one rounding (exact rounding costs PBS).
        shared = next(
            (n.name for n in g.nodes if n.op == "round" and n.inputs == tlu.inputs and n.attrs == attrs), None
        )
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
