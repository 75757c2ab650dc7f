"""The ONNX operators :func:`qfhe.frontend.onnx.onnx_to_torch` takes, each as the torch call it stands for.

Elementwise operators without attributes are tables (``UNARY``, ``BINARY``, ``REDUCE``); the others
are methods ``op_<OpType>`` of :class:`_OnnxOps`, which the converter inherits. Each receives the
ONNX node and its inputs (torch.fx proxies, or constant tensors) and returns its outputs; called on
constants only, it computes them at once (constant folding for free).

Examples
--------
>>> sorted(UNARY)[:3]
['Abs', 'Asinh', 'Atan']
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from qfhe.errors import UnsupportedOpError

UNARY = {
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Abs": torch.abs,
    "Neg": torch.neg,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Reciprocal": torch.reciprocal,
    "Erf": torch.erf,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Atan": torch.atan,
    "Sinh": torch.sinh,
    "Cosh": torch.cosh,
    "Asinh": torch.asinh,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Round": torch.round,
    "Sign": torch.sign,
    "Softplus": F.softplus,
    "Softsign": F.softsign,
    "Mish": F.mish,
    "HardSwish": F.hardswish,
    "Not": torch.logical_not,
}
BINARY = {
    "Sub": operator.sub,
    "Mul": operator.mul,
    "Div": operator.truediv,
    "Greater": torch.gt,
    "Less": torch.lt,
    "GreaterOrEqual": torch.ge,
    "LessOrEqual": torch.le,
    "Equal": torch.eq,
    "And": torch.logical_and,
    "Or": torch.logical_or,
    "Xor": torch.logical_xor,
}
REDUCE = {"ReduceMean": torch.mean, "ReduceSum": torch.sum, "ReduceMax": torch.amax, "ReduceMin": torch.amin}


class _OnnxOps:
    """``op_<OpType>`` handlers; the converter provides ``attrs``, ``const``, ``ints``, ``module``,
    ``rank``, ``shapes``, ``env``, ``users`` and ``bias_free``.

    Examples
    --------
    >>> hasattr(_OnnxOps, "op_Gemm") and hasattr(_OnnxOps, "op_Conv")
    True
    """

    def op_Identity(self, node, ins):
        return [ins[0]]

    op_Dropout = op_Identity

    def op_Constant(self, node, ins):
        a = node.attribute[0]
        if a.name == "value":
            return [torch.from_numpy(np.array(self.numpy_helper.to_array(a.t)))]
        return [torch.tensor(self.onnx.helper.get_attribute_value(a))]

    def op_Gemm(self, node, ins):
        at = self.attrs(node)
        if at.get("transA", 0):
            raise UnsupportedOpError(f"ONNX node '{node.name}' (Gemm) transposes its input (transA=1)")
        w = self.const(node, node.input[1], "weight").float()
        w = (w if at.get("transB", 0) else w.T) * at.get("alpha", 1.0)
        linear = nn.Linear(w.shape[1], w.shape[0], bias=len(ins) > 2 and ins[2] is not None)
        with torch.no_grad():
            linear.weight.copy_(w)
            if linear.bias is not None:
                b = self.const(node, node.input[2], "bias").float() * at.get("beta", 1.0)
                linear.bias.copy_(torch.broadcast_to(b.reshape(-1), (w.shape[0],)))
        return [self.module(node, linear, ins[0])]

    def op_MatMul(self, node, ins):
        w = ins[1]
        if isinstance(ins[0], fx.Proxy) and isinstance(w, torch.Tensor) and w.ndim == 2:
            # nn.Linear on a >2-d input, as the exporter writes it (MatMul, then Add of the bias:
            # op_Add gives the bias back to this layer, so the circuit adds it as the torch path does)
            linear = nn.Linear(w.shape[0], w.shape[1], bias=False)
            with torch.no_grad():
                linear.weight.copy_(w.float().T)
            out = self.module(node, linear, ins[0])
            self.bias_free[node.output[0]] = linear
            return [out]
        return [torch.matmul(ins[0], ins[1])]

    def op_Add(self, node, ins):
        for k in (0, 1):
            linear = self.bias_free.get(node.input[k])
            b = ins[1 - k]
            if (
                linear is not None
                and self.users[node.input[k]] == 1
                and isinstance(b, torch.Tensor)
                and b.numel() == linear.out_features
                and b.shape[-1] == linear.out_features
            ):
                linear.bias = nn.Parameter(b.float().reshape(-1).clone())
                return [ins[k]]
        return [ins[0] + ins[1]]

    def op_Conv(self, node, ins):
        at = self.attrs(node)
        w = self.const(node, node.input[1], "weight").float()
        dims = w.ndim - 2
        pads = list(at.get("pads", [0] * 2 * dims))
        if (
            at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or pads[:dims] != pads[dims:]
            or dims not in (1, 2)
        ):
            raise UnsupportedOpError(
                f"ONNX node '{node.name}' (Conv): qfhe takes 1-d and 2-d convolutions with explicit, symmetric padding"
            )
        cls = nn.Conv1d if dims == 1 else nn.Conv2d
        group = at.get("group", 1)
        conv = cls(
            w.shape[1] * group,
            w.shape[0],
            tuple(w.shape[2:]),
            stride=tuple(at.get("strides", [1] * dims)),
            padding=tuple(pads[:dims]),
            dilation=tuple(at.get("dilations", [1] * dims)),
            groups=group,
            bias=len(ins) > 2 and ins[2] is not None,
        )
        with torch.no_grad():
            conv.weight.copy_(w)
            if conv.bias is not None:
                conv.bias.copy_(self.const(node, node.input[2], "bias").float())
        return [self.module(node, conv, ins[0])]

    def op_BatchNormalization(self, node, ins):
        scale, bias, mean, var = (self.const(node, node.input[i], "statistics").float() for i in range(1, 5))
        rank = self.rank(node.input[0])
        bn = (nn.BatchNorm1d if rank in (2, 3) else nn.BatchNorm2d)(
            len(scale), eps=self.attrs(node).get("epsilon", 1e-5)
        )
        with torch.no_grad():
            bn.weight.copy_(scale)
            bn.bias.copy_(bias)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
        return [self.module(node, bn, ins[0])]

    def _pool(self, node, ins, kind: str):
        at = self.attrs(node)
        k = list(at["kernel_shape"])
        dims = len(k)
        pads = list(at.get("pads", [0] * 2 * dims))
        if (
            pads[:dims] != pads[dims:]
            or dims not in (1, 2)
            or at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        ):
            raise UnsupportedOpError(
                f"ONNX node '{node.name}' ({node.op_type}): qfhe takes 1-d and 2-d pooling "
                "with explicit, symmetric padding"
            )
        stride = tuple(at.get("strides", [1] * dims))
        if kind == "avg":
            mod = (nn.AvgPool1d if dims == 1 else nn.AvgPool2d)(
                tuple(k),
                stride,
                tuple(pads[:dims]),
                ceil_mode=bool(at.get("ceil_mode", 0)),
                count_include_pad=bool(at.get("count_include_pad", 0)),
            )
        else:
            mod = (nn.MaxPool1d if dims == 1 else nn.MaxPool2d)(
                tuple(k),
                stride,
                tuple(pads[:dims]),
                dilation=tuple(at.get("dilations", [1] * dims)),
                ceil_mode=bool(at.get("ceil_mode", 0)),
            )
        return [self.module(node, mod, ins[0])]

    def op_AveragePool(self, node, ins):
        return self._pool(node, ins, "avg")

    def op_MaxPool(self, node, ins):
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedOpError(f"ONNX node '{node.name}' (MaxPool) returns indices, which qfhe does not compute")
        return self._pool(node, ins, "max")

    def op_GlobalAveragePool(self, node, ins):
        rank = self.rank(node.input[0])
        return [self.module(node, nn.AdaptiveAvgPool1d(1) if rank == 3 else nn.AdaptiveAvgPool2d(1), ins[0])]

    def op_GlobalMaxPool(self, node, ins):
        rank = self.rank(node.input[0]) or 4
        return [torch.amax(ins[0], dim=tuple(range(2, rank)), keepdim=True)]

    def reduce(self, node):
        at = self.attrs(node)
        axes = self.ints(node, 1, "axes", "axes")
        if axes is None:
            if at.get("noop_with_empty_axes", 0):
                return self.env[node.input[0]]
            axes = list(range(1, self.rank(node.input[0]) or 2))
        return REDUCE[node.op_type](self.env[node.input[0]], dim=tuple(axes), keepdim=bool(at.get("keepdims", 1)))

    def op_LeakyRelu(self, node, ins):
        return [F.leaky_relu(ins[0], self.attrs(node).get("alpha", 0.01))]

    def op_Elu(self, node, ins):
        return [F.elu(ins[0], self.attrs(node).get("alpha", 1.0))]

    def op_Celu(self, node, ins):
        return [F.celu(ins[0], self.attrs(node).get("alpha", 1.0))]

    def op_Selu(self, node, ins):
        at = self.attrs(node)
        alpha, gamma = at.get("alpha", 1.67326319217681884765625), at.get("gamma", 1.05070102214813232421875)
        return [gamma * F.elu(ins[0], alpha)]

    def op_HardSigmoid(self, node, ins):
        at = self.attrs(node)
        alpha, beta = at.get("alpha", 0.2), at.get("beta", 0.5)
        if abs(alpha - 1 / 6) < 1e-6 and beta == 0.5:
            return [F.hardsigmoid(ins[0])]
        return [torch.clamp(ins[0] * alpha + beta, 0.0, 1.0)]

    def op_Gelu(self, node, ins):
        approx = self.attrs(node).get("approximate", b"none")
        return [F.gelu(ins[0], approximate=approx.decode() if isinstance(approx, bytes) else approx)]

    def op_ThresholdedRelu(self, node, ins):
        return [F.threshold(ins[0], self.attrs(node).get("alpha", 1.0), 0.0)]

    def op_Shrink(self, node, ins):
        at = self.attrs(node)
        lambd, bias = at.get("lambd", 0.5), at.get("bias", 0.0)
        if bias == 0:
            return [F.hardshrink(ins[0], lambd)]
        if bias == lambd:
            return [F.softshrink(ins[0], lambd)]
        raise UnsupportedOpError(f"ONNX node '{node.name}' (Shrink) with bias {bias} other than 0 or lambd")

    def op_PRelu(self, node, ins):
        slope = self.const(node, node.input[1], "slope").float().reshape(-1)
        return [F.prelu(ins[0], slope)]

    def op_Clip(self, node, ins):
        at = self.attrs(node)
        lo = float(self.const(node, node.input[1], "min")) if len(ins) > 1 and ins[1] is not None else at.get("min")
        hi = float(self.const(node, node.input[2], "max")) if len(ins) > 2 and ins[2] is not None else at.get("max")
        return [torch.clamp(ins[0], lo, hi)]

    def op_Pow(self, node, ins):
        e = self.const(node, node.input[1], "exponent")
        return [torch.pow(ins[0], float(e) if e.numel() == 1 else e)]

    def op_Where(self, node, ins):
        return [torch.where(ins[0], ins[1], ins[2])]

    def op_Cast(self, node, ins):
        to = self.attrs(node)["to"]
        dtype = self.onnx.helper.tensor_dtype_to_np_dtype(to)
        if dtype == np.bool_:
            return [ins[0].bool()]
        return [ins[0].float() if np.issubdtype(dtype, np.floating) else ins[0].long()]

    def op_Flatten(self, node, ins):
        axis = self.attrs(node).get("axis", 1)
        if axis != 1:
            raise UnsupportedOpError(
                f"ONNX node '{node.name}' (Flatten) with axis={axis}: qfhe keeps the batch axis apart (axis=1)"
            )
        return [torch.flatten(ins[0], 1)]

    def op_Reshape(self, node, ins):
        shape = [int(v) for v in self.const(node, node.input[1], "target shape").tolist()]
        src = self.shapes.get(node.input[0])
        shape = [
            v if v != 0 or i == 0 else (src[i] if src and i < len(src) and src[i] else v) for i, v in enumerate(shape)
        ]
        if shape and shape[0] != -1:  # the batch axis: the exporter wrote the example's batch size (or 0: copy)
            x = ins[0]
            shape[0] = -1 if -1 not in shape[1:] or isinstance(x, torch.Tensor) else x.shape[0]
        return [torch.reshape(ins[0], tuple(shape))]

    def op_Transpose(self, node, ins):
        perm = self.attrs(node).get("perm")
        return [torch.permute(ins[0], tuple(perm)) if perm is not None else ins[0].T]

    def op_Unsqueeze(self, node, ins):
        x = ins[0]
        for axis in sorted(self.ints(node, 1, "axes", "axes")):
            x = torch.unsqueeze(x, axis)
        return [x]

    def op_Squeeze(self, node, ins):
        axes = self.ints(node, 1, "axes", "axes")
        return [torch.squeeze(ins[0], tuple(axes)) if axes is not None else torch.squeeze(ins[0])]

    def op_Concat(self, node, ins):
        return [torch.cat(list(ins), dim=self.attrs(node)["axis"])]

    def op_Split(self, node, ins):
        at = self.attrs(node)
        sizes = self.ints(node, 1, "split", "split sizes")
        axis = at.get("axis", 0)
        parts = (
            torch.tensor_split(ins[0], len(node.output), dim=axis)
            if sizes is None
            else torch.split(ins[0], sizes, dim=axis)
        )
        return [parts[i] for i in range(len(node.output))]  # a proxy of a tuple is not iterable

    def op_Slice(self, node, ins):
        starts, ends = self.ints(node, 1, "starts", "starts"), self.ints(node, 2, "ends", "ends")
        axes = self.ints(node, 3, "axes", "axes") or list(range(len(starts)))
        steps = self.ints(node, 4, "steps", "steps") or [1] * len(starts)
        rank = self.rank(node.input[0]) or (max(axes) + 1)
        index = [slice(None)] * rank
        big, x = 1 << 62, ins[0]
        for s, e, a, st in zip(starts, ends, axes, steps):
            if st == -1 and s in (-1, big - 1, (1 << 63) - 1) and e <= -big:  # x.flip(a), as the exporter writes it
                x = torch.flip(x, (a,))
            elif st <= 0:
                raise UnsupportedOpError(
                    f"ONNX node '{node.name}' (Slice) with step {st}: qfhe takes positive steps "
                    "and a whole-axis reversal"
                )
            else:
                index[a] = slice(s, None if e >= big else e, st)
        return [x[tuple(index)]]

    def op_Gather(self, node, ins):
        idx = self.const(node, node.input[1], "indices").long()
        axis = self.attrs(node).get("axis", 0)
        if idx.ndim == 0:
            return [torch.select(ins[0], axis, int(idx))]
        if idx.ndim > 1:
            raise UnsupportedOpError(f"ONNX node '{node.name}' (Gather) with {idx.ndim}-d indices")
        return [torch.index_select(ins[0], axis, idx)]

    def op_Pad(self, node, ins):
        at = self.attrs(node)
        if at.get("mode", b"constant") not in (b"constant", "constant"):
            raise UnsupportedOpError(
                f"ONNX node '{node.name}' (Pad) with mode {at.get('mode')!r}: only constant padding"
            )
        pads = self.ints(node, 1, "pads", "pads")
        value = (
            float(self.const(node, node.input[2], "value"))
            if len(ins) > 2 and ins[2] is not None
            else at.get("value", 0.0)
        )
        n = len(pads) // 2
        torch_pads = []
        for axis in reversed(range(n)):
            torch_pads += [pads[axis], pads[axis + n]]
        while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:
            torch_pads = torch_pads[:-2]
        return [F.pad(ins[0], tuple(torch_pads), value=value)]

    def op_Expand(self, node, ins):
        shape = [int(v) for v in self.const(node, node.input[1], "shape").tolist()]
        return [ins[0].expand(*([-1] + [v if v != 1 else -1 for v in shape[1:]]))]

    def op_Tile(self, node, ins):
        reps = [int(v) for v in self.const(node, node.input[1], "repeats").tolist()]
        return [ins[0].repeat(*([1] + reps[1:]))]

    def op_ConstantOfShape(self, node, ins):
        shape = [int(v) for v in self.const(node, node.input[0], "shape").tolist()]
        at = self.attrs(node)
        value = torch.from_numpy(np.array(self.numpy_helper.to_array(at["value"]))) if "value" in at else torch.zeros(1)
        return [torch.full(shape, value.item(), dtype=value.dtype)]

    def op_Shape(self, node, ins):
        if isinstance(ins[0], torch.Tensor):
            return [torch.tensor(ins[0].shape)]
        shape = self.shapes.get(node.input[0])
        if shape and all(shape):  # static: the exporter's example batch, which Reshape and Expand read as "any"
            at = self.attrs(node)
            return [torch.tensor(shape[at.get("start", 0) : at.get("end", len(shape))])]
        raise UnsupportedOpError(
            f"ONNX node '{node.name}' (Shape) reads the shape of an input at run time; export "
            "with a fixed batch size (no dynamic_axes) so the exporter folds it"
        )
