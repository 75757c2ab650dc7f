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

from qfhe.errors import PassError
from qfhe.ir.graph import Graph, Node, unique_name


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
