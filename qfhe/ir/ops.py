"""The op vocabulary of the qfhe IR and its numpy reference semantics.

Float ops come from the frontend; integer ops come from quantization. Every op's ``evaluate``
works on whole batches (axis 0 is the sample axis) and is exact for integers (int64).

======== ======= ==========================================================================
op       domain  meaning
======== ======= ==========================================================================
input    either  graph input; attrs ``shape`` (per sample), ``dtype`` ("float" | "int")
gemm     float   ``x @ weight.T + bias``
conv     float   2-D grouped convolution (+ bias), attrs stride/padding/dilation/groups
activation float elementwise activation ``fn`` with ``params`` (see activations.py)
affine   float   elementwise ``x * scale + shift`` (per-channel arrays broadcast per sample)
add      any     sum of two tensors of the same domain
sub      any     difference of two tensors of the same domain
concat   any     concatenation along per-sample ``axis`` (1-based, batch axis excluded = 0)
reshape  any     reshape each sample to ``shape``
gather   any     rearrange each sample: ``out.flat[i] = x.flat[index[i]]`` (``index`` has the output's
                 per-sample shape; -1 picks the constant ``fill``): transpose, slice, pad, repeat…
maxpool  any     2-D max pooling, attrs kernel/stride/padding/dilation/ceil_mode (torch semantics);
                 ``mode="min"`` (unpadded) takes the minimum
mul      float   elementwise product of two encrypted tensors (numpy broadcasting)
matmul   float   ``a @ b`` of two encrypted tensors (numpy matmul; per-sample ranks >= 2)
qmul     int     ``(a - zero_point_a) * (b - zero_point_b)``: concrete's encrypted product
qmatmul  int     ``(a - zero_point_a) @ (b - zero_point_b)`` (attr ``k``: contracted length)
qgemm    int     ``(x - zero_point) @ weight.T (+ bias)`` with integer weights and bias
qconv    int     convolution of ``x - zero_point`` with integer weights (+ integer bias)
dequant  int→f   ``scale * q + offset``
fakequant float  ``dequant(quant(x))`` with a fixed quantizer (QAT: Brevitas' own quantizers)
pack     int     ``a * 2^b_bits + (b - b_lo)``: two small integers in one, for a two-input lookup
unpack_add int→f ``dequant_a(p >> b_bits) + dequant_b((p & (2^b_bits - 1)) + b_lo)``
quant    f→int   ``clip(round_half_even(x / scale) + zero_point, qmin, qmax)``
round    int     ``fhe.round_bit_pattern``: drop ``lsbs`` bits rounding half up
tlu      int     table lookup: the float ``chain`` (dequant → … → quant) applied to each value
table    int     a materialized ``tlu``: ``table[x mod size]`` (two's complement index), one column
                 per channel when the table has more than one axis
======== ======= ==========================================================================

Examples
--------
>>> import numpy as np
>>> evaluate("quant", [np.array([0.5, 1.5, 2.5])], {"scale": 1.0, "zero_point": 0, "qmin": 0, "qmax": 3})
array([0, 2, 2])
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from qfhe.ir.numeric import conv2d, maxpool2d, round_half_up_lsbs

FLOAT_OPS = {"gemm", "conv", "activation", "affine", "dequant", "fakequant", "unpack_add", "mul", "matmul"}
INT_OPS = {"qgemm", "qconv", "quant", "round", "tlu", "table", "pack", "qmul", "qmatmul"}
SHAPE_OPS = {"reshape", "gather"}
#: Ops that produce a new integer value from integer inputs without a table lookup. concrete
#: gives all values linked through these the same bit-width.
LINEAR_INT_OPS = {"qgemm", "qconv", "add", "sub", "concat", "reshape", "gather", "pack"}
#: Ops that only select among their input's values, so they keep its quantizer.
SELECT_OPS = {"reshape", "gather", "maxpool"}
#: Ops that turn an integer value into a float one: the first step of a table-lookup chain.
DECODE_OPS = {"dequant", "unpack_add"}
#: Elementwise univariate float ops (fusable into a table lookup).
ELEMENTWISE_FLOAT_OPS = {"activation", "affine", "dequant", "quant"}


def _gemm(xs, a):
    y = xs[0] @ a["weight"].T
    return y + a["bias"] if a.get("bias") is not None else y


def _conv(xs, a):
    y = conv2d(xs[0], a["weight"], a["stride"], a["padding"], a["dilation"], a["groups"])
    if a.get("bias") is not None:
        y = y + a["bias"].reshape(1, -1, 1, 1)
    return y


def _gather(xs, a):
    x = xs[0]
    flat = x.reshape(len(x), -1)
    index = np.asarray(a["index"], np.int64)
    if a.get("fill") is not None:
        flat = np.concatenate([flat, np.full((len(x), 1), a["fill"], dtype=flat.dtype)], axis=1)
        index = np.where(index < 0, flat.shape[1] - 1, index)
    return flat[:, index.reshape(-1)].reshape((len(x),) + index.shape)


def _maxpool(xs, a):
    if a.get("mode") == "min":  # a min pooling (amin): no padding, the frontend never pads it
        return -maxpool2d(-xs[0], a["kernel"], a["stride"], a["padding"], a["dilation"], a.get("ceil_mode", False))
    return maxpool2d(xs[0], a["kernel"], a["stride"], a["padding"], a["dilation"], a.get("ceil_mode", False))


def _centered(xs, a):
    return xs[0].astype(np.int64) - a["zero_point_a"], xs[1].astype(np.int64) - a["zero_point_b"]


def _qgemm(xs, a):
    y = (xs[0].astype(np.int64) - a["zero_point"]) @ a["weight"].T.astype(np.int64)
    return y + a["bias"] if a.get("bias") is not None else y


def _qconv(xs, a):
    x = xs[0].astype(np.int64) - a["zero_point"]
    y = conv2d(x, a["weight"].astype(np.int64), a["stride"], a["padding"], a["dilation"], a["groups"])
    return y + a["bias"].reshape(1, -1, 1, 1) if a.get("bias") is not None else y


def _quant(xs, a):
    q = np.rint(xs[0] / a["scale"]) + a["zero_point"]  # np.rint rounds half to even, like torch.round
    # A table also covers codes the data never reach, where log or sqrt may be undefined: NaN maps
    # to the bottom code (never used by a calibrated input) rather than to an undefined integer.
    q = np.nan_to_num(q, nan=a["qmin"], posinf=a["qmax"], neginf=a["qmin"])
    return np.clip(q, a["qmin"], a["qmax"]).astype(np.int64)


def _dequant(xs, a):
    return a["scale"] * xs[0].astype(np.float64) + a["offset"]


def _fakequant(xs, a):
    return _dequant([_quant(xs, a)], {"scale": a["scale"], "offset": -a["scale"] * a["zero_point"]})


def _pack(xs, a):
    return (xs[0].astype(np.int64) << a["b_bits"]) + (xs[1].astype(np.int64) - a["b_lo"])


def _unpack_add(xs, a):
    p = xs[0].astype(np.int64)
    hi, lo = p >> a["b_bits"], (p & ((1 << a["b_bits"]) - 1)) + a["b_lo"]
    return (a["scale_a"] * hi + a["offset_a"]) + (a["scale_b"] * lo + a["offset_b"])


def _activation(xs, a):
    # The activations are torch's own functionals; importing them only here keeps the numpy-only
    # client (quant, dequant: qfhe.deploy) free of torch.
    from qfhe.ir.activations import apply_activation

    return apply_activation(a["fn"], a["params"], xs[0])


#: Attributes of chain steps that may be per-channel arrays (broadcastable over a batched value).
CHAIN_PARAMS = ("scale", "offset", "shift", "scale_a", "offset_a", "scale_b", "offset_b", "table")


def chain_arrays(chain: list[dict]) -> list[np.ndarray]:
    """The per-channel parameters of a lookup chain: affine and (de)quantization arrays, and array
    parameters of activations (PReLU slopes). A chain without any is one table for every value.

    Examples
    --------
    >>> chain = [{"op": "affine", "attrs": {"scale": np.ones((1, 3)), "shift": 0.0}},
    ...          {"op": "activation", "attrs": {"fn": "prelu", "params": {"weight": np.ones((1, 3))}}}]
    >>> [a.shape for a in chain_arrays(chain)]
    [(1, 3), (1, 3)]
    """
    out = []
    for step in chain:
        attrs = step["attrs"]
        out += [np.asarray(v) for k, v in attrs.items() if k in CHAIN_PARAMS and np.ndim(v)]
        if step["op"] == "activation":
            out += [v for v in attrs["params"].values() if isinstance(v, np.ndarray) and v.ndim]
    return out


def _tlu(xs, a):
    v = xs[0]
    for step in a["chain"]:
        v = evaluate(step["op"], [v], step["attrs"])
    return v


def _table(xs, a):
    table = np.asarray(a["table"], np.int64)
    size = table.shape[0]
    index = xs[0].astype(np.int64) & (size - 1)  # size is a power of two: two's complement wrap
    if table.ndim == 1:
        return table[index]
    columns = table.reshape(size, -1)
    # broadcast, not reshape: a chain's table step is also evaluated on one code column for all channels
    channel = np.arange(columns.shape[1]).reshape(table.shape[1:])
    return columns[index, channel]


_EVAL: dict[str, Callable] = {
    "gemm": _gemm,
    "conv": _conv,
    "activation": _activation,
    "affine": lambda xs, a: xs[0] * a["scale"] + a["shift"],
    "add": lambda xs, a: xs[0] + xs[1],
    "sub": lambda xs, a: xs[0] - xs[1],
    "concat": lambda xs, a: np.concatenate(xs, axis=a["axis"]),
    "reshape": lambda xs, a: xs[0].reshape((xs[0].shape[0],) + tuple(a["shape"])),
    "gather": _gather,
    "maxpool": _maxpool,
    "mul": lambda xs, a: xs[0] * xs[1],
    "matmul": lambda xs, a: np.matmul(xs[0], xs[1]),
    "qmul": lambda xs, a: np.multiply(*_centered(xs, a)),
    "qmatmul": lambda xs, a: np.matmul(*_centered(xs, a)),
    "qgemm": _qgemm,
    "qconv": _qconv,
    "dequant": _dequant,
    "fakequant": _fakequant,
    "pack": _pack,
    "unpack_add": _unpack_add,
    "quant": _quant,
    "round": lambda xs, a: round_half_up_lsbs(xs[0], a["lsbs"]),
    "tlu": _tlu,
    "table": _table,
}

ALL_OPS = set(_EVAL) | {"input"}


def evaluate(op: str, inputs: list[np.ndarray], attrs: dict) -> np.ndarray:
    """Evaluate one op on batched numpy inputs.

    Parameters
    ----------
    op : str
        Op name (see the module table).
    inputs : list of ndarray
        Batched input values.
    attrs : dict
        The node's attributes.

    Returns
    -------
    ndarray
        int64 for integer ops, float64 for float ops.

    Examples
    --------
    >>> import numpy as np
    >>> evaluate("round", [np.array([6, 7])], {"lsbs": 2, "method": "exact"})
    array([8, 8])
    """
    return _EVAL[op](inputs, attrs)
