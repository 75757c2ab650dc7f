"""Shape operations: every torch op that only moves values becomes a ``reshape``, a ``concat``
or a ``gather`` whose index map comes from running the op itself on numbered positions.

A value's IR shape is one sample's shape. Most values keep axis 0 as the sample axis; a model may
also move it (``x.view(-1, 1)``): such a value is then the whole one-sample value, and the model
is compiled per sample (its outputs for a batch are stacked along a new axis 0).

Examples
--------
>>> import torch
>>> from qfhe.frontend.torch_fx import import_torch
>>> class T(torch.nn.Module):
...     def forward(self, x):
...         return x.transpose(1, 2)[:, ::2]
>>> g = import_torch(T(), torch.zeros(2, 3, 4))
>>> g.ops(), g.nodes[-1].attrs["index"].tolist()
(['input', 'gather'], [[0, 4, 8], [2, 6, 10]])
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F

from qfhe.errors import UnsupportedOpError
from qfhe.frontend.lowering import Emitter

RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "view_as", "reshape_as", "ravel"}
RESHAPE_FUNCS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.ravel}
CAT = {torch.cat, torch.concat, torch.concatenate}
STACK = {torch.stack}
#: Ops that rearrange values (and F.pad, which adds a constant): a gather with a computed index.
GATHER_METHODS = {
    "transpose",
    "permute",
    "t",
    "expand",
    "expand_as",
    "repeat",
    "tile",
    "narrow",
    "flip",
    "roll",
    "movedim",
    "moveaxis",
    "swapaxes",
    "swapdims",
    "select",
    "chunk",
    "split",
    "unbind",
    "index_select",
    "tensor_split",
    "__getitem__",
}
GATHER_FUNCS = {
    operator.getitem,
    torch.transpose,
    torch.permute,
    torch.t,
    torch.narrow,
    torch.flip,
    torch.roll,
    torch.movedim,
    torch.moveaxis,
    torch.swapaxes,
    torch.swapdims,
    torch.select,
    torch.tile,
    torch.chunk,
    torch.split,
    torch.unbind,
    torch.index_select,
    torch.tensor_split,
    F.pad,
}


def keeps_batch_axis(node: torch.fx.Node) -> bool:
    """Whether the node's value keeps axis 0 as the sample axis (its shapes for two samples and
    for one differ only there; see :func:`qfhe.frontend.torch_fx.record_outputs`).

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import record_outputs, trace
    >>> gm = trace(torch.nn.Sequential(torch.nn.Linear(3, 2)))
    >>> _ = record_outputs(gm, torch.zeros(2, 3)); [keeps_batch_axis(n) for n in gm.graph.nodes][:2]
    [True, True]
    """
    s2, s1 = node.meta.get("qfhe_shape"), node.meta.get("qfhe_shape1")
    return s2 is not None and s1 is not None and len(s2) >= 1 and s2[0] == 2 and s1[0] == 1 and s2[1:] == s1[1:]


def sample_shape(node: torch.fx.Node) -> tuple | None:
    """The IR shape of the node's value: one sample's, without the sample axis, or the whole
    one-sample value when the model moved the sample axis (None for non-tensors).

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import record_outputs, trace
    >>> gm = trace(torch.nn.Sequential(torch.nn.Linear(3, 2)))
    >>> _ = record_outputs(gm, torch.zeros(2, 3)); sample_shape(list(gm.graph.nodes)[1])
    (2,)
    """
    s1 = node.meta.get("qfhe_shape1")
    if s1 is None:
        return None
    return s1[1:] if keeps_batch_axis(node) else s1


class Pieces:
    """The index maps of an op that returns several tensors (``chunk``, ``split``, ``unbind``),
    waiting for the ``getitem`` that picks one.

    Examples
    --------
    >>> Pieces("x", (torch.zeros(1, 2),)).source
    'x'
    """

    def __init__(self, source: str, indices: tuple):
        self.source, self.indices = source, indices


def is_shape_op(node: torch.fx.Node) -> bool:
    """Whether :func:`shape_op` handles the node.

    Examples
    --------
    >>> g = torch.fx.symbolic_trace(torch.nn.Flatten())
    >>> [is_shape_op(n) for n in g.graph.nodes]
    [False, True, False]
    """
    t = node.target
    if node.op == "call_method":
        return t in RESHAPE_METHODS or t in GATHER_METHODS
    if t is getattr:
        return node.args[1] in ("T", "mT")
    return node.op == "call_function" and (t in RESHAPE_FUNCS or t in CAT or t in STACK or t in GATHER_FUNCS)


def shape_op(em: Emitter, env: dict, node: torch.fx.Node, value_of, describe) -> object:
    """Emit the IR for a shape op; ``value_of(env, arg, node)`` gives an encrypted argument's IR value.

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import import_torch
    >>> class S(torch.nn.Module):
    ...     def forward(self, x):
    ...         a, b = x.chunk(2, dim=1)
    ...         return torch.stack([b, a], dim=1)
    >>> import_torch(S(), torch.zeros(2, 4)).ops()
    ['input', 'gather', 'gather', 'reshape', 'reshape', 'concat', 'reshape']
    """
    t, args = node.target, list(node.args)
    shape = sample_shape(node)
    if (node.op == "call_method" and t in RESHAPE_METHODS) or t in RESHAPE_FUNCS:
        return em.reshape(node.name, value_of(env, args[0], node), shape)
    if t in CAT or t in STACK:
        return _cat(em, env, node, value_of, stack=t in STACK)
    src = args[0]
    if t is operator.getitem and isinstance(env.get(getattr(src, "name", None)), Pieces):
        pieces = env[src.name]
        return _gather(em, node, pieces.source, pieces.indices[args[1]], shape, None)
    if not (isinstance(src, torch.fx.Node) and isinstance(env.get(src.name), str)):
        raise UnsupportedOpError(
            f"node '{node.name}' ({describe(node)}) rearranges a value that is not an encrypted "
            "tensor; qfhe can only move encrypted values"
        )
    fill = None
    kwargs = dict(node.kwargs)
    if t is F.pad:
        mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
        if mode != "constant":
            raise UnsupportedOpError(f"node '{node.name}' pads with mode='{mode}'; only mode='constant' is supported")
        fill = float(kwargs.pop("value", args[3] if len(args) > 3 else 0.0) or 0.0)
        args = args[:2]
        kwargs["value"] = -1.0  # marks the padded positions in the index map
    index = _run_on_positions(env, node, src, args, kwargs)
    if isinstance(index, (tuple, list)):
        return Pieces(env[src.name], tuple(index))
    return _gather(em, node, env[src.name], index, shape, fill)


def _gather(em: Emitter, node: torch.fx.Node, x: str, index: torch.Tensor, shape: tuple, fill) -> str:
    idx = index.detach().to(torch.int64).numpy().reshape(shape)
    return em.gather(node.name, x, idx, fill if (idx < 0).any() else None)


def _positions(node: torch.fx.Node) -> torch.Tensor:
    s1 = node.meta["qfhe_shape1"]
    return torch.arange(int(np.prod(s1)), dtype=torch.float64).reshape(s1)


def _run_on_positions(env: dict, node: torch.fx.Node, src: torch.fx.Node, args: list, kwargs: dict):
    """Run the node's op on a one-sample tensor holding each value's position: its output tells
    where each output value comes from."""

    def arg(a):
        if isinstance(a, torch.fx.Node):
            if a is src:
                return _positions(a)
            v = env.get(a.name)
            if hasattr(v, "value") and not isinstance(v, str):  # a folded constant
                return torch.as_tensor(v.value)
            if isinstance(v, str):  # another encrypted tensor, read for its shape only (expand_as)
                return torch.zeros(a.meta["qfhe_shape1"], dtype=torch.float64)
            return a.meta.get("qfhe_b1")  # shape maths, as computed for one sample
        return a

    args = torch.fx.node.map_aggregate(args, arg)
    kwargs = torch.fx.node.map_aggregate(kwargs, arg)
    with torch.no_grad():
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        return node.target(*args, **kwargs)


def full_view(
    em: Emitter, node: torch.fx.Node, a: torch.fx.Node, value: str, extra_axis: int | None = None, rank: int = 0
) -> str:
    """``value`` (the IR value of fx node ``a``) as its whole one-sample value, sample axis
    included, optionally with a new axis at ``extra_axis`` and leading axes of size 1 up to ``rank``.
    Ops that combine values the way torch does on one sample (cat, stack, broadcasting products)
    work on such views: the IR axis is then torch's axis plus one.

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import record_outputs, trace
    >>> gm = trace(torch.nn.Sequential(torch.nn.Flatten()))
    >>> _ = record_outputs(gm, torch.zeros(2, 3)); em = Emitter(); x = em.input("x", (3,))
    >>> a = list(gm.graph.nodes)[0]
    >>> em.node(full_view(em, a, a, x, rank=3)).attrs["shape"]
    (1, 1, 3)
    """
    full = list(a.meta["qfhe_shape1"])
    if extra_axis is not None:
        full.insert(extra_axis, 1)
    full = [1] * (rank - len(full)) + full
    if tuple(full) == tuple(sample_shape(a)):
        return value  # already whole (the model moved the sample axis)
    return em.reshape(f"{node.name}_{a.name}_view", value, tuple(full))


def _cat(em: Emitter, env: dict, node: torch.fx.Node, value_of, stack: bool) -> str:
    args = list(node.args)
    tensors = args[0]
    dim = node.kwargs.get("dim", args[1] if len(args) > 1 else 0)
    rank = len(tensors[0].meta["qfhe_shape1"]) + (1 if stack else 0)
    dim = dim + rank if dim < 0 else dim
    ins = [value_of(env, a, node) for a in tensors]
    if not stack and dim >= 1 and keeps_batch_axis(node) and all(keeps_batch_axis(a) for a in tensors):
        return em.concat(node.name, ins, dim)
    # Work on whole one-sample values: the IR axis is torch's axis plus the IR's own sample axis.
    views = [full_view(em, node, a, v, dim if stack else None) for a, v in zip(tensors, ins)]
    cat = em.concat(f"{node.name}_cat", views, dim + 1)
    return em.reshape(node.name, cat, sample_shape(node))
