"""What the neural-net estimators' ``"auto"`` settings resolve to: the architecture floor, the
training budget, and the per-neuron accumulator bound that follows the bit-widths.

Measured in ``benchmarks/builtin_nn.py`` (docs/guides/estimators.md).

Examples
--------
>>> MIN_WIDTH, OUTPUT_WIDTH, MIN_STEPS, MIN_EPOCHS
(64, 3, 3000, 60)
"""

from __future__ import annotations

from torch import nn

from qfhe.errors import ConfigurationError
from qfhe.prune.bound import max_inputs, worst_case_bits
from qfhe.prune.unstructured import layer_ranges

#: Default architecture (measured in benchmarks/builtin_nn.py on iris, wine, breast_cancer, digits,
#: diabetes and make_classification sets of 5, 20 and 200 features): hidden layers at least
#: MIN_WIDTH wide, and OUTPUT_WIDTH neurons per class; ``max_epochs="auto"`` trains a classifier
#: MIN_STEPS optimizer steps, a regressor MIN_EPOCHS epochs (regression overfits sooner: on diabetes
#: 3000 steps gave R² 0.23, 60 epochs 0.39, over the same 5 splits). Width 64 rather than 32 (with
#: batches of 32 and AdamW's decay): wine 0.961 -> 0.967, 20 features 0.748 -> 0.78-0.81, digits
#: 0.967 -> 0.98 over 5 splits, for twice the lookups (``prune()`` halves them again).
MIN_WIDTH = 64
OUTPUT_WIDTH = 3
MIN_STEPS = 3000
MIN_EPOCHS, MAX_EPOCHS = 60, 500
#: ``rounding_threshold_bits="auto"`` without ``X_val``: this many of ``fit``'s samples measure it
AUTO_ROUNDING_SAMPLES = 1000
#: ``n_accum_bits="auto"``: every neuron may keep this many weights (all of them below that fan-in)
AUTO_KEEP = 12
#: An explicit ``n_accum_bits`` that leaves a neuron fewer weights than this (and than its fan-in) is
#: refused: 1-3 weights per neuron is a collapsed model, not a narrow one.
MIN_KEEP = 4


def resolve_accum_bits(n_accum_bits, module: nn.Module, example_input, bits: str) -> int | None:
    """The per-neuron accumulator width a :class:`QuantMLP` trains with.

    ``"auto"`` follows the bit-widths: the narrowest width from 8 bits up in which every neuron
    can keep ``AUTO_KEEP`` weights (or its whole fan-in). An int is checked: it must leave every
    neuron ``MIN_KEEP`` weights (or its whole fan-in).

    Parameters
    ----------
    n_accum_bits : int, "auto" or None
    module : QuantMLP
    example_input : ndarray
        Two standardised samples.
    bits : str
        The bit-width settings, for the error message.

    Raises
    ------
    ConfigurationError
        When an int keeps too few weights; the message gives the numbers and the width to use.

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe.sklearn.mlp import QuantMLP
    >>> m = QuantMLP(64, 10, (32, 32), n_input_bits=4, n_w_bits=3, n_a_bits=3)
    >>> x = np.zeros((2, 64), np.float32)
    >>> resolve_accum_bits("auto", m, x, ""), resolve_accum_bits(9, m, x, "")
    (10, 9)
    """
    if n_accum_bits is None:
        return None
    ranges = [(r, r.module.weight[0].numel()) for r in layer_ranges(module, example_input)]
    need = max(worst_case_bits(min(AUTO_KEEP, fan_in), r.weight, r.inputs) for r, fan_in in ranges)
    if isinstance(n_accum_bits, str):
        return max(8, need)
    for r, fan_in in ranges:
        k = max_inputs(int(n_accum_bits), r.weight, r.inputs)
        if k < min(fan_in, MIN_KEEP):
            raise ConfigurationError(
                f"n_accum_bits={n_accum_bits} would keep at most {k} of {fan_in} weights per neuron in layer "
                f"'{r.name}' ({bits}: weight codes {r.weight} times input codes {r.inputs}), which collapses the "
                f"model. Use n_accum_bits='auto' ({max(8, need)} bits here, {AUTO_KEEP} weights per neuron) or at "
                f"least {worst_case_bits(min(fan_in, MIN_KEEP), r.weight, r.inputs)}, or fewer weight/activation bits"
            )
    return int(n_accum_bits)
