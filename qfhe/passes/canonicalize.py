"""Float-graph canonicalization: move reshapes after elementwise ops, fold affines into layers.

Both passes keep the float graph numerically equal (up to float64 rounding) and prepare it for
quantization: after them, every elementwise chain sits directly after the op that produces its
input, so quantization can turn the chain into one table lookup, and BatchNorm costs nothing.

Examples
--------
>>> import numpy as np
>>> from qfhe.ir import Graph, Node
>>> g = Graph([Node("x", "input", [], {"shape": (2,), "dtype": "float"}),
...            Node("fc", "gemm", ["x"], {"weight": np.eye(2), "bias": np.zeros(2)}),
...            Node("bn", "affine", ["fc"], {"scale": np.array([[2.0, 3.0]]), "shift": np.array([[1.0, 0.0]])})],
...           ["bn"])
>>> fold_affine(g).ops()
['input', 'gemm']
"""

from __future__ import annotations

import numpy as np

from qfhe.ir.graph import Graph
from qfhe.ir.ops import chain_arrays


def _shape_of(graph: Graph) -> dict[str, tuple]:
    """Per-sample shapes of every node, from the input shape and op semantics (no data)."""
    from qfhe.ir.ops import evaluate

    shapes: dict[str, tuple] = {}
    for n in graph.nodes:
        if n.op == "input":
            shapes[n.name] = tuple(n.attrs["shape"])
            continue
        dummies = [np.zeros((1,) + shapes[i]) for i in n.inputs]
        if n.op in ("activation", "affine", "dequant", "quant", "round", "tlu"):
            out = np.broadcast_shapes((1,) + shapes[n.inputs[0]], np.shape(n.attrs.get("scale", 0.0)))
            shapes[n.name] = tuple(out[1:])
        else:
            shapes[n.name] = tuple(evaluate(n.op, dummies, n.attrs).shape[1:])
    return shapes


def _compress(param: np.ndarray) -> np.ndarray:
    """Shrink a broadcast parameter to size 1 along every axis where it is constant."""
    param = np.asarray(param)
    for ax in range(1, param.ndim):
        if param.shape[ax] > 1 and np.all(param == param.take([0], axis=ax)):
            param = param.take([0], axis=ax)
    if param.size == 1:
        return np.asarray(param.reshape(-1)[0])
    return param


def sink_reshapes(graph: Graph) -> Graph:
    """Move each ``reshape`` below the elementwise op (activation, affine, fakequant) after it.

    Requires: a float graph. Ensures: no ``reshape`` feeds an ``activation`` or ``affine`` as its
    only consumer; values are unchanged. Affine parameters are re-laid out for the pre-reshape
    shape (and kept per-channel when they allow it). Idempotent.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "input", [], {"shape": (2, 3), "dtype": "float"}),
    ...            Node("f", "reshape", ["x"], {"shape": (6,)}),
    ...            Node("r", "activation", ["f"], {"fn": "relu", "params": {}})], ["r"])
    >>> sink_reshapes(g).ops()
    ['input', 'activation', 'reshape']
    """
    g = graph.copy()
    changed = True
    while changed:
        changed = False
        users = g.consumers()
        shapes = _shape_of(g)
        for idx, n in enumerate(g.nodes):
            if n.op != "reshape" or len(users[n.name]) != 1 or n.name in g.outputs:
                continue
            nxt = g[users[n.name][0]]
            if nxt.op not in ("activation", "affine", "fakequant"):
                continue
            if nxt.op == "activation" and chain_arrays([{"op": "activation", "attrs": nxt.attrs}]):
                continue  # per-channel parameters (PReLU) are laid out for the reshape's output
            src = n.inputs[0]
            new_attrs = dict(nxt.attrs)
            if nxt.op == "affine":
                out_shape, in_shape = (1,) + shapes[nxt.name], (1,) + shapes[src]
                for key in ("scale", "shift"):
                    full = np.broadcast_to(nxt.attrs[key], out_shape).reshape(in_shape)
                    new_attrs[key] = _compress(full)
            # swap: src -> elementwise(new name = nxt.name + "_pre") -> reshape(name = nxt.name)
            pre = g.fresh_name(nxt.name + "_pre")
            elem = nxt.clone(name=pre, inputs=[src], attrs=new_attrs)
            resh = n.clone(name=nxt.name, inputs=[pre])
            nodes = [m for m in g.nodes if m.name not in (n.name, nxt.name)]
            pos = nodes.index(g[src]) + 1 if src in [m.name for m in nodes] else idx
            nodes[pos:pos] = [elem, resh]
            g = Graph(nodes, g.outputs).verify("sink_reshapes")
            changed = True
            break
    return g


def fold_affine(graph: Graph) -> Graph:
    """Fold an ``affine`` (BatchNorm, scalar scale/shift) into the gemm/conv that feeds it.

    Requires: a float graph. Ensures: no ``affine`` whose input is a gemm/conv used only by it;
    values are unchanged up to float64 rounding. An affine that cannot be folded (after an add,
    or per-element, or after a layer with fixed QAT integer weights) stays, and quantization fuses
    it into a table lookup. Idempotent.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "input", [], {"shape": (1,), "dtype": "float"}),
    ...            Node("fc", "gemm", ["x"], {"weight": np.ones((1, 1)), "bias": None}),
    ...            Node("s", "affine", ["fc"], {"scale": np.array(2.0), "shift": np.array(1.0)})], ["s"])
    >>> out = fold_affine(g); out.ops(), out["fc"].attrs["weight"], out["fc"].attrs["bias"]
    (['input', 'gemm'], array([[2.]]), array([1.]))
    """
    users = graph.consumers()
    out_nodes = []
    folded: dict[str, str] = {}
    by_name = {}
    for n in graph.nodes:
        n = n.clone(inputs=[folded.get(i, i) for i in n.inputs])
        prod = by_name.get(n.inputs[0]) if n.inputs else None
        if (
            n.op == "affine"
            and prod is not None
            and prod.op in ("gemm", "conv")
            and "weight_int" not in prod.attrs  # QAT integer weights are fixed: BN goes in the lookup
            and len(users[prod.name]) == 1
            and prod.name not in graph.outputs
        ):
            channels = prod.attrs["weight"].shape[0]
            per_ch = _per_output_channel(n.attrs, channels, prod.op)
            if per_ch is not None:
                scale, shift = per_ch
                w = prod.attrs["weight"] * scale.reshape((-1,) + (1,) * (prod.attrs["weight"].ndim - 1))
                b = prod.attrs["bias"] if prod.attrs["bias"] is not None else np.zeros(channels)
                # the layer keeps its own name (Conv → BN → ReLU reports as the conv, everywhere)
                merged = prod.clone(attrs={**prod.attrs, "weight": w, "bias": b * scale + shift})
                out_nodes[out_nodes.index(prod)] = merged
                by_name[prod.name] = merged
                folded[n.name] = prod.name
                continue
        out_nodes.append(n)
        by_name[n.name] = n
    return Graph(out_nodes, [folded.get(o, o) for o in graph.outputs]).verify("fold_affine")


def fold_affine_into_gemm(graph: Graph) -> Graph:
    """Fold an ``affine`` that only float gemms read into those gemms: ``W(a∘x + c) + b = (W·diag a)x + (Wc + b)``.

    Requires: a float graph. Ensures: no ``affine`` with per-feature (or scalar) parameters whose
    every consumer is a gemm with float weights; values unchanged up to float64 rounding. Such an
    affine (a BatchNorm1d on input features, the inverse of the client's per-feature input scaling)
    would otherwise cost one table lookup per value. Idempotent.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "input", [], {"shape": (2,), "dtype": "float"}),
    ...            Node("s", "affine", ["x"], {"scale": np.array([[2.0, 3.0]]), "shift": np.array([[1.0, 0.0]])}),
    ...            Node("fc", "gemm", ["s"], {"weight": np.ones((1, 2)), "bias": None})], ["fc"])
    >>> out = fold_affine_into_gemm(g)
    >>> out.ops(), out["fc"].attrs["weight"].tolist(), out["fc"].attrs["bias"].tolist()
    (['input', 'gemm'], [[2.0, 3.0]], [1.0])
    """
    users = graph.consumers()
    folded: dict[str, tuple] = {}
    for n in graph.nodes:
        readers = [graph[u] for u in users[n.name]]
        if (
            n.op != "affine"
            or n.name in graph.outputs
            or not readers
            or any(r.op != "gemm" or "weight_int" in r.attrs for r in readers)
        ):
            continue
        features = readers[0].attrs["weight"].shape[1]
        params = []
        for key in ("scale", "shift"):
            p = np.asarray(n.attrs[key], dtype=np.float64)
            if p.size == 1:
                params.append(np.full(features, float(p.reshape(-1)[0])))
            elif p.shape in ((1, features), (features,)):
                params.append(p.reshape(features))
            else:
                break
        if len(params) == 2:
            folded[n.name] = (n.inputs[0], *params)
    if not folded:
        return graph
    nodes = []
    for n in graph.nodes:
        if n.name in folded:
            continue
        if n.op == "gemm" and n.inputs[0] in folded:
            src, scale, shift = folded[n.inputs[0]]
            w = n.attrs["weight"]
            bias = n.attrs["bias"] if n.attrs.get("bias") is not None else np.zeros(w.shape[0])
            n = n.clone(inputs=[src], attrs={**n.attrs, "weight": w * scale[None, :], "bias": bias + w @ shift})
        nodes.append(n)
    return Graph(nodes, list(graph.outputs)).verify("fold_affine_into_gemm")


def _per_output_channel(attrs: dict, channels: int, op: str):
    """Return (scale, shift) as (channels,) arrays if the affine is per output channel, else None."""
    out = []
    for key in ("scale", "shift"):
        p = np.asarray(attrs[key], dtype=np.float64)
        if p.ndim == 0:
            out.append(np.full(channels, float(p)))
            continue
        if p.shape[0] != 1 or p.ndim < 2 or p.shape[1] not in (1, channels) or any(s != 1 for s in p.shape[2:]):
            return None
        out.append(np.broadcast_to(p.reshape(-1), (channels,)).copy())
    return out[0], out[1]
