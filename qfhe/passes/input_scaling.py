"""Per-feature scaling of vector inputs: each feature's calibrated range onto [-1, 1], on the client.

Tabular features come in any units (a count in thousands next to a ratio in [0, 1]). One
per-tensor input quantizer over all of them gives the small-range features one or two codes: on
raw breast_cancer, 25 of 30 features. The client, which quantizes anyway, can first map each
feature onto [-1, 1] by its own calibrated range; the inverse map is an ``affine`` that
:func:`qfhe.passes.canonicalize.fold_affine_into_gemm` folds into the first layer's weights, so the
float model is unchanged and the server computes nothing more.

Requires: a canonical float graph and one inputset per ``input`` node, in order.
Ensures: every input with a per-sample shape ``(F,)``, ``F >= 2``, read only by gemms with float
weights, is followed by an ``affine`` (the inverse of its client spec) that the next
canonicalization folds; returns the client specs (:mod:`qfhe.quant.preprocess`), ``None`` for
inputs left as they are.

Examples
--------
>>> import numpy as np
>>> from qfhe.ir import Graph, Node
>>> g = Graph([Node("x", "input", [], {"shape": (2,), "dtype": "float"}),
...            Node("fc", "gemm", ["x"], {"weight": np.ones((1, 2)), "bias": None})], ["fc"])
>>> out, specs = scale_inputs(g, [np.array([[0.0, 100.0], [2.0, 300.0]])])
>>> out.ops(), specs[0]["scale"].tolist()
(['input', 'affine', 'gemm'], [1.0, 100.0])
"""

from __future__ import annotations

import numpy as np

from qfhe.ir.graph import Graph, Node
from qfhe.quant.preprocess import range_spec


def scalable_inputs(graph: Graph) -> list[str]:
    """Inputs the pass scales: vectors of at least 2 features read only by float gemms.

    Examples
    --------
    >>> g = Graph([Node("x", "input", [], {"shape": (3, 3)})], ["x"])
    >>> scalable_inputs(g)
    []
    """
    users = graph.consumers()
    out = []
    for n in graph.nodes:
        if n.op != "input" or len(n.attrs.get("shape", ())) != 1 or n.attrs["shape"][0] < 2:
            continue
        readers = [graph[u] for u in users[n.name]]
        if readers and all(r.op == "gemm" and "weight_int" not in r.attrs for r in readers):
            out.append(n.name)
    return out


def scale_inputs(graph: Graph, inputsets: list, percentile: float | None = None) -> tuple[Graph, list]:
    """Scale every :func:`scalable_inputs` input per feature (see the module docstring); each
    feature's range is its min/max, or its ``percentile`` range (:func:`qfhe.quant.preprocess.range_spec`).

    Examples
    --------
    >>> g = Graph([Node("x", "input", [], {"shape": (2,), "dtype": "float"})], ["x"])
    >>> scale_inputs(g, [np.zeros((2, 2))])[1]
    [None]
    """
    names = [n.name for n in graph.nodes if n.op == "input"]
    chosen = set(scalable_inputs(graph))
    specs = [
        range_spec(np.asarray(x, np.float64), percentile) if name in chosen else None
        for name, x in zip(names, inputsets)
    ]
    if not chosen:
        return graph, specs
    nodes, renamed = [], {}
    for n in graph.nodes:
        n = n.clone(inputs=[renamed.get(i, i) for i in n.inputs])
        nodes.append(n)
        if n.name in chosen:
            spec = specs[names.index(n.name)]
            inverse = graph.fresh_name(f"{n.name}_unscaled")
            nodes.append(
                Node(inverse, "affine", [n.name], {"scale": spec["scale"][None, :], "shift": spec["mean"][None, :]})
            )
            renamed[n.name] = inverse
    return Graph(nodes, [renamed.get(o, o) for o in graph.outputs]).verify("scale_inputs"), specs
