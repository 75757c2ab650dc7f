"""Pass interface, the pipeline, the compilation context, and the node-emitting helper.

Examples
--------
>>> from qfhe.ckks.params import CKKSParameters
>>> PassPipeline([]).run(None, None) is None
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from qfhe.errors import ConfigurationError, PassError
from qfhe.ir.graph import Graph, Node, unique_name


def check_strategy(pass_name: str, strategy: str, valid: tuple) -> str:
    """Return ``strategy`` if valid, else raise an error naming the pass and listing the choices.

    Examples
    --------
    >>> check_strategy("DemoPass", "fast", ("eager", "lazy"))
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: DemoPass strategy must be one of ('eager', 'lazy'), got 'fast'
    """
    if strategy not in valid:
        raise ConfigurationError(f"{pass_name} strategy must be one of {valid}, got {strategy!r}")
    return strategy


def require(graph: Graph, pass_name: str, packed: bool = True, absent: dict | None = None) -> None:
    """Check what a pass requires, naming the pass that is missing before it.

    ``packed``: the graph went through InputPackingPass (values have periods). ``absent``: op →
    the pass that removes it (e.g. ``{"activation": "NonlinearToPolynomialPass"}``).

    Examples
    --------
    >>> require(Graph([Node("x", "input", [])], ["x"]), "LinearLayerBSGSPass")
    Traceback (most recent call last):
    ...
    qfhe.errors.PassError: LinearLayerBSGSPass needs a packed graph: put InputPackingPass before it
    """
    if graph is None:
        raise PassError(f"{pass_name} got no graph")
    if packed and not any(n.op == "encrypt" for n in graph.nodes):
        raise PassError(f"{pass_name} needs a packed graph: put InputPackingPass before it")
    for op, producer in (absent or {}).items():
        left = next((n.name for n in graph.nodes if n.op == op), None)
        if left is not None:
            raise PassError(
                f"{pass_name} found the {op} node '{left}', which {producer} removes: put {producer} before {pass_name}"
            )


class HEPass:
    """Base class: a pass is ``__call__(graph, context) -> graph`` with a ``name``.

    Subclasses document what they require and ensure.

    Examples
    --------
    >>> HEPass().name
    'HEPass'
    """

    @property
    def name(self) -> str:
        """The pass's class name (what errors and timings report).

        Examples
        --------
        >>> HEPass().name
        'HEPass'
        """
        return type(self).__name__

    def __call__(self, graph: Graph, context) -> Graph:  # pragma: no cover - interface
        raise PassError(f"{self.name} does not implement __call__")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{self.name}({args})"


@dataclass
class PassPipeline:
    """An ordered list of passes; ``run`` applies them and records per-pass timings.

    Examples
    --------
    >>> PassPipeline([]).passes
    []
    """

    passes: list = field(default_factory=list)

    def run(self, graph: Graph, context) -> Graph:
        """Apply every pass in order; failures name the pass.

        Examples
        --------
        >>> PassPipeline([]).run(None, None) is None
        True
        """
        for p in self.passes:
            start = time.perf_counter()
            graph = p(graph, context)
            if context is not None:
                context.meta.setdefault("pass_seconds", {})[p.name] = time.perf_counter() - start
            if graph is not None:
                graph.verify(p.name)
        return graph

    def __repr__(self) -> str:
        return "PassPipeline([" + ", ".join(repr(p) for p in self.passes) + "])"


class Rewriter:
    """Builds a new node list in order, with fresh names; ``emit`` returns the new value's name.

    Examples
    --------
    >>> rw = Rewriter({"x"}); rw.emit("r", "rotate", ["x"], "fc", k=1)
    'r'
    """

    def __init__(self, used: set[str]):
        self.nodes: list[Node] = []
        self.used = set(used)

    def emit(self, base: str, op: str, inputs: list[str], layer, name: str | None = None, **attrs) -> str:
        """Append a node (``name`` forces an exact name, e.g. to keep a replaced node's name).

        Examples
        --------
        >>> rw = Rewriter(set()); rw.emit("a", "rotate", ["x"], "l"), rw.emit("a", "rotate", ["x"], "l")
        ('a', 'a_1')
        """
        if name is None:
            name = unique_name(base, self.used)
        else:
            self.used.add(name)
        self.nodes.append(Node(name, op, list(inputs), {**attrs, "layer": layer}))
        return name

    def keep(self, node: Node) -> None:
        """Append an existing node unchanged.

        Examples
        --------
        >>> rw = Rewriter(set()); rw.keep(Node("x", "encrypt", [])); [n.name for n in rw.nodes]
        ['x']
        """
        self.used.add(node.name)
        self.nodes.append(node)


class Deferred:
    """Values that owe a unary op (rescale, relinearize) that is inserted only when needed.

    ``mark(v)`` records that v owes the op; ``read(v)`` is the name consumers should use now;
    ``settle(v)`` inserts the op (once) and returns the new name.

    Examples
    --------
    >>> g = Graph([Node("x", "encrypt", [], {"period": 4, "layer": "x"})], ["x"])
    >>> rw = Rewriter({"x"}); rw.keep(g["x"]); d = Deferred(rw, g, "rescale", "rs")
    >>> d.mark("x"); d.owes("x"), d.settle("x"), d.owes("x")
    (True, 'x_rs', False)
    """

    def __init__(self, rw: Rewriter, graph: Graph, op: str, suffix: str):
        self.rw, self.graph, self.op, self.suffix = rw, graph, op, suffix
        self.current: dict[str, str] = {}
        self.waiting: set[str] = set()

    def read(self, v: str) -> str:
        """The name that holds v's value now.

        Examples
        --------
        >>> g = Graph([Node("x", "encrypt", [], {"period": 4, "layer": "x"})], ["x"])
        >>> rw = Rewriter({"x"}); rw.keep(g["x"]); d = Deferred(rw, g, "rescale", "rs")
        >>> d.read("x")
        'x'
        """
        return self.current.get(v, v)

    def mark(self, name: str) -> None:
        """Record that ``name`` owes the op.

        Examples
        --------
        >>> g = Graph([Node("x", "encrypt", [], {"period": 4, "layer": "x"})], ["x"])
        >>> rw = Rewriter({"x"}); rw.keep(g["x"]); d = Deferred(rw, g, "rescale", "rs")
        >>> d.mark("x"); d.owes("x")
        True
        """
        self.waiting.add(name)

    def owes(self, v: str) -> bool:
        """Whether v's current value still owes the op.

        Examples
        --------
        >>> g = Graph([Node("x", "encrypt", [], {"period": 4, "layer": "x"})], ["x"])
        >>> rw = Rewriter({"x"}); rw.keep(g["x"]); d = Deferred(rw, g, "rescale", "rs")
        >>> d.owes("x")
        False
        """
        return self.read(v) in self.waiting

    def settle(self, v: str) -> str:
        """Insert the op for v if it owes it; return the name to read.

        Examples
        --------
        >>> g = Graph([Node("x", "encrypt", [], {"period": 4, "layer": "x"})], ["x"])
        >>> rw = Rewriter({"x"}); rw.keep(g["x"]); d = Deferred(rw, g, "rescale", "rs")
        >>> d.mark("x"); d.settle("x")
        'x_rs'
        """
        name = self.read(v)
        if name not in self.waiting:
            return name
        src = self.graph[v] if v in self.graph else None
        attrs = src.attrs if src is not None else {}
        new = self.rw.emit(f"{v}_{self.suffix}", self.op, [name], attrs.get("layer"), period=attrs.get("period"))
        self.waiting.discard(name)
        self.current[v] = new
        return new
