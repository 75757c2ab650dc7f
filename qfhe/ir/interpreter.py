"""Numpy reference interpreter: the oracle every pass and backend is compared against.

Examples
--------
>>> import numpy as np
>>> from qfhe.ir import Graph, Node
>>> g = Graph([Node("x", "input", [], {"shape": (2,), "dtype": "float"}),
...            Node("y", "activation", ["x"], {"fn": "relu", "params": {}})], ["y"])
>>> run(g, np.array([[-1.0, 2.0]]))[0]
array([[0., 2.]])
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from qfhe.ir.graph import Graph, Node
from qfhe.ir.ops import evaluate


def run(
    graph: Graph,
    inputs: np.ndarray | Mapping[str, np.ndarray] | list[np.ndarray],
    observer: Callable[[Node, np.ndarray], None] | None = None,
    evaluator: Callable[[Node, list[np.ndarray]], np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Run ``graph`` on batched inputs and return its outputs.

    Parameters
    ----------
    graph : Graph
    inputs : ndarray, list of ndarray or dict
        One array per ``input`` node (in order), or a mapping from input name to array.
    observer : callable, optional
        Called as ``observer(node, value)`` after every node; used by calibration and by the
        overflow check.
    evaluator : callable, optional
        Computes a node's value as ``evaluator(node, input_values)`` instead of the exact
        :func:`qfhe.ir.ops.evaluate`; the table-lookup error model
        (:mod:`qfhe.tfhe.noise`) uses it to perturb lookups and roundings.

    Returns
    -------
    list of ndarray
        One array per graph output.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "input", [], {"shape": (1,), "dtype": "int"}),
    ...            Node("y", "add", ["x", "x"])], ["y"])
    >>> run(g, [np.array([[3]])])[0]
    array([[6]])
    """
    names = graph.input_names
    if isinstance(inputs, Mapping):
        feeds = dict(inputs)
    else:
        arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        feeds = dict(zip(names, arrays))
    values: dict[str, np.ndarray] = {}
    remaining = graph.consumers()
    uses = {k: len(v) + graph.outputs.count(k) for k, v in remaining.items()}
    for node in graph.nodes:
        if node.op == "input":
            value = np.asarray(feeds[node.name])
            value = value.astype(np.int64 if node.attrs.get("dtype") == "int" else np.float64)
        else:
            args = [values[i] for i in node.inputs]
            value = evaluate(node.op, args, node.attrs) if evaluator is None else evaluator(node, args)
        if observer is not None:
            observer(node, value)
        values[node.name] = value
        for i in node.inputs:  # free values nobody needs any more (large batches)
            uses[i] -= 1
            if uses[i] == 0:
                del values[i]
    return [values[o] for o in graph.outputs]


def collect_ranges(graph: Graph, inputs, ops: set[str] | None = None) -> dict[str, tuple[float, float]]:
    """Min and max of every node's value over a batch (optionally only for some ops).

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "input", [], {"shape": (1,), "dtype": "float"})], ["x"])
    >>> collect_ranges(g, np.array([[1.0], [-2.0]]))
    {'x': (-2.0, 1.0)}
    """
    ranges: dict[str, tuple[float, float]] = {}

    def observe(node: Node, value: np.ndarray) -> None:
        if ops is None or node.op in ops:
            ranges[node.name] = (value.min().item(), value.max().item())

    run(graph, inputs, observe)
    return ranges
