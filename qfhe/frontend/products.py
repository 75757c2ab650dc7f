"""Products of two encrypted tensors: ``x * y`` and ``x @ y``.

A product of two functions of the same tensor (``x * x``, ``x * (x > 0)``) is elementwise in
that tensor: one table lookup (:mod:`qfhe.frontend.expressions`). Otherwise both operands are
quantized and multiplied encrypted (concrete's multiplication, two lookups per product), and the
result is an accumulator like a linear layer's. Operands are taken as whole one-sample values, so
``x @ x.T`` on a batch of vectors (which moves the sample axis) is each sample's squared norm.

Examples
--------
>>> import torch
>>> from qfhe.frontend.torch_fx import import_torch
>>> class Gram(torch.nn.Module):
...     def forward(self, x):
...         return x @ x.transpose(1, 2)
>>> import_torch(Gram(), torch.zeros(2, 3, 4)).ops()
['input', 'gather', 'matmul']
>>> class Norms(torch.nn.Module):
...     def forward(self, x):
...         return x @ x.T      # on a batch of vectors: moves the sample axis
>>> import_torch(Norms(), torch.zeros(2, 4)).ops()
['input', 'gather', 'reshape', 'matmul', 'reshape']
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.fx

from qfhe.errors import UnsupportedOpError
from qfhe.frontend.expressions import as_expr, merge
from qfhe.frontend.lowering import Emitter
from qfhe.frontend.shape_ops import full_view, keeps_batch_axis, sample_shape

MATMUL = {operator.matmul, torch.matmul, torch.mm, torch.bmm, "matmul", "mm", "bmm", "__matmul__"}


def encrypted_product(em: Emitter, env: dict, node: torch.fx.Node, a, b, value_of) -> str:
    """IR for ``a * b`` with both operands encrypted.

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import import_torch
    >>> class P(torch.nn.Module):
    ...     def forward(self, x, y):
    ...         return x * y + x * x
    >>> import_torch(P(), (torch.zeros(2, 3), torch.zeros(2, 3))).ops()
    ['input', 'input', 'mul', 'activation', 'add']
    """
    ea, eb = as_expr(em, env, a, node), as_expr(em, env, b, node)
    if ea.source == eb.source:  # a function of one tensor: one lookup
        return merge(node.name, em, [ea, eb], "mul")
    va, vb = value_of(env, a, node), value_of(env, b, node)
    if keeps_batch_axis(a) and keeps_batch_axis(b) and keeps_batch_axis(node) and sample_shape(a) == sample_shape(b):
        return em.mul(node.name, va, vb)
    rank = max(len(a.meta["qfhe_shape1"]), len(b.meta["qfhe_shape1"]))
    y = em.mul(f"{node.name}_full", full_view(em, node, a, va, rank=rank), full_view(em, node, b, vb, rank=rank))
    return em.reshape(node.name, y, sample_shape(node))


def matmul(em: Emitter, env: dict, node: torch.fx.Node, value_of) -> str:
    """IR for ``a @ b``: a linear layer when ``b`` is a constant matrix, else an encrypted product.

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import import_torch
    >>> class M(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x @ torch.ones(3, 2)
    >>> import_torch(M(), torch.zeros(2, 3)).ops()
    ['input', 'gemm']
    """
    a, b = node.args[0], node.args[1]
    cb = env.get(getattr(b, "name", None))
    if hasattr(cb, "value") and not isinstance(cb, str) and np.ndim(cb.value) == 2:
        return em.gemm(node.name, value_of(env, a, node), np.asarray(cb.value, np.float64).T, None)
    va, vb = value_of(env, a, node), value_of(env, b, node)  # raises for other constants
    sa, sb = a.meta["qfhe_shape1"], b.meta["qfhe_shape1"]
    pa, pb = sample_shape(a), sample_shape(b)
    if all(keeps_batch_axis(n) for n in (a, b, node)) and len(pa) == len(pb) >= 2:
        return em.matmul(node.name, va, vb, sa[-1])  # per-sample matrices: numpy's batched matmul
    if len(sa) < 2 or len(sb) < 2:
        raise UnsupportedOpError(
            f"node '{node.name}' multiplies a vector; qfhe's encrypted matmul needs matrices: "
            "unsqueeze the vector to a (1, n) or (n, 1) matrix"
        )
    rank = max(len(sa), len(sb))
    y = em.matmul(
        f"{node.name}_full", full_view(em, node, a, va, rank=rank), full_view(em, node, b, vb, rank=rank), sa[-1]
    )
    return em.reshape(node.name, y, sample_shape(node))
