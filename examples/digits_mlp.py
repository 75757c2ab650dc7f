"""Encrypted inference of a digits MLP: train in the clear, compile, simulate, then run on encrypted data.

Run with ``make demo`` (or ``python examples/digits_mlp.py [--short]``).

Steps: train a float 64-64-64-10 ReLU MLP on scikit-learn's bundled digits data (half of the
training split is held out for tuning); compile it with 6-bit post-training quantization and exact
rounding of every table-lookup input to 6 bits (the untuned default); print the bit-width report
and circuit statistics; compare float / quantized (clear integers) / simulated accuracy on the
test split; generate keys and classify a few test digits under real encryption.

Then tune it with ``qfhe.tune_circuit``, the fastest configuration qfhe finds for this model at
<= 1 point of accuracy loss: per-layer rounding (``rounding_threshold_bits="auto"``) and the lookup
error probability (``find_best_p_error``) chosen together, several splits of the one 1-point
budget between them tried and the cheapest circuit kept, judged on the held-out validation data
against the unrounded model. The tuned circuit runs the same encrypted samples, and a last table
sets its encrypted latency beside the untuned one.
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
    return fit_full_batch(model, X, y, epochs)


def fit_full_batch(model: nn.Module, X, y, epochs: int, lr: float = 1e-2) -> nn.Module:
    """Full-batch Adam on cross-entropy; returns the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
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
    parser.add_argument("--no-tune", action="store_true", help="stop after the untuned circuit")
    args = parser.parse_args(argv)
    n_bits, rounding, n_enc = (4, 4, 1) if args.short else (6, 6, 3)
    if args.n_encrypted is not None:
        n_enc = args.n_encrypted

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    # held out for tuning: the searches must not judge on the data the model was fitted to, and a
    # 1-point tolerance needs several hundred samples to hold on other data
    # (benchmarks/tuning_reliability.py), so half of the training split
    Xtr, Xval, ytr, yval = train_test_split(Xtr, ytr, test_size=0.5, random_state=0, stratify=ytr)
    model = train_mlp(Xtr, ytr, epochs=150)
    with torch.no_grad():
        acc_float = float((model(torch.tensor(Xte, dtype=torch.float32)).argmax(1).numpy() == yte).mean())

    print(f"Compiling with n_bits={n_bits}, rounding_threshold_bits={rounding} ...")
    qm = qfhe.compile_torch_model(model, Xtr, n_bits=n_bits, rounding_threshold_bits=rounding)
    stats = qm.statistics
    print(qm.bitwidth_report())
    print(
        f"PBS per sample: {stats['pbs_count']}, max bit-width: {stats['max_bit_width']}, "
        f"compile: {stats['compile_seconds']:.1f} s"
    )

    acc_clear = float((qm.forward(Xte, fhe="disable").argmax(1) == yte).mean())
    start = time.perf_counter()
    acc_sim = float((qm.forward(Xte, fhe="simulate").argmax(1) == yte).mean())
    sim_s = time.perf_counter() - start
    print(
        f"accuracy  float {acc_float:.3f}  quantized {acc_clear:.3f}  simulated {acc_sim:.3f} "
        f"({len(Xte)} samples simulated in {sim_s:.2f} s)"
    )

    untuned = encrypted_run(qm, Xte, yte, n_enc)
    result = {"acc_float": acc_float, "acc_clear": acc_clear, "acc_sim": acc_sim, "encrypted": untuned["samples"]}
    if args.no_tune:
        return result

    print(
        "\nTuning: qfhe.tune_circuit (rounding plan and p_error together, one budget of 1 point "
        "against the unrounded model) ..."
    )
    quick = {"shares": (0.5,)} if args.short else {}  # one split of the budget instead of three
    search = qfhe.tune_circuit(model, Xtr, Xval, yval, max_metric_loss=0.01, n_bits=n_bits, **quick)
    print(search.candidates)
    tuned = search.model
    print(tuned.rounding_plan)
    acc_tuned = float((tuned.forward(Xte, fhe="simulate").argmax(1) == yte).mean())
    print(
        f"tuned: PBS per sample {tuned.statistics['pbs_count']}, p_error {search.p_error:.3g}, "
        f"simulated test accuracy {acc_tuned:.3f} (search: {search.seconds:.0f} s)"
    )
    fast = encrypted_run(tuned, Xte, yte, n_enc)

    print("\n| circuit | PBS | simulated accuracy | keygen s | encrypted s/sample |")
    print("|---|---|---|---|---|")
    for name, q, acc, run in (
        ("untuned (exact rounding, default p_error)", qm, acc_sim, untuned),
        ("tuned (tune_circuit)", tuned, acc_tuned, fast),
    ):
        print(
            f"| {name} | {q.statistics['pbs_count']} | {acc:.3f} | {run['keygen_s']:.1f} | "
            f"{run['seconds_per_sample']:.2f} |"
        )
    speedup = untuned["seconds_per_sample"] / fast["seconds_per_sample"]
    print(
        f"tuned is {speedup:.1f}x faster under encryption; simulated accuracy {100 * (acc_tuned - acc_sim):+.1f} points"
    )
    result.update(
        acc_tuned=acc_tuned,
        p_error=search.p_error,
        share=search.share,
        encrypted_tuned=fast["samples"],
        speedup=speedup,
    )
    return result


def encrypted_run(qm, X, y, n: int) -> dict:
    """Keygen, then ``n`` samples one at a time under real encryption: predictions and wall times."""
    print("Generating keys ...")
    start = time.perf_counter()
    qm.fhe_circuit.keygen()
    keygen_s = time.perf_counter() - start
    print(f"keygen: {keygen_s:.1f} s")
    samples = []
    for i in tqdm(range(n), desc="encrypted samples", unit="sample"):
        start = time.perf_counter()
        out = qm.forward(X[i : i + 1], fhe="execute")
        seconds = time.perf_counter() - start
        samples.append((int(out.argmax()), int(y[i]), seconds))
        tqdm.write(f"sample {i}: predicted {out.argmax()} (label {y[i]}) in {seconds:.2f} s")
    return {"keygen_s": keygen_s, "samples": samples, "seconds_per_sample": float(np.mean([s[2] for s in samples]))}


if __name__ == "__main__":
    main()
