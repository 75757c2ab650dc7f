"""The qfhe IR: a graph of single-output nodes in topological order.

A value is named by the node that produces it. Attributes are plain data (numbers, strings,
tuples, numpy arrays, nested dicts/lists of those) so that a graph serializes to JSON + numpy.
Passes treat graphs as immutable: they return a new graph and never mutate arrays in place.

Examples
--------
>>> from qfhe.ir import Graph, Node
>>> g = Graph([Node("x", "input", [], {"shape": (2,), "dtype": "float"}),
...            Node("y", "activation", ["x"], {"fn": "relu", "params": {}})], ["y"])
>>> print(g.format())
%x = input() {shape=(2,), dtype=float}
%y = activation(%x) {fn=relu, params={}}
return %y
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from qfhe.errors import PassError


@dataclass
class Node:
    """One operation of the IR.

    Parameters
    ----------
    name : str
        Unique name; also names the node's output value.
    op : str
        Operation name from :mod:`qfhe.ir.ops`.
    inputs : list of str
        Names of the nodes whose outputs this node consumes.
    attrs : dict
        Operation attributes (plain data).

    Examples
    --------
    >>> Node("r", "activation", ["x"], {"fn": "relu", "params": {}}).op
    'activation'
    """

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def clone(self, **changes: Any) -> "Node":
        """Return a copy with some fields replaced (attrs dict copied, arrays shared).

        Examples
        --------
        >>> Node("a", "input", []).clone(name="b").name
        'b'
        """
        out = Node(self.name, self.op, list(self.inputs), dict(self.attrs))
        for key, value in changes.items():
            setattr(out, key, value)
        return out


class Graph:
    """An ordered list of nodes plus the names of the output values.

    Parameters
    ----------
    nodes : iterable of Node
        Nodes in topological order.
    outputs : list of str
        Names of the nodes whose values the graph returns.

    Examples
    --------
    >>> g = Graph([Node("x", "input", [], {"shape": (3,), "dtype": "float"})], ["x"])
    >>> g.input_names, g.outputs
    (['x'], ['x'])
    """

    def __init__(self, nodes: Iterable[Node], outputs: list[str]):
        self.nodes: list[Node] = list(nodes)
        self.outputs: list[str] = list(outputs)
        self._index = {n.name: n for n in self.nodes}
        if len(self._index) != len(self.nodes):
            raise PassError("graph has duplicate node names")

    # -- queries -------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Node:
        return self._index[name]

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def input_names(self) -> list[str]:
        """Names of the ``input`` nodes, in order.

        Examples
        --------
        >>> Graph([Node("x", "input", [])], ["x"]).input_names
        ['x']
        """
        return [n.name for n in self.nodes if n.op == "input"]

    def consumers(self) -> dict[str, list[str]]:
        """Map each node name to the names of the nodes that read it (outputs not included).

        Examples
        --------
        >>> g = Graph([Node("x", "input", []), Node("y", "add", ["x", "x"])], ["y"])
        >>> g.consumers()["x"]
        ['y', 'y']
        """
        users: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                users[i].append(n.name)
        return users

    def fresh_name(self, base: str) -> str:
        """Return a name derived from ``base`` that no node uses yet.

        Examples
        --------
        >>> Graph([Node("a", "input", [])], ["a"]).fresh_name("a")
        'a_1'
        """
        if base not in self._index:
            return base
        k = 1
        while f"{base}_{k}" in self._index:
            k += 1
        return f"{base}_{k}"

    def copy(self) -> "Graph":
        """Copy the node list and attribute dicts (numpy arrays are shared, never mutated).

        Examples
        --------
        >>> g = Graph([Node("x", "input", [])], ["x"]); g.copy() is not g
        True
        """
        return Graph([n.clone() for n in self.nodes], list(self.outputs))

    def ops(self) -> list[str]:
        """The op of each node, in order (handy in tests).

        Examples
        --------
        >>> Graph([Node("x", "input", [])], ["x"]).ops()
        ['input']
        """
        return [n.op for n in self.nodes]

    # -- checks and printing -------------------------------------------------------------------
    def verify(self, pass_name: str = "graph") -> "Graph":
        """Check topological order, that inputs exist and outputs exist; return self.

        Raises
        ------
        PassError
            Naming ``pass_name`` and the offending node.

        Examples
        --------
        >>> Graph([Node("y", "add", ["x", "x"])], ["y"]).verify("demo")
        Traceback (most recent call last):
        ...
        qfhe.errors.PassError: demo: node 'y' reads 'x', which is not defined before it
        """
        seen: set[str] = set()
        for n in self.nodes:
            for i in n.inputs:
                if i not in seen:
                    raise PassError(f"{pass_name}: node '{n.name}' reads '{i}', which is not defined before it")
            seen.add(n.name)
        for o in self.outputs:
            if o not in seen:
                raise PassError(f"{pass_name}: output '{o}' is not a node of the graph")
        return self

    def format(self) -> str:
        """Human-readable listing, one node per line.

        Examples
        --------
        >>> print(Graph([Node("x", "input", [])], ["x"]).format())
        %x = input()
        return %x
        """
        lines = []
        for n in self.nodes:
            args = ", ".join(f"%{i}" for i in n.inputs)
            attrs = ", ".join(f"{k}={_short(v)}" for k, v in n.attrs.items())
            lines.append(f"%{n.name} = {n.op}({args})" + (f" {{{attrs}}}" if attrs else ""))
        lines.append("return " + ", ".join(f"%{o}" for o in self.outputs))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes, outputs={self.outputs})"


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return f"{value.reshape(-1)[0]:.4g}"
        return f"<{value.dtype}{list(value.shape)}>"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and isinstance(value[0], dict) and "op" in value[0]:
        return "[" + " -> ".join(_chain_step(s) for s in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def _chain_step(step: dict) -> str:
    if step["op"] == "activation":
        return step["attrs"]["fn"]
    return step["op"]


def rebuild(graph: Graph, nodes: Iterable[Node], outputs: list[str] | None = None) -> Graph:
    """Build a new graph from ``nodes`` keeping ``graph``'s outputs unless given.

    Examples
    --------
    >>> g = Graph([Node("x", "input", [])], ["x"])
    >>> rebuild(g, g.nodes).outputs
    ['x']
    """
    return Graph(nodes, list(graph.outputs if outputs is None else outputs))


def unique_name(base: str, used: set[str]) -> str:
    """Return ``base`` or ``base_k``, whichever is not in ``used``, and record it there.

    Examples
    --------
    >>> used = {"fc"}
    >>> unique_name("fc", used), unique_name("fc", used)
    ('fc_1', 'fc_2')
    """
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    used.add(name)
    return name
