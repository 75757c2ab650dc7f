"""The default TFHE compilation pipeline, top to bottom.

1. ``canonicalize``  float graph: :func:`sink_reshapes`, then :func:`fold_affine` (BatchNorm into the
                     layer before it), then :func:`fold_affine_into_gemm` (an affine into the
                     linear layers after it: input BatchNorm, per-feature input scaling).
2. ``calibrate``     the range of every float value on the inputset (min/max or percentiles),
                     each checked for outliers (:mod:`qfhe.quant.calibration`).
3. ``quantize``      :func:`quantize_graph`: integer weights, explicit dequant/quant chains.
4. ``fuse_lut``      one table lookup per requantization chain.
5. ``bitwidths``     predict every encrypted value's range and width.
6. ``rounding``      :func:`insert_rounding` before wide table lookups, then re-analyse and check
                     that no table lookup reads more than 16 bits.

Steps 5–6 are separate (:func:`plan_rounding`) so a compiled model can re-plan rounding without
re-importing or re-calibrating the model.

Examples
--------
>>> import numpy as np, torch
>>> from qfhe.frontend import import_torch
>>> from qfhe.quant import parse_n_bits, parse_rounding
>>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> X = np.random.RandomState(0).randn(50, 4)
>>> fused = build_integer_graph(canonicalize(import_torch(m, torch.tensor(X))), X, parse_n_bits(4))
>>> g, info = plan_rounding(fused, X, parse_rounding(3))
>>> g.ops()
['input', 'quant', 'qgemm', 'round', 'tlu', 'qgemm', 'dequant']
"""

from __future__ import annotations

import numpy as np

from qfhe.ir.graph import Graph
from qfhe.passes.bitwidth import ValueInfo, analyze_bitwidths, check_tlu_widths
from qfhe.passes.canonicalize import fold_affine, fold_affine_into_gemm, sink_reshapes
from qfhe.passes.fuse_lut import fuse_lut
from qfhe.passes.quantize import quantize_graph
from qfhe.passes.rounding import insert_rounding
from qfhe.quant.calibration import calibrate, warn_outlier_ranges
from qfhe.quant.config import NBits, Rounding

FLOAT_PASSES = (sink_reshapes, fold_affine, fold_affine_into_gemm)


def canonicalize(graph: Graph) -> Graph:
    """Run the float passes in order (see module docstring).

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> canonicalize(Graph([Node("x", "input", [], {"shape": (1,), "dtype": "float"})], ["x"])).ops()
    ['input']
    """
    for p in FLOAT_PASSES:
        graph = p(graph)
    return graph


def build_integer_graph(
    float_graph: Graph,
    inputset: np.ndarray,
    n_bits: NBits,
    per_channel: bool = False,
    qat: bool = False,
    calibration: str = "minmax",
    percentile: float = 99.9,
    checked_inputs=(),
    input_margin: float = 0.0,
) -> Graph:
    """Calibrate, quantize and fuse: the fused integer graph (no rounding yet).

    With ``qat=True`` the graph's own quantizers are used and nothing is calibrated. With
    ``calibration="minmax"``, every range a quantizer reads is checked for outliers
    (``checked_inputs``: inputs the caller checked per feature). ``input_margin`` widens each
    model input's range by that fraction of its width on each side.

    Examples
    --------
    >>> import torch
    >>> from qfhe.frontend import import_torch
    >>> from qfhe.quant import parse_n_bits
    >>> X = np.random.RandomState(0).randn(40, 3)
    >>> build_integer_graph(import_torch(torch.nn.Linear(3, 2), torch.tensor(X)), X, parse_n_bits(4)).ops()
    ['input', 'quant', 'qgemm', 'dequant']
    """
    if qat:
        return fuse_lut(quantize_graph(float_graph, {}, n_bits, per_channel, qat))
    ranges = calibrate(float_graph, inputset, calibration, percentile)
    for n in float_graph.nodes:
        if n.op == "input" and input_margin:
            lo, hi = ranges[n.name]
            ranges[n.name] = (lo - input_margin * (hi - lo), hi + input_margin * (hi - lo))
    quantized = quantize_graph(float_graph, ranges, n_bits, per_channel, qat)
    if calibration == "minmax":
        warn_outlier_ranges(ranges, skip=checked_inputs)
    return fuse_lut(quantized)


def plan_rounding(
    fused: Graph,
    compile_inputset: np.ndarray,
    rounding: Rounding | None,
    method: str = "calibration",
    margin: float = 0.0,
    qat: bool = False,
) -> tuple[Graph, dict[str, ValueInfo]]:
    """Insert rounding for ``rounding`` and return the graph with its final bit-width table.

    ``method`` and ``margin`` size the ranges (see :func:`qfhe.passes.bitwidth.analyze_bitwidths`).

    Raises
    ------
    BitWidthError
        If a table lookup would still read more than 16 bits.

    Examples
    --------
    >>> import torch
    >>> from qfhe.frontend import import_torch
    >>> from qfhe.quant import parse_n_bits
    >>> X = np.random.RandomState(0).randn(40, 3)
    >>> fused = build_integer_graph(import_torch(torch.nn.Linear(3, 2), torch.tensor(X)), X, parse_n_bits(4))
    >>> g, info = plan_rounding(fused, X, None)
    >>> info["0"].bits > 0
    True
    """
    graph = insert_rounding(fused, compile_inputset, rounding, method, margin)
    info = analyze_bitwidths(graph, compile_inputset, method, margin)
    check_tlu_widths(graph, info, qat)
    return graph, info
