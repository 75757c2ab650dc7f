"""BootstrappingInsertionPass: refresh ciphertexts before they run out of levels.

Candidates are layer boundaries: values read by another layer. Walking them in topological order,
each segment between consecutive boundaries consumes c levels and dips at most ``need`` levels below
its start. A bootstrap returns a ciphertext to ``params.bootstrap_level``.

* ``greedy`` bootstraps a boundary value whenever its remaining level falls below
  ``level_threshold``.
* ``minimal`` places the fewest bootstraps: dynamic programming (a shortest path) over
  (boundary, level) states, so it never uses more than ``greedy`` for the same graph.

Examples
--------
>>> BootstrappingInsertionPass(level_threshold=2, strategy="fastest")
Traceback (most recent call last):
...
qfhe.errors.ConfigurationError: BootstrappingInsertionPass strategy must be one of ('greedy', 'minimal'), got 'fastest'
"""

from __future__ import annotations

import math

from qfhe.ckks.hegraph import ValueState, align_levels, annotate
from qfhe.ckks.params import CKKSParameters
from qfhe.ckks.passes.base import HEPass, Rewriter, check_strategy, require
from qfhe.errors import CKKSScheduleError, ConfigurationError, PassError
from qfhe.ir.graph import Graph
from qfhe.validation import as_float

_STRATEGIES = ("greedy", "minimal")


def tolerant_levels(graph: Graph, params: CKKSParameters) -> dict[str, ValueState]:
    """Levels/scales/sizes without raising: levels may go negative (to see how far short a plan is).

    Below level 1 a rescale or plaintext uses q_1, the prime it would meet once a bootstrap has
    restored levels (q_0 is never a rescaling prime), so scales stay meaningful past level 0.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> p = CKKSParameters(8192, [60, 40, 60], 2**40)
    >>> g = Graph([Node("x", "encrypt", []), Node("a", "rescale", ["x"]), Node("b", "rescale", ["a"])], ["b"])
    >>> tolerant_levels(g, p)["b"].level
    -1
    """
    st: dict[str, ValueState] = {}
    delta = float(params.scale)
    for n in graph.nodes:
        ins = [st[i] for i in n.inputs]
        if n.op == "encrypt":
            s = ValueState(params.max_level, delta, 2)
        elif n.op == "bootstrap":
            s = ValueState(params.bootstrap_level, delta, 2)
        elif n.op == "rescale":
            s = ValueState(ins[0].level - 1, ins[0].scale / params.prime(max(ins[0].level, 1)), ins[0].size)
        elif n.op == "mod_switch":
            s = ValueState(ins[0].level - n.attrs.get("levels", 1), ins[0].scale, ins[0].size)
        elif n.op == "relinearize":
            s = ValueState(ins[0].level, ins[0].scale, 2)
        elif n.op == "ciphertext_mult":
            s = ValueState(min(x.level for x in ins), ins[0].scale * ins[1].scale, 3)
        elif n.op == "plaintext_mult":
            lvl = max(ins[0].level, 1)
            scale = params.prime(lvl) if n.attrs.get("encode") == "adjust" else ins[0].scale * params.prime(lvl)
            s = ValueState(ins[0].level, scale, ins[0].size)
        elif len(ins) == 2:
            s = ValueState(min(x.level for x in ins), ins[0].scale, max(x.size for x in ins))
        else:
            s = ins[0]
        st[n.name] = s
    return st


def _boundaries(graph: Graph) -> list[str]:
    users = graph.consumers()
    out = []
    for n in graph.nodes:
        if n.op in ("decrypt", "encrypt"):
            continue
        layer = n.attrs.get("layer")
        if any(graph[u].attrs.get("layer") != layer and graph[u].op != "decrypt" for u in users[n.name]):
            out.append(n.name)
    return out


class BootstrappingInsertionPass(HEPass):
    """Insert ``bootstrap`` nodes at layer boundaries (``greedy`` or ``minimal``).

    ``level_threshold`` counts remaining levels. Requires: rescaled and relinearized graph.
    Ensures: no op runs below level 0; levels re-aligned. Idempotent (a graph that already has
    bootstraps is left as is).

    Examples
    --------
    >>> BootstrappingInsertionPass(level_threshold=30.0, strategy="greedy").level_threshold
    30.0
    """

    def __init__(self, level_threshold: float = 2.0, strategy: str = "greedy"):
        check_strategy(self.name, strategy, _STRATEGIES)
        self.level_threshold = as_float(f"{self.name} level_threshold", level_threshold, 0.0, 1e6, closed=True)
        self.strategy = strategy

    def __call__(self, graph: Graph, context) -> Graph:
        require(graph, self.name, absent={"activation": "NonlinearToPolynomialPass", "linear": "LinearLayerBSGSPass"})
        ops = set(graph.ops())
        for op, producer in (("rescale", "RescalingInsertionPass"), ("relinearize", "RelinearizationInsertionPass")):
            if "ciphertext_mult" in ops and op not in ops:
                raise PassError(
                    f"{self.name} needs a {'rescaled' if op == 'rescale' else 'relinearized'} graph: "
                    f"put {producer} before it"
                )
        params = context.params
        if any(n.op == "bootstrap" for n in graph.nodes):
            return graph.copy()
        graph = align_levels(graph, params)
        states = tolerant_levels(graph, params)
        bounds = _boundaries(graph)
        segments = _segments(graph, states, bounds, params)
        # a boundary value still owing its rescale is rescaled before its bootstrap: one more level
        extra = [0 if math.isclose(states[b].scale, params.scale, rel_tol=1e-9) else 1 for b in bounds]
        chosen = self._plan(segments, params, bounds, extra)
        context.meta["bootstrapping"] = {"strategy": self.strategy, "bootstraps": len(chosen), "at": chosen}
        if chosen:
            graph = _insert(graph, chosen, params)
        graph = align_levels(graph, params)
        annotate(graph, params)  # raises, naming the node, if it still runs out of levels
        return graph

    def _plan(
        self, segments: list[tuple[int, int]], params: CKKSParameters, bounds: list[str], extra: list[int]
    ) -> list[str]:
        if self.strategy == "minimal" and _feasible_without(segments, params):
            return []
        top, lb = params.max_level, params.bootstrap_level
        if self.strategy == "greedy":
            if lb < self.level_threshold:
                raise ConfigurationError(
                    f"level_threshold={self.level_threshold} is above the level a bootstrap returns to ({lb}); "
                    "greedy bootstrapping would never stop. Lower level_threshold or bootstrap_depth"
                )
            level, chosen = top, []
            for i, (cons, need) in enumerate(segments):
                if level - need < 0:
                    raise CKKSScheduleError(
                        f"node '{bounds[i - 1] if i else 'input'}': the next layer needs {need} levels but only {level} "
                        f"remain; raise level_threshold above {need - 1} or use strategy='minimal'"
                    )
                level -= cons
                if i < len(bounds) and level < self.level_threshold and level - extra[i] >= 0:
                    chosen.append(bounds[i])
                    level = lb
            return chosen
        # minimal: shortest path over (boundary, level) states; cost = bootstraps
        best = {top: (0, [])}
        for i, (cons, need) in enumerate(segments):
            nxt: dict[int, tuple[int, list]] = {}
            for level, (count, path) in best.items():
                if level - need < 0:
                    continue
                options = [(level - cons, count, path)]
                if i < len(bounds) and level - cons - extra[i] >= 0:
                    options.append((lb, count + 1, path + [bounds[i]]))
                for lvl, c, p in options:
                    if lvl not in nxt or c < nxt[lvl][0]:
                        nxt[lvl] = (c, p)
            if not nxt:
                raise CKKSScheduleError(
                    f"node '{bounds[i - 1] if i else 'input'}': the next layer needs {need} levels, more than a bootstrap "
                    f"restores ({lb}); add primes to coeff_modulus, lower bootstrap_depth or the polynomial degree"
                )
            best = nxt
        return min(best.values(), key=lambda cp: (cp[0], -len(cp[1])))[1]


def _feasible_without(segments: list[tuple[int, int]], params: CKKSParameters) -> bool:
    level = params.max_level
    for cons, need in segments:
        if level - need < 0:
            return False
        level -= cons
    return True


def _segments(graph: Graph, states: dict, bounds: list[str], params: CKKSParameters) -> list[tuple[int, int]]:
    """(levels consumed, deepest dip) between consecutive boundaries, and after the last one."""
    order = {n.name: k for k, n in enumerate(graph.nodes)}
    marks = [order[b] for b in bounds] + [len(graph.nodes) - 1]
    out, start_level, start = [], params.max_level, 0
    for k, end in enumerate(marks):
        seg = graph.nodes[start : end + 1]
        dip = min((states[n.name].level for n in seg), default=start_level)
        end_level = states[bounds[k]].level if k < len(bounds) else dip
        out.append((start_level - end_level, start_level - dip))
        start_level, start = end_level, end + 1
    return out


def _insert(graph: Graph, chosen: list[str], params: CKKSParameters) -> Graph:
    """Insert the bootstraps one at a time, in order: each one changes the levels and scales of
    everything after it, so the state at the next chosen value is recomputed before it is read."""
    for name in chosen:
        states = tolerant_levels(graph, params)
        rw = Rewriter({n.name for n in graph.nodes})
        current: dict[str, str] = {}
        for n in graph.nodes:
            rw.keep(n.clone(inputs=[current.get(i, i) for i in n.inputs]))
            if n.name == name:
                v, s = n.name, states[n.name]
                layer, period = n.attrs.get("layer"), n.attrs.get("period")
                if not math.isclose(s.scale, params.scale, rel_tol=1e-9):
                    v = rw.emit(f"{n.name}_rs", "rescale", [v], layer, period=period)
                if s.size == 3:
                    v = rw.emit(f"{n.name}_rl", "relinearize", [v], layer, period=period)
                current[n.name] = rw.emit(f"{n.name}_bs", "bootstrap", [v], layer, period=period)
        graph = align_levels(Graph(rw.nodes, [current.get(o, o) for o in graph.outputs]), params)
    return graph
