"""Registry of elementwise univariate activations.

An activation is stored in the IR as ``activation {fn: name, params: {...}}`` and evaluated by the
torch functional of the same name on float64 tensors, so the reference semantics are exactly
torch's (GELU ``approximate``, LeakyReLU slope, Softplus beta/threshold, ...). The frontend maps
every torch form (module, functional, ``torch.*``, Tensor method, in-place variant) to the entry.

Adding an activation is one line in ``_REGISTRY`` below: the torch functional, the module class
and the names of the module attributes that are also the functional's keyword arguments.

Examples
--------
>>> import numpy as np
>>> apply_activation("leaky_relu", {"negative_slope": 0.1}, np.array([-1.0, 2.0]))
array([-0.1,  2. ])
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ActivationDef:
    """How to recognise and evaluate one activation.

    Parameters
    ----------
    name : str
        Canonical name stored in the IR.
    functional : callable
        torch function ``f(input, **params)`` evaluating it.
    module : type or None
        The ``torch.nn`` module class (None for functions torch has no module for, e.g. ``square``).
    params : tuple of str
        Names of module attributes that are keyword arguments of ``functional``.
    defaults : tuple of (str, object)
        Parameter defaults for functions torch has no module for (a module's own defaults are
        read from a fresh instance).
    aliases : tuple
        Other callables or method names with the same meaning (``torch.clip``, ``operator.neg``).

    Examples
    --------
    >>> ACTIVATIONS["softplus"].params
    ('beta', 'threshold')
    """

    name: str
    functional: object
    module: type
    params: tuple[str, ...] = ()
    defaults: tuple = ()
    aliases: tuple = ()


def _prelu(x: torch.Tensor, weight) -> torch.Tensor:
    # The learned slopes are stored broadcastable over a batched value, (1, C, 1, ...), like an
    # affine's per-channel scale, so one rule serves every rank.
    return torch.where(x >= 0, x, torch.as_tensor(np.asarray(weight, np.float64)) * x)


def _expr(x: torch.Tensor, program: list) -> torch.Tensor:
    from qfhe.ir.expr_program import evaluate_program

    return evaluate_program(x, program)


def _rrelu(x: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    return F.rrelu(x, lower, upper, training=False)  # eval: the fixed slope (lower + upper) / 2


_REGISTRY = [
    ActivationDef("relu", F.relu, nn.ReLU),
    ActivationDef("relu6", F.relu6, nn.ReLU6),
    ActivationDef("leaky_relu", F.leaky_relu, nn.LeakyReLU, ("negative_slope",)),
    ActivationDef("gelu", F.gelu, nn.GELU, ("approximate",)),
    ActivationDef("silu", F.silu, nn.SiLU),
    ActivationDef("sigmoid", torch.sigmoid, nn.Sigmoid),
    ActivationDef("tanh", torch.tanh, nn.Tanh),
    ActivationDef("elu", F.elu, nn.ELU, ("alpha",)),
    ActivationDef("celu", F.celu, nn.CELU, ("alpha",)),
    ActivationDef("selu", F.selu, nn.SELU),
    ActivationDef("hardswish", F.hardswish, nn.Hardswish),
    ActivationDef("hardsigmoid", F.hardsigmoid, nn.Hardsigmoid),
    ActivationDef("hardtanh", F.hardtanh, nn.Hardtanh, ("min_val", "max_val")),
    ActivationDef("softplus", F.softplus, nn.Softplus, ("beta", "threshold")),
    ActivationDef("mish", F.mish, nn.Mish),
    ActivationDef("softsign", F.softsign, nn.Softsign),
    ActivationDef("logsigmoid", F.logsigmoid, nn.LogSigmoid),
    ActivationDef("tanhshrink", F.tanhshrink, nn.Tanhshrink),
    ActivationDef("hardshrink", F.hardshrink, nn.Hardshrink, ("lambd",)),
    ActivationDef("softshrink", F.softshrink, nn.Softshrink, ("lambd",)),
    ActivationDef("threshold", F.threshold, nn.Threshold, ("threshold", "value")),
    ActivationDef("rrelu", _rrelu, nn.RReLU, ("lower", "upper"), aliases=(F.rrelu, "rrelu", "rrelu_")),
    ActivationDef("prelu", _prelu, None, ("weight",)),  # per-channel slopes; see the frontend's PReLU
    ActivationDef(
        "clamp",
        torch.clamp,
        None,
        ("min", "max"),
        (("min", None), ("max", None)),
        aliases=(torch.clip, "clip", "clip_"),
    ),
    ActivationDef("pow", torch.pow, None, ("exponent",), (("exponent", None),), aliases=(operator.pow,)),
    ActivationDef("square", torch.square, None),  # CKKS-friendly: its degree-2 fit is exact
    ActivationDef("abs", torch.abs, None, aliases=(operator.abs, torch.absolute, "absolute")),
    ActivationDef("neg", torch.neg, None, aliases=(operator.neg, torch.negative, "negative")),
    ActivationDef("sign", torch.sign, None),
    ActivationDef("exp", torch.exp, None),
    ActivationDef("exp2", torch.exp2, None),
    ActivationDef("expm1", torch.expm1, None),
    ActivationDef("log", torch.log, None),
    ActivationDef("log2", torch.log2, None),
    ActivationDef("log10", torch.log10, None),
    ActivationDef("log1p", torch.log1p, None),
    ActivationDef("sqrt", torch.sqrt, None),
    ActivationDef("rsqrt", torch.rsqrt, None),
    ActivationDef("reciprocal", torch.reciprocal, None),
    ActivationDef("erf", torch.erf, None),
    ActivationDef("erfc", torch.erfc, None),
    ActivationDef("sin", torch.sin, None),
    ActivationDef("cos", torch.cos, None),
    ActivationDef("atan", torch.atan, None),
    ActivationDef("sinh", torch.sinh, None),
    ActivationDef("cosh", torch.cosh, None),
    ActivationDef("asinh", torch.asinh, None),
    ActivationDef("floor", torch.floor, None),
    ActivationDef("ceil", torch.ceil, None),
    ActivationDef("round", torch.round, None),
    # comparisons, masks and torch.where on one tensor: built by qfhe.frontend.expressions
    ActivationDef("expr", _expr, None, ("program",), (("program", None),)),
    ActivationDef("trunc", torch.trunc, None),
]

ACTIVATIONS: dict[str, ActivationDef] = {a.name: a for a in _REGISTRY}


def apply_activation(fn: str, params: dict, x: np.ndarray) -> np.ndarray:
    """Evaluate activation ``fn`` with ``params`` on a float array, in float64.

    Examples
    --------
    >>> apply_activation("relu", {}, np.array([-1.0, 3.0]))
    array([0., 3.])
    """
    a = ACTIVATIONS[fn]
    with torch.no_grad():
        out = a.functional(torch.as_tensor(np.asarray(x, dtype=np.float64)), **params)
    return out.numpy()


def array_params(params: dict) -> list[np.ndarray]:
    """The array-valued parameters of an activation (per-channel PReLU slopes), which make its
    table differ per channel.

    Examples
    --------
    >>> [a.shape for a in array_params({"weight": np.ones((1, 3))})], array_params({"lambd": 0.5})
    ([(1, 3)], [])
    """
    return [v for v in params.values() if isinstance(v, np.ndarray) and v.ndim]
