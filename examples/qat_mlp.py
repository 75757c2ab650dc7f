"""Quantization-aware training with Brevitas, compiled exactly as trained, then run encrypted.

Trains a 3-layer MLP (64-64-64-10) on scikit-learn's digits with 3-bit weights and 3-bit
activations, reports the accumulator bit-widths per layer with rounding off and with
``rounding_threshold_bits=6``, compiles it with rounding to 6 bits and classifies a few test
digits under real encryption.

    python examples/qat_mlp.py [--short]
"""

from __future__ import annotations

import argparse
import time

import brevitas.nn as qnn
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from tqdm import tqdm

import qfhe


class QATMLP(nn.Module):
    """QuantIdentity → (QuantLinear → QuantReLU) × 2 → QuantLinear, all at ``bits`` bits."""

    def __init__(self, bits: int = 3, hidden: int = 64, n_in: int = 64, n_out: int = 10):
        super().__init__()
        # Pixels are in [0, 1]: an unsigned input quantizer spends no code on negative values.
        self.quant_in = qnn.QuantIdentity(bit_width=bits, signed=False, return_quant_tensor=True)
        self.fc1 = qnn.QuantLinear(n_in, hidden, bias=True, weight_bit_width=bits)
        self.act1 = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
        self.fc2 = qnn.QuantLinear(hidden, hidden, bias=True, weight_bit_width=bits)
        self.act2 = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
        self.fc3 = qnn.QuantLinear(hidden, n_out, bias=True, weight_bit_width=bits)

    def forward(self, x):
        x = self.act1(self.fc1(self.quant_in(x)))
        x = self.act2(self.fc2(x))
        return self.fc3(x)


def load_data():
    """Digits scaled to [0, 1], split 80/20 (stratified, fixed seed)."""
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.2, random_state=0, stratify=y)


def train_qat(Xtr, ytr, bits: int = 3, epochs: int = 300, seed: int = 0) -> QATMLP:
    """Full-batch Adam with Brevitas fake quantization in the loop."""
    torch.manual_seed(seed)
    model = QATMLP(bits)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    Xt, yt = torch.tensor(Xtr, dtype=torch.float32), torch.tensor(ytr)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
        sched.step()
    return model.eval()


def accuracy(scores, y) -> float:
    """Fraction of argmax predictions equal to ``y``."""
    return float((np.asarray(scores).argmax(1) == y).mean())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="fewer epochs, one encrypted sample")
    args = parser.parse_args(argv)
    epochs, n_enc = (120, 1) if args.short else (300, 3)

    Xtr, Xte, ytr, yte = load_data()
    model = train_qat(Xtr, ytr, epochs=epochs)
    with torch.no_grad():
        acc_brevitas = accuracy(model(torch.tensor(Xte, dtype=torch.float32)), yte)
    print(f"Brevitas fake-quant accuracy: {acc_brevitas:.3f}")

    result = {"acc_brevitas": acc_brevitas}
    for rounding in (None, 6):
        qm = qfhe.quantize_brevitas_qat_model(model, Xtr, rounding_threshold_bits=rounding)
        acc = accuracy(qm.forward(Xte), yte)
        print(f"\nrounding_threshold_bits={rounding}: clear-integer accuracy {acc:.3f}")
        print(qm.bitwidth_report())
        result[f"acc_clear_{rounding}"] = acc

    qm = qfhe.compile_brevitas_qat_model(model, Xtr, rounding_threshold_bits=6)
    acc_sim = accuracy(qm.forward(Xte, fhe="simulate"), yte)
    st = qm.statistics
    print(f"\ncompiled: {st['pbs_count']} PBS, max bit-width {st['max_bit_width']}, simulated accuracy {acc_sim:.3f}")
    start = time.perf_counter()
    qm.fhe_circuit.keygen()
    print(f"keygen: {time.perf_counter() - start:.1f} s")
    encrypted = []
    for i in tqdm(range(n_enc), desc="encrypted samples", unit="sample"):
        start = time.perf_counter()
        out = qm.forward(Xte[i : i + 1], fhe="execute")
        seconds = time.perf_counter() - start
        encrypted.append((int(out.argmax()), int(yte[i]), seconds))
        tqdm.write(f"sample {i}: predicted {out.argmax()} (label {yte[i]}) in {seconds:.2f} s")
    result.update(acc_sim=acc_sim, encrypted=encrypted, statistics=st)
    return result


if __name__ == "__main__":
    main()
