"""CKKS expert pipeline on the 64-32-16-8 GELU/GELU/sigmoid MLP, run on the FakeBackend.

Builds the issue's pipeline by hand (packing, degree-8 polynomials, BSGS, lazy rescale and
relinearize, greedy bootstrapping, DCE, cost analysis), prints the per-layer polynomial fits and
the cost analysis, and compares the simulated HE run with the float model.

    python examples/ckks_mlp.py
"""

from __future__ import annotations

import warnings

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
)
from qfhe.errors import InsecureParametersWarning


def expert_pipeline() -> PassPipeline:
    """The CKKS guide's expert pipeline (docs/guides/ckks.md) (the benchmark measures the same one)."""
    return PassPipeline(
        [
            InputPackingPass(strategy="row_major"),
            NonlinearToPolynomialPass(degree=8),
            LinearLayerBSGSPass(min_size=16),
            RescalingInsertionPass(strategy="lazy"),
            RelinearizationInsertionPass(strategy="lazy"),
            BootstrappingInsertionPass(level_threshold=30.0, strategy="greedy"),
            DeadCodeEliminationPass(),
            CostAnalysisPass(verbose=True, include_critical_path=True),
        ]
    )


def main(argv=None) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 8), nn.Sigmoid())
    calibration, test = torch.randn(256, 64), torch.randn(16, 64)

    # The seed parameters: 2,280 bits at N = 2^15 is NOT 128-bit secure. The fake backend
    # runs them with a warning; real encryption would refuse them.
    params = CKKSParameters(poly_modulus_degree=32768, coeff_modulus=[60] * 38, scale=2**40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InsecureParametersWarning)
        context = CompilationContext(scheme=HEScheme.CKKS, params=params, backend=FakeBackend(simulate_noise=True))
        compiled = CKKSCompiler(context, expert_pipeline()).compile(model, calibration)
    for w in caught:
        print(f"warning: {w.message}")

    for layer, fit in compiled.meta["polynomials"].items():
        lo, hi = fit["range"]
        print(
            f"layer {layer}: {fit['fn']} on [{lo:.2f}, {hi:.2f}], degree {fit['degree']}, "
            f"max error {fit['max_error']:.1e}, depth {fit['depth']}"
        )
    cost = compiled.meta["cost_analysis"]
    ops = cost.total_operations
    figures = {
        "total_ops": sum(ops.values()),
        "rotations": ops["rotate"],
        "rescales": ops["rescale"],
        "relinearizations": ops["relinearize"],
        "bootstraps": ops["bootstrap"],
    }
    print(
        "cost: "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items())
        + f", estimated latency {cost.estimated_latency:.0f} ms (the 'Expert pipeline' row of docs/benchmarks/ckks.md)"
    )
    out = compiled(test)
    err = float(np.abs(out - model(test).detach().numpy()).max())
    print(f"max |HE (fake backend, with noise) - float model| on {len(test)} samples: {err:.2e}")
    return {"max_error": err, "cost": cost, "figures": figures}


if __name__ == "__main__":
    main()
