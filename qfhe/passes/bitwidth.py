"""Bit-width analysis of the integer (server-side) part of a quantized graph.

It predicts, before concrete-python compiles anything, the width concrete will give every
encrypted value. concrete sizes a value from the range it sees on the compile inputset and then
gives the same width to all values linked by linear ops (an add, a matmul, a concatenation, a
reshape or a rounding operate on one encoding), so a width is the maximum over such a group.
The TFHE lowering passes these widths to ``fhe.hint`` so concrete can only agree.

Two ways to size ranges:

* ``"calibration"`` (default): ranges observed on the compile inputset (calibration samples plus
  the two corners of the clipped input range). Tight; a new input beyond them is caught by the
  reference interpreter's overflow check.
* ``"interval"``: worst-case interval bounds propagated from the full input code range. Safe for
  any input, and wider.

Examples
--------
>>> import numpy as np
>>> from qfhe.ir import Graph, Node
>>> g = Graph([Node("x", "input", [], {"shape": (2,), "dtype": "float"}),
...            Node("xq", "quant", ["x"], {"scale": 1.0, "zero_point": 0, "qmin": 0, "qmax": 7, "side": "client"}),
...            Node("fc", "qgemm", ["xq"], {"weight": np.array([[1, -1]]), "zero_point": 0})], ["fc"])
>>> bw = analyze_bitwidths(g, np.array([[0.0, 7.0], [7.0, 0.0]]))
>>> bw["fc"]
ValueInfo(lo=-7, hi=7, bits=4, signed=True)
>>> bw["xq"].bits, bw["xq"].own_bits   # linked to the accumulator it feeds
(4, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qfhe.errors import BitWidthError, ConfigurationError
from qfhe.ir.graph import Graph, Node
from qfhe.ir.interpreter import run
from qfhe.ir.numeric import integer_bit_width, round_half_up_lsbs, width_range
from qfhe.ir.ops import LINEAR_INT_OPS, evaluate

MAX_TLU_BITS = 16
_METHODS = ("calibration", "interval")


@dataclass(frozen=True)
class ValueInfo:
    """Range and width of one encrypted value.

    Parameters
    ----------
    lo, hi : int
        Range the circuit is sized for.
    bits : int
        Width concrete gives the value (after linking).
    signed : bool
        Whether the value can be negative.

    Examples
    --------
    >>> ValueInfo(-3, 100, 8, True).bounds
    (-128, 127)
    """

    lo: int
    hi: int
    bits: int
    signed: bool

    @property
    def own_bits(self) -> int:
        """Width the value's own range needs (``bits`` can be larger through linking).

        Examples
        --------
        >>> ValueInfo(0, 5, 8, False).own_bits
        3
        """
        return integer_bit_width(self.lo, self.hi)

    @property
    def bounds(self) -> tuple[int, int]:
        """Interval representable at ``bits``: values outside wrap around in FHE.

        Examples
        --------
        >>> ValueInfo(0, 5, 4, False).bounds
        (0, 15)
        """
        return width_range(self.bits, self.signed)


def is_server_node(node: Node) -> bool:
    """True for nodes that run inside the circuit (not the float input or client borders).

    Examples
    --------
    >>> is_server_node(Node("q", "quant", ["x"], {"side": "client"}))
    False
    """
    return node.op != "input" and node.attrs.get("side") != "client"


def client_input_nodes(graph: Graph) -> list[Node]:
    """The client-side ``quant`` nodes that turn float inputs into circuit inputs.

    Examples
    --------
    >>> g = Graph([Node("x", "input", []), Node("q", "quant", ["x"], {"side": "client"})], ["q"])
    >>> [n.name for n in client_input_nodes(g)]
    ['q']
    """
    return [n for n in graph.nodes if n.op == "quant" and n.attrs.get("side") == "client"]


def analyze_bitwidths(graph: Graph, inputset: np.ndarray, method: str = "calibration") -> dict[str, ValueInfo]:
    """Predict range and width of every encrypted value.

    Requires: a quantized graph (fused or not). Ensures nothing about the graph (analysis only);
    returns a side table keyed by node name, covering circuit inputs and server nodes.

    Parameters
    ----------
    graph : Graph
    inputset : ndarray
        Float compile inputset (calibration samples; corners are added by the caller).
    method : {"calibration", "interval"}

    Returns
    -------
    dict of str to ValueInfo

    Examples
    --------
    >>> g = Graph([Node("x", "input", [], {"shape": (1,), "dtype": "float"}),
    ...            Node("q", "quant", ["x"], {"scale": 1.0, "zero_point": 0, "qmin": 0, "qmax": 15, "side": "client"})], ["q"])
    >>> analyze_bitwidths(g, np.array([[3.0], [9.0]]))["q"]
    ValueInfo(lo=3, hi=9, bits=4, signed=False)
    """
    if method not in _METHODS:
        raise ConfigurationError(f"bitwidth method must be one of {_METHODS}, got {method!r}")
    ranges = _observed(graph, inputset) if method == "calibration" else _intervals(graph)
    parent = {k: k for k in ranges}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for n in graph.nodes:
        if n.name in ranges and (n.op in LINEAR_INT_OPS or n.op == "round"):
            for i in n.inputs:
                if i in ranges:
                    parent[find(i)] = find(n.name)
    width: dict[str, int] = {}
    for k, (lo, hi) in ranges.items():
        root = find(k)
        width[root] = max(width.get(root, 1), integer_bit_width(lo, hi))
    return {k: ValueInfo(int(lo), int(hi), width[find(k)], lo < 0) for k, (lo, hi) in ranges.items()}


def _observed(graph: Graph, inputset: np.ndarray) -> dict[str, tuple[int, int]]:
    ranges: dict[str, tuple[int, int]] = {}

    def observe(node: Node, value: np.ndarray) -> None:
        if node.op == "input":
            return
        if is_server_node(node) or (node.op == "quant" and node.attrs.get("side") == "client"):
            if value.dtype.kind == "i":
                ranges[node.name] = (int(value.min()), int(value.max()))

    run(graph, inputset, observe)
    return ranges


def _tlu_range(node: Node, lo: int, hi: int) -> tuple[int, int]:
    values = np.arange(lo, hi + 1, dtype=np.int64)
    ndim = max(np.ndim(v) for s in node.attrs["chain"] for k, v in s["attrs"].items()
               if k in ("scale", "offset", "shift", "scale_a", "scale_b"))
    out = evaluate("tlu", [values.reshape((-1,) + (1,) * max(ndim - 1, 0))], node.attrs)
    return int(out.min()), int(out.max())


def _linear_interval(node: Node, lo: int, hi: int) -> tuple[int, int]:
    w = node.attrs["weight"].astype(np.int64).reshape(node.attrs["weight"].shape[0], -1)
    a, b = lo - node.attrs["zero_point"], hi - node.attrs["zero_point"]
    pos, neg = np.clip(w, 0, None).sum(axis=1), np.clip(w, None, 0).sum(axis=1)
    # Per-output sums are right for grouped convolutions too: a weight row only sees its group.
    bias = node.attrs.get("bias")
    bias = np.zeros(len(w), np.int64) if bias is None else bias.reshape(-1)
    return int((pos * a + neg * b + bias).min()), int((pos * b + neg * a + bias).max())


def _intervals(graph: Graph) -> dict[str, tuple[int, int]]:
    r: dict[str, tuple[int, int]] = {}
    for n in graph.nodes:
        if n.op == "quant" and n.attrs.get("side") == "client":
            r[n.name] = (n.attrs["qmin"], n.attrs["qmax"])
        elif not is_server_node(n):
            continue
        elif n.op in ("qgemm", "qconv"):
            r[n.name] = _linear_interval(n, *r[n.inputs[0]])
        elif n.op == "add":
            r[n.name] = (r[n.inputs[0]][0] + r[n.inputs[1]][0], r[n.inputs[0]][1] + r[n.inputs[1]][1])
        elif n.op == "pack":
            (alo, ahi), (blo, bhi) = r[n.inputs[0]], r[n.inputs[1]]
            shift, b0 = n.attrs["b_bits"], n.attrs["b_lo"]
            r[n.name] = ((alo << shift) + blo - b0, (ahi << shift) + bhi - b0)
        elif n.op == "concat":
            r[n.name] = (min(r[i][0] for i in n.inputs), max(r[i][1] for i in n.inputs))
        elif n.op == "reshape":
            r[n.name] = r[n.inputs[0]]
        elif n.op == "round":
            lo, hi = r[n.inputs[0]]
            r[n.name] = tuple(int(round_half_up_lsbs(np.array(v), n.attrs["lsbs"])) for v in (lo, hi))
        elif n.op == "tlu":
            r[n.name] = _tlu_range(n, *r[n.inputs[0]])
        else:
            raise ConfigurationError(f"interval analysis cannot bound node '{n.name}' (op {n.op}); fuse the graph first")
    return r


def accumulator_of(graph: Graph, tlu: Node) -> str:
    """Name of the value a TLU reads, looking through its rounding node.

    Examples
    --------
    >>> g = Graph([Node("a", "input", []), Node("r", "round", ["a"]), Node("t", "tlu", ["r"])], ["t"])
    >>> accumulator_of(g, g["t"])
    'a'
    """
    src = graph[tlu.inputs[0]]
    return src.inputs[0] if src.op == "round" else src.name


def bitwidth_rows(graph: Graph, info: dict[str, ValueInfo]) -> list[dict]:
    """One row per table lookup and per circuit output: the figures of ``bitwidth_report``.

    Examples
    --------
    >>> rows = bitwidth_rows(Graph([], []), {})
    >>> rows
    []
    """
    rows = []
    for n in graph.nodes:
        if n.op == "tlu":
            acc = accumulator_of(graph, n)
            src = graph[n.inputs[0]]
            lsbs = src.attrs["lsbs"] if src.op == "round" else 0
            v = info[acc]
            rows.append({"layer": acc, "tlu": n.name, "acc_min": v.lo, "acc_max": v.hi, "acc_bits": v.bits,
                         "tlu_bits": v.bits - lsbs, "lsbs_removed": lsbs})
    for o in graph.outputs:
        acc = graph[o].inputs[0]
        if acc in info and graph[acc].op != "tlu":
            v = info[acc]
            rows.append({"layer": acc, "tlu": None, "acc_min": v.lo, "acc_max": v.hi, "acc_bits": v.bits,
                         "tlu_bits": None, "lsbs_removed": 0})
    return rows


def check_tlu_widths(graph: Graph, info: dict[str, ValueInfo], n_weight_bits: int, n_input_bits: int) -> None:
    """Raise :class:`BitWidthError` if a table lookup would read more than 16 bits.

    The message names the layer and width and lists the remedies, including the number of active
    inputs per neuron that keeps a signed accumulator within 16 bits.

    Examples
    --------
    >>> check_tlu_widths(Graph([], []), {}, 4, 4) is None
    True
    """
    for row in bitwidth_rows(graph, info):
        if row["tlu_bits"] is not None and row["tlu_bits"] > MAX_TLU_BITS:
            k = max_active_inputs(MAX_TLU_BITS, n_weight_bits, n_input_bits)
            raise BitWidthError(
                f"layer '{row['layer']}' feeds a table lookup of {row['tlu_bits']} bits (range "
                f"[{row['acc_min']}, {row['acc_max']}]); TFHE table lookups take at most {MAX_TLU_BITS} bits. "
                f"Remedies: set rounding_threshold_bits (e.g. 6), lower n_bits, or prune each neuron to at most "
                f"{k} active input{'s' if k != 1 else ''} at {n_weight_bits}-bit weights and {n_input_bits}-bit inputs"
            )


def max_active_inputs(acc_bits: int, n_weight_bits: int, n_input_bits: int) -> int:
    """Largest k such that k inputs always fit a signed ``acc_bits`` accumulator.

    Weights are narrow-range signed (``|w| <= 2^(n_w-1) - 1``); inputs after removing the zero
    point satisfy ``|x - zp| <= 2^n_a - 1``. The worst case is ``k * max|w| * max|x|``, which must
    stay within ``2^(acc_bits-1) - 1``.

    Examples
    --------
    >>> max_active_inputs(8, 3, 3)   # 127 // (3 * 7)
    6
    """
    wmax = (1 << (n_weight_bits - 1)) - 1
    xmax = (1 << n_input_bits) - 1
    return ((1 << (acc_bits - 1)) - 1) // max(1, wmax * xmax)
