"""Encrypted inference of a digits MLP: train in the clear, compile, simulate, then run on encrypted data.

Run with ``make demo`` (or ``python examples/digits_mlp.py [--short]``).

Steps: train a float 64-64-64-10 ReLU MLP on scikit-learn's bundled digits data; compile it with
6-bit post-training quantization and exact rounding of every table-lookup input to 6 bits; print
the bit-width report and circuit statistics; compare float / quantized (clear integers) /
simulated accuracy on the test split; generate keys and classify a few test digits under real
encryption, showing the wall time of each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from tqdm import tqdm

import qfhe


def train_mlp(X, y, epochs: int, seed: int = 0) -> nn.Module:
    """Full-batch Adam on a 64-64-64-10 ReLU MLP."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    return model.eval()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="quick run: 4-bit model, one encrypted sample")
    parser.add_argument("--n-encrypted", type=int, default=None, help="test samples to run encrypted")
    args = parser.parse_args(argv)
    n_bits, rounding, n_enc = (4, 4, 1) if args.short else (6, 6, 3)
    if args.n_encrypted is not None:
        n_enc = args.n_encrypted

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    model = train_mlp(Xtr, ytr, epochs=150)
    with torch.no_grad():
        acc_float = float((model(torch.tensor(Xte, dtype=torch.float32)).argmax(1).numpy() == yte).mean())

    print(f"Compiling with n_bits={n_bits}, rounding_threshold_bits={rounding} ...")
    qm = qfhe.compile_torch_model(model, Xtr, n_bits=n_bits, rounding_threshold_bits=rounding)
    stats = qm.statistics
    print(qm.bitwidth_report())
    print(f"PBS per sample: {stats['pbs_count']}, max bit-width: {stats['max_bit_width']}, "
          f"compile: {stats['compile_seconds']:.1f} s")

    acc_clear = float((qm.forward(Xte, fhe="disable").argmax(1) == yte).mean())
    start = time.perf_counter()
    acc_sim = float((qm.forward(Xte, fhe="simulate").argmax(1) == yte).mean())
    sim_s = time.perf_counter() - start
    print(f"accuracy  float {acc_float:.3f}  quantized {acc_clear:.3f}  simulated {acc_sim:.3f} "
          f"({len(Xte)} samples simulated in {sim_s:.2f} s)")

    print("Generating keys ...")
    start = time.perf_counter()
    qm.fhe_circuit.keygen()
    print(f"keygen: {time.perf_counter() - start:.1f} s")
    results = []
    for i in tqdm(range(n_enc), desc="encrypted samples", unit="sample"):
        start = time.perf_counter()
        out = qm.forward(Xte[i : i + 1], fhe="execute")
        seconds = time.perf_counter() - start
        results.append((int(out.argmax()), int(yte[i]), seconds))
        tqdm.write(f"sample {i}: predicted {out.argmax()} (label {yte[i]}) in {seconds:.2f} s")
    return {"acc_float": acc_float, "acc_clear": acc_clear, "acc_sim": acc_sim, "encrypted": results}


if __name__ == "__main__":
    main()
