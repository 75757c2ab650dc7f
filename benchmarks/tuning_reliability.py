"""Does a 1-point tuning hold on held-out data? The digits MLP and CNN over many splits and validation sizes.

For each model, split seed and validation fraction (of the training split), the model is trained
on the rest of the training split: the digits MLP (64-64-64-10, full-batch, ``make demo``'s
recipe) on ``X / 16``, or issue 25's digits CNN (``benchmarks/vs_concrete_ml.py``'s recipe) on
``X / 16`` as 1x8x8 images. It is tuned the way the tuning guide shows, with
:func:`qfhe.tune_circuit` at 0.01 (rounding plan and ``p_error`` together, one budget against the
unrounded model, PTQ 6 bits). The loss is measured on the test split (never seen by training or
tuning) against the untuned circuit (exact rounding to 6 bits), as concrete's simulated accuracy,
the mean of 5 simulations. Speed is concrete's cost estimate (complexity) of the untuned circuit
over the tuned one; no circuit is executed, so the whole study takes minutes.

    python benchmarks/tuning_reliability.py [--models mlp cnn] [--seeds 0 1 ...] [--fractions 0.25 0.5]

Writes benchmarks/results/tuning_reliability.json and tuning_reliability.png.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import qfhe  # noqa: E402
from common import RESULTS, load_example, machine, table, write_json  # noqa: E402

digits_mlp = load_example("digits_mlp")
import vs_concrete_ml  # noqa: E402  (the CNN and its recipe)


def accuracy(out, y) -> float:
    return float((np.asarray(out).argmax(1) == y).mean())


def one_split(kind: str, seed: int, fraction: float) -> dict:
    """Train, tune at 1 point, and measure the held-out loss and the cost ratio for one split."""
    warnings.filterwarnings("ignore", category=qfhe.CalibrationWarning)
    warnings.filterwarnings("ignore", category=qfhe.InputClippingWarning)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0 if kind == "mlp" else (X / 16.0).reshape(-1, 1, 8, 8)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    Xfit, Xval, yfit, yval = train_test_split(Xtr, ytr, test_size=fraction, random_state=seed, stratify=ytr)
    model = (
        digits_mlp.train_mlp(Xfit, yfit, epochs=150, seed=seed)
        if kind == "mlp"
        else vs_concrete_ml.train("cnn", Xfit, yfit, seed)
    )
    untuned = qfhe.compile_torch_model(model, Xtr, n_bits=6, rounding_threshold_bits=6)
    result = qfhe.tune_circuit(model, Xtr, Xval, yval, max_metric_loss=0.01, n_bits=6, random_state=seed)
    tuned = result.model
    acc_untuned = float(np.mean([accuracy(untuned.forward(Xte, fhe="simulate"), yte) for _ in range(5)]))
    acc_tuned = float(np.mean([accuracy(tuned.forward(Xte, fhe="simulate"), yte) for _ in range(5)]))
    return {
        "model": kind,
        "seed": seed,
        "fraction": fraction,
        "n_val": len(yval),
        "n_fit": len(yfit),
        "acc_untuned": acc_untuned,
        "acc_tuned": acc_tuned,
        "test_loss_pts": 100 * (acc_untuned - acc_tuned),
        "cost_ratio": untuned.statistics["complexity"] / tuned.statistics["complexity"],
        "plan": tuned.rounding_plan.as_dict(),
        "p_error": result.p_error,
        "share": result.share,
        "search_s": result.seconds,
    }


def isolated(kind: str, seed: int, fraction: float) -> dict:
    """:func:`one_split` in a fresh process: concrete-python 2.11's optimizer can abort the whole
    process (a Rust assertion, uncatchable) on some circuits; such a split is reported, not lost."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(one_split, kind, seed, fraction).result()
        except BrokenProcessPool:
            return {
                "model": kind,
                "seed": seed,
                "fraction": fraction,
                "aborted": "concrete's optimizer aborted the process",
            }
        except qfhe.QfheError as exc:  # reported with the split, not lost with the run
            return {"model": kind, "seed": seed, "fraction": fraction, "aborted": f"{type(exc).__name__}: {exc}"}


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for kind, f in dict.fromkeys((x["model"], x["fraction"]) for x in rows):
        group = [x for x in rows if x["model"] == kind and x["fraction"] == f]
        r = [x for x in group if "aborted" not in x]
        if not r:
            continue
        loss = np.array([x["test_loss_pts"] for x in r])
        cost = np.array([x["cost_ratio"] for x in r])
        out.append(
            {
                "model": kind,
                "fraction": f,
                "n_val": r[0]["n_val"],
                "splits": len(r),
                "mean_loss": float(loss.mean()),
                "max_loss": float(loss.max()),
                "over_1pt": int((loss > 1.0).sum()),
                "min_cost_ratio": float(cost.min()),
                "median_cost_ratio": float(np.median(cost)),
                "aborted": len(group) - len(r),
                "acc_untuned": float(np.mean([x["acc_untuned"] for x in r])),
            }
        )
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    groups = list(dict.fromkeys((x["model"], x["fraction"]) for x in rows if "aborted" not in x))
    for i, (kind, f) in enumerate(groups):
        r = [x for x in rows if x["model"] == kind and x["fraction"] == f and "aborted" not in x]
        ax.scatter(
            [x["cost_ratio"] for x in r],
            [x["test_loss_pts"] for x in r],
            label=f"{kind}, validation {r[0]['n_val']}",
            marker="os^d"[i % 4],
        )
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("x lower cost than untuned (concrete's estimate)")
    ax.set_ylabel("test accuracy loss vs untuned (points)")
    ax.set_title("digits models tuned at 1 point by tune_circuit, one dot per split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5])
    args = parser.parse_args(argv)
    rows = []
    for kind in args.models:
        for f in args.fractions:
            for seed in args.seeds:
                rows.append(isolated(kind, seed, f))
                print({k: v for k, v in rows[-1].items() if k != "plan"}, flush=True)
    summary = summarize(rows)
    info = machine()
    print(f"\nTuning at 1 point on held-out data, measured {info['date']} on {info['machine']}\n")
    print(
        table(
            summary,
            [
                ("model", "model"),
                ("fraction", "validation fraction"),
                ("n_val", "validation samples"),
                ("splits", "splits"),
                ("acc_untuned", "untuned acc (mean)"),
                ("mean_loss", "test loss, mean (points)"),
                ("max_loss", "test loss, max (points)"),
                ("over_1pt", "splits > 1 point"),
                ("min_cost_ratio", "x lower cost, min"),
                ("median_cost_ratio", "x lower cost, median"),
                ("aborted", "splits aborted by concrete"),
            ],
        )
    )
    print(f"\nwrote {write_json('tuning_reliability', {'machine': info, 'rows': rows, 'summary': summary})}")
    plot(rows, RESULTS / "tuning_reliability.png")
    print(f"wrote {RESULTS / 'tuning_reliability.png'}")
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
