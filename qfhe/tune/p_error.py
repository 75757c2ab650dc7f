"""``find_best_p_error``: the largest table-lookup error probability that keeps a metric within tolerance.

A larger ``p_error`` lets concrete choose smaller cryptographic parameters, so every lookup gets
cheaper, but lookups then read one step off more often. The metric falls (roughly) monotonically
as ``p_error`` grows, so the search tries the largest value first, then bisects in log space
between the largest value known to fail and the smallest known to pass, and stops when they are
within ``resolution`` of each other.

Each candidate costs one compilation of the single-sample circuit (no batch circuit, no
re-import, calibration or rounding plan): its own per-lookup ``p_error`` (concrete picks
parameters at or below the request) drives the seeded lookup-error model
(:mod:`qfhe.tfhe.noise`) on the whole validation set, ``n_simulation`` times with fixed seeds.
The same seeds serve every candidate, so candidates differ only by their error probability and
the result is deterministic for a given ``random_state``.

Examples
--------
>>> import numpy as np, torch, qfhe
>>> from qfhe import find_best_p_error
>>> torch.manual_seed(0)                                       # doctest: +ELLIPSIS
<...>
>>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> X = np.random.RandomState(0).randn(200, 4); y = (X[:, 0] > 0).astype(int)
>>> qm = qfhe.quantize_torch_model(m, X, n_bits=4)
>>> best = find_best_p_error(qm, X, y, max_metric_loss=0.02, progress=False)
>>> best.n_compilations <= 10, qm.is_compiled
(True, True)
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from qfhe.errors import ConfigurationError, NoParametersError, TuningWarning
from qfhe.report import Table
from qfhe.tune.metrics import default_metric, make_target, paired_loss, resolve_metric
from qfhe.validation import as_bool, as_float, as_int, user_stacklevel

#: Search ranges: per lookup, and for the whole circuit.
P_ERROR_RANGE = (1e-6, 0.3)
GLOBAL_P_ERROR_RANGE = (1e-5, 0.99)


class SearchHistory(Table):
    """One row per compiled candidate: requested ``p_error``, the circuit's per-lookup
    ``actual_p_error``, mean ``score`` (and ``score_std``) over the simulations, ``loss`` against
    the reference, ``bound`` (the upper estimate that is judged, :func:`qfhe.tune.metrics.paired_loss`),
    ``accepted`` (``bound <= max_metric_loss``), ``compile_s``.

    Examples
    --------
    >>> print(SearchHistory([{"p_error": 0.3, "actual_p_error": 0.29, "score": 0.9, "score_std": 0.01,
    ...                       "loss": 0.02, "bound": 0.03, "accepted": False, "compile_s": 1.5}]))
    p_error  actual_p_error  score  score_std  loss  bound  accepted  compile_s
    0.3                0.29    0.9       0.01  0.02   0.03     False        1.5
    """

    COLUMNS = ("p_error", "actual_p_error", "score", "score_std", "loss", "bound", "accepted", "compile_s")


@dataclass
class PErrorSearchResult:
    """What :func:`find_best_p_error` chose and how.

    Attributes
    ----------
    p_error : float
        The chosen value (per lookup, or for the whole circuit if ``global_p_error``); the model
        is left compiled with it.
    global_p_error : bool
        Whether ``p_error`` is the whole-circuit probability.
    reference_score : float
        The metric of the reference: the model with exact lookups (``fhe="disable"``), or the
        ``reference`` model's.
    score : float
        Mean modelled metric at the chosen value.
    n_compilations : int
        Circuits compiled by the search.
    seconds : float
        Wall time of the search.
    history : SearchHistory
        Every candidate, in the order tried.
    found : bool
        False when no candidate met the tolerance: ``p_error`` is then the safest value tried
        (the smallest), kept with a ``TuningWarning``, and ``score`` is its score.
    note : str
        Why the search ended as it did, when that needs saying (no lookup to tune, nothing passed).

    Examples
    --------
    >>> r = PErrorSearchResult(0.01, False, 0.95, 0.948, 3, 4.2)
    >>> r.p_error, len(r.history), r.found
    (0.01, 0, True)
    """

    p_error: float
    global_p_error: bool
    reference_score: float
    score: float
    n_compilations: int
    seconds: float
    history: SearchHistory = field(default_factory=SearchHistory)
    found: bool = True
    note: str = ""

    def __str__(self) -> str:
        kind = "global_p_error" if self.global_p_error else "p_error"
        return (
            f"{kind}={self.p_error:.3g}: score {self.score:.4f} (reference {self.reference_score:.4f}), "
            f"{self.n_compilations} compilations in {self.seconds:.1f} s"
            + (f" ({self.note})" if self.note else "")
            + f"\n{self.history}"
        )


def find_best_p_error(
    model,
    X_val,
    y_val,
    metric=None,
    max_metric_loss: float = 0.01,
    global_p_error: bool = False,
    n_simulation: int = 5,
    random_state: int = 0,
    max_compilations: int = 10,
    resolution: float = 2.0,
    p_error_range: tuple | None = None,
    configuration=None,
    higher_is_better: bool = True,
    reference=None,
    progress: bool = True,
) -> PErrorSearchResult:
    """Find the largest ``p_error`` whose simulated metric stays within ``max_metric_loss`` of exact.

    Parameters
    ----------
    model : QuantizedModule or qfhe.sklearn estimator
        Quantized (``quantize_*``/``compile_*``, PTQ or QAT) or a fitted built-in estimator. It is
        left compiled at the chosen value.
    X_val, y_val : array-like
        Held-out validation data (raw features for an estimator, model inputs otherwise).
    metric : {"accuracy", "r2", "mse"}, callable or None
        ``accuracy`` and ``r2``: higher is better; ``mse``: lower is better; a callable
        ``(y_true, y_pred) -> float`` is higher-is-better unless ``higher_is_better=False``.
        Default: ``accuracy`` for a classifier (or integer labels against several outputs),
        ``r2`` otherwise. What ``y_pred`` is for each kind of model and ``y_val`` is said in
        :func:`qfhe.tune.metrics.make_target`; a metric that does not fit them is refused.
    max_metric_loss : float
        Allowed loss, in the metric's units (0.01 = one accuracy point), against the metric with
        exact lookups. A candidate passes when an upper estimate of its loss is within it, so
        that the choice holds on other data and not only on the validation set: for accuracy,
        the fraction of validation samples the exact circuit gets right and the candidate does
        not, plus one standard error (:func:`qfhe.tune.metrics.paired_loss`).
    global_p_error : bool
        Search the whole-circuit error probability instead of the per-lookup one.
    n_simulation : int
        Seeded simulations of the whole validation set per candidate; their mean is judged.
    random_state : int
        Seeds the simulations: equal seeds give equal results.
    max_compilations : int
        Compilation budget of the search.
    resolution : float
        Stop when the passing and failing values are within this factor.
    p_error_range : (float, float), optional
        Values searched; default ``(1e-6, 0.3)``, or ``(1e-5, 0.99)`` with ``global_p_error``.
    configuration : concrete.fhe.Configuration, optional
        Passed to every compilation.
    higher_is_better : bool
        For a callable ``metric``.
    reference : QuantizedModule or qfhe.sklearn estimator, optional
        Judge every candidate against this model's exact predictions instead of the model's own.
        Pass ``qm.rounding_plan.reference_model`` (the same model without rounding) after
        ``rounding_threshold_bits="auto"``: the loss is then that of rounding and lookup errors
        together, against the unrounded model, so both share one budget and are judged on the
        same samples (the search spends whatever the rounding left).
    progress : bool
        Show a tqdm bar over candidates.

    Returns
    -------
    PErrorSearchResult

    Raises
    ------
    ConfigurationError
        For a negative ``max_metric_loss``, an unknown metric or a bad range.
    InputValidationError
        For empty validation data or ``X_val``/``y_val`` of different lengths.
    NoParametersError
        If concrete finds no cryptographic parameters for the circuit even at the largest value
        (a smaller value without parameters counts as a failing one).

    Examples
    --------
    >>> import numpy as np
    >>> from qfhe import find_best_p_error
    >>> from qfhe.sklearn import LogisticRegression
    >>> X = np.random.RandomState(0).randn(100, 3); y = (X[:, 0] > 0).astype(int)
    >>> clf = LogisticRegression().fit(X, y)
    >>> find_best_p_error(clf, X, y, max_metric_loss=-1)
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: max_metric_loss must be >= 0 (the allowed loss in the metric's units, e.g. 0.01), got -1 (int)
    """
    start = time.perf_counter()
    metric = default_metric(model, y_val) if metric is None else metric
    fn, higher = resolve_metric(metric, higher_is_better)
    max_metric_loss = as_float(
        "max_metric_loss",
        max_metric_loss,
        0.0,
        math.inf,
        closed=True,
        what=">= 0 (the allowed loss in the metric's units, e.g. 0.01)",
    )
    global_p_error = as_bool("global_p_error", global_p_error)
    n_simulation = as_int("n_simulation", n_simulation, 1, None, "a positive int")
    max_compilations = as_int("max_compilations", max_compilations, 1, None, "a positive int")
    resolution = as_float("resolution", resolution, 1.0, math.inf)
    lo, hi = _check_range(p_error_range or (GLOBAL_P_ERROR_RANGE if global_p_error else P_ERROR_RANGE))
    name = metric if isinstance(metric, str) else None  # a built-in name, or None for a callable
    target = make_target(model, X_val, y_val, "find_best_p_error", name)
    if reference is None:
        exact_pred = target.predict(target.reference_codes())
    else:
        ref_target = make_target(reference, X_val, y_val, "find_best_p_error (reference)", name)
        exact_pred = ref_target.predict(ref_target.reference_codes())
        if np.shape(exact_pred) != np.shape(target.predict(target.reference_codes())):
            raise ConfigurationError(
                "find_best_p_error: reference predicts a different shape than the model; "
                "pass the same model without rounding (qm.rounding_plan.reference_model)"
            )
    reference_score = float(fn(target.y, exact_pred))
    seeds = np.random.SeedSequence(random_state).spawn(n_simulation)

    history = SearchHistory()
    kind = "global_p_error" if global_p_error else "p_error"
    if not target.module.has_lookups:
        compiled, cfg = target.module._compile_candidate(
            None if global_p_error else hi, hi if global_p_error else None, configuration
        )
        target.module._adopt(compiled, cfg)
        note = f"the circuit has no table lookup, so {kind} has no effect on its results; nothing was searched"
        warnings.warn(f"find_best_p_error: {note}", TuningWarning, stacklevel=user_stacklevel())
        return PErrorSearchResult(
            hi, global_p_error, reference_score, reference_score, 1, time.perf_counter() - start, history, True, note
        )
    best = None  # (requested p, score, compiled, cfg)
    safest = None  # the smallest value tried, kept when none passes
    bar = tqdm(total=max_compilations, desc="find_best_p_error", disable=not progress, leave=False)

    def judge(p: float) -> bool:
        nonlocal best, safest
        t0 = time.perf_counter()
        try:
            compiled, cfg = target.module._compile_candidate(
                None if global_p_error else p, p if global_p_error else None, configuration
            )
        except NoParametersError:
            # too strict for this circuit's widest lookups: as good as a failing value (larger ones are easier)
            history.append(
                {
                    "p_error": float(f"{p:.4g}"),
                    "actual_p_error": None,
                    "score": None,
                    "score_std": None,
                    "loss": None,
                    "bound": None,
                    "accepted": False,
                    "compile_s": round(time.perf_counter() - t0, 2),
                }
            )
            bar.update(1)
            return False
        actual = compiled.statistics["p_error"]
        preds = [target.predict(target.noisy_codes(actual, np.random.default_rng(s))) for s in seeds]
        scores = [float(fn(target.y, pr)) for pr in preds]
        est = paired_loss(name, fn, higher, target.y, exact_pred, preds)
        ok = est.bound <= max_metric_loss + 1e-12
        history.append(
            {
                "p_error": float(f"{p:.4g}"),
                "actual_p_error": float(f"{actual:.4g}"),
                "score": round(float(np.mean(scores)), 4),
                "score_std": round(float(np.std(scores)), 4),
                "loss": round(est.loss, 4),
                "bound": round(est.bound, 4),
                "accepted": ok,
                "compile_s": round(time.perf_counter() - t0, 2),
            }
        )
        bar.update(1)
        if ok and (best is None or p > best[0]):
            best = (p, float(np.mean(scores)), compiled, cfg)
        if safest is None or p < safest[0]:
            safest = (p, float(np.mean(scores)), compiled, cfg)
        return ok

    try:
        failing, passing = hi, None
        if not judge(hi) and history[-1]["score"] is not None:  # no parameters at hi: none at smaller values
            while len(history) < max_compilations:
                # Bisect in log space; until a value passes, the low end of the range stands in.
                low = lo if passing is None else passing
                if failing / low <= resolution:
                    break
                p = math.sqrt(failing * low)
                if judge(p):
                    passing = p
                else:
                    failing = p
            if best is None and len(history) < max_compilations:
                judge(lo)
    finally:
        bar.close()
    found, note = best is not None, ""
    if safest is None:
        raise NoParametersError(
            f"find_best_p_error: concrete-python found no cryptographic parameters for this circuit "
            f"at any {kind} tried (up to {hi:g}): its table lookups are too wide; round them "
            "(rounding_threshold_bits) or widen p_error_range"
        )
    if not found:
        # Nothing passed (the metric is noisier than the tolerance, or the budget ran out before
        # the low end): keep the safest value tried, the closest to exact lookups, and say so.
        best = safest
        note = (
            f"no {kind} tried kept the metric within max_metric_loss={max_metric_loss:g} of the reference "
            f"{reference_score:.4f}; kept the safest value tried, {kind}={best[0]:.3g} (score {best[1]:.4f})"
        )
        warnings.warn(
            f"find_best_p_error: {note}. Allow a larger max_metric_loss, give more validation samples, or "
            "lower the low end of p_error_range",
            TuningWarning,
            stacklevel=user_stacklevel(),
        )
    target.module._adopt(best[2], best[3])
    return PErrorSearchResult(
        best[0],
        global_p_error,
        reference_score,
        best[1],
        len(history),
        time.perf_counter() - start,
        history,
        found,
        note,
    )


def _check_range(r) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise ConfigurationError(f"p_error_range must be two floats (low, high), got {r!r}") from None
    if not 0 < lo < hi < 1:
        raise ConfigurationError(f"p_error_range must satisfy 0 < low < high < 1, got {r!r}")
    return lo, hi
