"""Dead-code elimination.

Examples
--------
>>> from qfhe.ir import Graph, Node
>>> g = Graph([Node("x", "input", []), Node("a", "add", ["x", "x"]), Node("b", "add", ["x", "x"])], ["b"])
>>> dce(g).ops()
['input', 'add']
"""

from __future__ import annotations

from qfhe.ir.graph import Graph


def dce(graph: Graph) -> Graph:
    """Remove nodes whose value reaches no output; inputs are always kept.

    Requires: any graph. Ensures: every non-input node contributes to an output. Idempotent.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> dce(Graph([Node("x", "input", []), Node("d", "add", ["x", "x"])], ["x"])).ops()
    ['input']
    """
    live = set(graph.outputs)
    for n in reversed(graph.nodes):
        if n.name in live:
            live.update(n.inputs)
    return Graph([n.clone() for n in graph.nodes if n.name in live or n.op == "input"], graph.outputs).verify("dce")
