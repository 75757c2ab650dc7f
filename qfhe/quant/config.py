"""Parsing and validation of the user-facing quantization settings.

Examples
--------
>>> parse_n_bits(4)
NBits(model_inputs=4, op_inputs=4, op_weights=4, model_outputs=4)
>>> parse_n_bits({"op_inputs": 5})
NBits(model_inputs=5, op_inputs=5, op_weights=5, model_outputs=8)
>>> parse_rounding({"n_bits": 5, "method": "APPROXIMATE"})
Rounding(n_bits=5, method='approximate')
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from qfhe.errors import ConfigurationError
from qfhe.validation import as_int

#: Defaults for keys missing from an ``n_bits`` dict: ``op_inputs`` is 6; ``op_weights`` and
#: ``model_inputs`` follow ``op_inputs``; ``model_outputs`` is 8 (output precision costs no PBS width).
DEFAULT_OP_INPUTS = 6
DEFAULT_MODEL_OUTPUTS = 8
_KEYS = ("model_inputs", "op_inputs", "op_weights", "model_outputs")


@dataclass(frozen=True)
class NBits:
    """Bit-widths of the four kinds of quantized tensors.

    Parameters
    ----------
    model_inputs : int
        Client-side input quantization.
    op_inputs : int
        Activations feeding linear ops (outputs of table lookups).
    op_weights : int
        Weights of linear/convolution layers.
    model_outputs : int
        Output of a final activation (unused when the graph ends in a linear op).

    Examples
    --------
    >>> NBits(8, 4, 3, 8).op_weights
    3
    """

    model_inputs: int
    op_inputs: int
    op_weights: int
    model_outputs: int


def _check_bits(name: str, value) -> int:
    return as_int(f"n_bits['{name}']", value, 2, 16)


def parse_n_bits(n_bits) -> NBits:
    """Turn an int or a dict into :class:`NBits` (documented defaults fill missing keys).

    Raises
    ------
    ConfigurationError
        For an unknown key or a width outside 2..16.

    Examples
    --------
    >>> parse_n_bits({"op_input": 3})
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: n_bits has unknown key 'op_input'; valid keys: model_inputs, op_inputs, op_weights, model_outputs
    """
    if isinstance(n_bits, dict):
        for key in n_bits:
            if key not in _KEYS:
                raise ConfigurationError(f"n_bits has unknown key '{key}'; valid keys: {', '.join(_KEYS)}")
        op_inputs = _check_bits("op_inputs", n_bits.get("op_inputs", DEFAULT_OP_INPUTS))
        return NBits(
            model_inputs=_check_bits("model_inputs", n_bits.get("model_inputs", op_inputs)),
            op_inputs=op_inputs,
            op_weights=_check_bits("op_weights", n_bits.get("op_weights", op_inputs)),
            model_outputs=_check_bits("model_outputs", n_bits.get("model_outputs", DEFAULT_MODEL_OUTPUTS)),
        )
    if not _is_int(n_bits) or not 2 <= n_bits <= 16:
        raise ConfigurationError(
            f"n_bits must be an int from 2 to 16 or a dict with keys {', '.join(_KEYS)}; got {n_bits!r}"
        )
    n = int(n_bits)
    return NBits(n, n, n, n)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Rounding:
    """Rounding applied before every table lookup.

    Parameters
    ----------
    n_bits : int
        Target TLU input width, sign bit included (what concrete-python reports).
    method : {"exact", "approximate"}
        ``exact`` is deterministic and costs about one PBS per removed bit; ``approximate`` costs
        nothing but may land one step off near the midpoint.

    Examples
    --------
    >>> Rounding(5, "approximate").method
    'approximate'
    """

    n_bits: int
    method: str = "exact"


def parse_rounding(value) -> "Rounding | dict[str, Rounding | None] | None":
    """Validate ``rounding_threshold_bits``: None, an int 2..8 (exact), a dict, or a per-layer dict.

    A dict with the key ``n_bits`` applies to every table lookup. Any other dict maps layer names
    (as in ``bitwidth_report()``) to an int, a ``{"n_bits", "method"}`` dict or None; layers it
    leaves out are not rounded. Layer names are checked against the graph by
    :func:`qfhe.passes.rounding.insert_rounding`.

    Raises
    ------
    ConfigurationError
        Naming the parameter (and layer) and the accepted forms.

    Examples
    --------
    >>> parse_rounding(6)
    Rounding(n_bits=6, method='exact')
    >>> parse_rounding({"fc1": 5, "fc2": {"n_bits": 4, "method": "approximate"}})
    {'fc1': Rounding(n_bits=5, method='exact'), 'fc2': Rounding(n_bits=4, method='approximate')}
    >>> parse_rounding({"n_bits": 6, "method": "fast"})
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: rounding_threshold_bits['method'] must be 'exact' or 'approximate', got 'fast'
    """
    if isinstance(value, dict) and value and "n_bits" not in value and "method" not in value:
        out: dict[str, Rounding | None] = {}
        for layer, v in value.items():
            if not isinstance(layer, str):
                raise ConfigurationError(
                    f"rounding_threshold_bits: per-layer keys must be layer names (str), got {layer!r}"
                )
            out[layer] = _parse_one(v, f"rounding_threshold_bits['{layer}']")
        return out
    return _parse_one(value, "rounding_threshold_bits")


def _parse_one(value, name: str) -> Rounding | None:
    if value is None:
        return None
    method = "exact"
    if isinstance(value, dict):
        unknown = set(value) - {"n_bits", "method"}
        if unknown or "n_bits" not in value:
            raise ConfigurationError(
                f"{name} as a dict needs the key 'n_bits' and optionally 'method'; got keys {sorted(value)}"
            )
        method = str(value.get("method", "exact")).lower()
        if method not in ("exact", "approximate"):
            raise ConfigurationError(f"{name}['method'] must be 'exact' or 'approximate', got {value.get('method')!r}")
        value = value["n_bits"]
    if not _is_int(value) or not 2 <= value <= 8:
        raise ConfigurationError(
            f"{name} must be None, an int from 2 to 8, {{'n_bits': int, 'method': 'exact'|'approximate'}}, "
            f"a per-layer dict of those, or 'auto'; got {value!r}"
        )
    return Rounding(int(value), method)
