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
    # A max pooling's output (or a rearrangement of it): concrete compares at the width of the
    # values it pools, so it must not share the wide width of a linear op that reads it.
    pooled: bool = False
    # An accumulator's exact integer interval (from its weights and its input quantizer's codes)
    bounds: tuple[int, int] | None = None


def _accumulator_bounds(op: str, attrs: dict, q: UniformQuantizer) -> tuple[int, int]:
    """Every value a qgemm/qconv accumulator can take, for input codes in ``q``'s range."""
    lo_in, hi_in = min(q.qmin - q.zero_point, 0), max(q.qmax - q.zero_point, 0)  # 0: a convolution's padding
    w = np.asarray(attrs["weight"], np.int64).reshape(np.shape(attrs["weight"])[0], -1)
    lo = np.minimum(w * lo_in, w * hi_in).sum(axis=1)
    hi = np.maximum(w * lo_in, w * hi_in).sum(axis=1)
    bias = np.reshape(attrs["bias"], -1) if attrs.get("bias") is not None else 0
    return int((lo + bias).min()), int((hi + bias).max())


def _quant_attrs(q: UniformQuantizer) -> dict:
    return {
        "scale": float(q.scale),
        "zero_point": int(q.zero_point),
        "qmin": q.qmin,
        "qmax": q.qmax,
        "n_bits": q.n_bits,
    }


def _quantized_int(name: str, q: UniformQuantizer) -> _Int:
    s = np.float64(q.scale)
    return _Int(name, s, np.float64(-s * q.zero_point), q)


def _fixed_quantizer(attrs: dict) -> UniformQuantizer:
    """The quantizer a ``fakequant`` node carries (QAT: read from Brevitas)."""
    return UniformQuantizer(
        int(attrs["n_bits"]),
        float(attrs["scale"]),
        int(attrs["zero_point"]),
        signed=attrs["qmin"] < 0,
        narrow=attrs["qmin"] == -(1 << (attrs["n_bits"] - 1)) + 1,
    )


class _Builder:
    """Walks the float graph once, emitting integer nodes; one method per float op."""

    def __init__(self, graph: Graph, ranges: dict, n_bits: NBits, per_channel: bool, qat: bool):
        self.graph, self.ranges, self.n_bits, self.per_channel, self.qat = graph, ranges, n_bits, per_channel, qat
        self.users = graph.consumers()
        self.nodes: list[Node] = []
        self.vals: dict[str, object] = {}  # float-graph name -> _Int or str (float value name)
        self._used: set[str] = set()
        self._quant_cache: dict[tuple, _Int] = {}
        self._input_codes: dict[tuple, _Int] = {}  # (model input, quantizer) -> client codes

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
            self._quant_cache[key] = self.emit(
                f"{fname}_dq", "dequant", [v.name], {"scale": v.scale, "offset": v.offset}
            )
        return self._quant_cache[key]

    def quantized(self, fname: str, bits: int, consumer: str, lo: float | None = None, hi: float | None = None) -> _Int:
        """The value of float node ``fname`` as a quantized activation (a requant chain if needed).

        Each consumer gets its own chain, even when two would share a quantizer: concrete gives one
        width to every value linked by linear ops, so a lookup output shared by a wide convolution
        and a narrow add would make the add (and the lookup after it) as wide as the convolution.
        A second lookup at the narrow width is far cheaper than one at the wide width.
        """
        v = self.vals[fname]
        if isinstance(v, _Int) and v.pooled and lo is None:
            # One lookup (the identity on its grid) re-encodes the pooled codes at the reader's width.
            return self.requantize(fname, v.quantizer, consumer)
        if isinstance(v, _Int) and v.quantizer is not None and (lo is None or self.qat):
            return v
        if self.qat:
            raise UnsupportedOpError(
                f"node '{consumer}' reads '{fname}', which is not quantized; a QAT model must quantize every "
                f"value an integer op reads: put a QuantIdentity (or a quantized activation) after '{fname}'"
            )
        if lo is None:
            lo, hi = self.ranges[fname]
        return self.requantize(fname, UniformQuantizer.from_range(lo, hi, bits), consumer)

    def requantize(self, fname: str, q: UniformQuantizer, consumer: str, name: str | None = None) -> _Int:
        key = (fname, q, consumer)
        if key not in self._quant_cache:
            src = self.as_float(fname)
            qname = self.emit(name or f"{fname}_q", "quant", [src], _quant_attrs(q))
            self._quant_cache[key] = _quantized_int(qname, q)
        return self._quant_cache[key]

    def weights(self, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
        """Integer weights and their scale (per channel: shape (O,))."""
        if "weight_int" in attrs:  # QAT: the trained integer weights, untouched
            return attrs["weight_int"].astype(np.int64), np.asarray(attrs["weight_scale"], np.float64)
        w = attrs["weight"]
        nz = np.abs(w[w != 0])
        if nz.size and np.all(nz == nz[0]):
            # A single magnitude (average pooling, ±c weights) is exact as ±1: no wasted accumulator bits.
            return np.sign(w).astype(np.int64), np.float64(nz[0])
        rows = np.abs(w.reshape(len(w), -1))
        row_mag = rows.max(axis=1)
        if np.all((rows == 0) | (rows == row_mag[:, None])) and np.all(row_mag > 0):
            # One magnitude per output (uneven adaptive pooling windows): exact as ±1 with a scale per output.
            return np.sign(w).astype(np.int64), row_mag
        q = UniformQuantizer.symmetric(w, self.n_bits.op_weights, self.per_channel)
        return q.quantize(w), np.asarray(q.scale, np.float64)

    # -- one handler per float op -----------------------------------------------------------------
    def on_input(self, n: Node) -> None:
        fin = self.emit(n.name, "input", [], dict(n.attrs))
        users = [self.graph[u] for u in self.users[n.name]]
        if self.qat:
            if not users or any(u.op != "fakequant" for u in users):
                raise UnsupportedOpError(
                    f"the model input '{n.name}' feeds {[u.name for u in users]} without an input quantizer; "
                    "start a QAT model with a QuantIdentity so the client knows how to quantize inputs"
                )
            # One circuit input per distinct quantizer: the client quantizes the float input with
            # each (DoubleQuantQATMixNet), which is exact, where requantizing in FHE would not be.
            quantizers = list(dict.fromkeys(_fixed_quantizer(u.attrs) for u in users))
        else:
            quantizers = [UniformQuantizer.from_range(*self.ranges[n.name], self.n_bits.model_inputs)]
        for k, q in enumerate(quantizers):
            name = self.emit(
                f"{n.name}_q" if k == 0 else f"{n.name}_q{k}", "quant", [fin], {**_quant_attrs(q), "side": "client"}
            )
            self._input_codes[(n.name, q)] = _quantized_int(name, q)
        self.vals[n.name] = self._input_codes[(n.name, quantizers[0])]

    def on_fakequant(self, n: Node) -> None:
        q = _fixed_quantizer(n.attrs)
        v = self._input_codes.get((n.inputs[0], q), self.vals[n.inputs[0]])
        if isinstance(v, _Int) and v.quantizer is not None and _quant_attrs(v.quantizer) == _quant_attrs(q):
            self.vals[n.name] = v  # already on this grid (input quantizer, or a repeated quantizer)
        else:
            self.vals[n.name] = self.requantize(n.inputs[0], q, n.name, name=n.name)

    def on_linear(self, n: Node) -> None:
        x = self.quantized(n.inputs[0], self.n_bits.op_inputs, n.name)
        wq, ws = self.weights(n.attrs)
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
        if bias is not None and n.name in self.graph.outputs and not self.users[n.name]:
            offset = bias.reshape(bshape)  # the last layer's bias is added by the client, in float
        elif bias is not None and self.qat and not n.attrs.get("bias_at_acc_scale", False):
            # Brevitas adds this bias in float: keep it in the lookup (one table per channel) to
            # reproduce the trained model bit for bit.
            offset = bias.reshape(bshape)
        elif bias is not None:
            # Integer bias at the accumulator's scale (as in integer-only inference, and exact for
            # Brevitas' quantized biases): the lookup after it stays one table per tensor.
            attrs["bias"] = np.rint(bias.reshape(bshape) / scale)[0].astype(np.int64)
        name = self.emit(n.name, "q" + n.op, [x.name], attrs)
        bounds = _accumulator_bounds(n.op, attrs, x.quantizer)
        self.vals[n.name] = _Int(
            name, scale, offset, self._sum_quantizer(n, wq, scale, offset, attrs, bounds), bounds=bounds
        )

    def _sum_quantizer(self, n: Node, wq, scale, offset, attrs: dict, bounds: tuple[int, int]):
        """A sum pooling's grid, so that the linear op reading it needs no lookup to requantize it.

        An average pool of quantized codes (0/1 weights, one scale, no bias) is a sum of k codes:
        exact on the input's grid divided by k, ``log2(k)`` bits wider. Reading it directly costs the
        next layer's accumulator those bits; requantizing it costs one lookup per pooled value (72
        of the 504 in issue 25's digits CNN). Windows of up to 4 codes only: a wider sum (a global
        pool) would widen the next accumulator, and every ciphertext linked to it, by 5+ bits.
        """
        if (
            self.qat
            or n.op != "conv"
            or "bias" in attrs
            or np.ndim(scale)
            or np.any(offset)
            or not np.isin(wq, (0, 1)).all()
            or np.count_nonzero(wq[0]) > 4
        ):
            return None
        lo, hi = bounds
        if lo >= 0:
            return UniformQuantizer(max(1, int(hi).bit_length()), float(scale), 0)
        return UniformQuantizer(max(int(-lo - 1).bit_length(), int(hi).bit_length()) + 1, float(scale), 0, signed=True)

    def on_product(self, n: Node) -> None:
        """Product of two encrypted tensors: both quantized, multiplied as centred codes; like a
        linear layer's, the result is an accumulator (scale s_a·s_b) that a lookup requantizes."""
        a, b = (self.quantized(i, self.n_bits.op_inputs, n.name) for i in n.inputs)
        attrs = {"zero_point_a": int(a.quantizer.zero_point), "zero_point_b": int(b.quantizer.zero_point)}
        if n.op == "matmul":
            attrs["k"] = int(n.attrs["k"])
        name = self.emit(n.name, "q" + n.op, [a.name, b.name], attrs)
        self.vals[n.name] = _Int(name, np.float64(a.scale * b.scale), np.float64(0.0))

    def on_elementwise(self, n: Node) -> None:
        self.vals[n.name] = self.emit(n.name, n.op, [self.as_float(n.inputs[0])], dict(n.attrs))

    def _qat_operand(self, fname: str, consumer: str) -> _Int:
        """A QAT add's operand: its quantized value, or a layer's accumulator (Brevitas adds the
        float values of two QuantLinear outputs): an integer with an exact interval, which the
        packed add reads as it reads codes."""
        v = self.vals[fname]
        if isinstance(v, _Int) and v.quantizer is None and v.bounds is not None and np.ndim(v.scale) == 0:
            lo, hi = v.bounds
            bits = max(int(lo).bit_length(), int(hi).bit_length()) + 1  # signed, two's complement
            return _Int(v.name, v.scale, v.offset, UniformQuantizer(bits, float(v.scale), 0, signed=True))
        return self.quantized(fname, 0, consumer)

    def on_add_concat(self, n: Node) -> None:
        if self.qat:
            ins = [self._qat_operand(i, n.name) for i in n.inputs]
            same = all(_quant_attrs(i.quantizer) == _quant_attrs(ins[0].quantizer) for i in ins)
            if not same and n.op in ("add", "sub"):
                return self._packed_add(n, ins[0], ins[1], -1.0 if n.op == "sub" else 1.0)
            if not same:
                raise UnsupportedOpError(
                    f"node '{n.name}' concatenates tensors with different quantizers; give them one shared "
                    "quantizer (QuantCat, or a shared QuantIdentity)"
                )
        else:
            lo = min(self.ranges[i][0] for i in n.inputs)
            hi = max(self.ranges[i][1] for i in n.inputs)
            ins = [self.quantized(i, self.n_bits.op_inputs, n.name, lo, hi) for i in n.inputs]
        q = ins[0].quantizer
        name = self.emit(n.name, n.op, [i.name for i in ins], dict(n.attrs))
        if n.op == "add":
            # The sum of two codes on one grid is on that grid too, one bit wider, with zero point 2·zp:
            # a linear op can read it directly (no lookup), as Brevitas reads a residual sum.
            q = UniformQuantizer(q.n_bits + 1, q.scale, 2 * q.zero_point, signed=q.signed)
        elif n.op == "sub":  # the zero points cancel: signed, one bit wider
            q = UniformQuantizer(q.n_bits + 1, q.scale, 0, signed=True)
        self.vals[n.name] = _quantized_int(name, q)

    def _packed_add(self, n: Node, a: _Int, b: _Int, sign: float = 1.0) -> None:
        """Sum (``sign`` 1) or difference (-1) of two values on different grids, exactly: pack both
        into one integer so the next table lookup reads both (its width is the sum of theirs)."""
        b_bits = max(1, int(b.quantizer.qmax - b.quantizer.qmin).bit_length())
        pk = {"b_bits": b_bits, "b_lo": int(b.quantizer.qmin)}
        p = self.emit(f"{n.name}_pack", "pack", [a.name, b.name], pk)
        attrs = {
            **pk,
            "scale_a": np.float64(a.scale),
            "offset_a": np.float64(a.offset),
            "scale_b": np.float64(sign * b.scale),
            "offset_b": np.float64(sign * b.offset),
        }
        self.vals[n.name] = self.emit(n.name, "unpack_add", [p], attrs)

    def on_select(self, n: Node) -> None:
        """reshape, gather, maxpool: they pick among the input's codes, so the codes keep their meaning.

        Per-channel scales would move with the values, so the input is requantized first; so is an
        accumulator before a max (max on narrow codes is cheaper) or a padding whose constant is
        not on the input's grid."""
        src = n.inputs[0]
        v = self.vals[src]
        fill = n.attrs.get("fill") if n.op == "gather" else None
        ok = isinstance(v, _Int) and np.ndim(v.scale) == 0 and np.ndim(v.offset) == 0
        if ok and (n.op == "maxpool" or fill is not None):
            ok = v.quantizer is not None and (fill is None or self._on_grid(v.quantizer, fill))
        if not ok:
            lo, hi = self.ranges.get(src, (None, None))
            if fill is not None and lo is not None:
                lo, hi = min(lo, fill), max(hi, fill)
            bits = self.n_bits.model_outputs if n.name in self.graph.outputs else self.n_bits.op_inputs
            v = self.quantized(src, bits, n.name, lo, hi)
        attrs = dict(n.attrs)
        if fill is not None:
            attrs["fill"] = int(v.quantizer.quantize(np.float64(fill)))
        name = self.emit(n.name, n.op, [v.name], attrs)
        self.vals[n.name] = _Int(name, v.scale, v.offset, v.quantizer, pooled=n.op == "maxpool" or v.pooled)

    @staticmethod
    def _on_grid(q: UniformQuantizer, value: float) -> bool:
        return bool(abs(q.dequantize(q.quantize(np.float64(value))) - value) <= 1e-9 * max(1.0, abs(value)))

    def on_output(self, o: str) -> str:
        v = self.vals[o]
        if isinstance(v, str):
            v = self.quantized(o, self.n_bits.model_outputs, "output", *self.ranges.get(o, (None, None)))
        return self.emit(f"{o}_out", "dequant", [v.name], {"scale": v.scale, "offset": v.offset, "side": "client"})


_HANDLERS = {
    "input": _Builder.on_input,
    "fakequant": _Builder.on_fakequant,
    "gemm": _Builder.on_linear,
    "conv": _Builder.on_linear,
    "activation": _Builder.on_elementwise,
    "affine": _Builder.on_elementwise,
    "add": _Builder.on_add_concat,
    "sub": _Builder.on_add_concat,
    "concat": _Builder.on_add_concat,
    "reshape": _Builder.on_select,
    "gather": _Builder.on_select,
    "maxpool": _Builder.on_select,
    "mul": _Builder.on_product,
    "matmul": _Builder.on_product,
}


#: Float-graph ops the quantizer lowers to integers.
QUANTIZED_OPS = frozenset(_HANDLERS)


def quantize_graph(
    graph: Graph, ranges: dict[str, tuple[float, float]], n_bits: NBits, per_channel: bool = False, qat: bool = False
) -> Graph:
    """Quantize a canonical float graph with calibrated per-tensor ranges, or with its own quantizers.

    Requires: a float graph after :func:`sink_reshapes` and :func:`fold_affine`, and ``ranges``
    with the calibrated (min, max) of every node (unused with ``qat=True``). Ensures: every gemm/conv
    became qgemm/qconv over integer weights, with the bias added as an integer at the accumulator's
    scale (except a final layer's bias, which the client adds in float); add/concat/reshape act on
    integers; every float op lies on a ``dequant → … → quant`` chain, except the client-side input
    ``quant`` and output ``dequant``. Requantization rounds half to even.

    With ``qat=True`` (Brevitas models) nothing is calibrated: ``fakequant`` nodes give every
    quantizer and ``weight_int``/``weight_scale`` the weights; a value that would need a calibrated
    quantizer is an error naming the node.

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
    qat : bool
        Use the graph's own quantizers only.

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
    b = _Builder(graph, ranges, n_bits, per_channel, qat)
    for n in graph.nodes:
        handler = _HANDLERS.get(n.op)
        if handler is None:
            raise UnsupportedOpError(f"quantize: node '{n.name}' has op '{n.op}', which has no integer lowering")
        handler(b, n)
    outputs = [b.on_output(o) for o in graph.outputs]
    result = Graph(b.nodes, outputs).verify("quantize")
    _check_no_dangling_float(result)
    return result


def _check_no_dangling_float(g: Graph) -> None:
    users = g.consumers()
    for n in g.nodes:
        if n.op in ("activation", "affine", "unpack_add") and not users[n.name]:
            raise PassError(f"quantize: float node '{n.name}' is not followed by a quantization")
