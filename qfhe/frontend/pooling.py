"""Pooling layers: average pooling as a convolution (or a matrix for uneven adaptive windows),
max pooling as the IR's ``maxpool``. 1-D pools run as 2-D pools of height 1, like 1-D convolutions.

Examples
--------
>>> import torch
>>> from qfhe.frontend.torch_fx import import_torch
>>> import_torch(torch.nn.Sequential(torch.nn.MaxPool2d(2)), torch.zeros(2, 1, 4, 4)).ops()
['input', 'maxpool']
"""

from __future__ import annotations

import numpy as np
import torch.fx
import torch.nn.functional as F
from torch import nn

from qfhe.errors import UnsupportedOpError
from qfhe.frontend.lowering import Emitter

POOL_MODULES = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.MaxPool1d, nn.MaxPool2d)
FUNCTION_ARGS = {
    F.avg_pool1d: ("avg", ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"]),
    F.avg_pool2d: ("avg", ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]),
    F.adaptive_avg_pool1d: ("adaptive", ["output_size"]),
    F.adaptive_avg_pool2d: ("adaptive", ["output_size"]),
    F.max_pool1d: ("max", ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]),
    F.max_pool2d: ("max", ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]),
    # F.max_pool2d(..., return_indices=True) dispatches here
    F.max_pool1d_with_indices: ("max", ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]),
    F.max_pool2d_with_indices: ("max", ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]),
}
POOL_FUNCTIONS = set(FUNCTION_ARGS)


def _in_shape(node: torch.fx.Node) -> tuple:
    return tuple(node.args[0].meta["qfhe_shape"][1:])


def _tuple(v, n: int) -> tuple:
    return (v,) * n if isinstance(v, int) else tuple(v)


def pool_module(em: Emitter, node: torch.fx.Node, x: str, mod: nn.Module, shape, name: str) -> str:
    """IR for a pooling module.

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import import_torch
    >>> import_torch(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2)), torch.zeros(2, 1, 5, 5)).ops()
    ['input', 'reshape', 'gemm', 'reshape']
    """
    if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)):
        if mod.return_indices:
            raise UnsupportedOpError(
                f"node '{node.name}' ({type(mod).__name__}) returns indices; use return_indices=False"
            )
        return maxpool(em, node, x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode, shape, name)
    if isinstance(mod, (nn.AvgPool1d, nn.AvgPool2d)):
        return avgpool(
            em,
            node,
            x,
            mod.kernel_size,
            mod.stride,
            mod.padding,
            mod.ceil_mode,
            mod.count_include_pad,
            getattr(mod, "divisor_override", None),
            shape,
            name,
        )
    return adaptive_avgpool(em, node, x, mod.output_size, shape, name)


def pool_function(em: Emitter, node: torch.fx.Node, x: str, shape) -> str:
    """IR for ``F.max_pool2d``, ``F.avg_pool1d``, ``F.adaptive_avg_pool2d``, ...

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import import_torch
    >>> class P(torch.nn.Module):
    ...     def forward(self, x):
    ...         return F.max_pool1d(x, 2)
    >>> import_torch(P(), torch.zeros(2, 1, 4)).ops()
    ['input', 'reshape', 'maxpool', 'reshape']
    """
    kind, names = FUNCTION_ARGS[node.target]
    kw = dict(zip(names, node.args[1:]))
    kw.update(node.kwargs)
    if kind == "max":
        if kw.get("return_indices") or node.target in (F.max_pool1d_with_indices, F.max_pool2d_with_indices):
            raise UnsupportedOpError(f"node '{node.name}' returns max pooling indices; use return_indices=False")
        return maxpool(
            em,
            node,
            x,
            kw["kernel_size"],
            kw.get("stride"),
            kw.get("padding", 0),
            kw.get("dilation", 1),
            kw.get("ceil_mode", False),
            shape,
        )
    if kind == "avg":
        return avgpool(
            em,
            node,
            x,
            kw["kernel_size"],
            kw.get("stride"),
            kw.get("padding", 0),
            kw.get("ceil_mode", False),
            kw.get("count_include_pad", True),
            kw.get("divisor_override"),
            shape,
        )
    return adaptive_avgpool(em, node, x, kw["output_size"], shape)


def avgpool(em, node, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor, shape, name=None) -> str:
    """Average pooling as a depthwise convolution with weights 1/k (exact as ±1 integer weights).

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import import_torch
    >>> import_torch(torch.nn.Sequential(torch.nn.AvgPool1d(2)), torch.zeros(2, 3, 4)).ops()
    ['input', 'reshape', 'conv', 'reshape']
    """
    in_shape = _in_shape(node)
    dims = len(in_shape) - 1
    kernel = _tuple(kernel, dims)
    stride = kernel if stride is None or stride == [] else _tuple(stride, dims)
    padding = _tuple(padding, dims)
    if ceil_mode:
        raise UnsupportedOpError(f"node '{node.name}' uses average pooling with ceil_mode=True; use ceil_mode=False")
    if any(padding) and not count_include_pad:
        raise UnsupportedOpError(
            f"node '{node.name}' uses average pooling with count_include_pad=False and padding; use count_include_pad=True"
        )
    channels = in_shape[0]
    weight = np.full((channels, 1) + kernel, 1.0 / (divisor or int(np.prod(kernel))))
    return em.conv(name or node.name, x, weight, None, stride, padding, (1,) * dims, channels, in_shape, shape)


def adaptive_avgpool(em, node, x, output_size, shape, name=None) -> str:
    """Adaptive average pooling: a convolution when the windows are even, else a matrix over the
    flattened positions (torch's windows ``[floor(i·n/o), ceil((i+1)·n/o))``).

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import import_torch
    >>> import_torch(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((1, 2))), torch.zeros(2, 1, 4, 4)).ops()
    ['input', 'conv']
    """
    in_shape = _in_shape(node)
    c, spatial = in_shape[0], in_shape[1:]
    out = tuple(o or n for o, n in zip(_tuple(output_size, len(spatial)), spatial))
    if all(n % o == 0 for n, o in zip(spatial, out)):
        k = tuple(n // o for n, o in zip(spatial, out))
        return avgpool(em, node, x, k, k, 0, False, True, None, shape, name)
    axes = []
    for n, o in zip(spatial, out):
        m = np.zeros((o, n))
        for i in range(o):
            lo, hi = (i * n) // o, -(-((i + 1) * n) // o)
            m[i, lo:hi] = 1.0 / (hi - lo)
        axes.append(m)
    matrix = axes[0] if len(axes) == 1 else np.kron(axes[0], axes[1])  # C-order: the last axis varies fastest
    name = name or node.name
    flat = em.reshape(f"{name}_flat", x, (c, int(np.prod(spatial))))
    y = em.gemm(f"{name}_pool", flat, matrix, None)
    return em.reshape(name, y, shape)


def maxpool(em, node, x, kernel, stride, padding, dilation, ceil_mode, shape, name=None) -> str:
    """Max pooling (torch semantics), as the IR's 2-D ``maxpool``.

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import import_torch
    >>> g = import_torch(torch.nn.Sequential(torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)), torch.zeros(2, 1, 6, 6))
    >>> g.nodes[-1].attrs["kernel"], g.nodes[-1].attrs["padding"]
    ((3, 3), (1, 1))
    """
    in_shape = _in_shape(node)
    dims = len(in_shape) - 1
    kernel = _tuple(kernel, dims)
    stride = kernel if stride is None or stride == [] else _tuple(stride, dims)
    attrs = {
        "kernel": kernel,
        "stride": stride,
        "padding": _tuple(padding, dims),
        "dilation": _tuple(dilation, dims),
        "ceil_mode": bool(ceil_mode),
    }
    name = name or node.name
    if dims == 2:
        return em.maxpool(name, x, attrs)
    c, length = in_shape
    x = em.reshape(f"{name}_to2d", x, (c, 1, length))
    y = em.maxpool(
        name,
        x,
        {k: (1, v[0]) if k != "ceil_mode" else v for k, v in attrs.items()} | {"padding": (0, attrs["padding"][0])},
    )
    return em.reshape(f"{name}_to1d", y, shape)
