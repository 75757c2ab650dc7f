"""KNeighborsClassifier on encrypted queries: cost against the training set size and ``n_neighbors``.

One run on breast_cancer (30 standardised features; the training set is a stratified subsample
of ``N`` rows of the 80 % training split, the test set the other 20 %). Per (N, k): lookups
(key lookups + comparators + k), PBS (with the exact rounding's), widest value, concrete's
complexity estimate, the simulated test accuracy beside scikit-learn's ``KNeighborsClassifier``
on the same N samples, and for the configurations in ``--execute``: keygen and FHE seconds per
query (outputs checked against the simulation), with the size of the evaluation keys. Default
error probability (concrete's ``global_p_error=1e-5``) unless ``--p-error``; configurations
written ``N:k@p`` add a row at a per-lookup ``p_error`` of ``p``. (Executing N=128, k=3 at the default
as well got this process killed twice for memory after the keygens before it: one such circuit
alone keygens at 4.8 GB; run it in its own process.)

Writes ``benchmarks/results/knn.json`` and ``.png``.

    python benchmarks/knn.py [--sizes 32 64 128 256] [--ks 1 3 5] [--execute 32:3 64:1 64:3 64:5 128:3@0.001]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import qfhe  # noqa: E402
from common import RESULTS, machine, table, write_json  # noqa: E402
from qfhe.sklearn import KNeighborsClassifier  # noqa: E402

COLUMNS = [
    ("n_train", "N"),
    ("k", "k"),
    ("p_error", "p_error"),
    ("lookups", "lookups"),
    ("pbs", "PBS"),
    ("max_bits", "widest"),
    ("key_bits", "compared bits"),
    ("twin", "sklearn acc."),
    ("simulated", "qfhe acc. (sim.)"),
    ("key_gb", "keys GB"),
    ("keygen_s", "keygen s"),
    ("fhe_s", "FHE s/query"),
]


def run_one(Xtr, ytr, Xte, yte, n: int, k: int, execute: bool, n_exec: int, p_error) -> dict:
    if n < len(Xtr):
        Xn, _, yn, _ = train_test_split(Xtr, ytr, train_size=n, random_state=0, stratify=ytr)
    else:
        Xn, yn = Xtr, ytr
    clf = KNeighborsClassifier(k).fit(Xn, yn)
    start = time.perf_counter()
    clf.compile(Xn, p_error=p_error)
    row = {
        "n_train": n,
        "k": k,
        "p_error": p_error,
        "lookups": clf.n_lookups_,
        "compile_s": time.perf_counter() - start,
    }
    st = clf.quantized_module_.statistics
    keys = clf.fhe_circuit.statistics
    row["key_gb"] = (keys["size_of_bootstrap_keys"] + keys["size_of_keyswitch_keys"]) / 1e9
    row.update(
        pbs=int(st["pbs_count"]),
        max_bits=int(st["max_bit_width"]),
        complexity=float(st["complexity"]),
        key_bits=int(clf.quantized_module_.bitwidths["cmp0_d"].bits)
        if "cmp0_d" in clf.quantized_module_.bitwidths
        else None,
        twin=float(clf.sklearn_model_.score(Xte, yte)),
        clear=float(clf.score(Xte, yte)),
        simulated=float(clf.score(Xte, yte, fhe="simulate")),
    )
    if execute:
        start = time.perf_counter()
        clf.fhe_circuit.keygen()
        row["keygen_s"] = time.perf_counter() - start
        start = time.perf_counter()
        executed = clf.predict_proba(Xte[:n_exec], fhe="execute")
        row["fhe_s"] = (time.perf_counter() - start) / n_exec
        row["execute_equals_simulate"] = bool(np.array_equal(executed, clf.predict_proba(Xte[:n_exec], fhe="simulate")))
    print({key: (round(v, 4) if isinstance(v, float) else v) for key, v in row.items()}, flush=True)
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for k in sorted({r["k"] for r in rows}):
        r = [x for x in rows if x["k"] == k and x["p_error"] is None]
        left.plot([x["n_train"] for x in r], [x["pbs"] for x in r], "o-", label=f"k={k}")
        timed = [x for x in r if x.get("fhe_s")]
        if timed:
            right.plot([x["n_train"] for x in timed], [x["fhe_s"] for x in timed], "o-", label=f"k={k}")
        fast = [x for x in rows if x["k"] == k and x["p_error"] is not None and x.get("fhe_s")]
        if fast:
            right.plot(
                [x["n_train"] for x in fast],
                [x["fhe_s"] for x in fast],
                "s--",
                label=f"k={k}, p_error={fast[0]['p_error']}",
            )
    for ax, what in ((left, "PBS per query"), (right, "FHE seconds per query (2 cores)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training samples held by the server")
        ax.set_ylabel(what)
        ax.legend()
    fig.suptitle("KNeighborsClassifier on breast_cancer (30 features)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument(
        "--execute",
        nargs="*",
        default=["32:3", "64:1", "64:3", "64:5", "128:3@0.001", "256:3@0.001"],
        help="N:k configurations to run encrypted (N:k@p for a per-lookup p_error: an extra row)",
    )
    parser.add_argument("--n-exec", type=int, default=2)
    parser.add_argument("--p-error", type=float, default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=qfhe.CalibrationWarning)
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    timed = {tuple(int(v) for v in c.split(":")) for c in args.execute if "@" not in c}
    rows = [
        run_one(Xtr, ytr, Xte, yte, n, k, (n, k) in timed, args.n_exec, args.p_error)
        for k in args.ks
        for n in args.sizes
    ]
    for c in (c for c in args.execute if "@" in c):
        nk, p = c.split("@")
        n, k = (int(v) for v in nk.split(":"))
        rows.append(run_one(Xtr, ytr, Xte, yte, n, k, True, args.n_exec, float(p)))
    info = machine()
    print(f"\nKNeighborsClassifier, measured {info['date']} on {info['machine']}\n")
    print(table(rows, COLUMNS))
    print(f"\nwrote {write_json('knn', {'machine': info, 'p_error': args.p_error, 'rows': rows})}")
    plot(rows, RESULTS / "knn.png")
    print(f"wrote {RESULTS / 'knn.png'}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
