"""Helpers that build float IR nodes for the torch frontend (shared by later frontends).

Examples
--------
>>> import numpy as np
>>> em = Emitter(); x = em.input("x", (3,))
>>> y = em.gemm("fc", x, np.ones((2, 3)), None)
>>> em.graph([y]).ops()
['input', 'gemm']
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn  # noqa: F401  (docstring examples)

from qfhe.errors import UnsupportedOpError
from qfhe.ir.activations import ACTIVATIONS, ActivationDef
from qfhe.ir.graph import Graph, Node, unique_name
from qfhe.passes.dce import dce


class Emitter:
    """Accumulates float IR nodes in order and returns the value name of each.

    Examples
    --------
    >>> em = Emitter(); x = em.input("x", (2,))
    >>> em.activation("r", x, "relu", {})
    'r'
    """

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._names: set[str] = set()

    def _add(self, name: str, op: str, inputs: list[str], attrs: dict) -> str:
        name = unique_name(name, self._names)
        self.nodes.append(Node(name, op, inputs, attrs))
        return name

    def node(self, name: str) -> Node | None:
        """The node emitted under ``name`` (None for an unknown name).

        Examples
        --------
        >>> em = Emitter(); em.node(em.input("x", (2,))).op
        'input'
        """
        return next((n for n in reversed(self.nodes) if n.name == name), None)

    def graph(self, outputs: list[str]) -> Graph:
        """Return the graph built so far, without nodes no output reads (steps an elementwise
        expression absorbed).

        Examples
        --------
        >>> em = Emitter(); em.graph([em.input("x", (2,))]).ops()
        ['input']
        """
        return dce(Graph(self.nodes, outputs)).verify("frontend")

    def input(self, name: str, shape) -> str:
        """Add the graph input with per-sample ``shape``.

        Examples
        --------
        >>> Emitter().input("x", (3, 4))
        'x'
        """
        return self._add(name, "input", [], {"shape": tuple(shape), "dtype": "float"})

    def gemm(self, name, x, weight, bias, **extra) -> str:
        """Add ``x @ weight.T + bias`` (``extra`` attrs, e.g. QAT integer weights, are kept).

        Examples
        --------
        >>> em = Emitter(); em.gemm("fc", em.input("x", (2,)), np.ones((1, 2)), None)
        'fc'
        """
        return self._add(name, "gemm", [x], {"weight": weight, "bias": bias, **extra})

    def conv(self, name, x, weight, bias, stride, padding, dilation, groups, in_shape, out_shape, **extra) -> str:
        """Add a 2-D convolution; a 1-D one is lowered to 2-D with height 1 between reshapes.

        concrete-python 2.11 rejects 1-D convolutions, hence the lowering.

        Examples
        --------
        >>> em = Emitter(); x = em.input("x", (1, 5))
        >>> em.conv("c", x, np.ones((2, 1, 3)), None, (1,), (0,), (1,), 1, (1, 5), (2, 3))
        'c_to1d'
        """
        attrs = {"weight": weight, "bias": bias, "groups": int(groups), **extra}
        if weight.ndim == 3:
            if "weight_int" in extra:
                attrs["weight_int"] = extra["weight_int"][:, :, None, :]
            c, length = in_shape
            x = self._add(f"{name}_to2d", "reshape", [x], {"shape": (c, 1, length)})
            attrs.update(
                weight=weight[:, :, None, :], stride=(1, stride[0]), padding=(0, padding[0]), dilation=(1, dilation[0])
            )
            y = self._add(name, "conv", [x], attrs)
            return self._add(f"{name}_to1d", "reshape", [y], {"shape": tuple(out_shape)})
        attrs.update(stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation))
        return self._add(name, "conv", [x], attrs)

    def fakequant(self, name, x, attrs) -> str:
        """Add a fixed quantize-dequantize (``scale, zero_point, qmin, qmax, n_bits``).

        Examples
        --------
        >>> em = Emitter(); q = {"scale": 0.5, "zero_point": 0, "qmin": 0, "qmax": 7, "n_bits": 3}
        >>> em.fakequant("q", em.input("x", (2,)), q)
        'q'
        """
        return self._add(name, "fakequant", [x], dict(attrs))

    def activation(self, name, x, fn, params) -> str:
        """Add an elementwise activation from the registry.

        Examples
        --------
        >>> em = Emitter(); em.activation("r", em.input("x", (2,)), "relu", {})
        'r'
        """
        return self._add(name, "activation", [x], {"fn": fn, "params": dict(params)})

    def affine(self, name, x, scale, shift) -> str:
        """Add ``x * scale + shift`` (scalars or per-channel arrays).

        Examples
        --------
        >>> em = Emitter(); em.affine("s", em.input("x", (2,)), 2.0, 1.0)
        's'
        """
        return self._add(
            name, "affine", [x], {"scale": np.asarray(scale, np.float64), "shift": np.asarray(shift, np.float64)}
        )

    def add(self, name, a, b) -> str:
        """Add the sum of two tensors.

        Examples
        --------
        >>> em = Emitter(); x = em.input("x", (2,)); em.add("a", x, x)
        'a'
        """
        return self._add(name, "add", [a, b], {})

    def sub(self, name, a, b) -> str:
        """Add the difference ``a - b`` of two tensors.

        Examples
        --------
        >>> em = Emitter(); x = em.input("x", (2,)); em.sub("d", x, x)
        'd'
        """
        return self._add(name, "sub", [a, b], {})

    def mul(self, name, a, b) -> str:
        """Add the elementwise product of two encrypted tensors.

        Examples
        --------
        >>> em = Emitter(); x = em.input("x", (2,)); em.mul("p", x, x)
        'p'
        """
        return self._add(name, "mul", [a, b], {})

    def matmul(self, name, a, b, k) -> str:
        """Add the matrix product of two encrypted tensors (``k``: the contracted length).

        Examples
        --------
        >>> em = Emitter(); x = em.input("x", (2, 3)); y = em.input("y", (3, 2)); em.matmul("p", x, y, 3)
        'p'
        """
        return self._add(name, "matmul", [a, b], {"k": int(k)})

    def concat(self, name, xs, axis) -> str:
        """Add a concatenation along ``axis`` (axis 0 is the batch).

        Examples
        --------
        >>> em = Emitter(); x = em.input("x", (2,)); em.concat("c", [x, x], 1)
        'c'
        """
        return self._add(name, "concat", list(xs), {"axis": int(axis)})

    def maxpool(self, name, x, attrs) -> str:
        """Add a 2-D max pooling (``kernel, stride, padding, dilation, ceil_mode``).

        Examples
        --------
        >>> em = Emitter(); a = {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0), "dilation": (1, 1)}
        >>> em.maxpool("p", em.input("x", (1, 4, 4)), a)
        'p'
        """
        return self._add(name, "maxpool", [x], dict(attrs))

    def gather(self, name, x, index, fill=None) -> str:
        """Add a rearrangement of each sample: ``out.flat[i] = x.flat[index.flat[i]]``, and ``fill``
        where ``index`` is -1.

        Examples
        --------
        >>> em = Emitter(); em.gather("t", em.input("x", (2, 3)), np.array([[0, 3], [1, 4], [2, 5]]))
        't'
        """
        index = np.asarray(index, np.int64)
        src = self.node(x)
        # A gather of a reshape or of another gather reads the same flat values: compose them, so a
        # chain of shape ops stays one rearrangement (the ones it bypasses are removed if unused).
        while src is not None and src.op in ("reshape", "gather"):
            if src.op == "gather":
                inner, inner_fill = src.attrs["index"].reshape(-1), src.attrs["fill"]
                if inner_fill is not None and fill is not None and inner_fill != fill:
                    break
                composed = np.where(index < 0, -1, inner[np.maximum(index, 0)])
                fill = fill if fill is not None else inner_fill
                index = composed
            x, src = src.inputs[0], self.node(src.inputs[0])
        attrs = {"index": index, "fill": None if fill is None or not (index < 0).any() else float(fill)}
        return self._add(name, "gather", [x], attrs)

    def reshape(self, name, x, shape) -> str:
        """Add a per-sample reshape.

        Examples
        --------
        >>> em = Emitter(); em.reshape("r", em.input("x", (2, 3)), (6,))
        'r'
        """
        return self._add(name, "reshape", [x], {"shape": tuple(shape)})


@dataclass(frozen=True)
class ActivationForms:
    """Every torch spelling of the registered activations.

    Examples
    --------
    >>> activation_forms().modules[nn.GELU].params
    ('approximate',)
    """

    modules: dict
    functions: dict
    methods: dict

    def bind(self, act: ActivationDef, args: list, kwargs: dict) -> dict:
        """Map positional/keyword arguments of any form onto the activation's parameters.

        Examples
        --------
        >>> f = activation_forms(); a = f.functions[F.leaky_relu]
        >>> f.bind(a, [0.2], {})
        {'negative_slope': 0.2}
        """
        params = dict(_defaults(act))
        for name, value in zip(act.params, args):
            params[name] = value
        for name, value in kwargs.items():
            if name in params:
                params[name] = value
            elif name == "training" and value:
                raise UnsupportedOpError(
                    f"activation '{act.name}' is called with training=True; qfhe compiles "
                    "the model's eval behaviour: pass training=False (or self.training)"
                )
            elif name not in ("inplace", "training"):
                raise UnsupportedOpError(f"activation '{act.name}' got an unknown argument '{name}'")
        optional = {p for p, v in _defaults(act) if v is not None} | {"min", "max"}
        missing = [p for p, v in params.items() if v is None and p not in optional]
        if missing:
            raise UnsupportedOpError(f"activation '{act.name}' needs its argument '{missing[0]}'")
        return params


@functools.lru_cache(maxsize=None)
def _defaults(act: ActivationDef) -> tuple:
    if not act.params or act.module is None:
        return tuple(act.defaults)
    try:
        module = act.module()
    except TypeError:  # nn.Threshold has no defaults: every parameter must be given
        return tuple((p, None) for p in act.params)
    return tuple((p, getattr(module, p)) for p in act.params)


@functools.lru_cache(maxsize=None)
def activation_forms() -> ActivationForms:
    """Build the lookup tables from torch objects/method names to activation definitions.

    Examples
    --------
    >>> activation_forms().methods["relu_"].name
    'relu'
    """
    modules, functions, methods = {}, {}, {}
    for act in ACTIVATIONS.values():
        if act.module is not None:
            modules[act.module] = act
        functions[act.functional] = act
        for alias in act.aliases:
            if isinstance(alias, str):
                methods[alias] = act
            else:
                functions[alias] = act
        for name in (act.name, act.name + "_"):
            for namespace in (F, torch, torch.special):
                fn = getattr(namespace, name, None)
                if fn is not None and callable(fn) and not inspect.isclass(fn):
                    functions[fn] = act
            if hasattr(torch.Tensor, name):
                methods[name] = act
    return ActivationForms(modules, functions, methods)
