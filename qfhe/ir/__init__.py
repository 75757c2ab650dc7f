"""The qfhe intermediate representation: graph, op vocabulary, reference interpreter."""

from qfhe.ir.graph import Graph, Node, rebuild
from qfhe.ir.interpreter import collect_ranges, run
from qfhe.ir.ops import evaluate

__all__ = ["Graph", "Node", "rebuild", "run", "collect_ranges", "evaluate"]
