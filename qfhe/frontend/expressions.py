"""Data-dependent elementwise functions (comparisons, ``torch.where``, masks, casts) as ONE table lookup.

A value that is an elementwise function of a single encrypted tensor, however it is written
(``(x > 0).float()``, ``torch.where(x > 0, x, 0.1 * x)``, ``y = torch.zeros_like(x); y[x > 0.5] = 1``,
a sum of such steps), is kept as an :class:`Expr`: the source value and a small program. When
something other than another elementwise step reads it, it becomes one ``activation`` node
``expr`` whose table the TFHE path builds like any other. The program is plain data: a list of
steps ``{"fn": name, "args": [...]}``, each argument ``["x"]`` (the source), ``["s", k]``
(step k's result) or ``["c", number]``.

Examples
--------
>>> import torch
>>> from qfhe.frontend.torch_fx import import_torch
>>> class Step(torch.nn.Module):
...     def forward(self, x):
...         return torch.where(x > 0.5, x, 0.0) + (x < -1).float()
>>> g = import_torch(Step(), torch.zeros(2, 3))
>>> g.ops(), [s["fn"] for s in g.nodes[-1].attrs["params"]["program"]]
(['input', 'activation'], ['gt', 'where', 'lt', 'float', 'add'])
"""

from __future__ import annotations

import operator
from numbers import Number

import numpy as np
import torch
import torch.fx

from qfhe.errors import UnsupportedOpError

#: torch spellings → program step names.
_OPS = {
    operator.gt: "gt",
    operator.lt: "lt",
    operator.ge: "ge",
    operator.le: "le",
    operator.eq: "eq",
    operator.ne: "ne",
    torch.gt: "gt",
    torch.lt: "lt",
    torch.ge: "ge",
    torch.le: "le",
    torch.eq: "eq",
    torch.ne: "ne",
    torch.greater: "gt",
    torch.less: "lt",
    torch.greater_equal: "ge",
    torch.less_equal: "le",
    "gt": "gt",
    "lt": "lt",
    "ge": "ge",
    "le": "le",
    "eq": "eq",
    "ne": "ne",
    "__gt__": "gt",
    "__lt__": "lt",
    operator.and_: "and",
    operator.or_: "or",
    operator.xor: "xor",
    torch.logical_and: "and",
    torch.logical_or: "or",
    torch.logical_xor: "xor",
    "logical_and": "and",
    "logical_or": "or",
    "logical_xor": "xor",
    operator.invert: "not",
    torch.logical_not: "not",
    "logical_not": "not",
    "__invert__": "not",
    torch.where: "where",
    "where": "where",
    operator.setitem: "setitem",
    "float": "float",
    "double": "float",
    "half": "float",
    "to": "float",
    "type": "float",
    "int": "trunc",
    "long": "trunc",
    "bool": "bool",
    torch.zeros_like: "zeros_like",
    torch.ones_like: "ones_like",
    torch.full_like: "full_like",
    "zero_": "zeros_like",
}
#: Arithmetic that joins two expressions of one source.
ARITH = {
    operator.add: "add",
    operator.iadd: "add",
    torch.add: "add",
    "add": "add",
    "add_": "add",
    operator.sub: "sub",
    operator.isub: "sub",
    torch.sub: "sub",
    "sub": "sub",
    "sub_": "sub",
    operator.mul: "mul",
    operator.imul: "mul",
    torch.mul: "mul",
    "mul": "mul",
    "mul_": "mul",
    operator.truediv: "div",
    operator.itruediv: "div",
    torch.div: "div",
    "div": "div",
    "div_": "div",
}


class Expr:
    """An elementwise function of one encrypted IR value, not yet emitted.

    ``source`` is None for a value that does not depend on the data (``torch.zeros_like(x)``).

    Examples
    --------
    >>> e = Expr(None, "y", "x", [{"fn": "gt", "args": [["x"], ["c", 0.0]]}])
    >>> e.source, len(e.program)
    ('x', 1)
    """

    def __init__(self, em, name: str, source: str | None, program: list[dict]):
        self.em, self.name, self.source, self.program = em, name, source, program
        self._value: str | None = None

    def materialize(self) -> str:
        """Emit the ``expr`` activation once; return its IR value.

        Examples
        --------
        >>> from qfhe.frontend.lowering import Emitter
        >>> em = Emitter(); x = em.input("x", (2,))
        >>> Expr(em, "m", x, [{"fn": "gt", "args": [["x"], ["c", 0.0]]}]).materialize()
        'm'
        """
        if self._value is None:
            if self.source is None:
                raise UnsupportedOpError(
                    f"node '{self.name}' does not depend on the model's inputs; qfhe cannot return a constant"
                )
            self._value = self.em.activation(self.name, self.source, "expr", {"program": self.program})
        return self._value


def is_expression_op(node: torch.fx.Node, env: dict, em=None) -> bool:
    """Whether the node builds an :class:`Expr`: a comparison, mask, cast or ``where``, or
    arithmetic on an expression.

    Examples
    --------
    >>> g = torch.fx.symbolic_trace(lambda x: (x > 0).float())
    >>> [is_expression_op(n, {}, None) for n in g.graph.nodes]
    [False, True, True, False]
    """
    if node.op not in ("call_function", "call_method"):
        return False
    t = node.target
    if t in _OPS:
        if t in ("to", "type", "int", "long", "bool", "float", "double", "half") and node.op != "call_method":
            return False
        return True
    if t not in ARITH:
        return False
    if not any(isinstance(a, torch.fx.Node) and isinstance(env.get(a.name), Expr) for a in node.args):
        # x / (1 + |x|), x - tanh(x), x * sigmoid(x) (softsign, tanhshrink, SiLU as ONNX writes them):
        # two functions of one tensor, one of them through a lookup, joined by arithmetic are one
        # lookup. Two linear values (y + y) keep their add: it costs no lookup.
        operands = node.args[:2]
        if len(operands) != 2 or not all(
            isinstance(a, torch.fx.Node) and isinstance(env.get(a.name), str) for a in operands
        ):
            return False
        parts = [_trace_back(em, env[a.name], a.name) for a in operands]
        return parts[0].source == parts[1].source and any(step["fn"] != "affine" for p in parts for step in p.program)
    # Arithmetic joining an expression with a function of another tensor is an encrypted add or product.
    sources = {_root(em, env, a) for a in node.args[:2] if isinstance(a, torch.fx.Node)}
    return len(sources - {None}) <= 1


def _root(em, env: dict, arg: torch.fx.Node) -> str | None:
    v = env.get(arg.name)
    if isinstance(v, Expr):
        return v.source
    if isinstance(v, str):
        return _trace_back(em, v, arg.name).source
    return None


def as_expr(em, env: dict, arg, node: torch.fx.Node) -> Expr | Number:
    """An argument as an expression of its root value (looking through scalar affines and
    activations), or a number.

    Examples
    --------
    >>> as_expr(None, {}, 2, None)
    2.0
    """
    if isinstance(arg, (bool, Number)):
        return float(arg)
    if isinstance(arg, torch.fx.Node):
        v = env.get(arg.name)
        if isinstance(v, Expr):
            return v
        if isinstance(v, str):
            return _trace_back(em, v, arg.name)
        if hasattr(v, "value"):  # a folded constant tensor
            value = np.asarray(v.value)
            if value.size == 1:
                return float(value.reshape(-1)[0])
    raise UnsupportedOpError(
        f"node '{node.name}' ({node.op} {getattr(node.target, '__name__', node.target)}) has an argument qfhe cannot "
        f"use in an elementwise expression: {arg!r}; use numbers, or tensors computed from one encrypted tensor"
    )


def _trace_back(em, value: str, name: str) -> Expr:
    steps: list[dict] = []  # an empty program is the source itself
    node = em.node(value)
    while node is not None and node.op in ("activation", "affine"):
        if node.op == "affine":
            if np.ndim(node.attrs["scale"]) or np.ndim(node.attrs["shift"]):
                break  # per-channel: stays its own node
            steps.append(
                {
                    "fn": "affine",
                    "args": [None],
                    "scale": float(node.attrs["scale"]),
                    "shift": float(node.attrs["shift"]),
                }
            )
        elif node.attrs["fn"] == "expr":
            steps.append({"fn": "program", "args": [None], "program": node.attrs["params"]["program"]})
        elif any(isinstance(p, np.ndarray) for p in node.attrs["params"].values()):
            break
        else:
            steps.append({"fn": "act", "args": [None], "act": node.attrs["fn"], "params": dict(node.attrs["params"])})
        value = node.inputs[0]
        node = em.node(value)
    program: list[dict] = []
    for k, step in enumerate(reversed(steps)):  # each step reads the previous one (or the source)
        program.append({**step, "args": [["x"] if k == 0 else ["s", k - 1]]})
    return Expr(em, name, value, program)


def merge(name: str, em, parts: list, fn: str, extra: dict | None = None) -> Expr:
    """One expression applying ``fn`` to ``parts`` (expressions of one source, or numbers).

    Examples
    --------
    >>> e = merge("m", None, [Expr(None, "x", "x", []), 0.5], "gt")
    >>> e.source, e.program
    ('x', [{'fn': 'gt', 'args': [['x'], ['c', 0.5]]}])
    """
    sources = {p.source for p in parts if isinstance(p, Expr) and p.source is not None}
    if len(sources) > 1:
        raise UnsupportedOpError(
            f"node '{name}' combines values computed from different encrypted tensors ({', '.join(sorted(sources))}) "
            f"with '{fn}'; qfhe turns elementwise functions of ONE encrypted tensor into a table lookup"
        )
    program: list[dict] = []
    args = []
    for p in parts:
        if isinstance(p, Expr) and not p.program:
            args.append(["x"])
        elif isinstance(p, Expr):
            offset = len(program)
            for step in p.program:
                program.append(
                    {**step, "args": [a if a is None or a[0] != "s" else ["s", a[1] + offset] for a in step["args"]]}
                )
            args.append(["s", len(program) - 1])
        else:
            args.append(["c", float(p)])
    program.append({"fn": fn, "args": args, **(extra or {})})
    return Expr(em, name, next(iter(sources), None), program)


def expression(em, env: dict, node: torch.fx.Node) -> Expr | None:
    """Build the node's :class:`Expr`; for ``setitem`` rebind the written tensor and return None.

    Examples
    --------
    >>> from qfhe.frontend.torch_fx import import_torch
    >>> class Mask(torch.nn.Module):
    ...     def forward(self, x):
    ...         x[x < 0] = 0.0
    ...         return x
    >>> import_torch(Mask(), torch.zeros(2, 3)).nodes[-1].attrs["params"]["program"][-1]["fn"]
    'where'
    """
    t, args = node.target, list(node.args)
    fn = ARITH.get(t) if t in ARITH and t not in _OPS else _OPS[t]
    if fn == "setitem":
        target, mask, value = args
        if not isinstance(mask, torch.fx.Node):
            raise UnsupportedOpError(
                f"node '{node.name}' assigns through an index ({mask!r}); qfhe supports "
                "assigning through a mask computed from the data (x[x < 0] = 0)"
            )
        parts = [as_expr(em, env, a, node) for a in (mask, value, target)]
        env[target.name] = merge(target.name, em, parts, "where")
        return None
    if fn in ("zeros_like", "ones_like", "full_like"):
        fill = {"zeros_like": 0.0, "ones_like": 1.0}.get(fn)
        if fill is None:
            fill = float(node.kwargs.get("fill_value", args[1] if len(args) > 1 else 0.0))
        return Expr(em, node.name, None, [{"fn": "full", "args": [], "value": fill}])
    if fn == "float" and node.target in ("to", "type"):
        dtypes = [a for a in list(args[1:]) + list(node.kwargs.values()) if isinstance(a, torch.dtype)]
        if not dtypes or not dtypes[0].is_floating_point:
            fn = "trunc" if dtypes and dtypes[0] != torch.bool else "bool"
    count = {"not": 1, "float": 1, "trunc": 1, "bool": 1, "where": 3}.get(fn, 2)
    parts = [as_expr(em, env, a, node) for a in args[:count]]
    return merge(node.name, em, parts, fn)
