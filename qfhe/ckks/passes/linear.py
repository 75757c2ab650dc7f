"""LinearLayerBSGSPass: matrix-vector products by (baby-step giant-step) diagonals.

A layer y = W x + b with W padded to m × n (powers of two) and x replicated with period n:

* m ≥ n: W is extended to m × m (the input is also m-periodic), and the m diagonals
  ``diag_k[i] = W[i, (i + k) mod m]`` give ``y = Σ_k diag_k ⊙ rot(x, k)``.
* m < n (rectangular): m *extended* diagonals of length n, ``diag_k[i] = W[i mod m, (i + k) mod n]``,
  then log2(n/m) rotate-and-add folds; the result is y replicated with period m, ready for the
  next layer without extra replication.

Halevi–Shoup needs d − 1 rotations for d diagonals. BSGS with n1 = ceil(√d) baby steps and
n2 = ceil(d / n1) giant steps needs n1 + n2 − 2: the plaintext diagonals are pre-rotated offline,
``y = Σ_j rot(Σ_i rot(diag_{j·n1+i}, −j·n1) ⊙ rot(x, i), j·n1)``.

Examples
--------
>>> bsgs_split(64)
(8, 8)
>>> bsgs_rotations(64), diagonal_rotations(64)
(14, 63)
"""

from __future__ import annotations

import math

import numpy as np

from qfhe.ckks.passes.base import HEPass, Rewriter, require
from qfhe.ir.graph import Graph, Node
from qfhe.validation import as_int


def bsgs_split(d: int) -> tuple[int, int]:
    """Baby steps n1 = ceil(sqrt(d)) and giant steps n2 = ceil(d / n1).

    Examples
    --------
    >>> bsgs_split(10)
    (4, 3)
    """
    n1 = math.isqrt(d - 1) + 1 if d > 1 else 1
    return n1, -(-d // n1)


def bsgs_rotations(d: int) -> int:
    """Rotations of BSGS over d diagonals: n1 + n2 − 2.

    Examples
    --------
    >>> bsgs_rotations(16)
    6
    """
    n1, n2 = bsgs_split(d)
    return n1 + n2 - 2


def diagonal_rotations(d: int) -> int:
    """Rotations of the plain diagonal method over d diagonals: d − 1.

    Examples
    --------
    >>> diagonal_rotations(16)
    15
    """
    return d - 1


def diagonals(matrix: np.ndarray, m: int, n: int) -> tuple[list[np.ndarray], int, int]:
    """The generalized diagonals of ``matrix`` padded to m × n, their length, and the fold count.

    Examples
    --------
    >>> ds, length, folds = diagonals(np.arange(8.0).reshape(2, 4), 2, 4)
    >>> len(ds), length, folds, ds[0].tolist()
    (2, 4, 1, [0.0, 5.0, 2.0, 7.0])
    """
    W = np.zeros((m, n))
    W[: matrix.shape[0], : matrix.shape[1]] = matrix
    if m >= n:
        Wsq = np.zeros((m, m))
        Wsq[:, :n] = W
        i = np.arange(m)
        return [Wsq[i, (i + k) % m] for k in range(m)], m, 0
    i = np.arange(n)
    return [W[i % m, (i + k) % n] for k in range(m)], n, int(math.log2(n // m))


def _matvec(
    rw: Rewriter,
    layer: str,
    matrix: np.ndarray,
    m: int,
    x: str,
    in_period: int,
    use_bsgs: bool,
    client_rotations: dict | None,
    prefix: str | None = None,
) -> str:
    """Emit W·x by (BSGS) diagonals; return the accumulator (periodic with period m)."""
    prefix = prefix or layer
    diags, length, folds = diagonals(matrix, m, in_period)
    d = len(diags)
    rotated = dict(client_rotations or {})

    def rot(v: str, k: int, base: str) -> str:
        if k == 0:
            return v
        if v == x and k in rotated:
            return rotated[k]
        return rw.emit(base, "rotate", [v], layer, k=k, period=length)

    def pmul(v: str, diag: np.ndarray) -> str:
        return rw.emit(f"{prefix}_pm", "plaintext_mult", [v], layer, value=diag, encode="prime", period=length)

    def add(a: str | None, b: str) -> str:
        return b if a is None else rw.emit(f"{prefix}_acc", "ciphertext_add", [a, b], layer, period=length)

    acc = None
    if use_bsgs:
        n1, n2 = bsgs_split(d)
        baby = [rot(x, i, f"{prefix}_baby") for i in range(n1)]
        for j in range(n2):
            inner = None
            for i in range(n1):
                k = j * n1 + i
                if k >= d:
                    break
                if np.any(diags[k]):
                    inner = add(inner, pmul(baby[i], np.roll(diags[k], j * n1)))
            if inner is not None:
                acc = add(acc, rot(inner, j * n1, f"{prefix}_giant"))
    else:
        for k in range(d):
            if np.any(diags[k]):
                acc = add(acc, pmul(rot(x, k, f"{prefix}_rot"), diags[k]))
    if acc is None:  # an all-zero matrix
        acc = pmul(x, np.zeros(length))
    shift = length // 2
    for _ in range(folds):
        acc = add(acc, rot(acc, shift, f"{prefix}_fold"))
        shift //= 2
    return acc


def lower_linear(
    rw: Rewriter, node: Node, x: str, in_period: int, use_bsgs: bool, client_rotations: dict | None = None
) -> str:
    """Emit the HE ops of one ``linear`` node; the last node keeps ``node.name``.

    ``client_rotations`` maps a rotation amount to an input ciphertext the client already rotated
    (``diagonal`` packing); those rotations cost the server nothing. An input split over several
    ciphertexts (``parts``: more features than slots) is multiplied block by block, W·x = Σ W_k·x_k.

    Examples
    --------
    >>> rw = Rewriter({"x"})
    >>> node = Node("fc", "linear", ["x"], {"matrix": np.arange(1.0, 17.0).reshape(4, 4), "bias": None, "period": 4})
    >>> lower_linear(rw, node, "x", 4, use_bsgs=True)
    'fc'
    >>> sorted({n.op for n in rw.nodes})
    ['ciphertext_add', 'plaintext_mult', 'rotate']
    """
    layer, m, matrix = node.name, node.attrs["period"], node.attrs["matrix"]
    parts = node.attrs.get("parts")
    if parts:
        acc = None
        for k, part in enumerate(parts):
            block = matrix[:, k * in_period : (k + 1) * in_period]
            y = _matvec(rw, layer, block, m, part, in_period, use_bsgs, None, prefix=f"{layer}_part{k}")
            acc = y if acc is None else rw.emit(f"{layer}_sum", "ciphertext_add", [acc, y], layer, period=m)
    else:
        acc = _matvec(rw, layer, matrix, m, x, in_period, use_bsgs, client_rotations)
    bias = node.attrs.get("bias")
    if bias is not None:
        b = np.zeros(m)
        b[: len(bias)] = bias
        return rw.emit(layer, "plaintext_add", [acc], layer, name=node.name, value=b, period=m)
    # No bias: the accumulator (the last node emitted, read by nothing yet) takes the layer's name.
    last = rw.nodes[-1]
    assert last.name == acc
    rw.nodes[-1] = last.clone(name=node.name, attrs={**last.attrs, "period": m})
    rw.used.add(node.name)
    return node.name


def lower_linear_layers(graph: Graph, context, min_size: int) -> Graph:
    """Lower every ``linear`` node: BSGS when its input size is at least ``min_size``.

    Examples
    --------
    >>> g = Graph([Node("x", "encrypt", [], {"period": 2}), Node("fc", "linear", ["x"], {"matrix": np.eye(2), "bias": None, "period": 2})], ["fc"])
    >>> "linear" in lower_linear_layers(g, None, 16).ops()
    False
    """
    rw = Rewriter({n.name for n in graph.nodes})
    periods = {n.name: n.attrs.get("period") for n in graph.nodes}
    client = context.meta.get("client_rotations", {}) if context is not None else {}
    for n in graph.nodes:
        if n.op != "linear":
            rw.keep(n)
            continue
        x = n.inputs[0]
        n_in = n.attrs["matrix"].shape[1] if not n.attrs.get("parts") else periods[x]
        lower_linear(rw, n, x, periods[x], use_bsgs=n_in >= min_size, client_rotations=client.get(x))
    return Graph(rw.nodes, graph.outputs)


def lower_remaining(graph: Graph, context) -> Graph:
    """Lower linear layers no pass lowered yet with the plain diagonal method (the baseline).

    Examples
    --------
    >>> g = Graph([Node("x", "encrypt", [], {"period": 2})], ["x"])
    >>> lower_remaining(g, None).ops()
    ['encrypt']
    """
    if any(n.op == "linear" for n in graph.nodes):
        return lower_linear_layers(graph, context, min_size=1 << 62)
    return graph


class LinearLayerBSGSPass(HEPass):
    """Lower linear layers to rotations, plaintext multiplies and adds.

    Layers whose input size is at least ``min_size`` use BSGS; smaller ones keep the plain
    diagonal method. Requires: a packed graph (periods known). Ensures: no ``linear`` node remains.
    Idempotent.

    Examples
    --------
    >>> LinearLayerBSGSPass(min_size=16).min_size
    16
    """

    def __init__(self, min_size: int = 16):
        self.min_size = as_int(f"{self.name} min_size", min_size, 1)

    def __call__(self, graph: Graph, context) -> Graph:
        require(graph, self.name)
        return lower_linear_layers(graph, context, self.min_size)
