"""CKKS on real encryption: an MLP compiled with qfhe's defaults and run on SEAL.

Picks the smallest 128-bit-secure parameters for the model (``CKKSParameters.for_model``), makes
keys (Galois keys only for the rotations the graph uses), runs encrypted samples one per
ciphertext and then a batch packed into one ciphertext, and compares each with the simulation and
the float model. It also prints the cost model's prediction next to the measured latency.

    python examples/ckks_seal.py [--short]

The full run uses the 64→32→16→8 GELU/GELU/sigmoid MLP (N = 2^15, about a minute); ``--short``
a 16→8→4 one (N = 2^14, a few seconds).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

import qfhe
from qfhe.ckks.passes import default_pipeline


def build(short: bool) -> nn.Module:
    torch.manual_seed(0)
    if short:
        return nn.Sequential(nn.Linear(16, 8), nn.GELU(), nn.Linear(8, 4), nn.Sigmoid())
    return nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 8), nn.Sigmoid())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a smaller MLP and degree-4 polynomials")
    args = parser.parse_args(argv)
    model = build(args.short)
    degree = 4 if args.short else 8
    rng = np.random.RandomState(0)
    X = rng.randn(256, model[0].in_features)
    Xt = X[:2]  # calibration-range inputs: the polynomials were fitted there

    result = {}
    for strategy in ("row_major", "column_major"):
        cm = qfhe.compile_torch_model(
            model, X, scheme="ckks", pipeline=default_pipeline(degree=degree, bootstrapping=False, strategy=strategy)
        )
        keys = cm.keygen()
        n = len(Xt) if strategy == "row_major" else cm.samples_per_ciphertext
        y = cm.forward(X[:n], fhe="execute")
        run = cm.last_run
        with torch.no_grad():
            float_out = model(torch.tensor(X[:n], dtype=torch.float32)).double().numpy()
        err_float = float(np.abs(y - float_out).max())
        err_sim = float(np.abs(y - cm.forward(X[:n], fhe="simulate")).max())
        sizes = keys.sizes()
        print(
            f"{strategy}: {cm.params.describe()}, {len(keys.steps)} Galois keys "
            f"({sizes['galois_keys'] / 2**20:.0f} MiB in memory)"
        )
        print(
            f"  {n} samples, {run.samples_per_ciphertext} per ciphertext: {run.latency_per_ciphertext:.3f} s per "
            f"ciphertext, {run.latency_per_sample:.4f} s per sample (cost model: "
            f"{cm.cost_analysis.estimated_latency / 1000:.3f} s per ciphertext)"
        )
        print(
            f"  max |execute - float| {err_float:.2e}, max |execute - simulate| {err_sim:.2e}, "
            f"op counts equal the cost analysis: {run.op_counts == cm.cost_analysis.total_operations}"
        )
        result[strategy] = {
            "err_float": err_float,
            "err_sim": err_sim,
            "run": run,
            "params": cm.params,
            "ops_match": run.op_counts == cm.cost_analysis.total_operations,
        }
    return result


if __name__ == "__main__":
    main()
