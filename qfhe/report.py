"""The per-layer bit-width report.

Examples
--------
>>> r = BitwidthReport([{"layer": "fc1", "value": "fc1", "tlu": "fc1_act", "acc_min": -90, "acc_max": 75, "acc_bits": 8,
...                      "tlu_bits": 6, "lsbs_removed": 2}])
>>> print(r)
layer  acc_min  acc_max  acc_bits  tlu_bits  lsbs_removed
fc1        -90       75         8         6             2
>>> r[0]["acc_bits"]
8
"""

from __future__ import annotations

COLUMNS = ("layer", "acc_min", "acc_max", "acc_bits", "tlu_bits", "lsbs_removed")


class Table(list):
    """A list of dicts whose ``str()`` is an aligned table of the ``COLUMNS`` keys.

    Examples
    --------
    >>> class T(Table):
    ...     COLUMNS = ("a", "b")
    >>> print(T([{"a": "x", "b": 1}, {"a": "yy", "b": None}]))
    a   b
    x   1
    yy  -
    """

    COLUMNS: tuple = ()

    def __str__(self) -> str:
        cols = self.COLUMNS
        cells = [list(cols)] + [["-" if r[c] is None else str(r[c]) for c in cols] for r in self]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
        lines = []
        for row in cells:
            lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
        return "\n".join(lines)


class BitwidthReport(Table):
    """A list of per-layer dicts whose ``str()`` is an aligned table.

    One row per layer whose accumulator feeds a table lookup, and per circuit output. Each dict
    has ``layer`` (the torch module name), ``acc_min``, ``acc_max``, ``acc_bits``, ``tlu_bits``
    (None for a circuit output, which has no table lookup), ``lsbs_removed``, ``value`` (the
    accumulator's graph node) and ``tlu`` (the first lookup reading it).

    Examples
    --------
    >>> len(BitwidthReport([]))
    0
    """

    COLUMNS = COLUMNS
