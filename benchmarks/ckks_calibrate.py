"""Measure SEAL's CKKS op latencies (tenseal.sealapi) and fit qfhe's cost model.

For each op, t(N, level) = a · (N / 8192) · (level + 1) ** e is fitted by least squares in log
space over several ring degrees and levels; the coefficients go to ``qfhe/ckks/cost_model.json``,
which :class:`qfhe.ckks.passes.CostAnalysisPass` reads.

    python benchmarks/ckks_calibrate.py [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tenseal.sealapi as sealapi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine  # noqa: E402
from qfhe.ckks.backends.seal import galois_elements  # noqa: E402

TARGET = HERE.parent / "qfhe" / "ckks" / "cost_model.json"
CONFIGS = [
    (8192, [60, 40, 40, 60]),
    (8192, [60, 40, 40, 40, 60]),
    (16384, [60] + [40] * 3 + [60]),
    (16384, [60] + [40] * 6 + [60]),
    (16384, [60] + [40] * 9 + [60]),
    (32768, [60] + [40] * 15 + [60]),
]


def measure(N: int, bits: list, reps: int, pool: int = 16) -> tuple[int, dict]:
    """Per-op latency at the top level of ``bits``, as a graph run meets it.

    Each call reads the next of ``pool`` distinct ciphertexts and plaintexts and writes a fresh
    output ciphertext: timing one operand in a loop keeps it in cache and measured 1.5-2x faster
    than the same ops inside a real graph run (benchmarks/ckks_seal.py).
    """
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(N)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(N, bits))
    ctx = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.NONE)
    kg = sealapi.KeyGenerator(ctx)
    pk, rk, gk = sealapi.PublicKey(), sealapi.RelinKeys(), sealapi.GaloisKeys()
    kg.create_public_key(pk)
    kg.create_relin_keys(rk)
    kg.create_galois_keys(galois_elements([1], N), gk)
    enc, ev, ce = sealapi.Encryptor(ctx, pk), sealapi.Evaluator(ctx), sealapi.CKKSEncoder(ctx)
    rng = np.random.default_rng(0)
    pts, cts, bigs = [], [], []
    for _ in range(pool):
        pt, ct, big = sealapi.Plaintext(), sealapi.Ciphertext(), sealapi.Ciphertext()
        ce.encode(rng.uniform(-1, 1, N // 2).tolist(), 2.0**40, pt)
        enc.encrypt(pt, ct)
        ev.multiply(ct, ct, big)
        pts.append(pt), cts.append(ct), bigs.append(big)

    def t(f):
        f(0, sealapi.Ciphertext())
        total = 0.0
        for r in range(reps * pool):
            out = sealapi.Ciphertext()
            start = time.perf_counter()
            f(r % pool, out)
            total += time.perf_counter() - start
        return total / (reps * pool) * 1000

    ops = {
        "ciphertext_add": lambda i, o: ev.add(cts[i], cts[i - 1], o),
        "plaintext_add": lambda i, o: ev.add_plain(cts[i], pts[i - 1], o),
        "plaintext_mult": lambda i, o: ev.multiply_plain(cts[i], pts[i - 1], o),
        "ciphertext_mult": lambda i, o: ev.multiply(cts[i], cts[i - 1], o),
        "relinearize": lambda i, o: ev.relinearize(bigs[i], rk, o),
        "rescale": lambda i, o: ev.rescale_to_next(cts[i], o),
        "mod_switch": lambda i, o: ev.mod_switch_to_next(cts[i], o),
        "rotate": lambda i, o: ev.rotate_vector(cts[i], 1, gk, o),
    }
    return len(bits) - 2, {k: t(f) for k, f in ops.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    for N, bits in CONFIGS:
        level, times = measure(N, bits, args.reps)
        rows.append({"N": N, "level": level, "ms": times})
        print(f"N={N} level={level}: " + ", ".join(f"{k} {v:.3f}" for k, v in times.items()), flush=True)
    model = {}
    for op in rows[0]["ms"]:
        y = np.log([r["ms"][op] / (r["N"] / 8192) for r in rows])
        A = np.stack([np.ones(len(rows)), np.log([r["level"] + 1 for r in rows])], axis=1)
        (log_a, e), *_ = np.linalg.lstsq(A, y, rcond=None)
        model[op] = {"a_ms": float(np.exp(log_a)), "exponent": float(e)}
        print(f"{op:16s} t = {np.exp(log_a):.4f} ms * (N/8192) * (level+1)^{e:.2f}")
    payload = {
        "machine": machine(),
        "form": "t_ms = a_ms * (N / 8192) * (level + 1) ** exponent",
        "ops": model,
        "measurements": rows,
        "bootstrap_multiplications": 150,
    }
    TARGET.write_text(json.dumps(payload, indent=2))
    print(f"wrote {TARGET}")
    return payload


if __name__ == "__main__":
    main()
