"""A tree ensemble as a qfhe integer graph: no comparison lookups, one small lookup per pair of leaves.

The circuit (per sample, all trees at once):

1. **Comparisons cost nothing.** The client quantizes each feature to one of ``2**n_bits`` uniform
   levels (the public grid any input quantizer has) and sends its *unary* code
   (:func:`qfhe.quant.preprocess.thermometer_spec`): bit ``j`` says "level <= j". A threshold maps
   to the last level on its left, so every comparison ``x <= t`` of the quantized trees is one of
   those bits (or a constant), which a ``gather`` picks. Concrete ML spends one lookup (after a
   rounding) per comparison instead.
2. **Path sums.** For a leaf at depth ``D`` the number of comparisons on its path that go its way,
   ``z = sum(c) + sum(1 - c)``, is a ``qgemm`` with weights +-1; the leaf is reached iff ``z == D``.
   The sums are at most the depth, so every value before the lookups is a few bits wide.
3. **One lookup per pair of sibling leaves.** A sample reaches one leaf per tree. For two leaves
   under the same parent, ``z = 2 * (matches above the parent) + c_parent`` is ``2D + 1`` for the
   left leaf, ``2D`` for the right one and smaller otherwise, so one lookup returns the reached
   leaf's quantized value, or 0. A leaf whose sibling is a subtree gets its own lookup. Models
   whose leaves hold one value per class (forests and trees with 3+ classes) look up a 0/1
   indicator per leaf instead, and a ``qgemm`` with the quantized leaf values sums them.
4. **The output** is that sum over trees, dequantized (scale per output, plus the ensemble's
   constant) on the client.

PBS per sample = sum over trees of (pairs of sibling leaves + leaves without a leaf sibling); with
indicators, the number of leaves. Leaves that cannot be reached under the quantized thresholds
(a contradictory path) cost nothing.

Examples
--------
>>> import numpy as np
>>> from sklearn.tree import DecisionTreeRegressor
>>> from qfhe.trees.ensemble import read_ensemble
>>> X = np.random.RandomState(0).rand(100, 2)
>>> ens = read_ensemble(DecisionTreeRegressor(max_depth=2, random_state=0).fit(X, X[:, 0] + X[:, 1]), X)
>>> g, spec, lookups = tree_graph(ens, X, 4, 6)
>>> g.ops(), lookups
(['input', 'quant', 'gather', 'qgemm', 'tlu', 'qgemm', 'dequant'], 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qfhe.errors import BitWidthError
from qfhe.ir.graph import Graph, Node
from qfhe.quant.preprocess import level_values, thermometer_spec
from qfhe.trees.ensemble import TreeEnsemble


@dataclass
class _Lookup:
    """One lookup: ``z = sum(coef * bit) + const``, then ``table[z]`` (codes not listed give 0)."""

    coef: dict = field(default_factory=dict)
    const: int = 0
    table: dict = field(default_factory=dict)  # z -> output code
    output: int | None = None  # value mode: the output it adds to
    leaf: tuple | None = None  # indicator mode: (tree index, node) of its leaf


def _comparison(spec: dict, levels: int, feature: int, threshold: float, strict: bool):
    """The comparison ``x <= threshold`` (``<`` when strict) on the grid: ``("bit", index)`` or a constant."""
    values = level_values(spec, feature)
    last = int(np.searchsorted(values, threshold, side="left" if strict else "right")) - 1
    if last < 0:
        return ("const", 0)
    if last >= levels - 1:
        return ("const", 1)
    return ("bit", feature * (levels - 1) + last)


def _match(expr: tuple[dict, int], term, left: bool, weight: int = 1) -> tuple[dict, int]:
    """``expr + weight * (c if left else 1 - c)`` for the comparison ``term``."""
    coef, const = dict(expr[0]), expr[1]
    kind, v = term
    if kind == "const":
        return coef, const + weight * (v if left else 1 - v)
    coef[v] = coef.get(v, 0) + (weight if left else -weight)
    return coef, const + (0 if left else weight)


def _quantize_values(ens: TreeEnsemble, bits: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-output scales and each tree's leaf values as integer codes (signed only when needed)."""
    scale = np.zeros(ens.n_outputs)
    for o in range(ens.n_outputs):
        vals = [
            t.value[t.left == -1][:, 0 if t.output is not None else o]
            for t in ens.trees
            if t.output is None or t.output == o
        ]
        v = np.concatenate(vals) if vals else np.zeros(1)
        top = np.abs(v).max()
        scale[o] = top / ((1 << (bits - 1)) - 1 if v.min() < 0 else (1 << bits) - 1) if top > 0 else 1.0
    codes = []
    for t in ens.trees:
        s = scale[t.output] if t.output is not None else scale[None, :]
        codes.append(np.rint(t.value / s).astype(np.int64))
    return scale, codes


def _tree_lookups(ens: TreeEnsemble, ti: int, codes: np.ndarray, terms: dict, indicator: bool) -> tuple[list, dict]:
    """The lookups of tree ``ti`` and its constant contribution per output (leaves reached whatever the input)."""
    t = ens.trees[ti]
    lookups: list[_Lookup] = []
    constant: dict = {}

    def add_leaf(node: int, expr, depth: int) -> None:
        if not expr[0]:  # reached for every input (the path's comparisons are constant and hold)
            if expr[1] == depth:
                for o, c in _leaf_outputs(t, codes, node):
                    constant[o] = constant.get(o, 0) + c
            return
        if indicator:
            lookups.append(_Lookup(expr[0], expr[1], {depth: 1}, None, (ti, node)))
        elif codes[node, 0]:
            lookups.append(_Lookup(expr[0], expr[1], {depth: int(codes[node, 0])}, t.output or 0))

    def feasible(expr, depth: int) -> bool:  # a path already lost to a constant comparison
        return expr[1] + sum(c for c in expr[0].values() if c > 0) >= depth

    stack = [(0, ({}, 0), 0)]
    while stack:
        node, expr, depth = stack.pop()
        if not feasible(expr, depth):
            continue
        if t.left[node] == -1:
            add_leaf(node, expr, depth)
            continue
        term = terms[ti, node]
        left, right = int(t.left[node]), int(t.right[node])
        if not indicator and term[0] == "bit" and t.left[left] == -1 and t.left[right] == -1:
            # both children are leaves: one lookup of 2 * (matches above) + c tells them apart
            coef = {k: 2 * c for k, c in expr[0].items()}
            coef[term[1]] = coef.get(term[1], 0) + 1
            z = 2 * depth
            table = {z + 1: int(codes[left, 0]), z: int(codes[right, 0])}
            table = {k: v for k, v in table.items() if v}
            if table and feasible((coef, 2 * expr[1]), 2 * depth):
                lookups.append(_Lookup(coef, 2 * expr[1], table, t.output or 0))
            continue
        stack.append((right, _match(expr, term, False), depth + 1))
        stack.append((left, _match(expr, term, True), depth + 1))
    return lookups, constant


def _leaf_outputs(t, codes: np.ndarray, node: int):
    if t.output is not None:
        return [(t.output, int(codes[node, 0]))]
    return [(o, int(c)) for o, c in enumerate(codes[node])]


def tree_graph(ens: TreeEnsemble, X: np.ndarray, n_bits: int, leaf_bits: int) -> tuple[Graph, dict, int]:
    """The integer graph computing ``ens`` on quantized features (see the module docstring).

    Requires: a :class:`TreeEnsemble` and calibration samples ``X`` (n, F) in the features' own
    units. Ensures: a fused integer graph (client ``quant`` of the unary codes, ``gather``,
    ``qgemm``, one ``tlu``, ``qgemm``, client ``dequant``) whose reference interpreter is the
    quantized model, and the client's thermometer spec.

    Parameters
    ----------
    ens : TreeEnsemble
    X : ndarray, shape (n_samples, n_features)
    n_bits : int
        Levels per feature: ``2**n_bits``.
    leaf_bits : int
        Width of each quantized leaf value.

    Returns
    -------
    graph : Graph
    spec : dict
        The client's :func:`~qfhe.quant.preprocess.thermometer_spec`.
    n_lookups : int
        Table lookups per sample.

    Examples
    --------
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from qfhe.trees.ensemble import read_ensemble
    >>> X = np.random.RandomState(0).rand(300, 4); y = (X[:, 0] > X[:, 1]).astype(int) + (X[:, 2] > 0.5)
    >>> ens = read_ensemble(RandomForestClassifier(3, max_depth=2, random_state=0).fit(X, y), X)
    >>> g, spec, n = tree_graph(ens, X, 5, 5)
    >>> spec["kind"], g["x"].attrs["shape"], n    # 3 classes: one indicator lookup per leaf
    ('thermometer', (124,), 12)
    """
    spec = thermometer_spec(np.asarray(X, np.float64), n_bits)
    levels = 1 << n_bits
    terms = {}
    for ti, t in enumerate(ens.trees):
        for node in np.flatnonzero(t.left != -1):
            terms[ti, int(node)] = _comparison(spec, levels, int(t.feature[node]), float(t.threshold[node]), ens.strict)
    indicator = any(t.output is None and t.value.shape[1] > 1 for t in ens.trees)
    scale, codes = _quantize_values(ens, leaf_bits)
    lookups: list[_Lookup] = []
    bias = np.zeros(ens.n_outputs, np.int64)
    for ti in range(len(ens.trees)):
        found, constant = _tree_lookups(ens, ti, codes[ti], terms, indicator)
        lookups += found
        for o, c in constant.items():
            bias[o] += c
    if not lookups:  # a constant model (one leaf, or thresholds off the grid): concrete needs an encrypted path
        lookups.append(_Lookup({0: 1}, 0, {}, 0))
    used = sorted({k for lk in lookups for k in lk.coef})
    col = {k: i for i, k in enumerate(used)}
    w_path = np.zeros((len(lookups), len(used)), np.int64)
    for r, lk in enumerate(lookups):
        for k, c in lk.coef.items():
            w_path[r, col[k]] = c
    b_path = np.array([lk.const for lk in lookups], np.int64)
    top = max(lk.const + sum(c for c in lk.coef.values() if c > 0) for lk in lookups)  # largest z
    size = 1 << int(top).bit_length()
    table = np.zeros((size, len(lookups)), np.int64)
    for r, lk in enumerate(lookups):
        for z, v in lk.table.items():
            table[z, r] = v
    w_out = np.zeros((ens.n_outputs, len(lookups)), np.int64)
    for r, lk in enumerate(lookups):
        if lk.leaf is None:
            w_out[lk.output, r] = 1
        else:
            ti, node = lk.leaf
            w_out[:, r] = codes[ti][node]
    width = ens.n_features * (levels - 1)
    nodes = [
        Node("x", "input", [], {"shape": (width,), "dtype": "float"}),
        Node(
            "bits", "quant", ["x"], {"scale": 1.0, "zero_point": 0, "qmin": 0, "qmax": 1, "n_bits": 1, "side": "client"}
        ),
        Node("comparisons", "gather", ["bits"], {"index": np.array(used, np.int64)}),
        Node("paths", "qgemm", ["comparisons"], {"weight": w_path, "bias": b_path, "zero_point": 0}),
        Node("leaves", "tlu", ["paths"], {"chain": [{"op": "table", "attrs": {"table": table}}]}),
        Node("sum", "qgemm", ["leaves"], {"weight": w_out, "bias": bias, "zero_point": 0}),
        Node(
            "output",
            "dequant",
            ["sum"],
            {"scale": scale[None, :], "offset": np.asarray(ens.base, np.float64)[None, :], "side": "client"},
        ),
    ]
    return Graph(nodes, ["output"]).verify("tree_graph"), spec, len(lookups)


#: Widest sum of leaf values a circuit may carry: the lookups that produce the leaf values write
#: them at the sum's width, and concrete's lookups go to 16 bits.
MAX_SUM_BITS = 16


def check_sum_width(ens: TreeEnsemble, info: dict, n_bits: int, leaf_bits: int) -> None:
    """Refuse an ensemble whose summed leaf values would be wider than :data:`MAX_SUM_BITS`.

    Raises
    ------
    BitWidthError
        Naming the width, the number of trees and what to lower.

    Examples
    --------
    >>> from qfhe.passes.bitwidth import ValueInfo
    >>> check_sum_width(TreeEnsemble([None] * 900, 3, 1, np.zeros(1), False), {"sum": ValueInfo(0, 1 << 17, 18, False)}, 8, 8)
    Traceback (most recent call last):
    ...
    qfhe.errors.BitWidthError: the sum over 900 trees of 8-bit leaf values needs 18 bits; lookups go to 16: lower n_bits (now 8) or use fewer trees (n_estimators)
    """
    bits = info["sum"].bits
    if bits > MAX_SUM_BITS:
        raise BitWidthError(
            f"the sum over {len(ens.trees)} trees of {leaf_bits}-bit leaf values needs {bits} bits; "
            f"lookups go to {MAX_SUM_BITS}: lower n_bits (now {n_bits}) or use fewer trees "
            "(n_estimators)"
        )


def quantize_ensemble(ens: TreeEnsemble, X: np.ndarray, n_bits: int = 6, leaf_bits: int | None = None):
    """The :class:`qfhe.QuantizedModule` of a tree ensemble: ``fhe="disable"`` at once, ``compile()`` for
    the circuit. It takes raw features (the client encodes them, see :func:`tree_graph`).

    Parameters
    ----------
    ens : TreeEnsemble
    X : ndarray, shape (n_samples, n_features)
        Calibration samples: they set each feature's grid and size the circuit.
    n_bits : int
        Levels per feature (``2**n_bits``), 2..8.
    leaf_bits : int, optional
        Width of each quantized leaf value (default: ``n_bits``).

    Examples
    --------
    >>> from sklearn.ensemble import RandomForestRegressor
    >>> from qfhe.trees.ensemble import read_ensemble
    >>> X = np.random.RandomState(0).rand(200, 3)
    >>> rf = RandomForestRegressor(n_estimators=4, max_depth=3, random_state=0).fit(X, X.sum(1))
    >>> qm = quantize_ensemble(read_ensemble(rf, X), X, n_bits=5)
    >>> from sklearn.metrics import r2_score
    >>> qm.input_shape, bool(r2_score(rf.predict(X), qm.forward(X)[:, 0]) > 0.95)
    ((3,), True)
    """
    from qfhe.compile import _subsample
    from qfhe.ir.ops import evaluate
    from qfhe.model import QuantizedModule
    from qfhe.passes.pipelines import plan_rounding
    from qfhe.quant.preprocess import apply_preprocess
    from qfhe.validation import as_int

    n_bits = as_int("n_bits", n_bits, 2, 8)
    leaf_bits = n_bits if leaf_bits is None else as_int("leaf_bits", leaf_bits, 2, 16)
    graph, spec, _ = tree_graph(ens, X, n_bits, leaf_bits)
    encoded = apply_preprocess(spec, np.asarray(X, np.float64))
    planned, info = plan_rounding(graph, encoded, None)
    check_sum_width(ens, info, n_bits, leaf_bits)
    codes = _subsample(evaluate("quant", [encoded], graph["bits"].attrs))
    settings = {
        "n_bits": n_bits,
        "rounding": None,
        "per_channel": False,
        "bitwidth_method": "calibration",
        "calibration_margin": 0.0,
        "qat": False,
        "leaf_bits": leaf_bits,
    }
    return QuantizedModule(graph, graph, planned, info, (ens.n_features,), settings, codes, [spec])
