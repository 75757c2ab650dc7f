"""Every example runs (short mode) and its numbers are sane."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_mlp_example_short(capsys):
    result = _load("digits_mlp").main(["--short"])
    out = capsys.readouterr().out
    assert "acc_bits" in out and "keygen" in out and "sample 0: predicted" in out
    assert result["acc_float"] > 0.9 and result["acc_sim"] > 0.85
    assert result["acc_sim"] == result["acc_clear"]  # simulation of the circuit == clear integers
    (pred, label, seconds), = result["encrypted"]
    assert seconds > 0 and 0 <= pred < 10


def test_ckks_example(capsys):
    result = _load("ckks_mlp").main([])
    out = capsys.readouterr().out
    assert "not 128-bit secure" in out and "layer 1: gelu" in out and "estimated latency" in out
    assert result["max_error"] < 1e-2 and result["cost"].total_operations["bootstrap"] >= 1
