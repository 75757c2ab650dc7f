"""The built-in estimators (qfhe.sklearn), measured in one run.

``--part defaults`` (the default): the estimators' default settings across tabular shapes, beside
scikit-learn's ``LogisticRegression`` and ``MLPClassifier`` (``LinearRegression`` and
``MLPRegressor`` for regression), both on standardised features, in the same run: iris, wine,
breast_cancer, digits, diabetes and ``make_classification`` sets with 5, 20 and 200 features (600
samples, 3 classes), 5 stratified 80/20 splits each (seeds 0-4; the qfhe model is seeded with the
split's seed). Scores are of the clear integer model (``fhe="disable"``, what the circuit computes);
on split 0 the simulated circuit is scored too, with its PBS count and widest value. Also on
digits: ``n_w_bits=n_a_bits=3, n_accum_bits=8``, the setting the estimators guide quotes.

``--part grid``: the bit-width grid below on three datasets.

Datasets (80/20 split, fixed seed, stratified for classification): digits and breast_cancer
(NeuralNetClassifier, LogisticRegression) and diabetes (NeuralNetRegressor, LinearRegression,
Ridge). For the neural nets, every ``n_accum_bits`` in {8, 10, 12, None} x ``(n_w_bits,
n_a_bits)`` in {(2, 2), (3, 3), (4, 4)}, the other parameters at their defaults; the
``n_accum_bits=None`` rows are the baseline without the per-neuron bound. Then the default
classifier with the per-neuron masks fixed from the start, after 25 % or (the default) 50 % of the
epochs, ``prune()`` at 50 % of the default, and the linear models.

Per row: score (accuracy, or R² for regressors) of the clear integer model and of the simulated
circuit, max bit-width, PBS count, and FHE seconds per sample on ``--n-exec`` encrypted samples
(keygen excluded, reported apart), skipped for circuits with more than ``--max-exec-pbs`` lookups,
or with lookups and values wider than ``--max-exec-bits`` (the note says so).

Writes ``benchmarks/results/builtin_nn.json`` and ``builtin_nn.png`` (accuracy against FHE latency).

    python benchmarks/builtin_nn.py [--part defaults|grid] [--splits 5]
    python benchmarks/builtin_nn.py --part grid [--n-exec 2] [--datasets digits breast_cancer diabetes]

Writes ``benchmarks/results/builtin_defaults.json`` and ``builtin_defaults.png`` for the first part.

``--part latency``: what the default width costs under encryption, on digits in one run: the
defaults beside ``hidden_sizes=(32, 32)`` (the width before this wave), keygen and ``--n-exec``
encrypted samples each. Writes ``benchmarks/results/builtin_latency.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine, make_classification
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit, train_test_split

from qfhe.sklearn import LinearRegression, LogisticRegression, NeuralNetClassifier, NeuralNetRegressor, Ridge

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, table, write_json  # noqa: E402

ACCUM = (8, 10, 12, None)
BITS = ((2, 2), (3, 3), (4, 4))
DATASETS = {
    "digits": (load_digits, True),
    "breast_cancer": (load_breast_cancer, True),
    "diabetes": (load_diabetes, False),
}
COLUMNS = [
    ("dataset", "dataset"),
    ("model", "model"),
    ("n_accum_bits", "n_accum_bits"),
    ("bits", "w/a bits"),
    ("hidden", "hidden"),
    ("score_clear", "score clear"),
    ("score_sim", "score simulated"),
    ("max_bit_width", "max bit-width"),
    ("pbs_count", "PBS"),
    ("keygen_s", "keygen s"),
    ("fhe_s_per_sample", "FHE s/sample"),
    ("note", "note"),
]


def load(name: str):
    loader, classification = DATASETS[name]
    X, y = loader(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y if classification else None)


def measure(est, data, args, **row) -> dict:
    """Compile on the training set, score clear and simulated, execute a few samples."""
    Xtr, Xte, ytr, yte = data
    start = time.perf_counter()
    est.compile(Xtr)
    st = est.quantized_module_.statistics
    row.update(
        score_clear=round(est.score(Xte, yte), 4),
        score_sim=round(est.score(Xte, yte, fhe="simulate"), 4),
        max_bit_width=st["max_bit_width"],
        pbs_count=st["pbs_count"],
        compile_s=round(time.perf_counter() - start, 1),
    )
    if row["pbs_count"] > args.max_exec_pbs:
        row["note"] = f"execution skipped: {row['pbs_count']} PBS > {args.max_exec_pbs}"
    elif row["pbs_count"] and row["max_bit_width"] > args.max_exec_bits:  # a PBS-free circuit is fast at any width
        row["note"] = f"execution skipped: {row['max_bit_width']}-bit values > {args.max_exec_bits}"
    elif args.n_exec:
        start = time.perf_counter()
        est.fhe_circuit.keygen()
        row["keygen_s"] = round(time.perf_counter() - start, 1)
        x = Xte[: args.n_exec]
        start = time.perf_counter()
        executed = est.predict(x, fhe="execute")
        row["fhe_s_per_sample"] = round((time.perf_counter() - start) / len(x), 2)
        row["execute_equals_simulate"] = bool(np.array_equal(executed, est.predict(x, fhe="simulate")))
    print({k: v for k, v in row.items() if k != "dataset"}, flush=True)
    return row


def nn_rows(name: str, data, args) -> list[dict]:
    Xtr, Xte, ytr, yte = data
    cls = NeuralNetClassifier if DATASETS[name][1] else NeuralNetRegressor
    rows = []
    for n_w, n_a in BITS:
        for n_accum in ACCUM:
            est = cls(n_w_bits=n_w, n_a_bits=n_a, n_accum_bits=n_accum, random_state=0).fit(Xtr, ytr)
            rows.append(
                measure(
                    est,
                    data,
                    args,
                    dataset=name,
                    model=cls.__name__,
                    n_accum_bits=n_accum or "none",
                    bits=f"{n_w}/{n_a}",
                    hidden=str(est.module_.spec["hidden_sizes"]),
                )
            )
    for warmup in (0.0, 0.25, 0.5):  # when to fix the per-neuron masks (0.5 is the default)
        default = cls(random_state=0, pruning_warmup=warmup).fit(Xtr, ytr)
        rows.append(
            measure(
                default,
                data,
                args,
                dataset=name,
                model=f"{cls.__name__}(pruning_warmup={warmup})",
                n_accum_bits=default.n_accum_bits,
                bits=f"{default.n_w_bits}/{default.n_a_bits}",
                hidden=str(default.module_.spec["hidden_sizes"]),
                note="defaults" if warmup == 0.5 else None,
            )
        )
    small = default.prune(Xtr, ytr, n_prune_neurons_percentage=0.5)
    rows.append(
        measure(
            small,
            data,
            args,
            dataset=name,
            model=f"{cls.__name__}().prune(0.5)",
            n_accum_bits=small.n_accum_bits,
            bits=f"{small.n_w_bits}/{small.n_a_bits}",
            hidden=str(small.hidden_sizes),
        )
    )
    return rows


def linear_rows(name: str, data, args) -> list[dict]:
    Xtr, Xte, ytr, yte = data
    models = [LogisticRegression()] if DATASETS[name][1] else [LinearRegression(), Ridge()]
    return [
        measure(
            m.fit(Xtr, ytr),
            data,
            args,
            dataset=name,
            model=type(m).__name__,
            n_accum_bits="-",
            bits=f"{m.n_bits}/-",
            hidden="-",
        )
        for m in models
    ]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["dataset"] for r in rows if DATASETS[r["dataset"]][1]})
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        for bits, marker in (("2/2", "o"), ("3/3", "s"), ("4/4", "^")):
            pts = [
                r
                for r in rows
                if r["dataset"] == name
                and r["bits"] == bits
                and r.get("fhe_s_per_sample")
                and r["model"] == "NeuralNetClassifier"
            ]
            ax.scatter(
                [r["fhe_s_per_sample"] for r in pts],
                [r["score_sim"] for r in pts],
                marker=marker,
                label=f"w/a {bits} bits",
            )
            for r in pts:
                ax.annotate(
                    f"{r['n_accum_bits']}",
                    (r["fhe_s_per_sample"], r["score_sim"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        for r in rows:
            if r["dataset"] == name and r.get("fhe_s_per_sample") and r["model"] != "NeuralNetClassifier":
                ax.scatter([r["fhe_s_per_sample"]], [r["score_sim"]], marker="*", s=120, label=r["model"])
        ax.set_xscale("log")
        ax.set_xlabel("FHE seconds per sample (2 cores, log scale)")
        ax.set_ylabel("simulated accuracy (test split)")
        ax.set_title(f"{name}: labels are n_accum_bits")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _made(n_features: int):
    def load_made(return_X_y=True):
        return make_classification(
            n_samples=600,
            n_features=n_features,
            n_informative=min(n_features, 10),
            n_redundant=0,
            n_classes=3,
            random_state=0,
        )

    return load_made


TABULAR = {
    "iris": (load_iris, True),
    "wine": (load_wine, True),
    "breast_cancer": (load_breast_cancer, True),
    "digits": (load_digits, True),
    "diabetes": (load_diabetes, False),
    "classification_5": (_made(5), True),
    "classification_20": (_made(20), True),
    "classification_200": (_made(200), True),
}
DEFAULT_COLUMNS = [
    ("dataset", "dataset"),
    ("shape", "samples x features"),
    ("model", "model"),
    ("mean", "mean score (5 splits)"),
    ("min", "min"),
    ("max", "max"),
    ("sim_split0", "simulated, split 0"),
    ("pbs", "PBS"),
    ("max_bits", "widest value"),
    ("hidden", "hidden"),
    ("fit_s", "fit s"),
]


def defaults_rows(args) -> list[dict]:
    """qfhe's defaults against scikit-learn's LogisticRegression and MLP on every tabular set."""
    from sklearn.linear_model import LinearRegression as SkLinear
    from sklearn.linear_model import LogisticRegression as SkLogistic
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = []
    cases = [(name, None) for name in args.datasets_defaults] + [
        ("digits", dict(n_w_bits=3, n_a_bits=3, n_accum_bits=8))
    ]
    for name, params in cases:
        X, y = TABULAR[name][0](return_X_y=True)
        classification = TABULAR[name][1]
        split = (StratifiedShuffleSplit if classification else ShuffleSplit)(args.splits, test_size=0.2, random_state=0)
        models = {
            "qfhe "
            + ("NeuralNetClassifier" if classification else "NeuralNetRegressor")
            + (f"({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "()"): None
        }
        if params is None:
            models.update(
                {
                    "sklearn LogisticRegression" if classification else "sklearn LinearRegression": "linear",
                    "sklearn MLPClassifier" if classification else "sklearn MLPRegressor": "mlp",
                }
            )
        for label, kind in models.items():
            scores, row = [], {"dataset": name, "shape": f"{X.shape[0]} x {X.shape[1]}", "model": label}
            start = time.perf_counter()
            for seed, (tr, te) in enumerate(split.split(X, y)):
                if kind == "linear":
                    est = make_pipeline(StandardScaler(), SkLogistic(max_iter=5000) if classification else SkLinear())
                elif kind == "mlp":
                    est = make_pipeline(
                        StandardScaler(),
                        (MLPClassifier if classification else MLPRegressor)(max_iter=2000, random_state=seed),
                    )
                else:
                    cls = NeuralNetClassifier if classification else NeuralNetRegressor
                    est = cls(random_state=seed, **(params or {}))
                est.fit(X[tr], y[tr])
                scores.append(float(est.score(X[te], y[te])))
                if kind is None and seed == 0:
                    est.compile(X[tr])
                    st = est.quantized_module_.statistics
                    row.update(
                        sim_split0=round(est.score(X[te], y[te], fhe="simulate"), 4),
                        pbs=st["pbs_count"],
                        max_bits=st["max_bit_width"],
                        hidden=str(est.module_.spec["hidden_sizes"]),
                    )
            row.update(
                mean=round(float(np.mean(scores)), 4),
                min=round(min(scores), 4),
                max=round(max(scores), 4),
                scores=[round(v, 4) for v in scores],
                fit_s=round((time.perf_counter() - start) / args.splits, 1),
            )
            print(row, flush=True)
            rows.append(row)
    return rows


def plot_defaults(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.27
    for k, (kind, off) in enumerate(
        ((("qfhe",), -width), (("sklearn Logistic", "sklearn Linear"), 0.0), (("sklearn MLP",), width))
    ):
        vals = []
        for name in names:
            r = next(
                (
                    r
                    for r in rows
                    if r["dataset"] == name and r["model"].startswith(kind) and not r["model"].endswith("=8)")
                ),
                None,
            )
            vals.append(r["mean"] if r else np.nan)
        ax.bar(
            np.arange(len(names)) + off,
            vals,
            width,
            label=["qfhe defaults", "scikit-learn linear", "scikit-learn MLP"][k],
        )
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=20, fontsize=8)
    ax.set_ylabel("test score, mean of 5 splits (accuracy; R² for diabetes)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("defaults", "grid", "latency"), default="defaults")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--datasets-defaults", nargs="+", default=list(TABULAR), choices=list(TABULAR))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--n-exec", type=int, default=2, help="encrypted samples per executed row")
    parser.add_argument("--max-exec-pbs", type=int, default=800)
    parser.add_argument("--max-exec-bits", type=int, default=7, help="wider lookups take minutes per sample")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # calibration notes on raw tabular data
    if args.part == "defaults":
        rows = defaults_rows(args)
        info = machine()
        print(f"\nDefaults across tabular shapes, measured {info['date']} on {info['machine']}\n")
        print(table(rows, DEFAULT_COLUMNS))
        png = RESULTS / "builtin_defaults.png"
        RESULTS.mkdir(exist_ok=True)
        plot_defaults(rows, png)
        print(f"\nwrote {write_json('builtin_defaults', {'machine': info, 'rows': rows})} and {png}")
        return {"rows": rows}
    if args.part == "latency":
        data, rows = load("digits"), []
        for params in ({}, {"hidden_sizes": (32, 32)}):
            est = NeuralNetClassifier(random_state=0, **params).fit(data[0], data[2])
            label = f"NeuralNetClassifier({', '.join(f'{k}={v}' for k, v in params.items())})"
            rows.append(
                measure(
                    est,
                    data,
                    args,
                    dataset="digits",
                    model=label,
                    n_accum_bits=est.n_accum_bits_,
                    bits="2/2",
                    hidden=str(est.module_.spec["hidden_sizes"]),
                )
            )
        info = machine()
        print(f"\nDefault width under encryption, measured {info['date']} on {info['machine']}\n")
        print(table(rows, COLUMNS))
        print(f"\nwrote {write_json('builtin_latency', {'machine': info, 'rows': rows})}")
        return {"rows": rows}
    rows = []
    for name in args.datasets:
        data = load(name)
        rows += nn_rows(name, data, args) + linear_rows(name, data, args)
    info = machine()
    print(f"\nBuilt-in estimators, measured {info['date']} on {info['machine']}\n")
    print(table(rows, COLUMNS))
    RESULTS.mkdir(exist_ok=True)
    png = RESULTS / "builtin_nn.png"
    plot(rows, png)
    print(f"\nwrote {write_json('builtin_nn', {'machine': info, 'rows': rows})} and {png}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
