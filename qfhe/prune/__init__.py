"""Pruning for narrow accumulators: per-neuron unstructured pruning with a guaranteed bound,
structured pruning with torch-pruning, and fine-tuning that keeps the masks.

Examples
--------
>>> from qfhe.prune import accumulator_bound
>>> accumulator_bound(n_weight_bits=3, n_input_bits=3, n_accum_bits=8)
6
"""

from qfhe.prune.bound import accumulator_bound
from qfhe.prune.finetune import fine_tune
from qfhe.prune.structured import prune_structured
from qfhe.prune.unstructured import PruningReport, accumulator_report, prune_to_accumulator, reapply_masks, remove_masks

__all__ = [
    "accumulator_bound",
    "prune_to_accumulator",
    "accumulator_report",
    "PruningReport",
    "remove_masks",
    "reapply_masks",
    "prune_structured",
    "fine_tune",
]
