"""Bit-width analysis of the integer (server-side) part of a quantized graph.

It predicts, before concrete-python compiles anything, the width concrete will give every
encrypted value. concrete sizes a value from the range it sees on the compile inputset and then
gives the same width to all values linked by linear ops (an add, a matmul, a concatenation, a
reshape or a rounding operate on one encoding), so a width is the maximum over such a group.
The TFHE lowering passes these widths to ``fhe.hint`` so concrete can only agree.

Two ways to size ranges:

* ``"calibration"`` (default): ranges observed on the calibration samples, optionally widened by
  a ``margin`` (a fraction of each range's width on each side). Tight, so accumulators stay narrow;
  an input that drives a value beyond its range is reported by the range check every ``forward``
  mode runs (:class:`~qfhe.errors.OverflowRiskWarning`).
* ``"interval"``: worst-case interval bounds propagated from the full input code range. Safe for
  any input that the client's clipping lets through, and wider.

A node may declare ``bounds=(lo, hi)``, a range its builder proves for any input (the keys of a
comparison network): calibration then sizes it for at least that range, so a sign or a top value
the calibration samples never reach still fits.

(The corners of the input box, all-minimum and all-maximum, are not a worst case of a linear layer
and adding them to the calibration set only widened accumulators and cost accuracy.)

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
from qfhe.ir.ops import LINEAR_INT_OPS, chain_arrays, evaluate

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


def analyze_bitwidths(
    graph: Graph, inputset: np.ndarray, method: str = "calibration", margin: float = 0.0
) -> dict[str, ValueInfo]:
    """Predict range and width of every encrypted value.

    Requires: a quantized graph (fused or not). Ensures nothing about the graph (analysis only);
    returns a side table keyed by node name, covering circuit inputs and server nodes.

    Parameters
    ----------
    graph : Graph
    inputset : ndarray
        Float calibration samples.
    method : {"calibration", "interval"}
    margin : float
        With ``"calibration"``: widen each observed range by this fraction of its width on each
        side (the input codes stay within the input quantizer, a lookup's output within the image
        of its widened input). Ignored by ``"interval"``.

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
    check_bitwidth_method(method)
    if method == "calibration":
        ranges = _observed(graph, inputset)
        if margin:
            ranges = _widened(graph, ranges, margin)
    else:
        ranges = _intervals(graph)
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
    for n in graph.nodes:  # a builder's proven range: values the calibration set never reaches stay sized
        if "bounds" in n.attrs and n.name in ranges:
            lo, hi = n.attrs["bounds"]
            ranges[n.name] = (min(ranges[n.name][0], int(lo)), max(ranges[n.name][1], int(hi)))
    return ranges


def check_bitwidth_method(method) -> str:
    """Return ``method`` if it names a sizing method, else raise :class:`ConfigurationError`.

    Examples
    --------
    >>> check_bitwidth_method("interval")
    'interval'
    """
    if method not in _METHODS:
        raise ConfigurationError(f"bitwidth_method must be one of {_METHODS}, got {method!r}")
    return method


def _widened(graph: Graph, observed: dict[str, tuple[int, int]], margin: float) -> dict[str, tuple[int, int]]:
    r: dict[str, tuple[int, int]] = {}
    for n in graph.nodes:
        if n.name not in observed:
            continue
        lo, hi = observed[n.name]
        pad = int(np.ceil(margin * (hi - lo)))
        if n.op == "quant":  # the client clips to the quantizer: codes never leave it
            r[n.name] = (max(lo - pad, n.attrs["qmin"]), min(hi + pad, n.attrs["qmax"]))
        elif n.op == "tlu":
            tlo, thi = _tlu_range(n, *r[n.inputs[0]])
            r[n.name] = (min(lo, tlo), max(hi, thi))
        elif n.op == "round":
            a, b = r[n.inputs[0]]
            r[n.name] = tuple(int(round_half_up_lsbs(np.array(v), n.attrs["lsbs"])) for v in (a, b))
        else:
            r[n.name] = (lo - pad, hi + pad)
    return r


def _tlu_range(node: Node, lo: int, hi: int) -> tuple[int, int]:
    values = np.arange(lo, hi + 1, dtype=np.int64)
    ndim = max([np.ndim(v) for v in chain_arrays(node.attrs["chain"])] + [0])
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
        elif n.op in ("qmul", "qmatmul"):
            (alo, ahi), (blo, bhi) = r[n.inputs[0]], r[n.inputs[1]]
            za, zb = n.attrs["zero_point_a"], n.attrs["zero_point_b"]
            corners = [(a - za) * (b - zb) for a in (alo, ahi) for b in (blo, bhi)]
            k = n.attrs.get("k", 1)
            r[n.name] = (
                k * min(min(corners), 0) if k > 1 else min(corners),
                k * max(max(corners), 0) if k > 1 else max(corners),
            )
        elif n.op == "sub":
            r[n.name] = (r[n.inputs[0]][0] - r[n.inputs[1]][1], r[n.inputs[0]][1] - r[n.inputs[1]][0])
        elif n.op == "pack":
            (alo, ahi), (blo, bhi) = r[n.inputs[0]], r[n.inputs[1]]
            shift, b0 = n.attrs["b_bits"], n.attrs["b_lo"]
            r[n.name] = ((alo << shift) + blo - b0, (ahi << shift) + bhi - b0)
        elif n.op == "concat":
            r[n.name] = (min(r[i][0] for i in n.inputs), max(r[i][1] for i in n.inputs))
        elif n.op in ("reshape", "maxpool"):
            r[n.name] = r[n.inputs[0]]
        elif n.op == "gather":
            lo, hi = r[n.inputs[0]]
            fill = n.attrs.get("fill")
            r[n.name] = (lo, hi) if fill is None else (min(lo, fill), max(hi, fill))
        elif n.op == "round":
            lo, hi = r[n.inputs[0]]
            r[n.name] = tuple(int(round_half_up_lsbs(np.array(v), n.attrs["lsbs"])) for v in (lo, hi))
        elif n.op == "tlu":
            r[n.name] = _tlu_range(n, *r[n.inputs[0]])
        else:
            raise ConfigurationError(
                f"interval analysis cannot bound node '{n.name}' (op {n.op}); fuse the graph first"
            )
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


def value_layers(graph: Graph) -> dict[str, str]:
    """The layer (torch module or node name) each integer value belongs to.

    A linear layer's accumulator, its rounding, its lookup and any reshape of them carry the
    layer's name (``fc1``, ``features.0``), so the bit-width report, ``pbs_count_per_layer`` and
    error messages all speak of the same layers. The circuit input belongs to the model input.

    Examples
    --------
    >>> g = Graph([Node("x", "input", []), Node("x_q", "quant", ["x"], {"side": "client"}),
    ...            Node("fc1", "qgemm", ["x_q"]), Node("r", "round", ["fc1"]), Node("act_q", "tlu", ["r"])], ["act_q"])
    >>> value_layers(g)
    {'x': 'x', 'x_q': 'x', 'fc1': 'fc1', 'r': 'fc1', 'act_q': 'fc1'}
    """
    layers: dict[str, str] = {}
    for n in graph.nodes:
        if n.op in ("round", "tlu", "table", "reshape", "gather") or (
            n.op == "quant" and n.attrs.get("side") == "client"
        ):
            layers[n.name] = layers.get(n.inputs[0], n.inputs[0])
        else:
            layers[n.name] = n.name
    return layers


def bitwidth_rows(graph: Graph, info: dict[str, ValueInfo]) -> list[dict]:
    """One row per accumulator a table lookup reads, and per circuit output: the figures of
    ``bitwidth_report``.

    ``layer`` is the layer's name (see :func:`value_layers`), ``value`` the accumulator's node.

    Examples
    --------
    >>> rows = bitwidth_rows(Graph([], []), {})
    >>> rows
    []
    """
    rows, seen = [], set()
    layers = value_layers(graph)
    for n in graph.nodes:
        if n.op == "tlu":
            acc = accumulator_of(graph, n)
            if acc in seen:  # several lookups read one accumulator (through one rounding)
                continue
            seen.add(acc)
            src = graph[n.inputs[0]]
            lsbs = src.attrs["lsbs"] if src.op == "round" else 0
            v = info[acc]
            rows.append(
                {
                    "layer": layers[acc],
                    "value": acc,
                    "tlu": n.name,
                    "acc_min": v.lo,
                    "acc_max": v.hi,
                    "acc_bits": v.bits,
                    "tlu_bits": v.bits - lsbs,
                    "lsbs_removed": lsbs,
                }
            )
    for o in graph.outputs:
        acc = graph[o].inputs[0]
        if acc in info and graph[acc].op != "tlu":
            v = info[acc]
            rows.append(
                {
                    "layer": layers[acc],
                    "value": acc,
                    "tlu": None,
                    "acc_min": v.lo,
                    "acc_max": v.hi,
                    "acc_bits": v.bits,
                    "tlu_bits": None,
                    "lsbs_removed": 0,
                }
            )
    return rows


def check_tlu_widths(graph: Graph, info: dict[str, ValueInfo], qat: bool = False) -> None:
    """Raise :class:`BitWidthError` if a table lookup would read more than 16 bits.

    The message names the layer and width and lists the remedies. The pruning advice uses the
    layer's own weight and input widths (read from the graph, so it is right for QAT models too):
    the number of active inputs per neuron that keeps its accumulator within 16 bits.

    Examples
    --------
    >>> check_tlu_widths(Graph([], []), {}) is None
    True
    """
    for row in bitwidth_rows(graph, info):
        if row["tlu_bits"] is None or row["tlu_bits"] <= MAX_TLU_BITS:
            continue
        fewer = "lower the Brevitas layers' bit-widths" if qat else "lower n_bits"
        remedies = ["set rounding_threshold_bits (e.g. 6)", fewer]
        acc = graph[row["value"]]
        if acc.op in ("qgemm", "qconv") and acc.inputs[0] in info:
            n_w = int(np.abs(acc.attrs["weight"]).max()).bit_length() + 1
            x = info[acc.inputs[0]]
            n_a = max(abs(x.lo - acc.attrs["zero_point"]), abs(x.hi - acc.attrs["zero_point"])).bit_length()
            k = max_active_inputs(MAX_TLU_BITS, n_w, n_a)
            if k >= 1:
                remedies.append(
                    f"prune each neuron to at most {k} active input{'s' if k != 1 else ''} at "
                    f"{n_w}-bit weights and {n_a}-bit inputs"
                )
        raise BitWidthError(
            f"layer '{row['layer']}' feeds a table lookup of {row['tlu_bits']} bits (range "
            f"[{row['acc_min']}, {row['acc_max']}]); TFHE table lookups take at most {MAX_TLU_BITS} bits. "
            f"Remedies: {', '.join(remedies[:-1])} or {remedies[-1]}"
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
    wmax = max(1, (1 << (n_weight_bits - 1)) - 1)
    xmax = (1 << n_input_bits) - 1
    return ((1 << (acc_bits - 1)) - 1) // max(1, wmax * xmax)
