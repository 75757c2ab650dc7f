"""PrintGraphPass: print (or collect) the HE graph with levels and scales, unchanged."""

from __future__ import annotations

import math

from qfhe.ckks.hegraph import annotate
from qfhe.ckks.passes.base import HEPass
from qfhe.errors import CKKSScheduleError
from qfhe.ir.graph import Graph


class PrintGraphPass(HEPass):
    """Print the graph, with level/scale/size per value once they are valid.

    Requires: any graph. Ensures: the graph is unchanged; the text is also kept in
    ``context.meta["printed"]`` (a list, one entry per PrintGraphPass).

    Examples
    --------
    >>> PrintGraphPass(verbose=False).verbose
    False
    """

    def __init__(self, verbose: bool = True):
        self.verbose = verbose

    def __call__(self, graph: Graph, context) -> Graph:
        try:
            states = annotate(graph, context.params)
        except CKKSScheduleError:
            states = {}
        lines = []
        for n in graph.nodes:
            args = ", ".join(f"%{i}" for i in n.inputs)
            extra = ""
            if n.op == "rotate":
                extra = f" k={n.attrs['k']}"
            s = states.get(n.name)
            where = f"  # level {s.level}, scale 2^{math.log2(s.scale):.1f}, size {s.size}" if s else ""
            lines.append(f"%{n.name} = {n.op}({args}){extra}{where}")
        text = "\n".join(lines)
        context.meta.setdefault("printed", []).append(text)
        if self.verbose:
            print(text)
        return graph.copy()
