"""From the shared float graph to the high-level CKKS graph, and calibration of activation ranges.

Every linear map (``gemm``, ``conv``, average pooling) becomes a dense ``linear`` node over the
flattened (C-order) input, so the packing and matrix-vector passes see one kind of layer.

Examples
--------
>>> import numpy as np, torch
>>> from qfhe.frontend import import_torch
>>> m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.GELU())
>>> X = np.random.RandomState(0).randn(20, 4)
>>> g = to_he_graph(import_torch(m, torch.tensor(X)), X)
>>> g.ops(), g["1"].attrs["range"][0] < 0
(['input', 'linear', 'activation'], True)
"""

from __future__ import annotations

import warnings

import numpy as np

from qfhe.errors import NarrowCalibrationWarning, UnsupportedOpError
from qfhe.ir.graph import Graph, Node
from qfhe.ir.interpreter import collect_ranges
from qfhe.ir.ops import chain_arrays, evaluate
from qfhe.validation import user_stacklevel

#: Float-graph ops :func:`to_he_graph` lowers (every other op raises a CKKS-specific error).
LOWERED_OPS = frozenset({"input", "gemm", "conv", "activation", "affine", "add", "sub", "gather", "reshape"})
#: Activations with no CKKS lowering: step functions cannot be polynomials.
UNLOWERED_ACTIVATIONS = frozenset({"expr"})


def _dense(node: Node, in_shape: tuple) -> np.ndarray:
    """The matrix of a gemm/conv as an (out_numel, in_numel) array."""
    if node.op == "gemm":
        return node.attrs["weight"]
    n_in = int(np.prod(in_shape))
    basis = np.eye(n_in).reshape((n_in,) + tuple(in_shape))
    attrs = dict(node.attrs, bias=None)
    return evaluate("conv", [basis], attrs).reshape(n_in, -1).T


def to_he_graph(float_graph: Graph, calibration: np.ndarray) -> Graph:
    """Map a canonical float graph to ``input``, ``linear``, ``activation``, ``affine``, ``add``.

    Each ``activation`` records the calibrated ``range`` of its input (from ``calibration``).

    Raises
    ------
    UnsupportedOpError
        For ops the CKKS path cannot express (``concat``).

    Examples
    --------
    >>> import torch
    >>> from qfhe.frontend import import_torch
    >>> X = np.random.RandomState(0).randn(8, 3)
    >>> to_he_graph(import_torch(torch.nn.Linear(3, 2), torch.tensor(X)), X).ops()
    ['input', 'linear']
    """
    X = np.asarray(calibration, np.float64)
    if X.shape[0] < 2:
        warnings.warn(
            "the CKKS calibration input is a single sample, so polynomial ranges come from one point and "
            "will be narrow; pass a calibration batch (a few hundred samples)",
            NarrowCalibrationWarning,
            stacklevel=user_stacklevel(),
        )
    ranges = collect_ranges(float_graph, X)
    shapes: dict[str, tuple] = {}
    alias: dict[str, str] = {}
    nodes: list[Node] = []
    for n in float_graph.nodes:
        ins = [alias.get(i, i) for i in n.inputs]
        if n.op == "input":
            shapes[n.name] = tuple(n.attrs["shape"])
            nodes.append(Node(n.name, "input", [], {"features": int(np.prod(n.attrs["shape"]))}))
            continue
        in_shape = shapes[n.inputs[0]]
        if n.op in ("gemm", "conv"):
            matrix = _dense(n, in_shape)
            out = evaluate(n.op, [np.zeros((1,) + in_shape)], n.attrs)
            bias = out.reshape(-1) if n.attrs.get("bias") is not None else None
            shapes[n.name] = out.shape[1:]
            nodes.append(Node(n.name, "linear", ins, {"matrix": matrix, "bias": bias}))
        elif n.op == "activation":
            if n.attrs["fn"] in UNLOWERED_ACTIVATIONS:
                raise UnsupportedOpError(
                    f"node '{n.name}' computes a comparison, mask or torch.where (a step function); CKKS evaluates "
                    "polynomials, which cannot jump: use scheme='tfhe', where it is one table lookup"
                )
            if chain_arrays([{"op": "activation", "attrs": n.attrs}]):
                raise UnsupportedOpError(
                    f"node '{n.name}' ({n.attrs['fn']}) has a parameter per channel; the CKKS path fits one polynomial "
                    "per activation: use one shared parameter (e.g. nn.PReLU() with num_parameters=1) or scheme='tfhe'"
                )
            lo, hi = ranges[n.inputs[0]]
            shapes[n.name] = in_shape
            nodes.append(
                Node(
                    n.name,
                    "activation",
                    ins,
                    {"fn": n.attrs["fn"], "params": n.attrs["params"], "range": (float(lo), float(hi))},
                )
            )
        elif n.op == "affine":
            size = int(np.prod(in_shape))
            scale = np.broadcast_to(n.attrs["scale"], (1,) + in_shape).reshape(-1)
            shift = np.broadcast_to(n.attrs["shift"], (1,) + in_shape).reshape(-1)
            shapes[n.name] = in_shape
            nodes.append(Node(n.name, "affine", ins, {"scale": scale[:size], "shift": shift[:size]}))
        elif n.op in ("add", "sub"):
            shapes[n.name] = in_shape
            if n.op == "sub":  # a - b = a + (-1)·b
                size = int(np.prod(in_shape))
                neg = float_graph.fresh_name(f"{n.name}_neg")
                nodes.append(Node(neg, "affine", [ins[1]], {"scale": np.full(size, -1.0), "shift": np.zeros(size)}))
                ins = [ins[0], neg]
            nodes.append(Node(n.name, "add", ins, {}))
        elif n.op == "gather":
            index = np.asarray(n.attrs["index"]).reshape(-1)
            matrix = np.zeros((index.size, int(np.prod(in_shape))))
            matrix[np.flatnonzero(index >= 0), index[index >= 0]] = 1.0
            fill = n.attrs.get("fill")
            bias = np.where(index < 0, fill or 0.0, 0.0) if fill else None
            shapes[n.name] = tuple(np.shape(n.attrs["index"]))
            nodes.append(Node(n.name, "linear", ins, {"matrix": matrix, "bias": bias}))
        elif n.op in ("mul", "matmul"):
            raise UnsupportedOpError(
                f"node '{n.name}' ({n.op}) multiplies two encrypted tensors; the CKKS pass pipeline does not place "
                "ciphertext-ciphertext products outside activations yet: use scheme='tfhe'"
            )
        elif n.op == "maxpool":
            raise UnsupportedOpError(
                f"node '{n.name}' (maxpool) has no CKKS lowering: a max needs comparisons, which CKKS can only "
                "approximate with high-degree polynomials; use AvgPool2d for scheme='ckks', or scheme='tfhe'"
            )
        elif n.op == "reshape":
            shapes[n.name] = tuple(n.attrs["shape"])
            alias[n.name] = ins[0]  # a flat vector is already C-order: reshapes are free
        else:
            raise UnsupportedOpError(
                f"node '{n.name}' ({n.op}) has no CKKS lowering yet; the CKKS path supports "
                "linear/convolution/pooling layers, BatchNorm, activations and residual adds"
            )
    return Graph(nodes, [alias.get(o, o) for o in float_graph.outputs]).verify("to_he_graph")


def polynomial_reference(he_graph: Graph, X: np.ndarray, polys: dict, observer=None) -> np.ndarray:
    """Run the high-level graph in float64 with each activation replaced by its fitted polynomial
    (``polys``: node name → numpy Polynomial); the exact target of the encrypted computation.

    ``observer(name, values)``, if given, sees the input of every activation.

    Examples
    --------
    >>> import torch
    >>> from qfhe.frontend import import_torch
    >>> X = np.random.RandomState(0).randn(8, 3)
    >>> g = to_he_graph(import_torch(torch.nn.Linear(3, 2), torch.tensor(X)), X)
    >>> polynomial_reference(g, X, {}).shape
    (8, 2)
    """
    from qfhe.ir.activations import apply_activation

    vals = {}
    for n in he_graph.nodes:
        if n.op == "input":
            vals[n.name] = np.asarray(X, np.float64).reshape(len(X), -1)
        elif n.op == "linear":
            y = vals[n.inputs[0]] @ n.attrs["matrix"].T
            vals[n.name] = y + n.attrs["bias"] if n.attrs["bias"] is not None else y
        elif n.op == "activation":
            x = vals[n.inputs[0]]
            if observer is not None:
                observer(n.name, x)
            vals[n.name] = (
                polys[n.name](x) if n.name in polys else apply_activation(n.attrs["fn"], n.attrs["params"], x)
            )
        elif n.op == "affine":
            vals[n.name] = vals[n.inputs[0]] * n.attrs["scale"] + n.attrs["shift"]
        elif n.op == "add":
            vals[n.name] = vals[n.inputs[0]] + vals[n.inputs[1]]
    return np.concatenate([vals[o] for o in he_graph.outputs], axis=1)
