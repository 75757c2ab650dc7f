"""Post-training quantization: float graph → integer graph with explicit (de)quantization.

The result still contains float nodes: every chain between two integer-producing ops reads
``dequant → (bias, activation, …) → quant``; :func:`qfhe.passes.fuse_lut.fuse_lut` then turns each
chain into one table lookup. The graph keeps the client's work at its borders: a ``quant`` of the
float input (marked ``side="client"``) and a ``dequant`` of each output (also client side).

Integer values carry their real meaning as an affine map ``real = scale * q + offset``. A value is
*quantized* when that map comes from a :class:`UniformQuantizer` (scalar scale and zero point);
an *accumulator* of a gemm/conv has ``scale = s_x * s_w`` and ``offset = bias`` instead and must go
through a table lookup (or leave the circuit) before another linear op reads it.

Examples
--------
>>> import numpy as np, torch
>>> from qfhe.frontend import import_torch
>>> from qfhe.quant import parse_n_bits
>>> m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> X = np.random.RandomState(0).randn(20, 4)
>>> fg = import_torch(m, torch.tensor(X))
>>> from qfhe.ir import collect_ranges
>>> qg = quantize_graph(fg, collect_ranges(fg, X), parse_n_bits(4))
>>> qg.ops()
['input', 'quant', 'qgemm', 'dequant', 'activation', 'quant', 'qgemm', 'dequant']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qfhe.errors import PassError, UnsupportedOpError
from qfhe.ir.graph import Graph, Node, unique_name
from qfhe.quant.config import NBits
from qfhe.quant.quantizer import UniformQuantizer


@dataclass(frozen=True)
class _Int:
    name: str
    scale: np.ndarray  # broadcastable over a batched value (leading axis of size 1) or scalar
    offset: np.ndarray
    quantizer: UniformQuantizer | None = None  # set when the value is a quantized activation


def _quant_attrs(q: UniformQuantizer) -> dict:
    return {"scale": float(q.scale), "zero_point": int(q.zero_point), "qmin": q.qmin, "qmax": q.qmax,
            "n_bits": q.n_bits}


def _quantized_int(name: str, q: UniformQuantizer) -> _Int:
    s = np.float64(q.scale)
    return _Int(name, s, np.float64(-s * q.zero_point), q)


class _Builder:
    def __init__(self, graph: Graph, ranges: dict, n_bits: NBits, per_channel: bool):
        self.graph, self.ranges, self.n_bits, self.per_channel = graph, ranges, n_bits, per_channel
        self.nodes: list[Node] = []
        self.vals: dict[str, object] = {}  # float-graph name -> _Int or str (float value name)
        self._used: set[str] = set()
        self._quant_cache: dict[tuple, _Int] = {}

    def emit(self, name: str, op: str, inputs: list[str], attrs: dict) -> str:
        name = unique_name(name, self._used)
        self.nodes.append(Node(name, op, inputs, attrs))
        return name

    def as_float(self, fname: str) -> str:
        v = self.vals[fname]
        if isinstance(v, str):
            return v
        key = ("float", v.name)
        if key not in self._quant_cache:
            self._quant_cache[key] = self.emit(f"{fname}_dq", "dequant", [v.name], {"scale": v.scale, "offset": v.offset})
        return self._quant_cache[key]

    def quantized(self, fname: str, bits: int, consumer: str, lo: float | None = None,
                  hi: float | None = None) -> _Int:
        """The value of float node ``fname`` as a quantized activation (a requant chain if needed).

        Each consumer gets its own chain, even when two would share a quantizer: concrete gives one
        width to every value linked by linear ops, so a lookup output shared by a wide convolution
        and a narrow add would make the add (and the lookup after it) as wide as the convolution.
        A second lookup at the narrow width is far cheaper than one at the wide width.
        """
        v = self.vals[fname]
        if isinstance(v, _Int) and v.quantizer is not None and lo is None:
            return v
        if lo is None:
            lo, hi = self.ranges[fname]
        q = UniformQuantizer.from_range(lo, hi, bits)
        key = (fname, q, consumer)
        if key not in self._quant_cache:
            src = self.as_float(fname)
            name = self.emit(f"{fname}_q", "quant", [src], _quant_attrs(q))
            self._quant_cache[key] = _quantized_int(name, q)
        return self._quant_cache[key]

    def weights(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer weights and their scale (per channel: shape (O,))."""
        nz = np.abs(w[w != 0])
        if nz.size and np.all(nz == nz[0]):
            # A single magnitude (average pooling, ±c weights) is exact as ±1: no wasted accumulator bits.
            return np.sign(w).astype(np.int64), np.float64(nz[0])
        q = UniformQuantizer.symmetric(w, self.n_bits.op_weights, self.per_channel)
        return q.quantize(w), np.asarray(q.scale, np.float64)


def quantize_graph(graph: Graph, ranges: dict[str, tuple[float, float]], n_bits: NBits,
                   per_channel: bool = False) -> Graph:
    """Quantize a canonical float graph with calibrated per-tensor ranges.

    Requires: a float graph after :func:`sink_reshapes` and :func:`fold_affine`, and ``ranges``
    with the calibrated (min, max) of every node. Ensures: every gemm/conv became qgemm/qconv over
    integer weights, with the bias added as an integer at the accumulator's scale (except a final
    layer's bias, which the client adds in float); add/concat/reshape act on integers; every float op lies on a
    ``dequant → … → quant`` chain, except the client-side input ``quant`` and output ``dequant``.
    Requantization rounds half to even.

    Parameters
    ----------
    graph : Graph
        Canonical float graph.
    ranges : dict
        Node name → (min, max) observed on the calibration inputset.
    n_bits : NBits
        Bit-widths (see :func:`qfhe.quant.parse_n_bits`).
    per_channel : bool
        Quantize weights per output channel instead of per tensor.

    Returns
    -------
    Graph
        The quantized graph (float input, float outputs). A graph that is already quantized
        (it has a client-side input ``quant``) is returned unchanged.

    Examples
    --------
    >>> import torch
    >>> from qfhe.frontend import import_torch
    >>> from qfhe.ir import collect_ranges
    >>> from qfhe.quant import parse_n_bits
    >>> X = np.random.RandomState(0).randn(40, 3)
    >>> fg = import_torch(torch.nn.Linear(3, 2), torch.tensor(X))
    >>> quantize_graph(fg, collect_ranges(fg, X), parse_n_bits(4)).ops()
    ['input', 'quant', 'qgemm', 'dequant']
    """
    if any(n.attrs.get("side") == "client" for n in graph.nodes):
        return graph.copy()
    b = _Builder(graph, ranges, n_bits, per_channel)
    users = graph.consumers()
    for n in graph.nodes:
        if n.op == "input":
            fin = b.emit(n.name, "input", [], dict(n.attrs))
            lo, hi = ranges[n.name]
            q = UniformQuantizer.from_range(lo, hi, n_bits.model_inputs)
            name = b.emit(f"{n.name}_q", "quant", [fin], {**_quant_attrs(q), "side": "client"})
            b.vals[n.name] = _quantized_int(name, q)
        elif n.op in ("gemm", "conv"):
            x = b.quantized(n.inputs[0], n_bits.op_inputs, n.name)
            wq, ws = b.weights(n.attrs["weight"])
            if n.op == "gemm":
                attrs = {"weight": wq, "zero_point": int(x.quantizer.zero_point)}
                bshape = (1, -1)
            else:
                attrs = {k: n.attrs[k] for k in ("stride", "padding", "dilation", "groups")}
                attrs.update(weight=wq, zero_point=int(x.quantizer.zero_point))
                bshape = (1, -1, 1, 1)
            scale = ws.reshape(bshape) * x.scale if np.ndim(ws) else np.float64(ws * x.scale)
            bias = n.attrs.get("bias")
            offset = np.float64(0.0)
            if bias is not None and n.name in graph.outputs and len(users[n.name]) == 0:
                offset = bias.reshape(bshape)  # the last layer's bias is added by the client, in float
            elif bias is not None:
                # Integer bias at the accumulator's scale (as in integer-only inference): the lookup
                # that follows stays one table per tensor instead of one per channel.
                attrs["bias"] = np.rint(bias.reshape(bshape) / scale)[0].astype(np.int64)
            name = b.emit(n.name, "q" + n.op, [x.name], attrs)
            b.vals[n.name] = _Int(name, scale, offset)
        elif n.op in ("activation", "affine"):
            b.vals[n.name] = b.emit(n.name, n.op, [b.as_float(n.inputs[0])], dict(n.attrs))
        elif n.op in ("add", "concat"):
            lo = min(ranges[i][0] for i in n.inputs)
            hi = max(ranges[i][1] for i in n.inputs)
            ins = [b.quantized(i, n_bits.op_inputs, n.name, lo, hi) for i in n.inputs]
            q = ins[0].quantizer
            name = b.emit(n.name, n.op, [i.name for i in ins], dict(n.attrs))
            if n.op == "concat":
                b.vals[n.name] = _quantized_int(name, q)
            else:
                s = np.float64(q.scale)
                b.vals[n.name] = _Int(name, s, np.float64(-s * 2 * q.zero_point))
        elif n.op == "reshape":
            v = b.vals[n.inputs[0]]
            if not (isinstance(v, _Int) and np.ndim(v.scale) == 0 and np.ndim(v.offset) == 0):
                bits = n_bits.model_outputs if n.name in graph.outputs else n_bits.op_inputs
                v = b.quantized(n.inputs[0], bits, n.name, *ranges[n.inputs[0]])
            name = b.emit(n.name, "reshape", [v.name], dict(n.attrs))
            b.vals[n.name] = _Int(name, v.scale, v.offset, v.quantizer)
        else:
            raise UnsupportedOpError(f"quantize: node '{n.name}' has op '{n.op}', which has no integer lowering")
    outputs = []
    for o in graph.outputs:
        v = b.vals[o]
        if isinstance(v, str):
            v = b.quantized(o, n_bits.model_outputs, "output", *ranges[o])
        out = b.emit(f"{o}_out", "dequant", [v.name], {"scale": v.scale, "offset": v.offset, "side": "client"})
        outputs.append(out)
    result = Graph(b.nodes, outputs).verify("quantize")
    _check_no_dangling_float(result)
    return result


def _check_no_dangling_float(g: Graph) -> None:
    users = g.consumers()
    for n in g.nodes:
        if n.op in ("activation", "affine") and not users[n.name]:
            raise PassError(f"quantize: float node '{n.name}' is not followed by a quantization")
