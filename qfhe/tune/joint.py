"""Rounding and lookup error probability tuned together, by the circuit's cost.

``rounding_threshold_bits="auto"`` and :func:`~qfhe.find_best_p_error` share one accuracy budget.
Run one after the other with the whole budget given to rounding, the rounding spends it all and
the error probability is left at 1e-6..1e-3, where every lookup costs 30-40 % more than at 0.1
(``benchmarks/vs_concrete_ml.py``: on the digits MLP, half the budget for rounding gave
``p_error`` 0.06, 23-28 % lower cost, and higher test accuracy). :func:`tune_circuit` tries several
shares of the budget for rounding, lets the error-probability search spend the rest (each judged
against the unrounded model, so the whole budget holds for the end result), and keeps the
candidate concrete estimates cheapest.

Examples
--------
>>> import numpy as np, torch
>>> X = np.random.RandomState(0).randn(300, 6); y = (X[:, 0] + X[:, 1] > 0).astype(int)
>>> torch.manual_seed(0); m = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
<torch._C.Generator object at ...>
>>> r = tune_circuit(m, X, X[:150], y[:150], max_metric_loss=0.02, shares=(0.5, 1.0))
>>> r.model.is_compiled, r.share in (0.5, 1.0), len(r.candidates)
(True, True, 2)
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

from qfhe.errors import CalibrationWarning, ConfigurationError, InputClippingWarning, NoParametersError
from qfhe.report import Table
from qfhe.validation import as_float

#: Shares of the budget the rounding search may spend; the error-probability search gets the rest
DEFAULT_SHARES = (0.25, 0.5, 1.0)


class TuningCandidates(Table):
    """One row per share of the budget tried: the rounding plan's widths, ``p_error``, cost.

    Examples
    --------
    >>> print(TuningCandidates([{"share": 0.5, "lookup_bits": "5, 6", "p_error": 0.06, "score": 0.96,
    ...                          "complexity": 1.8e10, "found": True}]))
    share  lookup_bits  p_error  score     complexity  found
    0.5           5, 6     0.06   0.96  18000000000.0   True
    """

    COLUMNS = ("share", "lookup_bits", "p_error", "score", "complexity", "found")


@dataclass
class TuneResult:
    """What :func:`tune_circuit` chose.

    Attributes
    ----------
    model : QuantizedModule
        The chosen circuit, compiled at its ``p_error`` (``model.rounding_plan`` holds its plan).
    share : float
        The share of the budget its rounding was allowed.
    p_error : float
        Per-lookup error probability chosen for it.
    candidates : TuningCandidates
        Every share tried, with concrete's cost estimate (``complexity``).
    seconds : float
        Wall time of the whole search.

    Examples
    --------
    >>> TuneResult(None, 0.5, 0.06).share
    0.5
    """

    model: object
    share: float
    p_error: float
    candidates: TuningCandidates = field(default_factory=TuningCandidates)
    seconds: float = 0.0


def _lookup_bits(qm) -> str:
    return ", ".join(map(str, sorted({r["tlu_bits"] for r in qm.bitwidth_report() if r["tlu_bits"] is not None})))


def tune_circuit(
    model,
    inputset,
    X_val,
    y_val,
    max_metric_loss: float = 0.01,
    shares=DEFAULT_SHARES,
    metric=None,
    qat: bool = False,
    random_state: int = 0,
    **quantize_kwargs,
) -> TuneResult:
    """Tune a torch model's circuit from its float weights: rounding plan and ``p_error`` together.

    For each share ``s`` of ``max_metric_loss``: ``rounding_threshold_bits="auto"`` within
    ``s * max_metric_loss`` of the unrounded model, then :func:`~qfhe.find_best_p_error` within
    ``max_metric_loss`` of that same unrounded model (so rounding and lookup errors together stay
    within the budget). The candidate with the lowest concrete cost estimate wins; one whose
    search found no passing ``p_error`` is kept only if none passed.

    Parameters
    ----------
    model : torch.nn.Module
        A float model (or a Brevitas QAT model with ``qat=True``).
    inputset : array-like
        Calibration samples, as for :func:`~qfhe.compile_torch_model`.
    X_val, y_val : array-like
        Labelled validation samples the searches judge on.
    max_metric_loss : float
        The budget, in the metric's units (0.01 = one accuracy point).
    shares : sequence of float
        Fractions of the budget the rounding may use, each in (0, 1].
    metric : str, callable or None
        As in :func:`~qfhe.find_best_p_error`.
    qat : bool
        Quantize with :func:`~qfhe.quantize_brevitas_qat_model` instead of
        :func:`~qfhe.quantize_torch_model`.
    random_state : int
        Seeds every simulation: equal seeds give equal choices.
    **quantize_kwargs
        Passed to the quantizer (``n_bits``, ``per_channel``...).

    Returns
    -------
    TuneResult

    Raises
    ------
    ConfigurationError
        For an empty ``shares``, a share outside (0, 1] or a negative budget.
    NoParametersError
        If no share's circuit compiles at any error probability (a share whose circuit does not is
        skipped, its row marked ``found=False``).

    Examples
    --------
    >>> tune_circuit(None, None, None, None, shares=(0.0,))
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: shares must be fractions of the budget in (0, 1], got (0.0,)
    """
    start = time.perf_counter()
    shares = tuple(shares)
    if not shares or not all(isinstance(s, (int, float)) and 0 < s <= 1 for s in shares):
        raise ConfigurationError(f"shares must be fractions of the budget in (0, 1], got {shares!r}")
    budget = as_float(
        "max_metric_loss",
        max_metric_loss,
        0.0,
        math.inf,
        closed=True,
        what=">= 0 (the allowed loss in the metric's units, e.g. 0.01)",
    )
    from qfhe.compile import quantize_brevitas_qat_model, quantize_torch_model
    from qfhe.tune.p_error import find_best_p_error

    quantize = quantize_brevitas_qat_model if qat else quantize_torch_model
    rows, best = TuningCandidates(), None
    for k, share in enumerate(shares):
        with warnings.catch_warnings():
            if k:  # the calibration, and so its warnings, is the same for every share: say them once
                warnings.simplefilter("ignore", CalibrationWarning)
                warnings.simplefilter("ignore", InputClippingWarning)
            qm = quantize(
                model,
                inputset,
                rounding_threshold_bits="auto",
                X_val=X_val,
                y_val=y_val,
                rounding_tolerance=share * budget,
                rounding_metric=metric,
                **quantize_kwargs,
            )
        try:
            search = find_best_p_error(
                qm,
                X_val,
                y_val,
                metric=metric,
                max_metric_loss=budget,
                progress=False,
                random_state=random_state,
                reference=qm.rounding_plan.reference_model,
            )
        except NoParametersError:  # this share's rounding left lookups too wide to compile: not a candidate
            rows.append(
                {
                    "share": share,
                    "lookup_bits": _lookup_bits(qm),
                    "p_error": None,
                    "score": None,
                    "complexity": None,
                    "found": False,
                }
            )
            continue
        cost = float(qm.statistics["complexity"])
        rows.append(
            {
                "share": share,
                "lookup_bits": _lookup_bits(qm),
                "p_error": float(f"{search.p_error:.3g}"),
                "score": round(search.score, 4),
                "complexity": float(f"{cost:.3g}"),
                "found": search.found,
            }
        )
        key = (not search.found, cost)
        if best is None or key < best[0]:
            best = (key, qm, share, search.p_error)
    if best is None:
        raise NoParametersError(
            f"tune_circuit: concrete-python found no cryptographic parameters for any rounding "
            f"plan tried (shares {shares}): every plan left lookups too wide; allow a larger "
            "max_metric_loss or quantize to fewer bits (n_bits)"
        )
    _, qm, share, p_error = best
    if not qm.is_compiled:  # the search leaves its model compiled at its choice; a no-lookup model is not
        qm.compile(p_error=p_error)
    return TuneResult(qm, share, p_error, rows, time.perf_counter() - start)
