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
    ((pred, label, seconds),) = result["encrypted"]
    assert seconds > 0 and 0 <= pred < 10
    # the demo ends with the tuned circuit, run under encryption beside the untuned one
    assert "rounding plan" in out and "encrypted s/sample" in out and "faster under encryption" in out
    assert "complexity" in out and result["share"] == 0.5 and 0 < result["p_error"] <= 0.3
    assert result["acc_tuned"] > result["acc_sim"] - 0.05  # 1 point on validation; test data is other data
    ((pred, label, seconds),) = result["encrypted_tuned"]
    assert seconds > 0 and 0 <= pred < 10


def _ckks_pipeline_row(name: str) -> dict:
    """A row of benchmarks/results/ckks_pipelines.json, which the CKKS benchmark page renders."""
    import json

    rows = json.loads((ROOT / "benchmarks" / "results" / "ckks_pipelines.json").read_text())["mlp"]
    return next(r for r in rows if r["pipeline"] == name)


def test_ckks_example(capsys):
    result = _load("ckks_mlp").main([])
    out = capsys.readouterr().out
    assert "not 128-bit secure" in out and "layer 1: gelu" in out and "estimated latency" in out
    assert result["max_error"] < 1e-2 and result["cost"].total_operations["bootstrap"] >= 1
    # what the example prints is what the benchmark's JSON (and the docs page rendered from it) says
    row = _ckks_pipeline_row("Expert pipeline (CKKS guide, greedy threshold 30)")
    f = result["figures"]
    assert (row["total_ops"], row["rotations"], row["rescales"], row["relinearizations"], row["bootstraps"]) == (
        f["total_ops"],
        f["rotations"],
        f["rescales"],
        f["relinearizations"],
        f["bootstraps"],
    )
    assert round(row["latency_ms"]) == round(result["cost"].estimated_latency)


def test_ckks_seal_example_short(capsys):
    """Real SEAL encryption from the front door's defaults, one sample per ciphertext and a full batch."""
    result = _load("ckks_seal").main(["--short"])
    out = capsys.readouterr().out
    assert "Galois keys" in out and "per ciphertext" in out
    for strategy, r in result.items():
        assert r["params"].is_secure and r["ops_match"], strategy
        assert r["err_float"] < 1e-2 and r["err_sim"] < 1e-4, strategy
    assert result["column_major"]["run"].samples_per_ciphertext == 512


def test_prune_finetune_example_short(capsys):
    result = _load("prune_finetune").main(["--short", "--model", "cnn", "--ratio", "0.5", "--n-accum-bits", "8"])
    out = capsys.readouterr().out
    assert "worst_case_bits" in out and "before |" in out and "after |" in out
    before, after = result["rows"]
    assert after["max_bit_width"] <= 8 < before["max_bit_width"]  # proved by the interval analysis
    assert after["params"] < before["params"] and after["pbs_count"] < before["pbs_count"]


def test_prune_finetune_example_help(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        _load("prune_finetune").main(["--help"])
    assert exit_info.value.code == 0 and "--n-accum-bits" in capsys.readouterr().out


def test_sklearn_estimators_example_short(capsys):
    result = _load("sklearn_estimators").main(["--short"])
    out = capsys.readouterr().out
    assert "keygen" in out and "hidden_neurons" in out
    assert result["nn_acc_sim"] > 0.85 and result["pruned_acc"] > 0.8
    assert result["linear_pbs"] == 0 and result["linear_acc_sim"] >= result["linear_acc_sklearn"] - 0.03
    for pred, label, seconds in result["nn_encrypted"] + result["linear_encrypted"]:
        assert seconds > 0 and pred in range(10)


def test_client_server_example_short(capsys, tmp_path):
    result = _load("client_server").main(short=True, workdir=str(tmp_path))
    out = capsys.readouterr().out
    assert result["agree"] == result["n_requests"] == 1  # decrypted over HTTP == fhe="simulate"
    assert result["evaluation_keys_MB"] > 1 and result["ciphertext_in_kB"] > 0.5
    assert "latency per request" in out and "evaluation keys" in out


def test_tabular_trees_example_short(capsys, tmp_path):
    result = _load("tabular_trees").main(short=True, workdir=str(tmp_path))
    out = capsys.readouterr().out
    assert "lookups" in out and "equal to fhe='simulate'" in out
    assert result["acc_sim"] == result["acc_clear"] and result["acc_clear"] > result["acc_float"] - 0.03
    assert result["agree"] == result["n_requests"]
