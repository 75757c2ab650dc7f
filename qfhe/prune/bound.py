"""How many active inputs a neuron may have so that its accumulator fits a width, exactly.

An accumulator ``sum_i w_i * (x_i - zp) + b`` with k non-zero weights lies in
``[k * p_min + b, k * p_max + b]``, where ``p_min`` and ``p_max`` are the extreme products of one
weight code and one input code (after its zero point). Every product reaches them for some
weight and input, so the bound is tight. It fits ``n`` bits (sign bit included when it can be
negative, as concrete types integers) when that interval lies in the ``n``-bit range.

Examples
--------
>>> accumulator_bound(n_weight_bits=3, n_input_bits=3, n_accum_bits=8)   # 3-bit weights in [-3, 3], inputs in [0, 7]
6
>>> worst_case_bits(6, (-3, 3), (0, 7))
8
"""

from __future__ import annotations

from qfhe.ir.numeric import integer_bit_width, width_range
from qfhe.validation import as_bool, as_int


def weight_code_range(n_bits: int, narrow: bool = True) -> tuple[int, int]:
    """Integer codes of a symmetric signed weight quantizer.

    Examples
    --------
    >>> weight_code_range(3), weight_code_range(3, narrow=False)
    ((-3, 3), (-4, 3))
    """
    lo, hi = width_range(n_bits, True)
    return (lo + 1 if narrow else lo), hi


def input_code_range(n_bits: int, signed: bool = False, zero_point: int = 0) -> tuple[int, int]:
    """Codes an input takes after its zero point is subtracted.

    Examples
    --------
    >>> input_code_range(3), input_code_range(3, signed=True), input_code_range(3, zero_point=5)
    ((0, 7), (-4, 3), (-5, 2))
    """
    lo, hi = width_range(n_bits, signed)
    return lo - zero_point, hi - zero_point


def _products(w: tuple[int, int], x: tuple[int, int]) -> tuple[int, int]:
    corners = [a * b for a in w for b in x]
    return min(corners), max(corners)


def worst_case_bits(k: int, w: tuple[int, int], x: tuple[int, int], bias: int = 0) -> int:
    """Width of the widest accumulator k weights in ``w`` times inputs in ``x`` (plus ``bias``) can give.

    Examples
    --------
    >>> worst_case_bits(64, (-3, 3), (0, 7))
    12
    """
    p_min, p_max = _products(w, x)
    return integer_bit_width(k * min(p_min, 0) + bias, k * max(p_max, 0) + bias)


def max_inputs(n_accum_bits: int, w: tuple[int, int], x: tuple[int, int], bias: int = 0) -> int:
    """Largest k whose worst-case accumulator (with ``bias``) fits ``n_accum_bits``; 0 if none does.

    Examples
    --------
    >>> max_inputs(8, (-3, 3), (0, 7)), max_inputs(8, (-3, 3), (0, 7), bias=100)
    (6, 1)
    """
    p_min, p_max = _products(w, x)
    lo, hi = width_range(n_accum_bits, True)
    if integer_bit_width(min(bias, 0), max(bias, 0)) > n_accum_bits:
        return 0
    # k * p_min + bias >= lo and k * p_max + bias <= hi (a sum that cannot be negative may also
    # use the unsigned range, which the second bound then covers)
    never_negative = p_min >= 0 and bias >= 0
    hi = width_range(n_accum_bits, False)[1] if never_negative else hi
    k_lo = (bias - lo) // -p_min if p_min < 0 else None
    k_hi = (hi - bias) // p_max if p_max > 0 else None
    bounds = [k for k in (k_lo, k_hi) if k is not None]
    return max(0, min(bounds)) if bounds else 1 << 62


def accumulator_bound(
    n_weight_bits: int,
    n_input_bits: int,
    n_accum_bits: int,
    signed_inputs: bool = False,
    narrow_weights: bool = True,
    input_zero_point: int = 0,
) -> int:
    """The largest k such that ANY k inputs of these widths fit an ``n_accum_bits`` accumulator.

    Parameters
    ----------
    n_weight_bits : int
        Width of the symmetric signed weight codes.
    n_input_bits : int
        Width of the input codes.
    n_accum_bits : int
        Target accumulator width, sign bit included (as concrete counts it).
    signed_inputs : bool
        Input codes in ``[-2^(n-1), 2^(n-1) - 1]`` instead of ``[0, 2^n - 1]``.
    narrow_weights : bool
        Weight codes in ``[-(2^(n-1) - 1), 2^(n-1) - 1]`` (Brevitas' default) instead of full range.
    input_zero_point : int
        Subtracted from the input codes before the product (affine activations).

    Returns
    -------
    int
        0 when even one input does not fit.

    Examples
    --------
    >>> accumulator_bound(3, 3, 8), accumulator_bound(3, 3, 8, signed_inputs=True)
    (6, 10)
    >>> accumulator_bound(8, 8, 8)
    0
    """
    n_w = as_int("n_weight_bits", n_weight_bits, 2, 16)
    n_a = as_int("n_input_bits", n_input_bits, 1, 16)
    n_acc = as_int("n_accum_bits", n_accum_bits, 2, 32)
    x = input_code_range(n_a, as_bool("signed_inputs", signed_inputs), as_int("input_zero_point", input_zero_point))
    return max_inputs(n_acc, weight_code_range(n_w, as_bool("narrow_weights", narrow_weights)), x)
