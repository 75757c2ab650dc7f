"""k-nearest-neighbour classification of an encrypted query against a clear training set, as a
qfhe integer graph.

The circuit (per query; the training set and its labels are the server's, in the clear):

1. **Distances without lookups.** The client sends each feature's level on a grid shared by all
   features (one step for every feature, so distances keep their geometry) as its unary code
   (:func:`qfhe.quant.preprocess.thermometer_spec`). A level ``l`` and a training level ``t``
   give ``(l - t)**2`` and ``|l - t|`` as *linear* functions of the unary bits, so the squared
   Euclidean (or the Manhattan) distance to every training sample is one ``qgemm``.
2. **One lookup per training sample** reads the distance rounded to ``distance_bits`` bits of its
   largest possible value (``fhe.round_bit_pattern``), saturates it just beyond the distance at
   which 95 % of the training samples have their ``k``-th neighbour (``R`` bits: farther
   distances cannot win a vote among nearer ones) and packs the sample's class index below it:
   ``key = min(level, 2**R - 1) * 2**L + label``. Keys order samples by distance, then by class.
3. **A selection network** (:mod:`qfhe.neighbors.network`) moves the ``k`` smallest keys onto
   ``k`` wires: one lookup ``m = min(a - b, 0)`` per comparator, then ``min = b + m`` and
   ``max = a - m`` (leveled). Every value there is ``R + L + 1`` bits wide.
4. **k lookups** keep the class indices (``key mod 2**L``): the client learns its neighbours'
   classes, never their distances, and votes.

PBS per query = n_train + comparators + k (+ the exact rounding's bits per training sample).

Examples
--------
>>> import numpy as np
>>> X = np.random.RandomState(0).rand(20, 2); y = (X[:, 0] > 0.5).astype(int)
>>> knn = build_knn(X, y, 2, n_neighbors=3, n_bits=3, distance_bits=4, p=2)
>>> knn.graph.ops()[:5], knn.n_lookups     # 20 keys, 45 comparators, 3 classes out
(['input', 'quant', 'qgemm', 'round', 'tlu'], 68)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qfhe.ir.graph import Graph, Node
from qfhe.neighbors.network import selection_network
from qfhe.quant.preprocess import level_values, range_spec, thermometer_levels

#: The share of training samples whose k-th neighbour distance the compressed scale resolves;
#: farther distances saturate (they cannot decide a vote among nearer neighbours).
_COVERED = 95.0


@dataclass
class KNNCircuit:
    """The graph of a k-NN classifier and what its client needs.

    Parameters
    ----------
    graph : Graph
    spec : dict
        The client's thermometer encoding (one grid step for every feature).
    n_lookups : int
        Table lookups per query (the exact rounding's bits excluded).
    corners : ndarray, shape (n_train, n_features)
        For each training sample, the query on the grid farthest from it: with the training set they
        make a calibration set that reaches the largest distance any query can have.

    Examples
    --------
    >>> X = np.random.RandomState(0).rand(8, 2); y = np.arange(8) % 2
    >>> build_knn(X, y, 2, 1, 2, 3, 2).corners.shape
    (8, 2)
    """

    graph: Graph
    spec: dict
    n_lookups: int
    corners: np.ndarray


def knn_spec(X: np.ndarray, n_bits: int) -> dict:
    """The thermometer encoding of ``2**n_bits`` levels with one grid step for all features, covering
    each feature's 1st..99th percentile (a few outliers must not coarsen everyone's grid).

    Examples
    --------
    >>> spec = knn_spec(np.array([[0.0, 0.0], [2.0, 10.0]]), 2)
    >>> spec["scale"].tolist(), spec["mean"].tolist()
    ([4.9, 4.9], [1.0, 5.0])
    """
    base = range_spec(np.asarray(X, np.float64), percentile=99.0)
    scale = np.full_like(base["scale"], float(np.max(base["scale"])))
    return {"kind": "thermometer", "mean": base["mean"], "scale": scale, "n_bits": int(n_bits)}


def _distance_layer(levels: np.ndarray, top: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights (n_train, F * top) and bias giving the distance to each training level vector from
    the unary bits ``bit[f, b] = (level_f <= b)``."""
    b = np.arange(top)[None, None, :]
    t = levels[:, :, None]
    if p == 2:  # (l - t)^2 = (top - t)^2 + sum_b bit_b * (2 (t - b) - 1)
        weight = 2 * (t - b) - 1
        bias = ((top - levels) ** 2).sum(axis=1)
    else:  # |l - t| = number of b where bit_b differs from t's own bit (t <= b)
        tbit = (t <= b).astype(np.int64)
        weight = 1 - 2 * tbit
        bias = tbit.sum(axis=(1, 2))
    return weight.reshape(len(levels), -1).astype(np.int64), bias.astype(np.int64)


def _farthest(levels: np.ndarray, top: int) -> np.ndarray:
    return np.where(levels > top - levels, 0, top)


def build_knn(
    X: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    n_neighbors: int,
    n_bits: int,
    distance_bits: int,
    p: int,
    rounding: str = "exact",
) -> KNNCircuit:
    """The integer graph classifying a query by its ``n_neighbors`` nearest training samples.

    Requires: training samples ``X`` (n, F) in their own units and class indices ``labels`` in
    ``0 .. n_classes - 1``. Ensures: a graph (client ``quant`` of the unary code, ``qgemm``,
    ``round``, ``tlu``, a comparator network of ``gather``/``sub``/``tlu``/``add``/``concat``, a
    final ``tlu`` and client ``dequant``) whose output is the ``n_neighbors`` class indices.

    Parameters
    ----------
    X : ndarray, shape (n_train, n_features)
    labels : ndarray of int, shape (n_train,)
    n_classes : int
    n_neighbors : int
    n_bits : int
        Levels per feature: ``2**n_bits``.
    distance_bits : int
        Width at which each distance is read (rounded): the resolution of the whole distance range.
    p : {1, 2}
        Manhattan or Euclidean distance.
    rounding : {"exact", "approximate"}
        concrete's rounding of the distances: exact (``fhe="simulate"`` and ``"execute"`` equal
        ``"disable"``; one more lookup per removed bit) or approximate (no lookup; a distance within
        half a step of a rounding boundary may go either way).

    Returns
    -------
    KNNCircuit

    Examples
    --------
    >>> X = np.random.RandomState(0).rand(30, 3); y = (X.sum(1) > 1.5).astype(int)
    >>> knn = build_knn(X, y, 2, 3, 3, 5, 2)
    >>> from qfhe.ir.interpreter import run
    >>> from qfhe.quant.preprocess import apply_preprocess
    >>> bits = apply_preprocess(knn.spec, X[:4])
    >>> run(knn.graph, bits)[0].shape      # three neighbours' classes per query
    (4, 3)
    """
    X = np.asarray(X, np.float64)
    labels = np.asarray(labels, np.int64)
    n = len(X)
    spec = knn_spec(X, n_bits)
    top = (1 << n_bits) - 1
    levels = thermometer_levels(spec, X)
    weight, bias = _distance_layer(levels, top, p)

    # the key lookup reads the distance rounded to `distance_bits` bits of its whole range (the
    # farthest query on the grid included); it saturates beyond the k-th neighbour distance of most
    # training samples, so the comparisons need only the bits below that
    largest = int((np.abs(_farthest(levels, top) - levels) ** p).sum(axis=1).max())
    lsbs = max(0, min(largest.bit_length() - distance_bits, largest.bit_length() - 1))
    own = _pairwise(levels, p)
    np.fill_diagonal(own, np.iinfo(np.int64).max)
    kth = np.sort(own, axis=1)[:, min(n_neighbors, n - 1) - 1] if n > 1 else np.zeros(1, np.int64)
    rounded_max = (largest + ((1 << lsbs) >> 1)) >> lsbs
    cutoff = min(int(np.ceil(np.percentile(kth, _COVERED) / (1 << lsbs))) + 1, rounded_max)
    key_bits = max(1, cutoff.bit_length())
    size = 1 << max(1, (rounded_max << lsbs).bit_length())
    label_bits = max(1, (n_classes - 1).bit_length())
    level = (np.arange(size) + ((1 << lsbs) >> 1)) >> lsbs  # the rounded value's level (exact on multiples)
    pack = (np.minimum(level, (1 << key_bits) - 1)[:, None] << label_bits) + labels[None, :]

    width = levels.shape[1] * top
    nodes = [
        Node("x", "input", [], {"shape": (width,), "dtype": "float"}),
        Node(
            "bits", "quant", ["x"], {"scale": 1.0, "zero_point": 0, "qmin": 0, "qmax": 1, "n_bits": 1, "side": "client"}
        ),
        Node("distances", "qgemm", ["bits"], {"weight": weight, "bias": bias, "zero_point": 0}),
    ]
    read = "distances"
    if lsbs:
        nodes.append(Node("distances_round", "round", ["distances"], {"lsbs": lsbs, "method": rounding}))
        read = "distances_round"
    top_key = int(pack.max())
    nodes.append(
        Node("keys", "tlu", [read], {"chain": [{"op": "table", "attrs": {"table": pack}}], "bounds": (0, top_key)})
    )
    net = selection_network(n, n_neighbors)
    nodes += _network_nodes(net, "keys", key_bits + label_bits, top_key)
    keep = (np.arange(1 << (key_bits + label_bits)) & ((1 << label_bits) - 1)).astype(np.int64)
    nodes += [
        Node(
            "classes",
            "tlu",
            [nodes[-1].name],
            {"chain": [{"op": "table", "attrs": {"table": keep}}], "bounds": (0, n_classes - 1)},
        ),
        Node("output", "dequant", ["classes"], {"scale": 1.0, "offset": 0.0, "side": "client"}),
    ]
    graph = Graph(nodes, ["output"]).verify("build_knn")
    corners = np.stack([level_values(spec, f)[_farthest(levels[:, f], top)] for f in range(levels.shape[1])], axis=1)
    return KNNCircuit(graph, spec, n + net.n_comparators + n_neighbors, corners)


def _pairwise(levels: np.ndarray, p: int) -> np.ndarray:
    diff = np.abs(levels[:, None, :] - levels[None, :, :])
    return (diff**p).sum(axis=2)


def _network_nodes(net, keys: str, key_bits: int, top: int) -> list:
    """The comparator layers as graph nodes; ends with a ``gather`` of the output wires.

    Every node declares the range it has for any query (keys in ``0 .. top``): calibration queries
    need not reach a negative difference in every layer for the circuit to have one."""
    key, diff, low = {"bounds": (0, top)}, {"bounds": (-top, top)}, {"bounds": (-top, 0)}
    size = 1 << (key_bits + 1)
    codes = np.arange(size)
    signed = np.where(codes >= size // 2, codes - size, codes)
    minimum = np.minimum(signed, 0).astype(np.int64)
    position = {w: w for w in range(net.n_inputs)}  # wire -> index in the current value
    current = keys
    uses = _last_use(net)
    nodes = []
    for i, layer in enumerate(net.layers):
        a = np.array([position[c[0]] for c in layer], np.int64)
        b = np.array([position[c[1]] for c in layer], np.int64)
        p = f"cmp{i}"
        nodes += [
            Node(f"{p}_a", "gather", [current], {"index": a, **key}),
            Node(f"{p}_b", "gather", [current], {"index": b, **key}),
            Node(f"{p}_d", "sub", [f"{p}_a", f"{p}_b"], dict(diff)),
            Node(f"{p}_m", "tlu", [f"{p}_d"], {"chain": [{"op": "table", "attrs": {"table": minimum}}], **low}),
            Node(f"{p}_lo", "add", [f"{p}_b", f"{p}_m"], dict(key)),
            Node(f"{p}_hi", "sub", [f"{p}_a", f"{p}_m"], dict(key)),
            Node(f"{p}_all", "concat", [current, f"{p}_lo", f"{p}_hi"], {"axis": 1, **key}),
        ]
        width = len(position)
        merged = dict(position)
        for j, (_, _, lo, hi) in enumerate(layer):
            merged[lo] = width + j
            merged[hi] = width + len(layer) + j
        live = [w for w in merged if w >= 0 and uses.get(w, -1) > i]
        nodes.append(
            Node(f"{p}_wires", "gather", [f"{p}_all"], {"index": np.array([merged[w] for w in live], np.int64), **key})
        )
        position = {w: k for k, w in enumerate(live)}
        current = f"{p}_wires"
    nodes.append(
        Node("selected", "gather", [current], {"index": np.array([position[w] for w in net.outputs], np.int64), **key})
    )
    return nodes


def _last_use(net) -> dict:
    """The last layer reading each wire (outputs count as read after the last layer)."""
    uses = {}
    for i, layer in enumerate(net.layers):
        for a, b, _, _ in layer:
            uses[a] = uses[b] = i
    for w in net.outputs:
        uses[w] = len(net.layers)
    return uses
