"""RelinearizationInsertionPass: bring size-3 products back to size 2.

``eager`` relinearizes after every ct×ct. ``lazy`` (EVA) relinearizes only before a multiply, a
rotation, a bootstrap or an output, or when the value has several uses: a sum of products needs one
relinearization.

Examples
--------
>>> RelinearizationInsertionPass("eager").strategy
'eager'
"""

from __future__ import annotations

from qfhe.ckks.passes.base import Deferred, HEPass, Rewriter, check_strategy, require
from qfhe.ckks.passes.linear import lower_remaining
from qfhe.ir.graph import Graph

_STRATEGIES = ("eager", "lazy")
_NEEDS_SIZE2 = ("ciphertext_mult", "rotate", "decrypt", "bootstrap")


class RelinearizationInsertionPass(HEPass):
    """Insert ``relinearize`` nodes (``eager`` or ``lazy``).

    Requires: an HE graph. Ensures: every ct×ct, rotation, bootstrap and output reads a size-2
    ciphertext. Idempotent.

    Examples
    --------
    >>> RelinearizationInsertionPass("never")
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: RelinearizationInsertionPass strategy must be one of ('eager', 'lazy'), got 'never'
    """

    def __init__(self, strategy: str = "lazy"):
        check_strategy(self.name, strategy, _STRATEGIES)
        self.strategy = strategy

    def __call__(self, graph: Graph, context) -> Graph:
        require(graph, self.name, absent={"activation": "NonlinearToPolynomialPass"})
        graph = lower_remaining(graph, context)  # linear layers no BSGS pass took: plain diagonals
        if any(n.op == "relinearize" for n in graph.nodes):
            return graph.copy()
        uses = {k: len(v) for k, v in graph.consumers().items()}
        rw = Rewriter({n.name for n in graph.nodes})
        big = Deferred(rw, graph, "relinearize", "rl")  # size-3 values
        for n in graph.nodes:
            ins = [big.settle(i) if n.op in _NEEDS_SIZE2 else big.read(i) for i in n.inputs]
            rw.keep(n.clone(inputs=ins))
            if n.op == "ciphertext_mult" or (
                n.op != "relinearize" and n.op not in _NEEDS_SIZE2 and any(i in big.waiting for i in ins)
            ):
                big.mark(n.name)
                if self.strategy == "eager" or uses.get(n.name, 0) > 1:
                    big.settle(n.name)
        return Graph(rw.nodes, graph.outputs)
