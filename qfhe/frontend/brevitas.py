"""Import a Brevitas quantization-aware-trained model with its own quantizers.

Nothing is re-quantized: every activation quantizer becomes a ``fakequant`` node carrying
Brevitas' scale, zero point, bit-width, signedness and narrow range, and every quantized layer
keeps its trained integer weights (``weight_int``/``weight_scale``). The float graph then goes
through the same quantization (``qat=True``), fusion, rounding and TFHE lowering as a float model.

Tracing: plain ``torch.fx.symbolic_trace`` and ``brevitas.fx`` both fail on Brevitas models, so a
tracer that keeps every ``brevitas.*`` module as a leaf is used; one run of the traced graph on
two samples tells, for each node, whether its output is a ``QuantTensor``.

Examples
--------
>>> import torch, brevitas.nn as qnn
>>> m = torch.nn.Sequential(qnn.QuantIdentity(bit_width=4, return_quant_tensor=True),
...                         qnn.QuantLinear(3, 2, bias=True, weight_bit_width=3))
>>> import_brevitas(m, torch.randn(4, 3)).ops()
['input', 'fakequant', 'gemm']
"""

from __future__ import annotations

import numpy as np
import torch
import torch.fx
from torch import nn

from qfhe.errors import UnsupportedOpError
from qfhe.frontend.lowering import Emitter
from qfhe.frontend.pooling import adaptive_avgpool, avgpool
from qfhe.frontend.torch_fx import QfheTracer, convert, record_outputs, trace
from qfhe.frontend.torch_ops import _input_shape, _np, _value
from qfhe.ir.activations import ACTIVATIONS
from qfhe.ir.graph import Graph

_ACT_MODULES = {"QuantReLU", "QuantHardTanh", "QuantSigmoid", "QuantTanh", "QuantIdentity"}
_LINEAR_MODULES = {"QuantLinear", "QuantConv1d", "QuantConv2d"}
_POOL_MODULES = {"TruncAvgPool2d", "TruncAdaptiveAvgPool2d"}


class BrevitasTracer(QfheTracer):
    """A torch.fx tracer that treats every Brevitas module as a leaf.

    Examples
    --------
    >>> import brevitas.nn as qnn
    >>> BrevitasTracer().is_leaf_module(qnn.QuantReLU(), "act")
    True
    >>> gm = trace(torch.nn.Sequential(qnn.QuantIdentity(), qnn.QuantReLU()), BrevitasTracer())
    >>> [n.op for n in gm.graph.nodes]
    ['placeholder', 'call_module', 'call_module', 'output']
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        """Brevitas modules are leaves; torch's own rule otherwise.

        Examples
        --------
        >>> BrevitasTracer().is_leaf_module(torch.nn.Sequential(), "seq")
        False
        """
        return type(m).__module__.startswith("brevitas.") or super().is_leaf_module(m, module_qualified_name)


def import_brevitas(model: nn.Module, sample: torch.Tensor) -> Graph:
    """Trace a Brevitas QAT model and convert it to a float qfhe graph with fixed quantizers.

    Parameters
    ----------
    model : torch.nn.Module
        A model built from ``brevitas.nn`` layers (plain torch layers in between are fine).
    sample : torch.Tensor or tuple of torch.Tensor
        At least two valid inputs, shape (n, ...); a tuple with one per argument of ``forward``.

    Returns
    -------
    Graph
        Float graph whose quantizers are ``fakequant`` nodes and whose quantized layers carry
        their integer weights.

    Raises
    ------
    UnsupportedOpError
        For a Brevitas module or quantizer qfhe cannot reproduce exactly (the message names it).

    Examples
    --------
    >>> import brevitas.nn as qnn
    >>> m = torch.nn.Sequential(qnn.QuantIdentity(bit_width=3), qnn.QuantReLU(bit_width=3))
    >>> import_brevitas(m, torch.randn(2, 4)).ops()
    ['input', 'fakequant', 'activation', 'fakequant']
    """
    was_training = model.training
    model.eval()
    try:
        gm = trace(model, BrevitasTracer())
        outputs = record_outputs(gm, sample)
        return convert(gm, _BrevitasHook(outputs))
    finally:
        model.train(was_training)


def _quantizer_attrs(scale, zero_point, bit_width, signed: bool, narrow: bool, where: str) -> dict:
    scale = torch.as_tensor(scale).detach().double().reshape(-1)
    if scale.numel() != 1:
        raise UnsupportedOpError(
            f"{where} quantizes activations per channel; qfhe supports per-tensor activation scales"
        )
    bits = int(torch.as_tensor(bit_width).item())
    if signed:
        qmin, qmax = -(1 << (bits - 1)) + (1 if narrow else 0), (1 << (bits - 1)) - 1
    else:
        qmin, qmax = 0, (1 << bits) - 1 - (1 if narrow else 0)
    zp = int(np.rint(torch.as_tensor(zero_point).detach().double().reshape(-1)[0].item()))
    return {"scale": float(scale[0]), "zero_point": zp, "qmin": qmin, "qmax": qmax, "n_bits": bits}


def _proxy_attrs(proxy, where: str) -> dict:
    """Quantizer attributes of a Brevitas activation quant proxy (act/input/output quant)."""
    return _quantizer_attrs(
        proxy.scale(), proxy.zero_point(), proxy.bit_width(), bool(proxy.is_signed), bool(proxy.is_narrow_range), where
    )


class _BrevitasHook:
    """``convert`` module hook: maps Brevitas modules to IR nodes."""

    def __init__(self, outputs: dict):
        self.outputs = outputs

    def __call__(self, em: Emitter, env: dict, node, mod: nn.Module, shape, name: str):
        if not type(mod).__module__.startswith("brevitas."):
            return None
        kind = type(mod).__name__
        if kind in _ACT_MODULES:
            return self._activation(em, env, node, mod, name)
        if kind in _LINEAR_MODULES:
            return self._linear(em, env, node, mod, shape, name)
        if kind in _POOL_MODULES:
            return self._pool(em, env, node, mod, shape, name)
        if kind == "QuantEltwiseAdd":
            a, b = (
                self._input_quant(em, _value(env, arg, node), mod, f"{name}_in{i}")
                for i, arg in enumerate(node.args[:2])
            )
            return self._output_quant(em, em.add(name, a, b), mod, name)
        raise UnsupportedOpError(
            f"node '{name}' is a Brevitas {kind}, which qfhe cannot compile. Supported: QuantIdentity, QuantLinear, "
            "QuantConv1d, QuantConv2d, QuantReLU, QuantHardTanh, QuantSigmoid, QuantTanh, TruncAvgPool2d, "
            "TruncAdaptiveAvgPool2d, QuantEltwiseAdd (and torch.cat of tensors on one quantizer)"
        )

    # -- helpers ------------------------------------------------------------------------------
    def _input_quant(self, em, x, mod, name):
        proxy = getattr(mod, "input_quant", None)
        if proxy is not None and proxy.is_quant_enabled:
            return em.fakequant(name, x, _proxy_attrs(proxy, f"node '{name}'"))
        return x

    def _output_quant(self, em, x, mod, name):
        proxy = getattr(mod, "output_quant", None)
        if proxy is not None and proxy.is_quant_enabled:
            return em.fakequant(f"{name}_out", x, _proxy_attrs(proxy, f"node '{name}'"))
        return x

    def _activation(self, em, env, node, mod, name):
        x = self._input_quant(em, _value(env, node.args[0], node), mod, f"{name}_in")
        impl = mod.act_quant.fused_activation_quant_proxy.activation_impl
        act = next((a for a in ACTIVATIONS.values() if a.module is not None and isinstance(impl, a.module)), None)
        if act is not None:
            x = em.activation(f"{name}_act", x, act.name, {p: getattr(impl, p) for p in act.params})
        elif not isinstance(impl, nn.Identity):  # QuantHardTanh/QuantIdentity clamp in the quantizer
            raise UnsupportedOpError(f"node '{name}' uses activation {type(impl).__name__}, which has no qfhe lowering")
        if not mod.act_quant.is_quant_enabled:
            return x
        return em.fakequant(name, x, _proxy_attrs(mod.act_quant, f"node '{name}'"))

    def _linear(self, em, env, node, mod, shape, name):
        x = self._input_quant(em, _value(env, node.args[0], node), mod, f"{name}_in")
        qw = mod.quant_weight()
        if torch.any(qw.zero_point != 0):
            raise UnsupportedOpError(
                f"node '{name}' has asymmetric weights (non-zero zero point); use symmetric weights"
            )
        w_int = qw.int().detach().double().numpy()
        w_scale = qw.scale.detach().double().reshape(-1).numpy()
        w_scale = w_scale[0] if w_scale.size == 1 else w_scale
        bias, bias_at_acc_scale = _quant_bias(mod)
        weight = w_int * (np.reshape(w_scale, (-1,) + (1,) * (w_int.ndim - 1)) if np.ndim(w_scale) else w_scale)
        qat = {
            "weight_int": w_int.astype(np.int64),
            "weight_scale": np.asarray(w_scale, np.float64),
            "bias_at_acc_scale": bias_at_acc_scale,
        }
        if isinstance(mod, nn.Linear):
            y = em.gemm(name, x, weight, bias, **qat)
        else:
            y = em.conv(
                name,
                x,
                weight,
                bias,
                mod.stride,
                _pair_padding(mod),
                mod.dilation,
                mod.groups,
                _input_shape(node),
                shape,
                **qat,
            )
        return self._output_quant(em, y, mod, name)

    def _pool(self, em, env, node, mod, shape, name):
        x = _value(env, node.args[0], node)
        tq = mod.trunc_quant
        if tq is None or not mod.is_trunc_quant_enabled:
            raise UnsupportedOpError(f"node '{name}' is a TruncAvgPool without a truncation quantizer")
        rounding = type(tq.tensor_quant.float_to_int_impl).__name__
        if rounding != "RoundSte":
            raise UnsupportedOpError(
                f"node '{name}' truncates with {rounding}; qfhe reproduces RoundSte (half to even)"
            )
        if type(mod).__name__ == "TruncAvgPool2d":
            y = avgpool(
                em,
                node,
                x,
                mod.kernel_size,
                mod.stride,
                mod.padding,
                mod.ceil_mode,
                mod.count_include_pad,
                mod.divisor_override,
                shape,
                f"{name}_sum",
            )
        else:
            y = adaptive_avgpool(em, node, x, mod.output_size, shape, f"{name}_sum")
        out = self.outputs[node.name]
        if not hasattr(out, "scale"):
            raise UnsupportedOpError(f"node '{name}' did not return a QuantTensor; feed it a quantized tensor")
        attrs = _quantizer_attrs(out.scale, out.zero_point, out.bit_width, bool(out.signed), False, f"node '{name}'")
        return em.fakequant(name, y, attrs)


def _pair_padding(mod) -> tuple:
    if isinstance(mod.padding, str):
        raise UnsupportedOpError(f"{type(mod).__name__} with padding='{mod.padding}': give explicit padding")
    return tuple(mod.padding)


def _quant_bias(mod) -> tuple[np.ndarray | None, bool]:
    """The bias the layer adds, and whether Brevitas quantizes it at the accumulator's scale.

    A bias quantized at the accumulator scale (Int32Bias) is reproduced exactly by an integer bias
    (rounded half to even at that scale); a float bias, or one quantized at its own scale, is added
    inside the table lookup that follows, as Brevitas adds it in float.
    """
    if mod.bias is None:
        return None, False
    if mod.bias_quant.is_quant_enabled:
        try:
            return mod.quant_bias().value.detach().double().numpy(), False
        except RuntimeError:  # "Input scale required": quantized at the accumulator scale
            return _np(mod.bias), True
    return _np(mod.bias), False
