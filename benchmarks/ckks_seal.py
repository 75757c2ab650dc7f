"""qfhe's CKKS pipelines on real SEAL encryption against the same models written with TenSEAL, in one run.

Models (random weights, seeded):

* ``mlp64``: 64→32→16→8 with GELU, GELU, sigmoid (degree-8 Chebyshev fits);
* ``mnist_square``: 784→128→10 with square activation, inputs in [0, 1] like MNIST pixels.

For each model and each pipeline (eager vs lazy rescaling/relinearization, plain diagonals vs
BSGS) qfhe picks its parameters with ``CKKSParameters.for_model``, makes keys, and runs one sample
(row_major packing) and one full ciphertext of samples (column_major packing). The baseline is the
same model in TenSEAL's high-level API (``CKKSVector.mm`` + ``polyval``/``square``) with the same
polynomials, on the same ring and scale (with more levels if TenSEAL's polyval needs them).

Columns: server latency per ciphertext, amortised latency per sample, rotations, max abs error
against the float model, input ciphertext and evaluation key sizes (serialized), and the cost
model's predicted latency against the measured one.

    python benchmarks/ckks_seal.py [--models mlp64 mnist_square] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import tenseal as ts
import torch
from torch import nn

import qfhe
from qfhe.ckks import CKKSParameters
from qfhe.ckks.backends.seal import serialized_size, to_bytes
from qfhe.ckks.passes import InputPackingPass, comparison_pipelines

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_json  # noqa: E402

PIPELINES = ("Baseline (eager)", "BSGS only", "Lazy only", "BSGS+Lazy")  # none bootstraps: SEAL cannot
OPTIMIZED = "BSGS+Lazy"


class Square(nn.Module):
    def forward(self, x):
        return torch.square(x)


def models() -> dict:
    torch.manual_seed(0)
    mlp64 = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 8), nn.Sigmoid())
    torch.manual_seed(0)
    mnist = nn.Sequential(nn.Linear(784, 128), Square(), nn.Linear(128, 10))
    rng = np.random.RandomState(0)
    return {"mlp64": (mlp64.eval(), rng.randn(512, 64), 8), "mnist_square": (mnist.eval(), rng.rand(512, 784), 2)}


def float_out(model, X) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(X, dtype=torch.float32)).double().numpy()


def pipeline(name: str, degree: int, strategy: str = "row_major", batch: int = 1):
    p = comparison_pipelines(degree=degree)[name]
    p.passes = [InputPackingPass(strategy=strategy, batch=batch)] + p.passes[1:]
    return p


def run_qfhe(model, X, Xt, name, degree, strategy="row_major", batch=1) -> dict:
    p = pipeline(name, degree, strategy, batch)
    params = CKKSParameters.for_model(model, X, pipeline=p)
    cm = qfhe.compile_torch_model(model, X, scheme="ckks", ckks_params=params, pipeline=p)
    start = time.perf_counter()
    keys = cm.keygen()
    keygen_s = time.perf_counter() - start
    n = cm.samples_per_ciphertext
    y = cm.forward(Xt[:n], fhe="execute")
    run = cm.last_run
    wire = keys.serialized_sizes()
    ct_bytes = sum(len(to_bytes(c)) for c in keys.encrypt(cm.graph, Xt[:n]).values())
    ops = cm.cost_analysis.total_operations
    return {
        "model": None,
        "impl": "qfhe",
        "pipeline": name,
        "packing": strategy,
        "N": params.poly_modulus_degree,
        "levels": params.max_level,
        "chain": list(params.coeff_modulus),
        "samples_per_ct": n,
        "latency_s": run.latency_per_ciphertext,
        "per_sample_s": run.latency_per_sample,
        "predicted_s": cm.cost_analysis.estimated_latency / 1000,
        "ratio": run.latency_per_ciphertext / (cm.cost_analysis.estimated_latency / 1000),
        "rotations": ops["rotate"],
        "max_err": float(np.abs(y - float_out(model, Xt[:n])).max()),
        "ct_MB": ct_bytes / 2**20,
        "keys_MB": (wire["relin_keys"] + wire["galois_keys"]) / 2**20,
        "galois_steps": len(keys.steps),
        "keygen_s": keygen_s,
        "op_counts_match": run.op_counts == ops,
        "op_seconds": run.op_seconds,
        "op_counts": run.op_counts,
        "params": params.describe(),
    }


def tenseal_chain(params: CKKSParameters, extra: int) -> list[int]:
    s = int(np.log2(params.scale))
    return [params.coeff_modulus[0]] + [s] * (params.max_level + extra) + [params.coeff_modulus[-1]]


def run_tenseal(model, Xt, polys: dict, params: CKKSParameters) -> dict:
    """The model in TenSEAL's high-level API, on the smallest chain (from qfhe's) its polyval fits."""
    layers = list(model)
    last_error = None
    for extra in range(0, 12):
        chain = tenseal_chain(params, extra)
        if sum(chain) > {8192: 218, 16384: 438, 32768: 881}[params.poly_modulus_degree]:
            break
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree, coeff_mod_bit_sizes=chain)
        ctx.global_scale = params.scale
        ctx.generate_galois_keys()
        enc = ts.ckks_vector(ctx, Xt[0].tolist())
        try:
            start = time.perf_counter()
            v = enc
            for i, layer in enumerate(layers):
                if isinstance(layer, nn.Linear):
                    v = (
                        v.mm(layer.weight.detach().double().numpy().T.tolist())
                        + layer.bias.detach().double().numpy().tolist()
                    )
                elif isinstance(layer, Square):
                    v = v.square()
                else:
                    v = v.polyval([float(c) for c in polys[str(i)].coef])
            latency = time.perf_counter() - start
            y = np.array(v.decrypt())
        except ValueError as exc:  # out of levels or scale: TenSEAL's polyval needs more levels than qfhe's
            last_error = exc
            continue
        return {
            "impl": "TenSEAL",
            "pipeline": "CKKSVector mm + polyval",
            "packing": "row_major",
            "N": params.poly_modulus_degree,
            "levels": len(chain) - 2,
            "chain": chain,
            "samples_per_ct": 1,
            "latency_s": latency,
            "per_sample_s": latency,
            "predicted_s": None,
            "ratio": None,
            "rotations": None,
            "max_err": float(np.abs(y - float_out(model, Xt[:1])[0]).max()),
            "ct_MB": len(enc.serialize()) / 2**20,
            # SEAL's own save of TenSEAL's keys (its context protobuf refuses more than 2 GB)
            "keys_MB": (serialized_size(ctx.galois_keys().data) + serialized_size(ctx.relin_keys().data)) / 2**20,
            "galois_steps": ctx.galois_keys().data.size(),
        }
    return {"impl": "TenSEAL", "pipeline": "CKKSVector mm + polyval", "error": f"did not fit: {last_error}"}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp64", "mnist_square"])
    parser.add_argument("--quick", action="store_true", help="only the optimized pipeline (for tests)")
    args = parser.parse_args(argv)
    rows = []
    warnings.simplefilter("ignore")
    for mname, (model, X, degree) in models().items():
        if mname not in args.models:
            continue
        Xt = X[:256]  # calibration data: the polynomials' fitted ranges cover them
        qrows = []
        for name in PIPELINES if not args.quick else (OPTIMIZED,):
            r = run_qfhe(model, X, Xt, name, degree)
            qrows.append(r)
            print(
                f"{mname} {name} row_major: {r['latency_s']:.3f} s (predicted {r['predicted_s']:.3f}), "
                f"err {r['max_err']:.2e}",
                flush=True,
            )
            if name == OPTIMIZED or not args.quick:
                slots = r["N"] // 2
                period = max(64, 1 << (max(X.shape[1], 1) - 1).bit_length())
                b = run_qfhe(model, X, Xt, name, degree, "column_major", batch=max(1, slots // period))
                qrows.append(b)
                print(
                    f"{mname} {name} column_major x{b['samples_per_ct']}: {b['latency_s']:.3f} s/ct, "
                    f"{b['per_sample_s']:.4f} s/sample, err {b['max_err']:.2e}",
                    flush=True,
                )
        best = next(r for r in qrows if r["pipeline"] == OPTIMIZED and r["packing"] == "row_major")
        cm = qfhe.compile_torch_model(model, X, scheme="ckks", pipeline=pipeline(OPTIMIZED, degree))
        t = run_tenseal(
            model,
            Xt,
            cm.meta["poly_functions"],
            CKKSParameters(*[getattr(cm.params, k) for k in ("poly_modulus_degree", "coeff_modulus", "scale")]),
        )
        print(
            f"{mname} TenSEAL: {t.get('latency_s', float('nan')):.3f} s, err {t.get('max_err', float('nan')):.2e}",
            flush=True,
        )
        if "latency_s" in t:
            t["speedup_of_qfhe"] = t["latency_s"] / best["latency_s"]
        for r in qrows + [t]:
            r["model"] = mname
        rows += qrows + [t]
        write_json("ckks_seal", {"machine": machine(), "rows": rows, "partial": True})  # a later crash keeps these
    columns = [
        ("model", "model"),
        ("impl", "impl"),
        ("pipeline", "pipeline"),
        ("packing", "packing"),
        ("N", "N"),
        ("levels", "levels"),
        ("samples_per_ct", "samples/ct"),
        ("latency_s", "latency/ct (s)"),
        ("per_sample_s", "per sample (s)"),
        ("predicted_s", "predicted (s)"),
        ("ratio", "measured/predicted"),
        ("rotations", "rotations"),
        ("max_err", "max abs err"),
        ("ct_MB", "input ct (MB)"),
        ("galois_steps", "Galois keys"),
        ("keys_MB", "eval keys (MB)"),
    ]
    print(table(rows, columns))
    for r in rows:
        if r.get("speedup_of_qfhe"):
            print(f"{r['model']}: qfhe {OPTIMIZED} single sample is {r['speedup_of_qfhe']:.1f}x faster than TenSEAL")
    payload = {"machine": machine(), "rows": rows}
    print(f"wrote {write_json('ckks_seal', payload)}")
    return payload


if __name__ == "__main__":
    main()
