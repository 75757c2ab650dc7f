"""Calibration: the float range every quantizer of a post-training-quantized model covers.

Every range comes from the inputset, so one bad row can stretch a quantizer until ordinary values
share one or two codes (a digits MLP calibrated with one extra row of 50s, data in [0, 1], falls
from 0.956 to 0.082). Each range is therefore checked with a robust statistic: the width of the
0.5-99.5 percentile body against the full min-max width. A range more than ``OUTLIER_RATIO``
times its body loses about 3 bits of resolution to a few values, and is named in a
``CalibrationWarning``. This runs on every range a quantizer reads, hidden activations included,
and on each input feature when the client scales features one by one.

``calibration="percentile"`` (as Brevitas' percentile statistics) takes the
``[100 - p, p]`` percentiles instead of min/max: the few values beyond are clipped, the body
keeps its resolution.

At inference, :func:`saturated` finds the values a table lookup's requantization clips: an input
inside the calibrated input box can still drive a hidden activation beyond its calibrated range.

Examples
--------
>>> import torch
>>> from qfhe.frontend import import_torch
>>> X = np.linspace(-1, 1, 200).reshape(100, 2); X[0, 0] = 60.0
>>> g = import_torch(torch.nn.Linear(2, 1), torch.tensor(X[:2]))
>>> ranges = calibrate(g, X, "percentile", 99.0)
>>> ranges[g.nodes[0].name][1] < 2
True
"""

from __future__ import annotations

import warnings

import numpy as np

from qfhe.errors import CalibrationWarning, ConfigurationError
from qfhe.ir.graph import Graph, Node
from qfhe.ir.interpreter import run
from qfhe.ir.ops import evaluate
from qfhe.quant.quantizer import CLIP_SLACK
from qfhe.validation import as_float, user_stacklevel

#: Calibration methods: ``minmax`` (the observed range) and ``percentile`` (clips the tails).
CALIBRATIONS = ("minmax", "percentile")
#: A range wider than this many times its 0.5-99.5 percentile body is dominated by outliers (about
#: 3 of a quantizer's bits go to them).
OUTLIER_RATIO = 8.0
#: Percentiles are taken on at most this many values of a tensor (evenly strided, deterministic).
MAX_SAMPLE = 1 << 20


def check_calibration(calibration: str, percentile) -> tuple[str, float]:
    """Validate ``calibration`` and ``calibration_percentile``.

    Examples
    --------
    >>> check_calibration("Percentile", 99.9)
    ('percentile', 99.9)
    """
    name = calibration.lower() if isinstance(calibration, str) else calibration
    if name not in CALIBRATIONS:
        raise ConfigurationError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    return name, as_float("calibration_percentile", percentile, 50.0, 100.0, closed=True)


def _values(value: np.ndarray) -> np.ndarray:
    flat = np.asarray(value, np.float64).reshape(-1)
    return flat if flat.size <= MAX_SAMPLE else flat[:: -(-flat.size // MAX_SAMPLE)]


def _stats(flat: np.ndarray, method: str, percentile: float) -> tuple[tuple[float, float], float]:
    """The range to quantize and the outlier ratio (full width over the body's width)."""
    lo, hi = float(flat.min()), float(flat.max())
    qlo, qhi = (float(v) for v in np.quantile(flat, [0.005, 0.995]))
    ratio = (hi - lo) / (qhi - qlo) if qhi > qlo else 1.0
    if method == "percentile":
        lo, hi = (float(v) for v in np.percentile(flat, [100.0 - percentile, percentile]))
    return (lo, hi), ratio


def percentile_range(X: np.ndarray, percentile: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``[100 - p, p]`` percentiles of ``X`` (n, F).

    Examples
    --------
    >>> lo, hi = percentile_range(np.arange(101.0).reshape(-1, 1), 99.0)
    >>> lo.tolist(), hi.tolist()
    ([1.0], [99.0])
    """
    lo, hi = np.percentile(X, [100.0 - percentile, percentile], axis=0)
    return lo, hi


class Ranges(dict):
    """Node name → (low, high), remembering which ranges were read (by the quantizer) and each
    range's outlier ratio (full width over the width of its 0.5-99.5 percentile body).

    Examples
    --------
    >>> r = Ranges({"a": (0.0, 1.0), "b": (0.0, 2.0)}, {"a": 1.0, "b": 20.0})
    >>> _ = r["b"]; sorted(r.read), r.outliers()
    (['b'], {'b': 20.0})
    """

    def __init__(self, ranges: dict, ratios: dict):
        super().__init__(ranges)
        self.ratios = ratios
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        """``dict.get``, remembering the read.

        Examples
        --------
        >>> r = Ranges({"a": (0.0, 1.0)}, {"a": 1.0}); r.get("a"), r.get("b"), sorted(r.read)
        ((0.0, 1.0), None, ['a'])
        """
        if key in self:
            return self[key]
        return default

    def outliers(self, skip=()) -> dict[str, float]:
        """The ranges read so far that outliers dominate (name → ratio).

        Examples
        --------
        >>> r = Ranges({"a": (0.0, 50.0)}, {"a": 50.0}); r.outliers(), (r["a"], r.outliers())[1]
        ({}, {'a': 50.0})
        """
        return {
            k: self.ratios[k] for k in sorted(self.read) if k not in skip and self.ratios.get(k, 1.0) > OUTLIER_RATIO
        }


def calibrate(graph: Graph, inputset, method: str = "minmax", percentile: float = 99.9) -> Ranges:
    """Range of every float value of ``graph`` on ``inputset``, with its outlier ratio.

    Parameters
    ----------
    graph : Graph
        Canonical float graph.
    inputset : ndarray or list of ndarray
        The interpreter's feed.
    method : {"minmax", "percentile"}
    percentile : float
        Upper percentile of ``"percentile"`` (the lower one is ``100 - percentile``).

    Returns
    -------
    Ranges

    Examples
    --------
    >>> import torch
    >>> from qfhe.frontend import import_torch
    >>> X = np.random.RandomState(0).rand(500, 4); X[3] = 50.0
    >>> g = import_torch(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()), torch.tensor(X[:2]))
    >>> r = calibrate(g, X); x = g.nodes[0].name
    >>> r[x][1], r.ratios[x] > OUTLIER_RATIO
    (50.0, True)
    """
    ranges: dict[str, tuple[float, float]] = {}
    ratios: dict[str, float] = {}

    def observe(node: Node, value: np.ndarray) -> None:
        ranges[node.name], ratios[node.name] = _stats(_values(value), method, percentile)

    run(graph, inputset, observe)
    return Ranges(ranges, ratios)


def warn_outlier_ranges(ranges: Ranges, skip=()) -> None:
    """Warn about the ranges the quantizer read that outliers dominate (``skip``: inputs checked per feature).

    Examples
    --------
    >>> r = Ranges({"fc1": (0.0, 50.0)}, {"fc1": 50.0}); _ = r["fc1"]
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_outlier_ranges(r)
    >>> str(w[0].message).split(":")[0]
    'calibrated ranges dominated by outliers'
    """
    wide = [f"'{k}' ({v:.0f}x)" for k, v in ranges.outliers(skip).items()]
    if wide:
        warnings.warn(
            f"calibrated ranges dominated by outliers: {', '.join(wide[:6])}{' ...' if len(wide) > 6 else ''} "
            f"are wider than {OUTLIER_RATIO:g} times the range 99% of their values lie in, so ordinary values "
            "collapse onto a few codes. Remove the outlying samples from the inputset, or pass "
            "calibration='percentile'",
            CalibrationWarning,
            stacklevel=user_stacklevel(),
        )


def warn_outlier_features(X: np.ndarray) -> None:
    """Name the features of ``X`` (n, F) whose range outliers dominate (per-feature input scaling).

    Examples
    --------
    >>> X = np.random.RandomState(0).rand(300, 3); X[5, 1] = 50.0
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_outlier_features(X)
    >>> str(w[0].message).split(":")[0]
    'input features dominated by outliers'
    """
    bad = []
    for j in range(X.shape[1]):
        ratio = _stats(X[:, j], "minmax", 100.0)[1]
        if ratio > OUTLIER_RATIO:
            i = int(np.argmax(np.abs(X[:, j] - np.median(X[:, j]))))
            bad.append(f"feature {j} ({ratio:.0f}x, e.g. sample {i} = {X[i, j]:.4g})")
    if bad:
        warnings.warn(
            f"input features dominated by outliers: {', '.join(bad[:6])}{' ...' if len(bad) > 6 else ''}: each range is "
            f"wider than {OUTLIER_RATIO:g} times the range 99% of the feature's values lie in, so ordinary values "
            "collapse onto a few codes. Remove the outlying samples from the inputset, or pass "
            "calibration='percentile'",
            CalibrationWarning,
            stacklevel=user_stacklevel(),
        )


def saturated(node: Node, x: np.ndarray) -> np.ndarray | None:
    """Per sample: does the requantization at the end of this ``tlu`` clip a value of ``x``?

    A value beyond the output quantizer's calibrated range by more than half a step is clipped to
    its edge code (None for a lookup that does not end in a quantizer).

    Examples
    --------
    >>> q = {"scale": 0.1, "zero_point": 0, "qmin": 0, "qmax": 7}
    >>> node = Node("t", "tlu", ["a"], {"chain": [{"op": "dequant", "attrs": {"scale": 0.1, "offset": 0.0}},
    ...                                           {"op": "quant", "attrs": q}]})
    >>> saturated(node, np.array([[3, 7], [3, 9]])).tolist()
    [False, True]
    """
    chain = node.attrs.get("chain") or []
    if not chain or chain[-1]["op"] != "quant":
        return None
    v = x
    for step in chain[:-1]:
        v = evaluate(step["op"], [v], step["attrs"])
    a = chain[-1]["attrs"]
    q = np.asarray(v, np.float64) / a["scale"] + a["zero_point"]
    slack = 0.5 + CLIP_SLACK * (a["qmax"] - a["qmin"] + 1)
    with np.errstate(invalid="ignore"):
        out = (q < a["qmin"] - slack) | (q > a["qmax"] + slack)
    return out.reshape(len(out), -1).any(axis=1)
