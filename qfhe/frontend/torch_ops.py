"""The torch → IR mapping of single fx nodes: modules, functions, methods and their arguments.

:func:`qfhe.frontend.torch_fx.convert` walks the traced graph and calls :func:`_module` for
``call_module`` nodes and :func:`_function` for the rest. Each returns the IR value name of the
node's result.

Examples
--------
>>> import torch
>>> from qfhe.frontend.torch_fx import import_torch
>>> import_torch(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.PReLU(2)), torch.zeros(2, 3)).ops()
['input', 'gemm', 'activation']
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from numbers import Number

import numpy as np
import torch
import torch.fx
from torch import nn

from qfhe.errors import UnsupportedOpError
from qfhe.frontend.expressions import Expr, expression, is_expression_op
from qfhe.frontend.lowering import Emitter, activation_forms
from qfhe.frontend.pooling import POOL_FUNCTIONS, POOL_MODULES, pool_function, pool_module
from qfhe.frontend.products import MATMUL, encrypted_product, matmul
from qfhe.frontend.reductions import is_reduction, reduction
from qfhe.frontend.shape_ops import is_shape_op, keeps_batch_axis, shape_op

IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
ALIAS_METHODS = {"contiguous", "clone", "detach"}
_ADD = {operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__radd__"}
_SUB = {operator.sub, operator.isub, torch.sub, "sub", "sub_"}
_MUL = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_DIV = {operator.truediv, operator.itruediv, torch.div, "div", "div_"}


def _describe(node: torch.fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", str(target))
    return f"{node.op} {name}"


@dataclass(frozen=True)
class Const:
    """A value that does not depend on the model's inputs (a buffer, a parameter read directly,
    ``torch.ones(3) * 2``): folded at import, from the value the traced run computed.

    Examples
    --------
    >>> Const(np.ones(2)).value.shape
    (2,)
    """

    value: np.ndarray


def _value(env: dict, arg, node: torch.fx.Node) -> str:
    if isinstance(arg, torch.fx.Node):
        v = env[arg.name]
        if isinstance(v, str):
            return v
        if isinstance(v, Expr):  # read by a non-elementwise op: now it becomes a table lookup
            env[arg.name] = v.materialize()
            return env[arg.name]
        if isinstance(v, Const):
            raise UnsupportedOpError(
                f"node '{node.name}' ({_describe(node)}) uses the constant tensor '{arg.name}' where qfhe needs an "
                "encrypted one; constants can be added to, subtracted from, multiply or divide encrypted tensors"
            )
    raise UnsupportedOpError(f"node '{node.name}' ({_describe(node)}) expects a tensor argument, got {arg!r}")


def _input_shape(node: torch.fx.Node) -> tuple:
    return tuple(node.args[0].meta["qfhe_shape"][1:])


def _module(em: Emitter, env: dict, node: torch.fx.Node, mod: nn.Module, shape, name: str) -> str:
    x = _value(env, node.args[0], node)
    forms = activation_forms()
    if type(mod) in forms.modules:
        act = forms.modules[type(mod)]
        return em.activation(name, x, act.name, {p: getattr(mod, p) for p in act.params})
    if isinstance(mod, IDENTITY_MODULES):
        return x
    if isinstance(mod, nn.PReLU):
        return _prelu(em, name, x, _np(mod.weight), shape)
    if not isinstance(mod, nn.Linear) and not keeps_batch_axis(node.args[0]):
        raise UnsupportedOpError(
            f"node '{node.name}' ({type(mod).__name__}) reads a value whose first axis is no longer the sample axis; "
            "keep axis 0 as the sample axis before this layer, e.g. x.view(x.shape[0], -1) or x.flatten(1)"
        )
    if isinstance(mod, nn.Linear):
        return em.gemm(name, x, _np(mod.weight), _np(mod.bias))
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        if mod.padding_mode != "zeros":
            raise UnsupportedOpError(
                f"node '{node.name}' ({type(mod).__name__}) uses padding_mode='{mod.padding_mode}'; only 'zeros' is supported"
            )
        padding = _conv_padding(node, mod)
        return em.conv(
            name,
            x,
            _np(mod.weight),
            _np(mod.bias),
            mod.stride,
            padding,
            mod.dilation,
            mod.groups,
            _input_shape(node),
            shape,
        )
    if isinstance(mod, POOL_MODULES):
        return pool_module(em, node, x, mod, shape, name)
    if isinstance(mod, nn.Flatten):
        return em.reshape(name, x, shape)
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _batchnorm(em, node, x, mod, name)
    if isinstance(mod, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
        raise UnsupportedOpError(
            f"node '{node.name}' calls module {type(mod).__name__}, which qfhe cannot compile: it mixes all outputs, "
            "which a table lookup cannot; return the logits and apply it on the client after decryption"
        )
    raise UnsupportedOpError(
        f"node '{node.name}' calls module {type(mod).__name__}, which qfhe cannot compile. Supported: Linear, "
        "Conv1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d, MaxPool1d/2d, Flatten, BatchNorm1d/2d, Dropout, Identity and the activations "
        f"{sorted(a.name for a in forms.modules.values())}"
    )


#: Python arithmetic on sizes (``channels // groups``): shape maths when the result is not a tensor
SHAPE_ARITHMETIC = {operator.floordiv, operator.mul, operator.add, operator.sub, operator.mod, operator.truediv}


def _function(em: Emitter, env: dict, node: torch.fx.Node, shape) -> object:
    target = node.target
    forms = activation_forms()
    args = list(node.args)
    if shape is None and (target in ("size", operator.getitem, getattr) or target in SHAPE_ARITHMETIC):
        return ("shape-maths", node.name)  # only feeds view/reshape, whose shape comes from ShapeProp
    if is_expression_op(node, env, em):
        if target in ("float", "double", "to", "type") and isinstance(env.get(getattr(args[0], "name", None)), str):
            return _value(env, args[0], node)  # a cast of an encrypted float tensor: nothing to do
        return expression(em, env, node)
    act = forms.methods.get(target) if node.op == "call_method" else forms.functions.get(target)
    if act is not None:
        x = _value(env, args[0], node)
        params = forms.bind(
            act,
            [_scalar_arg(env, a, node) for a in args[1:]],
            {k: _scalar_arg(env, v, node) for k, v in node.kwargs.items()},
        )
        if act.name == "prelu":
            return _prelu(em, node.name, x, np.asarray(params["weight"], np.float64), shape)
        return em.activation(node.name, x, act.name, params)
    if node.op == "call_method" and target in ALIAS_METHODS:
        return _value(env, args[0], node)
    if target is getattr and len(args) == 2 and args[1] == "value":
        return _value(env, args[0], node)  # a Brevitas QuantTensor's real value: the same IR value
    if is_shape_op(node):
        return shape_op(em, env, node, _value, _describe)
    if target in _ADD | _SUB | _MUL | _DIV:
        return _arith(em, env, node, target)
    if target in MATMUL:
        return matmul(em, env, node, _value)
    if target in POOL_FUNCTIONS:
        return pool_function(em, node, _value(env, args[0], node), shape)
    if is_reduction(node):
        return reduction(em, node, _value(env, args[0], node), shape)
    name = getattr(target, "__name__", str(target))
    if name in ("max", "min") and (len(args) > 1 or "dim" in node.kwargs):
        raise UnsupportedOpError(
            f"node '{node.name}' ({_describe(node)}) returns values and indices; use x.a{name}(dim) for the values"
        )
    if name in ("softmax", "log_softmax", "softmin"):
        raise UnsupportedOpError(
            f"node '{node.name}' ({_describe(node)}) is not supported: {name} mixes all outputs, which a table lookup "
            f"cannot; return the logits and apply {name} on the client after decryption"
        )
    raise UnsupportedOpError(
        f"node '{node.name}' ({_describe(node)}) is not supported by qfhe; the supported operations are listed in "
        "the table of supported operations (docs/operations.md; python -m qfhe.frontend.coverage prints it)"
    )


def _arith(em: Emitter, env: dict, node: torch.fx.Node, target) -> str:
    a, b = node.args[0], node.args[1]
    if node.kwargs.get("alpha", 1) != 1:
        raise UnsupportedOpError(
            f"node '{node.name}' ({_describe(node)}) uses alpha != 1; write it as a scalar multiply"
        )
    tensors = [isinstance(v, torch.fx.Node) and isinstance(env.get(v.name), (str, Expr)) for v in (a, b)]
    if all(tensors):
        if target in _ADD:
            return em.add(node.name, _value(env, a, node), _value(env, b, node))
        if target in _SUB:
            return em.sub(node.name, _value(env, a, node), _value(env, b, node))
        if target in _MUL:
            return encrypted_product(em, env, node, a, b, _value)
        raise UnsupportedOpError(
            f"node '{node.name}' ({_describe(node)}) divides two encrypted tensors; qfhe supports their sum, difference "
            "and product, and x / c or c / x with a constant c"
        )
    ndim = len(node.meta["qfhe_shape"])
    if tensors[0]:
        x, c = _value(env, a, node), _constant(env, b, node, ndim)
        scale, shift = (
            (1.0, c)
            if target in _ADD
            else (1.0, -c)
            if target in _SUB
            else (c, 0.0)
            if target in _MUL
            else (1.0 / c, 0.0)
        )
        return em.affine(node.name, x, scale, shift)
    if tensors[1]:
        x, c = _value(env, b, node), _constant(env, a, node, ndim)
        if target in _DIV:  # c / x: a lookup of 1/x, then the scale
            x = em.activation(f"{node.name}_reciprocal", x, "reciprocal", {})
        scale, shift = (1.0, c) if target in _ADD else (-1.0, c) if target in _SUB else (c, 0.0)
        return em.affine(node.name, x, scale, shift)
    raise UnsupportedOpError(f"node '{node.name}' ({_describe(node)}) has arguments qfhe cannot compile: {node.args}")


def _constant(env: dict, arg, node: torch.fx.Node, ndim: int) -> np.ndarray:
    """A number or constant tensor as an array broadcastable over the batched result."""
    if isinstance(arg, torch.fx.Node) and isinstance(env.get(arg.name), Const):
        c = np.asarray(env[arg.name].value, np.float64)
    elif isinstance(arg, (Number, bool)):
        return np.float64(arg)
    else:
        raise UnsupportedOpError(
            f"node '{node.name}' ({_describe(node)}) has arguments qfhe cannot compile: {node.args}"
        )
    if c.ndim > ndim or (c.ndim == ndim and c.shape[0] != 1):
        raise UnsupportedOpError(
            f"node '{node.name}' ({_describe(node)}) combines an encrypted tensor with a constant of shape "
            f"{tuple(c.shape)} that differs across samples; give the constant one value per feature, without the batch axis"
        )
    c = c.reshape((1,) * (ndim - c.ndim) + c.shape)
    return c.reshape(-1)[0] if c.size == 1 else c


def _scalar_arg(env: dict, arg, node: torch.fx.Node):
    """An activation argument: a python value, or a constant tensor (a learned slope, a bound)."""
    if isinstance(arg, torch.fx.Node):
        v = env.get(arg.name)
        if isinstance(v, Const):
            return float(v.value.reshape(-1)[0]) if v.value.size == 1 else np.asarray(v.value, np.float64)
        raise UnsupportedOpError(
            f"node '{node.name}' ({_describe(node)}) takes the encrypted tensor '{arg.name}' as a parameter; "
            "qfhe needs its parameters to be constants"
        )
    return arg


def _prelu(em: Emitter, name: str, x: str, weight: np.ndarray, shape) -> str:
    if weight.size == 1:  # one learned slope: a LeakyReLU
        return em.activation(name, x, "leaky_relu", {"negative_slope": float(weight.reshape(-1)[0])})
    # torch applies the slopes along axis 1 (the channels)
    return em.activation(name, x, "prelu", {"weight": weight.reshape((1, -1) + (1,) * (len(shape) - 1))})


def _np(p) -> np.ndarray | None:
    return None if p is None else p.detach().cpu().numpy().astype(np.float64)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_padding(node, mod) -> tuple:
    if isinstance(mod.padding, str):
        if mod.padding == "valid":
            return (0,) * len(mod.kernel_size)
        pads = []
        for k, d in zip(mod.kernel_size, mod.dilation):
            total = d * (k - 1)
            if total % 2:
                raise UnsupportedOpError(
                    f"node '{node.name}' uses padding='same' with an even kernel, which pads asymmetrically; pad explicitly"
                )
            pads.append(total // 2)
        return tuple(pads)
    return tuple(mod.padding)


def _batchnorm(em, node, x, mod, name) -> str:
    if not mod.track_running_stats or mod.running_mean is None:
        raise UnsupportedOpError(
            f"node '{node.name}' is a BatchNorm without running statistics; set track_running_stats=True"
        )
    var = mod.running_var.detach().double().numpy()
    mean = mod.running_mean.detach().double().numpy()
    gamma = _np(mod.weight) if mod.affine else np.ones_like(var)
    beta = _np(mod.bias) if mod.affine else np.zeros_like(var)
    scale = gamma / np.sqrt(var + mod.eps)
    shift = beta - mean * scale
    ndim = len(_input_shape(node))
    bshape = (1, -1) + (1,) * (ndim - 1)
    return em.affine(name, x, scale.reshape(bshape), shift.reshape(bshape))
