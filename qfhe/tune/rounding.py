"""``rounding_threshold_bits="auto"``: the fewest lookup input bits, layer by layer, within a tolerance.

First, one approximate width for all layers: the fewest bits that pass with every layer rounded
to it. Then layers are visited from the most expensive (lookups × 2^accumulator bits) to the
cheapest. For each, with the other layers' choices kept, the search bisects for even
fewer bits whose metric on the validation set stays within ``tolerance`` of the unrounded
reference, judged by an upper estimate of the loss (for accuracy, the fraction of samples the
unrounded model gets right and the plan does not, plus one standard error:
:func:`qfhe.tune.metrics.paired_loss`): first with approximate rounding (no extra PBS; judged as the mean over
``n_simulation`` seeded runs of the lookup-error model, because approximate rounding is random),
then, if that fails or may cost more, with exact rounding (deterministic, judged exactly, but
about one extra PBS per removed bit per value). The cheaper of the two by a per-PBS cost table
wins. The metric is always that of the whole plan so far, so the tolerance holds for the end
result, not per layer.

Every candidate is a re-plan of the fused graph (:func:`qfhe.passes.rounding.insert_rounding`
with a per-layer dict): no re-import, no re-calibration, no compilation.

Examples
--------
>>> p = RoundingPlan([{"layer": "fc1", "lookups": 64, "acc_bits": 15, "lsbs_removed": 10, "tlu_bits": 5,
...                    "method": "approximate", "score": 0.97, "delta": -0.002}], reference_score=0.972)
>>> p.as_dict()
{'fc1': {'n_bits': 5, 'method': 'approximate'}}
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from qfhe.model import QuantizedModule
from qfhe.quant.config import Rounding
from qfhe.report import Table
from qfhe.tune.metrics import default_metric, make_target, paired_loss, resolve_metric
from qfhe.validation import as_float

#: Rough per-PBS cost (ms) by lookup input width, from DESIGN.md §5; only the order matters.
PBS_COST_MS = {2: 6.3, 3: 8.0, 4: 9.6, 5: 18.0, 6: 32.0, 7: 115.0, 8: 408.0}
#: One PBS of exact rounding, measured on the digits MLP (1088 extra PBS cost about 19 s).
EXACT_ROUND_PBS_MS = 17.0


def pbs_cost(bits: int) -> float:
    """Rough cost (ms) of one lookup reading ``bits`` bits; wider than 8 grows 3.5× per bit.

    Examples
    --------
    >>> pbs_cost(6), pbs_cost(9) > pbs_cost(8)
    (32.0, True)
    """
    if bits <= 2:
        return PBS_COST_MS[2]
    if bits <= 8:
        return PBS_COST_MS[bits]
    return PBS_COST_MS[8] * 3.5 ** (bits - 8)


class RoundingPlan(Table):
    """The per-layer rounding ``rounding_threshold_bits="auto"`` chose, printable as a table.

    One row per layer with a table lookup, in the order the search visited them: ``layer``,
    ``lookups`` (per sample), ``acc_bits`` (the accumulator's own width), ``lsbs_removed``,
    ``tlu_bits`` (what the lookup reads), ``method`` (``approximate``, ``exact`` or ``-`` for
    none), ``score`` (the validation metric with this and every earlier row applied) and
    ``delta`` (its difference from ``reference_score``, the unrounded metric).
    ``reference_model`` is the same model without rounding, the reference of the search; pass it
    as ``find_best_p_error(..., reference=plan.reference_model)`` so that lookup errors are judged
    against it too and spend what the rounding left of one budget.

    Examples
    --------
    >>> RoundingPlan([], reference_score=0.9).reference_score
    0.9
    """

    COLUMNS = ("layer", "lookups", "acc_bits", "lsbs_removed", "tlu_bits", "method", "score", "delta")

    def __init__(
        self,
        rows=(),
        reference_score: float = float("nan"),
        metric: str = "",
        tolerance: float = 0.0,
        reference_model: QuantizedModule | None = None,
    ):
        super().__init__(rows)
        self.reference_score = reference_score
        self.reference_model = reference_model
        self.metric = metric
        self.tolerance = tolerance

    def as_dict(self) -> dict[str, dict]:
        """The plan as a per-layer ``rounding_threshold_bits`` dict, which reproduces the circuit.

        Examples
        --------
        >>> RoundingPlan([{"layer": "a", "method": "-", "tlu_bits": 9}]).as_dict()
        {}
        """
        return {
            r["layer"]: {"n_bits": r.get("n_bits", r["tlu_bits"]), "method": r["method"]}
            for r in self
            if r["method"] != "-"
        }

    def __str__(self) -> str:
        head = f"rounding plan ({self.metric} reference {self.reference_score:.4f}, tolerance {self.tolerance})"
        return head + "\n" + super().__str__()


def plan_auto_rounding(
    build: Callable[[dict | None], QuantizedModule],
    X_val,
    y_val,
    metric=None,
    tolerance: float = 0.01,
    n_simulation: int = 5,
    random_state: int = 0,
    p_error: float = 1e-6,
) -> tuple[QuantizedModule, RoundingPlan]:
    """Search the per-layer rounding (see the module docstring); return the model it gives and the plan.

    Parameters
    ----------
    build : callable
        ``build(per_layer_dict_or_None) -> QuantizedModule``: re-plans rounding on the fused graph.
    X_val, y_val : array-like
        Validation data.
    metric : str, callable or None
        As in :func:`qfhe.find_best_p_error` (None: ``accuracy`` for integer labels against
        several outputs, ``r2`` otherwise).
    tolerance : float
        Allowed metric loss against the unrounded model.
    n_simulation, random_state : int
        Seeded simulations per approximate-rounding candidate.
    p_error : float
        Per-lookup error probability the approximate candidates are simulated at.

    Returns
    -------
    (QuantizedModule, RoundingPlan)

    Examples
    --------
    ``compile_torch_model(..., rounding_threshold_bits="auto")`` calls it with its own ``build``:

    >>> import numpy as np, torch, qfhe
    >>> torch.manual_seed(0)                                      # doctest: +ELLIPSIS
    <...>
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> X = np.random.RandomState(0).randn(200, 4); y = m(torch.tensor(X).float()).argmax(1).numpy()
    >>> qm = qfhe.quantize_torch_model(m, X, n_bits=6, rounding_threshold_bits="auto", X_val=X, y_val=y)
    >>> [r["method"] for r in qm.rounding_plan], qm.rounding_plan[0]["tlu_bits"] < qm.rounding_plan[0]["acc_bits"]
    (['approximate'], True)
    """
    tolerance = as_float(
        "rounding_tolerance",
        tolerance,
        0.0,
        math.inf,
        closed=True,
        what=">= 0 (the allowed loss in the metric's units, e.g. 0.01)",
    )
    base = build(None)
    metric = default_metric(base, y_val) if metric is None else metric
    fn, higher = resolve_metric(metric)
    metric_name = metric if isinstance(metric, str) else None  # a built-in name, or None for a callable
    name = metric_name or getattr(metric, "__name__", "metric")
    target = make_target(base, X_val, y_val, "rounding_threshold_bits='auto'", metric_name)
    reference_pred = target.predict(target.reference_codes())
    reference = float(fn(target.y, reference_pred))
    seeds = np.random.SeedSequence(random_state).spawn(n_simulation)

    def score(plan: dict) -> tuple[QuantizedModule, float, float]:
        """The model of ``plan``, its mean score, and whether the loss's upper estimate is within tolerance."""
        qm = build(plan)
        target.module = qm
        if not any(r.method == "approximate" for r in plan.values()):
            preds = [target.predict(target.reference_codes())]
        else:
            preds = [target.predict(target.noisy_codes(p_error, np.random.default_rng(s))) for s in seeds]
        est = paired_loss(metric_name, fn, higher, target.y, reference_pred, preds)
        return qm, float(np.mean([fn(target.y, pr) for pr in preds])), est.bound <= tolerance + 1e-12

    rows = {r["layer"]: r for r in base.bitwidth_report() if r["tlu_bits"] is not None}
    lookups = _lookups_per_layer(base, target.codes[:1])
    order = sorted(rows, key=lambda layer: -lookups.get(layer, 1) * 2.0 ** rows[layer]["acc_bits"])

    def uniform(bits: int) -> dict[str, Rounding]:
        return {layer: Rounding(bits, "approximate") for layer in rows if rows[layer]["acc_bits"] > bits}

    # Phase 1: one approximate width for every layer, so that no layer spends the whole tolerance
    # before the others are tried (a greedy first layer starved the rest).
    widest = max((int(r["acc_bits"]) for r in rows.values()), default=0)
    common = _fewest_bits(lambda b: score(uniform(b)), widest)
    plan: dict[str, Rounding] = uniform(common) if common is not None else {}
    current, current_score = (score(plan)[:2]) if plan else (base, reference)
    out_rows = []
    # Phase 2: layer by layer, most expensive first: fewer bits than the common width, or exact
    # rounding where approximate rounding did not pass or exact rounding is cheaper.
    for layer in order:
        own = int(rows[layer]["acc_bits"])
        start = plan[layer].n_bits if layer in plan else own
        found = {"approximate": start} if layer in plan else {}  # the common width passes already
        for method in ("approximate", "exact"):
            approx = found.get("approximate")
            if method == "exact" and approx is not None and pbs_cost(approx) <= _exact_cost(2, own):
                break  # even the narrowest exact rounding would cost more than this lookup
            bits = _fewest_bits(lambda b: score({**plan, layer: Rounding(b, method)}), start)
            if bits is not None:
                found[method] = bits
        if found:
            n = lookups.get(layer, 1)
            cost = {m: n * (_exact_cost(b, own) if m == "exact" else pbs_cost(b)) for m, b in found.items()}
            method = min(cost, key=cost.get)
            plan[layer] = Rounding(found[method], method)
            current, current_score, _ = score(plan)
        r = current.bitwidth_report()
        row = next(x for x in r if x["layer"] == layer)
        out_rows.append(
            {
                "layer": layer,
                "lookups": lookups.get(layer),
                "acc_bits": own,
                "lsbs_removed": row["lsbs_removed"],
                "tlu_bits": row["tlu_bits"],
                "method": plan[layer].method if layer in plan else "-",
                "score": round(current_score, 4),
                "delta": round(current_score - reference, 4),
                "n_bits": plan[layer].n_bits if layer in plan else None,
            }
        )
    current = build(plan) if plan else base
    current.rounding_plan = RoundingPlan(out_rows, reference, name, tolerance, base)
    return current, current.rounding_plan


def _exact_cost(bits: int, own: int) -> float:
    """Rough cost (ms) of one value rounded exactly from ``own`` to ``bits`` bits, then looked up."""
    return pbs_cost(bits) + EXACT_ROUND_PBS_MS * (own - bits)


def _fewest_bits(evaluate: Callable[[int], tuple], own: int) -> int | None:
    """Bisect for the smallest width in [2, own - 1] that passes (``evaluate(bits)[2]``; None if
    even own - 1 fails): fewer than ``own`` bits."""
    lo, hi = 2, own - 1
    if hi < lo or not evaluate(hi)[2]:
        return None
    while lo < hi:  # invariant: hi passes
        mid = (lo + hi) // 2
        if evaluate(mid)[2]:
            hi = mid
        else:
            lo = mid + 1
    return hi


def _lookups_per_layer(qm: QuantizedModule, codes: np.ndarray) -> dict[str, int]:
    """Table lookups per sample, by layer (the size of each lookup's output)."""
    from qfhe.ir.interpreter import run

    counts: dict[str, int] = {}

    def observe(node, value):
        if node.op == "tlu":
            layer = qm._layers.get(node.inputs[0], node.inputs[0])
            counts[layer] = counts.get(layer, 0) + int(np.prod(value.shape[1:]))

    run(qm._server_graph, [codes], observe)
    return counts
