"""CostAnalysisPass: op counts, a measured latency model, memory, depth, parallelism, critical path.

Latency per op is ``a · (N / 8192) · (level + 1) ** e`` with (a, e) fitted on SEAL measurements made
on this kind of machine (``benchmarks/ckks_calibrate.py`` writes ``qfhe/ckks/cost_model.json``). A
bootstrap is modelled as ``bootstrap_multiplications`` ct×ct multiplies with relinearization and
rescale at the top level (the literature puts it at 100–250 multiplications).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from qfhe.ckks.hegraph import COUNTED_OPS, annotate
from qfhe.ckks.params import CKKSParameters
from qfhe.ckks.passes.base import HEPass, require
from qfhe.ir.graph import Graph

_MODEL = Path(__file__).resolve().parents[1] / "cost_model.json"


@lru_cache(maxsize=None)
def _model() -> dict:
    return json.loads(_MODEL.read_text())


def op_latency_ms(op: str, level: int, params: CKKSParameters) -> float:
    """Modelled latency of one op at ``level`` (client-side encrypt/decrypt cost 0 here).

    Examples
    --------
    >>> p = CKKSParameters(16384, [60] + [40] * 6 + [60], 2**40)
    >>> op_latency_ms("rotate", 6, p) > op_latency_ms("ciphertext_add", 6, p)
    True
    """
    m = _model()
    if op == "bootstrap":
        top = params.max_level
        per = sum(op_latency_ms(o, top, params) for o in ("ciphertext_mult", "relinearize", "rescale"))
        return m["bootstrap_multiplications"] * per
    if op not in m["ops"]:
        return 0.0
    c = m["ops"][op]
    return c["a_ms"] * (params.poly_modulus_degree / 8192) * (level + 1) ** c["exponent"]


@dataclass
class CriticalNode:
    """One node of the critical path.

    Examples
    --------
    >>> CriticalNode("r", "rotate").op
    'rotate'
    """

    name: str
    op: str


@dataclass
class CostAnalysis:
    """What CostAnalysisPass reports.

    Attributes
    ----------
    total_operations : dict
        Count of every op kind (zeros included).
    estimated_latency : float
        Sum of modelled op latencies, ms (single-threaded).
    estimated_memory : int
        Peak bytes of live ciphertexts plus the encoded plaintext operands.
    depth : int
        Multiplicative depth: the most rescales on any input-to-output path.
    parallelism : float
        Total work / critical-path work.
    critical_path : list of CriticalNode
        Nodes of the longest-latency path.
    final_level : int
        Lowest level among the outputs.

    Examples
    --------
    >>> CostAnalysis().total_operations
    {}
    """

    total_operations: dict = field(default_factory=dict)
    estimated_latency: float = 0.0
    estimated_memory: int = 0
    depth: int = 0
    parallelism: float = 1.0
    critical_path: list = field(default_factory=list)
    final_level: int = 0
    bootstraps: int = 0

    def summary(self) -> str:
        """A few lines for people.

        Examples
        --------
        >>> "latency" in CostAnalysis().summary()
        True
        """
        ops = ", ".join(f"{k} {v}" for k, v in self.total_operations.items() if v)
        return (
            f"ops: {ops}\nestimated latency {self.estimated_latency:.1f} ms, memory "
            f"{self.estimated_memory / 2**20:.1f} MiB, depth {self.depth}, parallelism {self.parallelism:.1f}, "
            f"final level {self.final_level}, critical path {len(self.critical_path)} nodes"
        )


def analyze_cost(graph: Graph, params: CKKSParameters) -> CostAnalysis:
    """Cost of an HE graph (the graph must satisfy the level/scale rules).

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
    >>> g = Graph([Node("x", "encrypt", [], {"length": 2}), Node("r", "rotate", ["x"], {"k": 1}),
    ...            Node("y", "decrypt", ["r"], {"length": 2})], ["y"])
    >>> analyze_cost(g, p).total_operations["rotate"]
    1
    """
    states = annotate(graph, params)
    counts = {op: 0 for op in COUNTED_OPS}
    finish: dict[str, float] = {}
    prev: dict[str, str | None] = {}
    depth: dict[str, int] = {}
    total = 0.0
    for n in graph.nodes:
        if n.op in counts:
            counts[n.op] += 1
        lvl = states[n.inputs[0]].level if n.inputs else states[n.name].level
        cost = op_latency_ms(n.op, lvl, params)
        total += cost
        best = max(n.inputs, key=lambda i: finish[i], default=None)
        finish[n.name] = (finish[best] if best else 0.0) + cost
        prev[n.name] = best
        depth[n.name] = max((depth[i] for i in n.inputs), default=0) + (1 if n.op == "rescale" else 0)
    end = max(graph.outputs, key=lambda o: finish[o])
    path, cur = [], end
    while cur is not None:
        path.append(CriticalNode(cur, graph[cur].op))
        cur = prev[cur]
    path.reverse()
    critical = finish[end]
    return CostAnalysis(
        total_operations=counts,
        estimated_latency=total,
        estimated_memory=_peak_memory(graph, states, params),
        depth=max(depth[o] for o in graph.outputs),
        parallelism=total / critical if critical > 0 else 1.0,
        critical_path=path,
        final_level=min(states[o].level for o in graph.outputs),
        bootstraps=counts["bootstrap"],
    )


def _peak_memory(graph: Graph, states: dict, params: CKKSParameters) -> int:
    users = graph.consumers()
    remaining = {k: len(v) for k, v in users.items()}
    live, peak, plaintexts = 0, 0, 0
    for n in graph.nodes:
        s = states[n.name]
        live += params.ciphertext_bytes(s.level, s.size)
        if n.op in ("plaintext_mult", "plaintext_add"):
            plaintexts += params.ciphertext_bytes(states[n.inputs[0]].level, 1)
        peak = max(peak, live)
        for i in n.inputs:
            remaining[i] -= 1
            if remaining[i] == 0 and i not in graph.outputs:
                live -= params.ciphertext_bytes(states[i].level, states[i].size)
    return peak + plaintexts


class CostAnalysisPass(HEPass):
    """Attach a :class:`CostAnalysis` to ``context.meta["cost_analysis"]``.

    Requires: a graph satisfying the level/scale rules (run after rescaling, relinearization
    and bootstrapping). Ensures: the graph is unchanged.

    Examples
    --------
    >>> CostAnalysisPass(verbose=False, include_critical_path=True).include_critical_path
    True
    """

    def __init__(self, verbose: bool = False, include_critical_path: bool = True):
        self.verbose = verbose
        self.include_critical_path = include_critical_path

    def __call__(self, graph: Graph, context) -> Graph:
        require(
            graph,
            self.name,
            absent={
                "activation": "NonlinearToPolynomialPass",
                "linear": "LinearLayerBSGSPass",
                "add": "InputPackingPass",
            },
        )
        analysis = analyze_cost(graph, context.params)
        if not self.include_critical_path:
            analysis.critical_path = []
        context.meta["cost_analysis"] = analysis
        if self.verbose:
            print(analysis.summary())
        return graph.copy()
