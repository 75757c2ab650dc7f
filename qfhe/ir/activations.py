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

    Examples
    --------
    >>> ACTIVATIONS["softplus"].params
    ('beta', 'threshold')
    """

    name: str
    functional: object
    module: type
    params: tuple[str, ...] = ()


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
    ActivationDef("square", torch.square, None),  # CKKS-friendly: its degree-2 fit is exact
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
