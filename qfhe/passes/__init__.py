"""Compiler passes: functions from graph to graph (analyses return side tables)."""

from qfhe.passes.bitwidth import analyze_bitwidths
from qfhe.passes.canonicalize import fold_affine, sink_reshapes
from qfhe.passes.dce import dce
from qfhe.passes.fuse_lut import fuse_lut
from qfhe.passes.pipelines import build_integer_graph, canonicalize, plan_rounding
from qfhe.passes.quantize import quantize_graph
from qfhe.passes.rounding import insert_rounding

__all__ = [
    "sink_reshapes",
    "fold_affine",
    "quantize_graph",
    "fuse_lut",
    "analyze_bitwidths",
    "insert_rounding",
    "dce",
    "canonicalize",
    "build_integer_graph",
    "plan_rounding",
]
