"""CKKS pass pipelines compared on the same models, measured in one run (FakeBackend + cost model).

Part 1: the 64→32→16→8 GELU/GELU/sigmoid MLP under five pipelines (Baseline = plain diagonals with
eager rescale/relinearize; BSGS only; Lazy only; BSGS+Lazy; Fully optimized = BSGS+Lazy+minimal
bootstrapping). Op counts and depth come from the compiled graph, latency from the SEAL-calibrated
cost model (``qfhe/ckks/cost_model.json``), and the error is the max |compiled(x) − float model|
on the FakeBackend with CKKS-like noise.

Part 2: a 10-layer 32-wide GELU network that needs bootstrapping, greedy against minimal placement.

    python benchmarks/ckks_pipelines.py
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qfhe.ckks import CKKSCompiler, CKKSParameters, CompilationContext, FakeBackend, HEScheme
from qfhe.ckks.passes import (
    BootstrappingInsertionPass,
    CostAnalysisPass,
    DeadCodeEliminationPass,
    InputPackingPass,
    LinearLayerBSGSPass,
    NonlinearToPolynomialPass,
    PassPipeline,
    RelinearizationInsertionPass,
    RescalingInsertionPass,
    comparison_pipelines,
)
from qfhe.errors import InsecureParametersWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_example, machine, table, write_json  # noqa: E402

EXPERT = "Expert pipeline (CKKS guide, greedy threshold 30)"

PARAMS = dict(poly_modulus_degree=32768, coeff_modulus=[60] * 38, scale=2**40)  # the seed (insecure)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 8), nn.Sigmoid())


def deep():
    torch.manual_seed(3)
    layers = []
    for _ in range(10):
        layers += [nn.Linear(32, 32), nn.GELU()]
    return nn.Sequential(*layers)


def compile_model(model, pipeline, X, noise=False):
    ctx = CompilationContext(HEScheme.CKKS, CKKSParameters(**PARAMS), FakeBackend(simulate_noise=noise))
    start = time.perf_counter()
    compiled = CKKSCompiler(ctx, pipeline).compile(model, X)
    return compiled, time.perf_counter() - start


def row(name, compiled, compile_s, err, baseline_ms=None):
    a = compiled.cost_analysis
    ops = a.total_operations
    return {
        "pipeline": name,
        "total_ops": sum(ops.values()),
        "rotations": ops["rotate"],
        "rescales": ops["rescale"],
        "relinearizations": ops["relinearize"],
        "bootstraps": ops["bootstrap"],
        "latency_ms": a.estimated_latency,
        "depth": a.depth,
        "parallelism": a.parallelism,
        "speedup": (baseline_ms / a.estimated_latency) if baseline_ms else 1.0,
        "max_abs_error": err,
        "compile_s": compile_s,
    }


COLUMNS = [
    ("pipeline", "pipeline"),
    ("total_ops", "total ops"),
    ("rotations", "rotations"),
    ("rescales", "rescales"),
    ("relinearizations", "relinearizations"),
    ("bootstraps", "bootstraps"),
    ("latency_ms", "est. latency ms"),
    ("depth", "depth"),
    ("parallelism", "parallelism"),
    ("speedup", "speedup"),
    ("max_abs_error", "max abs error vs float"),
]


def main(argv=None) -> dict:
    warnings.simplefilter("ignore", InsecureParametersWarning)
    torch.manual_seed(1)
    X, Xt = torch.randn(256, 64), torch.randn(64, 64)
    model = mlp()
    float_out = model(Xt).detach().numpy()
    rows, baseline = [], None
    for name, pipeline in comparison_pipelines().items():
        compiled, seconds = compile_model(model, pipeline, X)
        noisy, _ = compile_model(model, comparison_pipelines()[name], X, noise=True)
        err = float(np.abs(noisy(Xt) - float_out).max())
        r = row(name, compiled, seconds, err, baseline)
        baseline = baseline or compiled.cost_analysis.estimated_latency
        rows.append(r)
    poly = {k: (v["range"], v["max_error"]) for k, v in compiled.meta["polynomials"].items()}
    expert = load_example("ckks_mlp").expert_pipeline
    expert_pipeline = expert()
    expert_pipeline.passes[-1].verbose = False
    compiled, seconds = compile_model(model, expert_pipeline, X)
    noisy_pipeline = expert()
    noisy_pipeline.passes[-1].verbose = False
    noisy, _ = compile_model(model, noisy_pipeline, X, noise=True)
    rows.append(row(EXPERT, compiled, seconds, float(np.abs(noisy(Xt) - float_out).max()), baseline))

    Xd = torch.randn(128, 32) * 0.5
    deep_model = deep()
    deep_rows = []
    for strategy, threshold in (("greedy", 30.0), ("greedy", 10.0), ("minimal", 0.0)):
        p = PassPipeline(
            [
                InputPackingPass(),
                NonlinearToPolynomialPass(degree=8),
                LinearLayerBSGSPass(min_size=16),
                RescalingInsertionPass("lazy"),
                RelinearizationInsertionPass("lazy"),
                BootstrappingInsertionPass(level_threshold=threshold, strategy=strategy),
                DeadCodeEliminationPass(),
                CostAnalysisPass(),
            ]
        )
        compiled, seconds = compile_model(deep_model, p, Xd)
        err = float(np.abs(compiled(Xd[:16]) - compiled.reference(Xd[:16])).max())
        r = row(
            f"{strategy} (level_threshold={threshold:g})" if strategy == "greedy" else "minimal (DP)",
            compiled,
            seconds,
            err,
        )
        r["max_abs_error"] = err
        deep_rows.append(r)

    info = machine()
    print(
        f"\nCKKS pipelines, 64-32-16-8 GELU/GELU/sigmoid MLP, {PARAMS['poly_modulus_degree']} ring, 38 x 60-bit "
        f"primes, scale 2^40; measured {info['date']} on {info['machine']}\n"
    )
    print(table(rows, COLUMNS))
    print(
        "\nPolynomial fits (degree 8): "
        + "; ".join(f"layer {k}: range [{r[0]:.2f}, {r[1]:.2f}], max error {e:.1e}" for k, (r, e) in poly.items())
    )
    print("\n10-layer 32-wide GELU network, bootstrapping placement\n")
    deep_columns = [c for c in COLUMNS if c[0] not in ("speedup", "max_abs_error")]
    print(table(deep_rows, deep_columns + [("max_abs_error", "max abs error vs polynomial model")]))
    print(f"\nwrote {write_json('ckks_pipelines', {'machine': info, 'mlp': rows, 'deep': deep_rows})}")
    return {"mlp": rows, "deep": deep_rows}


if __name__ == "__main__":
    main()
