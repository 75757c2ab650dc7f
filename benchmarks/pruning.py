"""Pruning for narrow accumulators, measured in one run on digits.

Part 1: a 3-bit Brevitas QAT MLP and a 3-bit QAT CNN (``examples/prune_finetune.py``), trained once,
then for every structured pruning ratio {0, 0.25, 0.5, 0.75} and accumulator target {none, 12, 10,
8}: structured pruning, per-neuron pruning to the target, fine-tuning, and a compile with
``bitwidth_method="interval"`` and no rounding, so each max bit-width is proved for every input.
Per row: non-zero parameters, accuracy (fake-quant model and simulated circuit), max bit-width,
PBS count, and FHE seconds per sample on ``--n-exec`` samples where the circuit is at most
``--max-exec-bits`` wide and has at most ``--max-exec-pbs`` lookups (the note says when skipped).

Part 2: structured pruning of the float digits MLP (``examples/digits_mlp.py``, PTQ 6 bits with
rounding to 6), unpruned against 50 % plus fine-tuning: accuracy, PBS and FHE latency.

Writes ``benchmarks/results/pruning.json`` and ``pruning.png`` (accuracy against FHE latency).

    python benchmarks/pruning.py [--n-exec 1] [--epochs 20]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

import qfhe
from qfhe.prune import fine_tune, prune_structured

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, load_example, machine, table, write_json  # noqa: E402

pf = load_example("prune_finetune")
digits_mlp = load_example("digits_mlp")

RATIOS = (0.0, 0.25, 0.5, 0.75)
TARGETS = (None, 12, 10, 8)
COLUMNS = [
    ("model", "model"),
    ("ratio", "ratio"),
    ("target", "accumulator target"),
    ("params", "params"),
    ("acc_float", "acc model"),
    ("acc_sim", "acc simulated"),
    ("max_bit_width", "max bit-width"),
    ("pbs_count", "PBS"),
    ("fhe_s_per_sample", "FHE s/sample"),
    ("note", "note"),
]


def qat_grid(args, data) -> list[dict]:
    rows = []
    for kind in ("mlp", "cnn"):
        model = pf.train(kind, data, args.train_epochs)
        for ratio in RATIOS:
            for target in TARGETS:
                pruned = pf.prune_and_tune(model, data, ratio, target, args.epochs if (ratio or target) else 0)
                row = {"model": f"QAT 3-bit {kind}", "ratio": ratio, "target": target or "none"}
                wide = None
                row.update(pf.measure(pruned, data, 0, 0))  # compile + simulate only
                if row["max_bit_width"] > args.max_exec_bits:
                    wide = f"execution skipped: {row['max_bit_width']}-bit values > {args.max_exec_bits}"
                elif row["pbs_count"] > args.max_exec_pbs:
                    wide = f"execution skipped: {row['pbs_count']} PBS > {args.max_exec_pbs}"
                if wide:
                    row["note"] = wide
                else:
                    row.update(pf.measure(pruned, data, args.n_exec, args.max_exec_bits))
                    row.pop("note", None)
                rows.append(row)
                print(f"done: {kind} ratio={ratio} target={target}", flush=True)
    return rows


def structured_float(args) -> list[dict]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    model = digits_mlp.train_mlp(Xtr, ytr, epochs=150)
    small = prune_structured(model, Xtr[:2], ratio=0.5)
    fine_tune(small, pf.loader(Xtr, ytr), epochs=30, lr=3e-3, progress=False)
    rows = []
    for name, m in (("float MLP, unpruned", model), ("float MLP, 50 % structured + fine-tuning", small)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", qfhe.CalibrationWarning)
            qm = qfhe.compile_torch_model(m, Xtr, n_bits=6, rounding_threshold_bits=6)
        row = {
            "model": name,
            "params": pf.n_params(m),
            "acc_sim": pf.accuracy(qm.forward(Xte, fhe="simulate"), yte),
            "max_bit_width": qm.statistics["max_bit_width"],
            "pbs_count": qm.statistics["pbs_count"],
        }
        with torch.no_grad():
            row["acc_float"] = pf.accuracy(m(torch.tensor(Xte, dtype=torch.float32)), yte)
        qm.fhe_circuit.keygen()
        start = time.perf_counter()
        qm.forward(Xte[: args.n_exec], fhe="execute")
        row["fhe_s_per_sample"] = (time.perf_counter() - start) / args.n_exec
        rows.append(row)
        print(f"done: {name}", flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, marker in (("QAT 3-bit mlp", "o"), ("QAT 3-bit cnn", "s")):
        pts = [r for r in rows if r["model"] == model and r.get("fhe_s_per_sample")]
        ax.scatter([r["fhe_s_per_sample"] for r in pts], [r["acc_sim"] for r in pts], marker=marker, label=model)
        for r in pts:
            ax.annotate(
                f"r={r['ratio']:g}, {r['target']}b",
                (r["fhe_s_per_sample"], r["acc_sim"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("FHE seconds per sample (2 cores)")
    ax.set_ylabel("simulated accuracy (digits test split)")
    ax.set_title("Pruned QAT models with accumulators proved <= 8 bits")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-exec", type=int, default=1, help="encrypted samples per executed row")
    parser.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs after pruning")
    parser.add_argument("--train-epochs", type=int, default=40, help="QAT epochs before pruning")
    parser.add_argument("--max-exec-bits", type=int, default=8)
    parser.add_argument("--max-exec-pbs", type=int, default=400)
    args = parser.parse_args(argv)
    data = pf.load_data()
    grid = qat_grid(args, data)
    floats = structured_float(args)
    info = machine()
    print(f"\nPruning, digits, measured {info['date']} on {info['machine']}\n")
    print(table(grid, COLUMNS))
    print("\nStructured pruning of the float digits MLP (PTQ 6 bits, rounding to 6)\n")
    print(table(floats, [c for c in COLUMNS if c[0] not in ("ratio", "target", "note")]))
    RESULTS.mkdir(exist_ok=True)
    png = RESULTS / "pruning.png"
    plot(grid, png)
    print(f"\nwrote {write_json('pruning', {'machine': info, 'qat': grid, 'float': floats})} and {png}")
    return {"qat": grid, "float": floats}


if __name__ == "__main__":
    main()
