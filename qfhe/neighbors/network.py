"""Comparator networks that select the ``k`` smallest of ``n`` values.

A sorting network compares fixed pairs of positions whatever the data, which is what an encrypted
circuit needs: each comparator is one table lookup (:mod:`qfhe.neighbors.lower`). Sorting all
``n`` values wastes most of them when only the ``k`` nearest neighbours matter, so this module
builds a *selection* network:

1. split the ``n`` inputs into groups of ``g`` (the power of two at least ``k``) and sort each
   with Batcher's odd-even merge sort;
2. merge the sorted groups pairwise (Batcher's odd-even merge) and keep the ``g`` smallest of each
   merge, until one group is left; its first ``k`` outputs are the answer;
3. drop every comparator none of those ``k`` outputs depends on (pruning backwards).

Missing inputs (``n`` not a multiple of ``g``) are +infinity, and comparators against them are
decided when the network is built. Comparators are scheduled as early as their inputs allow; one
layer holds comparators on disjoint wires. For ``k = 3`` this needs 75 / 155 / 315 / 635
comparators for ``n`` = 32 / 64 / 128 / 256 (a full sort pruned to 3 outputs: 955 at ``n=128``);
for ``k = 5``, 102 / 214 / 438 / 886. Since only a group's ``k`` smallest values can be among the
``k`` smallest of all, each sorted group keeps ``k`` wires and the rest become +infinity.

Examples
--------
>>> net = selection_network(10, 3)
>>> net.n_comparators, len(net.layers)
(20, 8)
>>> values = np.array([[5, 1, 9, 3, 7, 0, 8, 2, 6, 4]])
>>> sorted(net.apply(values)[0].tolist())
[0, 1, 2]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qfhe.errors import ConfigurationError

_INF = -1  # the wire id of a missing input (+infinity)


def _merge(lo: int, n: int, r: int):
    """Batcher's odd-even merge of positions ``lo, lo + r, ...`` (``n`` positions in all)."""
    step = r * 2
    if step < n:
        yield from _merge(lo, n, step)
        yield from _merge(lo + r, n, step)
        yield from ((i, i + r) for i in range(lo + r, lo + n - r, step))
    else:
        yield (lo, lo + r)


def _sort(lo: int, hi: int):
    """Batcher's odd-even merge sort of positions ``lo..hi`` (a power of two of them)."""
    if hi - lo >= 1:
        mid = lo + (hi - lo) // 2
        yield from _sort(lo, mid)
        yield from _sort(mid + 1, hi)
        yield from _merge(lo, hi - lo + 1, 1)


@dataclass
class SelectionNetwork:
    """A pruned, layered comparator network.

    Parameters
    ----------
    n_inputs : int
    layers : list of list of (int, int, int, int)
        Per layer, comparators ``(a, b, lo, hi)``: wires ``a`` and ``b`` in, ``lo = min(a, b)`` and
        ``hi = max(a, b)`` out. Wires ``0 .. n_inputs - 1`` are the inputs; every comparator output
        is a new wire (each wire is written once).
    outputs : list of int
        The wires holding the ``k`` smallest inputs.

    Examples
    --------
    >>> selection_network(2, 1).layers
    [[(0, 1, 2, -1)]]
    """

    n_inputs: int
    layers: list
    outputs: list

    @property
    def n_comparators(self) -> int:
        """Comparators (table lookups) in the network.

        Examples
        --------
        >>> selection_network(4, 4).n_comparators     # Batcher's sort of 4
        5
        """
        return sum(len(layer) for layer in self.layers)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Run the network on integer rows ``values`` (n_samples, n_inputs): the ``k`` selected values
        per row (in the network's output order), shape (n_samples, k).

        Examples
        --------
        >>> selection_network(4, 2).apply(np.array([[3, 1, 2, 0]])).tolist()
        [[0, 1]]
        """
        values = np.asarray(values)
        wires = {i: values[:, i] for i in range(self.n_inputs)}
        for layer in self.layers:
            for a, b, lo, hi in layer:
                m = np.minimum(wires[a] - wires[b], 0)  # the one lookup a comparator costs
                if lo != _INF:
                    wires[lo] = wires[b] + m
                if hi != _INF:
                    wires[hi] = wires[a] - m
        return np.stack([wires[w] for w in self.outputs], axis=1)


def selection_network(n: int, k: int) -> SelectionNetwork:
    """The network selecting the ``k`` smallest of ``n`` values (see the module docstring).

    Parameters
    ----------
    n : int
        Number of inputs, at least ``k``.
    k : int
        Number of outputs, at least 1.

    Returns
    -------
    SelectionNetwork
        Output wires whose values are the ``k`` smallest inputs, in increasing order.

    Raises
    ------
    ConfigurationError
        If ``k`` is not in ``1 .. n``.

    Examples
    --------
    >>> [selection_network(n, 3).n_comparators for n in (32, 64, 128, 256)]
    [75, 155, 315, 635]
    """
    if not 1 <= k <= n:
        raise ConfigurationError(f"n_neighbors={k} must be between 1 and the number of training samples ({n})")
    g = 1 << (k - 1).bit_length()
    comparators = []  # (a, b, lo, hi) in program order, on SSA wire ids
    next_id = [n]

    def compare(pos: list, i: int, j: int) -> None:
        a, b = pos[i], pos[j]
        if b == _INF:  # min(a, inf) = a: nothing to compute
            return
        if a == _INF:
            pos[i], pos[j] = b, _INF
            return
        lo, hi = next_id[0], next_id[0] + 1
        next_id[0] += 2
        comparators.append((a, b, lo, hi))
        pos[i], pos[j] = lo, hi

    ids = list(range(n)) + [_INF] * (-n % g)
    groups = []
    for start in range(0, len(ids), g):
        pos = ids[start : start + g]
        for i, j in _sort(0, g - 1):
            compare(pos, i, j)
        groups.append(pos[:k] + [_INF] * (g - k))  # only a group's k smallest can be among the k smallest
    while len(groups) > 1:
        merged = []
        for left, right in zip(groups[0::2], groups[1::2]):
            pos = left + right
            for i, j in _merge(0, 2 * g, 1):
                compare(pos, i, j)
            merged.append(pos[:k] + [_INF] * (g - k))
        if len(groups) % 2:
            merged.append(groups[-1])
        groups = merged
    outputs = groups[0][:k]
    return _prune_and_layer(n, comparators, outputs)


def _prune_and_layer(n: int, comparators: list, outputs: list) -> SelectionNetwork:
    needed = set(outputs)
    kept = []
    for a, b, lo, hi in reversed(comparators):
        if lo in needed or hi in needed:
            kept.append((a, b, lo if lo in needed else _INF, hi if hi in needed else _INF))
            needed |= {a, b}
    depth = {i: 0 for i in range(n)}
    layers: list = []
    for a, b, lo, hi in reversed(kept):
        d = max(depth[a], depth[b]) + 1
        for w in (lo, hi):
            if w != _INF:
                depth[w] = d
        if len(layers) < d:
            layers.append([])
        layers[d - 1].append((a, b, lo, hi))
    return SelectionNetwork(n, layers, list(outputs))
