"""Prune a Brevitas QAT model for narrow accumulators, fine-tune it, compile it and run it encrypted.

Trains (or loads) a 3-bit QAT model on scikit-learn's digits, removes ``--ratio`` of the hidden
neurons/channels (structured, torch-pruning), keeps in every neuron only as many weights as an
``--n-accum-bits`` accumulator can sum (unstructured, guaranteed), fine-tunes with the masks kept,
compiles with ``bitwidth_method="interval"`` and no rounding (so the width is proved for every
input), and classifies a few digits under real encryption. Prints a before/after table.

    python examples/prune_finetune.py --model mlp --ratio 0.5 --n-accum-bits 8 --epochs 5
    python examples/prune_finetune.py --model cnn --save cnn.pt      # later: --load cnn.pt

``--load``/``--save`` use a state dict read with ``torch.load(weights_only=True)``: no pickled code.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import brevitas.nn as qnn
import numpy as np
import torch
from torch import nn

import qfhe
from qfhe.prune import accumulator_report, fine_tune, prune_structured, prune_to_accumulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qat_mlp import QATMLP, accuracy, load_data  # noqa: E402  (the same model and data as the QAT example)


class QATCNN(nn.Module):
    """On 8x8 digits: conv → BatchNorm → ReLU, strided conv → ReLU, linear; all at ``bits`` bits."""

    def __init__(self, bits: int = 3, channels: int = 8):
        super().__init__()
        self.quant_in = qnn.QuantIdentity(bit_width=bits, signed=False, return_quant_tensor=True)
        self.conv1 = qnn.QuantConv2d(1, channels, 3, padding=1, weight_bit_width=bits)
        self.bn = nn.BatchNorm2d(channels)
        self.act1 = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
        self.conv2 = qnn.QuantConv2d(channels, channels, 3, stride=2, padding=1, weight_bit_width=bits)
        self.act2 = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
        self.fc = qnn.QuantLinear(channels * 16, 10, bias=True, weight_bit_width=bits)

    def forward(self, x):
        x = self.act1(self.bn(self.conv1(self.quant_in(x.reshape(-1, 1, 8, 8)))))
        return self.fc(self.act2(self.conv2(x)).flatten(1))


MODELS = {"mlp": QATMLP, "cnn": QATCNN}


def loader(X, y, batch_size: int = 64, seed: int = 0):
    """A shuffling DataLoader over (X, y)."""
    data = torch.utils.data.TensorDataset(torch.tensor(X, dtype=torch.float32), torch.tensor(y))
    return torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )


def n_params(model: nn.Module) -> int:
    """Non-zero weights and biases (masked weights count as zero)."""
    total = 0
    for module in model.modules():
        for name in ("weight", "bias"):
            p = getattr(module, name, None)
            if isinstance(p, torch.Tensor) and not isinstance(module, nn.BatchNorm2d):
                total += int((p != 0).sum())
    return total


def prune_and_tune(model, data, ratio: float, n_accum_bits: int | None, epochs: int, lr: float = 1e-2):
    """Structured pruning at ``ratio``, then per-neuron pruning to ``n_accum_bits`` (None: skip),
    then fine-tuning with the masks kept. Returns the new model (the input is not changed)."""
    Xtr, Xte, ytr, yte = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch-pruning lists Brevitas' scalar scales
        small = prune_structured(model, Xtr[:2], ratio=ratio) if ratio else model
    if n_accum_bits is not None:
        small = prune_to_accumulator(small, n_accum_bits, example_input=Xtr[:2])
    elif small is model:
        small = copy.deepcopy(model)
    if epochs:
        fine_tune(small, loader(Xtr, ytr), epochs=epochs, lr=lr, progress=False)
    return small


def measure(model, data, n_encrypted: int, max_exec_bits: int, configuration=None) -> dict:
    """Compile (interval sizing, no rounding), simulate the test split and run a few samples encrypted."""
    Xtr, Xte, _, yte = data
    with torch.no_grad():
        acc_float = accuracy(model(torch.tensor(Xte, dtype=torch.float32)), yte)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qfhe.CalibrationWarning)
        qm = qfhe.compile_brevitas_qat_model(model, Xtr, bitwidth_method="interval", configuration=configuration)
    st = qm.statistics
    row = {
        "params": n_params(model),
        "acc_float": acc_float,
        "acc_sim": accuracy(qm.forward(Xte, fhe="simulate"), yte),
        "max_bit_width": st["max_bit_width"],
        "pbs_count": st["pbs_count"],
    }
    if st["max_bit_width"] > max_exec_bits or n_encrypted == 0:
        row["note"] = (
            f"execution skipped: {st['max_bit_width']}-bit values > {max_exec_bits}"
            if n_encrypted
            else "execution not requested"
        )
        return row
    start = time.perf_counter()
    qm.fhe_circuit.keygen()
    row["keygen_s"] = time.perf_counter() - start
    start = time.perf_counter()
    out = qm.forward(Xte[:n_encrypted], fhe="execute")
    row["fhe_s_per_sample"] = (time.perf_counter() - start) / n_encrypted
    row["execute_matches_simulate"] = bool(np.array_equal(out, qm.forward(Xte[:n_encrypted], fhe="simulate")))
    return row


def train(kind: str, data, epochs: int, bits: int = 3) -> nn.Module:
    """Quantization-aware training from scratch."""
    Xtr, _, ytr, _ = data
    torch.manual_seed(0)
    model = MODELS[kind](bits)
    fine_tune(model, loader(Xtr, ytr), epochs=epochs, lr=1e-2, progress=False)
    return model


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="mlp")
    parser.add_argument("--ratio", type=float, default=0.5, help="fraction of hidden neurons/channels removed")
    parser.add_argument("--n-accum-bits", type=int, default=8, help="accumulator width every neuron must fit")
    parser.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs after pruning")
    parser.add_argument("--train-epochs", type=int, default=40, help="QAT epochs when training from scratch")
    parser.add_argument("--n-encrypted", type=int, default=1, help="test samples run under encryption")
    parser.add_argument("--max-exec-bits", type=int, default=8, help="skip encrypted execution above this width")
    parser.add_argument("--load", help="state dict of a trained model (skips training)")
    parser.add_argument("--save", help="write the trained model's state dict here")
    parser.add_argument("--short", action="store_true", help="tiny run for tests")
    args = parser.parse_args(argv)
    if args.short:
        args.train_epochs, args.epochs, args.n_encrypted = 3, 1, 0

    data = load_data()
    if args.load:
        model = MODELS[args.model]()
        model.load_state_dict(torch.load(args.load, weights_only=True))
        model.eval()
    else:
        model = train(args.model, data, args.train_epochs)
    if args.save:
        torch.save(model.state_dict(), args.save)

    pruned = prune_and_tune(model, data, args.ratio, args.n_accum_bits, args.epochs)
    print(accumulator_report(pruned, args.n_accum_bits, example_input=data[0][:2]))
    rows = []
    for name, m, n_enc in (("before", model, 0), ("after", pruned, args.n_encrypted)):
        row = {"model": name, **measure(m, data, n_enc, args.max_exec_bits)}
        rows.append(row)
    cols = ["model", "params", "acc_float", "acc_sim", "max_bit_width", "pbs_count", "fhe_s_per_sample", "note"]
    print("\n" + " | ".join(cols))
    for r in rows:
        print(
            " | ".join(
                "-" if r.get(c) is None else (f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c])) for c in cols
            )
        )
    return {"rows": rows, "model": pruned}


if __name__ == "__main__":
    main()
