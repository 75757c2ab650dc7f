"""Reductions over dimensions: ``sum``/``mean`` are linear (a matrix product with a row of ones,
or of ``1/k``), ``amax``/``amin`` are a max (min) pooling over the reduced positions, so they use
the lowerings the IR already has.

The reduced dimensions are first gathered to the end (one ``gather``: a pure rearrangement on
the server), then the last axis is reduced.

Examples
--------
>>> import torch
>>> from qfhe.frontend.torch_fx import import_torch
>>> class M(torch.nn.Module):
...     def forward(self, x):
...         return x.sum(1)
>>> import_torch(M(), torch.zeros(2, 3, 4)).ops()
['input', 'gather', 'reshape', 'gemm', 'reshape']
"""

from __future__ import annotations

import operator

import numpy as np
import torch.fx

from qfhe.errors import UnsupportedOpError
from qfhe.frontend.lowering import Emitter

#: Method / function names handled here, and whether they are linear.
REDUCTIONS = {"sum": True, "mean": True, "amax": False, "amin": False}
_FUNCTIONS = {torch.sum: "sum", torch.mean: "mean", torch.amax: "amax", torch.amin: "amin"}


def reduction_kind(node: torch.fx.Node) -> str | None:
    """``"sum"``, ``"mean"``, ``"amax"``, ``"amin"`` for a reduction node, else None.

    Examples
    --------
    >>> reduction_kind(next(iter(torch.fx.symbolic_trace(torch.nn.Identity()).graph.nodes))) is None
    True
    """
    if node.op == "call_method" and node.target in REDUCTIONS:
        return node.target
    if node.op == "call_function":
        return _FUNCTIONS.get(node.target)
    return None


def _dims(node: torch.fx.Node, ndim: int) -> tuple[tuple[int, ...], bool]:
    """The reduced per-sample axes (0-based, after the batch axis) and ``keepdim``."""
    args, kwargs = list(node.args[1:]), dict(node.kwargs)
    dim = kwargs.pop("dim", args.pop(0) if args else None)
    keepdim = bool(kwargs.pop("keepdim", args.pop(0) if args else False))
    kwargs.pop("dtype", None)
    if kwargs or args:
        raise UnsupportedOpError(
            f"node '{node.name}' ({node.target}) has arguments qfhe does not support: {sorted(kwargs) or args}"
        )
    if dim is None:
        raise UnsupportedOpError(
            f"node '{node.name}' reduces over every axis, the batch axis included; give the "
            "sample axes, e.g. x.sum(dim=(1, 2))"
        )
    dims = tuple(d % (ndim + 1) for d in (dim if isinstance(dim, (tuple, list)) else (dim,)))
    if 0 in dims:
        raise UnsupportedOpError(
            f"node '{node.name}' reduces over the batch axis (dim 0); qfhe runs one sample at a "
            "time, so only the sample axes (dim >= 1) can be reduced"
        )
    return tuple(sorted(d - 1 for d in dims)), keepdim


def reduction(em: Emitter, node: torch.fx.Node, x: str, shape: tuple) -> str:
    """IR for a ``sum``/``mean``/``amax``/``amin`` over sample axes of the encrypted value ``x``.

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import import_torch
    >>> class M(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x.amax(dim=-1, keepdim=True)
    >>> import_torch(M(), torch.zeros(2, 3, 4)).ops()
    ['input', 'reshape', 'maxpool', 'reshape']
    """
    kind = reduction_kind(node)
    src = node.args[0]
    in_shape = tuple(src.meta["qfhe_shape"][1:])
    axes, _ = _dims(node, len(in_shape))
    kept = [a for a in range(len(in_shape)) if a not in axes]
    k = int(np.prod([in_shape[a] for a in axes]))
    rows = int(np.prod([in_shape[a] for a in kept])) if kept else 1
    if list(axes) != list(range(len(in_shape)))[-len(axes) :]:  # bring the reduced axes to the end
        index = np.arange(int(np.prod(in_shape))).reshape(in_shape).transpose(kept + list(axes)).reshape(rows, k)
        x = em.gather(f"{node.name}_order", x, index)
    if kind in ("sum", "mean"):
        flat = em.reshape(f"{node.name}_flat", x, (rows, k))
        weight = np.full((1, k), 1.0 if kind == "sum" else 1.0 / k)
        y = em.gemm(f"{node.name}_reduce", flat, weight, None)
        return em.reshape(node.name, y, tuple(shape))
    grid = em.reshape(f"{node.name}_grid", x, (rows, 1, k))
    attrs = {"kernel": (1, k), "stride": (1, k), "padding": (0, 0), "dilation": (1, 1), "ceil_mode": False}
    y = em.maxpool(f"{node.name}_pool", grid, attrs | ({"mode": "min"} if kind == "amin" else {}))
    return em.reshape(node.name, y, tuple(shape))


def is_reduction(node: torch.fx.Node) -> bool:
    """Whether ``node`` is a reduction this module lowers (``max``/``min`` with a dim return two
    tensors and are refused by the caller with a hint to use ``amax``/``amin``).

    Examples
    --------
    >>> is_reduction(next(iter(torch.fx.symbolic_trace(torch.nn.Identity()).graph.nodes)))
    False
    """
    return reduction_kind(node) is not None and node.target is not operator.getitem
