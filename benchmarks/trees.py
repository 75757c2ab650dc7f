"""Tree ensembles on encrypted data against Concrete ML's figures, in one run.

The six configurations of issue 24, with Concrete ML 1.9's figures quoted from it (same machine
class: 2 cores; ``n_bits=6``; its default error probability, a per-lookup ``p_error`` of 7.8e-13;
20 % stratified test split with ``random_state=0``; float32 features; its widest value was 8 bits
in every row). qfhe runs the same data, split and model parameters at ``n_bits=6`` with a per-lookup
``p_error`` of 7.8e-13 (no looser than Concrete ML's), and the regressors on diabetes.

Per row: accuracy (R² for regressors) of the float model (the library's, fitted on the raw features), of the clear quantized model
(``fhe="disable"``) and of the simulated circuit on the whole test set; PBS count and widest value
(they do not depend on the machine); keygen seconds; FHE seconds per sample over ``--n-exec``
encrypted samples (encryption, run and decryption; the executed outputs are checked against the
simulated ones), split into client (encrypt + decrypt) and server (run) time.

Writes ``benchmarks/results/trees.json`` and ``trees.png`` (accuracy against FHE latency, with
Concrete ML's points).

    python benchmarks/trees.py [--n-exec 5] [--rows dt_bc rf_bc ...]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, make_classification
from sklearn.model_selection import train_test_split

from qfhe.sklearn import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    XGBClassifier,
    XGBRegressor,
)
from sklearn.base import clone

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, table, write_json  # noqa: E402

#: Concrete ML 1.9's figures, quoted from issue 24: (accuracy simulated, PBS, FHE s/sample)
CONCRETE_ML = {
    "dt_bc": (0.947, 118, 2.98),
    "rf_bc": (0.939, 2360, 26.9),
    "xgb_bc": (0.939, 1280, 10.4),
    "dt_mc": (0.793, 235, 2.65),
    "rf_mc": (0.800, 2720, 29.2),
    "xgb_mc": (0.813, 1280, 12.9),
}
P_ERROR = 7.8e-13


def _breast_cancer():
    return load_breast_cancer(return_X_y=True)


def _made():
    return make_classification(2000, n_features=20, n_informative=10, random_state=0)


def _diabetes():
    return load_diabetes(return_X_y=True)


ROWS = {
    "dt_bc": ("breast_cancer", _breast_cancer, lambda: DecisionTreeClassifier(max_depth=5, random_state=0)),
    "rf_bc": (
        "breast_cancer",
        _breast_cancer,
        lambda: RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0),
    ),
    "xgb_bc": ("breast_cancer", _breast_cancer, lambda: XGBClassifier(n_estimators=20, max_depth=3, random_state=0)),
    "dt_mc": ("make_classification(2000, 20)", _made, lambda: DecisionTreeClassifier(max_depth=5, random_state=0)),
    "rf_mc": (
        "make_classification(2000, 20)",
        _made,
        lambda: RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0),
    ),
    "xgb_mc": (
        "make_classification(2000, 20)",
        _made,
        lambda: XGBClassifier(n_estimators=20, max_depth=3, random_state=0),
    ),
    "dt_diabetes": ("diabetes", _diabetes, lambda: DecisionTreeRegressor(max_depth=5, random_state=0)),
    "rf_diabetes": ("diabetes", _diabetes, lambda: RandomForestRegressor(n_estimators=20, max_depth=4, random_state=0)),
    "xgb_diabetes": ("diabetes", _diabetes, lambda: XGBRegressor(n_estimators=20, max_depth=3, random_state=0)),
}
COLUMNS = [
    ("row", "row"),
    ("data", "data"),
    ("model", "model"),
    ("float", "float"),
    ("disable", "clear int"),
    ("simulate", "simulated"),
    ("cml_acc", "CML sim"),
    ("pbs", "PBS"),
    ("cml_pbs", "CML PBS"),
    ("max_bits", "widest"),
    ("keygen_s", "keygen s"),
    ("fhe_s", "FHE s/sample"),
    ("client_s", "client s"),
    ("server_s", "server s"),
    ("cml_s", "CML s/sample"),
    ("speedup", "speed-up"),
]


def run_row(key: str, n_exec: int) -> dict:
    data, load, make = ROWS[key]
    X, y = load()
    X = X.astype(np.float32)
    classifier = key.split("_")[1] != "diabetes"
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y if classifier else None)
    est = make()
    est, twin = est.fit_benchmark(X_tr, y_tr)
    row = {
        "row": key,
        "data": data,
        "model": type(est).__name__
        + "("
        + ", ".join(f"{k}={v}" for k, v in est.get_params().items() if k in ("n_estimators", "max_depth"))
        + ")",
        "float": float(twin.score(X_te, y_te)),
        "disable": est.score(X_te, y_te),
    }
    t = time.perf_counter()
    est.compile(X_tr, p_error=P_ERROR)
    row["compile_s"] = time.perf_counter() - t
    stats = est.quantized_module_.statistics
    row.update(
        pbs=stats["pbs_count"],
        max_bits=stats["max_bit_width"],
        p_error=stats["p_error"],
        simulate=est.score(X_te, y_te, fhe="simulate"),
    )
    circuit = est.fhe_circuit
    t = time.perf_counter()
    circuit.keygen()
    row["keygen_s"] = time.perf_counter() - t
    codes = est.quantized_module_.quantize_input(X_te[:n_exec])
    client = server = 0.0
    outs = []
    for i in range(n_exec):
        t0 = time.perf_counter()
        enc = circuit.encrypt(codes[i : i + 1])
        t1 = time.perf_counter()
        res = circuit.run(enc)
        t2 = time.perf_counter()
        outs.append(circuit.decrypt(res))
        t3 = time.perf_counter()
        client += (t1 - t0) + (t3 - t2)
        server += t2 - t1
    executed = est.quantized_module_.dequantize_output(np.concatenate(outs))
    simulated = est.quantized_module_.forward(X_te[:n_exec], fhe="simulate")
    row["execute_equals_simulate"] = bool(np.array_equal(executed, simulated))
    row.update(client_s=client / n_exec, server_s=server / n_exec, fhe_s=(client + server) / n_exec)
    if key.startswith("dt_"):  # a single tree depends on random_state (ties between splits): how much
        seeds = [clone(est).set_params(random_state=s).fit(X_tr, y_tr) for s in range(10)]
        row["disable_seeds"] = [float(m.score(X_te, y_te)) for m in seeds]
        row["float_seeds"] = [float(m.sklearn_model_.score(X_te, y_te)) for m in seeds]
    if key in CONCRETE_ML:
        acc, pbs, secs = CONCRETE_ML[key]
        row.update(cml_acc=acc, cml_pbs=pbs, cml_s=secs, speedup=secs / row["fhe_s"])
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if "cml_s" not in r:
            continue
        color = "tab:blue" if r["row"].endswith("_bc") else "tab:orange"
        ax.scatter(r["fhe_s"], r["simulate"], color=color, marker="o")
        ax.scatter(r["cml_s"], r["cml_acc"], color=color, marker="x")
        ax.annotate(
            r["row"].split("_")[0], (r["fhe_s"], r["simulate"]), fontsize=8, xytext=(4, 2), textcoords="offset points"
        )
        ax.annotate(
            r["row"].split("_")[0], (r["cml_s"], r["cml_acc"]), fontsize=8, xytext=(4, 2), textcoords="offset points"
        )
        ax.plot([r["fhe_s"], r["cml_s"]], [r["simulate"], r["cml_acc"]], color=color, lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("FHE seconds per sample (log)")
    ax.set_ylabel("accuracy (simulated circuit)")
    ax.set_title("Trees: qfhe (o) vs Concrete ML 1.9 (x); blue breast_cancer, orange make_classification")
    ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-exec", type=int, default=5)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    args = parser.parse_args()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for key in args.rows:
            rows.append(run_row(key, args.n_exec))
            print(table(rows[-1:], COLUMNS), flush=True)
    print(table(rows, COLUMNS))
    write_json(
        "trees",
        {
            "machine": machine(),
            "p_error": P_ERROR,
            "n_bits": 6,
            "n_exec": args.n_exec,
            "concrete_ml": {k: dict(zip(("accuracy", "pbs", "fhe_s"), v)) for k, v in CONCRETE_ML.items()},
            "rows": rows,
        },
    )
    plot(rows, RESULTS / "trees.png")


if __name__ == "__main__":
    main()
