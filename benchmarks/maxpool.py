"""Digits CNN with MaxPool2d against the same CNN with AvgPool2d: accuracy and encrypted latency, one run.

Both CNNs (conv 1->8 3x3 padded, ReLU, 2x2 pool, conv 8->16 3x3, ReLU, linear 64->10, on 8x8
digits) are trained the same way, compiled with 6-bit post-training quantization and exact
rounding to 6 bits, simulated on the whole test split, and run under real encryption on a few
test samples (decrypted results compared with the simulation). The table shows where the time
goes: PBS per layer, the widest lookup, and seconds per encrypted sample.

    python benchmarks/maxpool.py [--n-exec 2] [--epochs 300]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import qfhe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_example, machine, table, write_json  # noqa: E402

COLUMNS = [
    ("pool", "pool"),
    ("acc_float", "acc float"),
    ("acc_clear", "acc clear"),
    ("acc_sim", "acc simulated"),
    ("pbs_count", "PBS"),
    ("pool_pbs", "PBS in the pool"),
    ("max_bit_width", "max bit-width"),
    ("compile_s", "compile s"),
    ("keygen_s", "keygen s"),
    ("fhe_s", "FHE s/sample"),
    ("ratio", "x AvgPool latency"),
    ("exec_equal_sim", "decrypted == simulated"),
]


class DigitsCNN(nn.Module):
    """conv 1->8 3x3 (padded), ReLU, 2x2 pool, conv 8->16 3x3, ReLU, linear 64->10."""

    def __init__(self, pool: str = "max"):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3)
        self.pool = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(x)).flatten(1))


def load_images():
    """Digits as (n, 1, 8, 8) images in [0, 1], with the examples' train/test split."""
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.2, random_state=0, stratify=y)
    return Xtr.reshape(-1, 1, 8, 8), Xte.reshape(-1, 1, 8, 8), ytr, yte


def train(pool: str, X, y, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    return load_example("digits_mlp").fit_full_batch(DigitsCNN(pool), X, y, epochs)


def accuracy(out, y) -> float:
    return float((np.asarray(out).argmax(1) == y).mean())


def measure(pool: str, Xtr, Xte, ytr, yte, epochs: int, n_exec: int) -> dict:
    model = train(pool, Xtr, ytr, epochs)
    with torch.no_grad():
        acc_float = accuracy(model(torch.tensor(Xte, dtype=torch.float32)).numpy(), yte)
    start = time.perf_counter()
    qm = qfhe.compile_torch_model(model, Xtr, n_bits=6, rounding_threshold_bits=6)
    compile_s = time.perf_counter() - start
    sim = qm.forward(Xte, fhe="simulate")
    st = qm.statistics
    row = {
        "pool": f"{'MaxPool2d' if pool == 'max' else 'AvgPool2d'}(2)",
        "acc_float": acc_float,
        "acc_clear": accuracy(qm.forward(Xte), yte),
        "acc_sim": accuracy(sim, yte),
        "pbs_count": st["pbs_count"],
        "pool_pbs": st["pbs_count_per_layer"].get("pool", 0),
        "max_bit_width": st["max_bit_width"],
        "compile_s": compile_s,
        "pbs_per_layer": st["pbs_count_per_layer"],
    }
    if n_exec:
        start = time.perf_counter()
        qm.fhe_circuit.keygen()
        row["keygen_s"] = time.perf_counter() - start
        start = time.perf_counter()
        out = qm.forward(Xte[:n_exec], fhe="execute")
        row["fhe_s"] = (time.perf_counter() - start) / n_exec
        row["exec_equal_sim"] = bool(np.array_equal(out, sim[:n_exec]))
    print(
        f"{row['pool']}: simulated accuracy {row['acc_sim']:.3f}, {row['pbs_count']} PBS, "
        f"{row.get('fhe_s', float('nan')):.2f} s per encrypted sample",
        flush=True,
    )
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-exec", type=int, default=2, help="test samples to run under encryption (0: none)")
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=qfhe.CalibrationWarning)
    Xtr, Xte, ytr, yte = load_images()
    rows = [measure(pool, Xtr, Xte, ytr, yte, args.epochs, args.n_exec) for pool in ("avg", "max")]
    if args.n_exec:
        rows[1]["ratio"], rows[0]["ratio"] = rows[1]["fhe_s"] / rows[0]["fhe_s"], 1.0
    info = machine()
    print(f"\n{info['date']}, {info['machine']}\n")
    print(table(rows, COLUMNS))
    write_json("maxpool", {"machine": info, "args": vars(args), "rows": rows})
    return {"machine": info, "rows": rows}


if __name__ == "__main__":
    main()
