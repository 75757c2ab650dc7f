"""Tuning a quantized model's circuit: the lookup error probability and the rounding plan, apart or together."""

from qfhe.tune.joint import TuneResult, tune_circuit
from qfhe.tune.p_error import PErrorSearchResult, SearchHistory, find_best_p_error
from qfhe.tune.rounding import RoundingPlan

__all__ = ["find_best_p_error", "PErrorSearchResult", "SearchHistory", "RoundingPlan", "tune_circuit", "TuneResult"]
