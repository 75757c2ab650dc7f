"""DeadCodeEliminationPass: drop HE ops whose value reaches no output."""

from __future__ import annotations

from qfhe.ckks.passes.base import HEPass
from qfhe.ir.graph import Graph
from qfhe.passes.dce import dce


class DeadCodeEliminationPass(HEPass):
    """Remove nodes that no output depends on (unused rotations, powers, pass leftovers).

    Requires: any graph. Ensures: every node contributes to an output. Idempotent.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "encrypt", []), Node("r", "rotate", ["x"], {"k": 1}),
    ...            Node("y", "decrypt", ["x"])], ["y"])
    >>> DeadCodeEliminationPass()(g, None).ops()
    ['encrypt', 'decrypt']
    """

    def __call__(self, graph: Graph, context) -> Graph:
        return dce(graph)
