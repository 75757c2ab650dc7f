"""Every built-in estimator against its scikit-learn (or xgboost) twin: score, PBS, FHE latency.

One run, three data sets: breast_cancer (binary), digits (10 classes) and diabetes (regression;
the GLMs fit its positive target directly). 80/20 split with ``random_state=0``; features
standardised for the linear models, the nets and k-NN, raw for the trees (k-NN: 128 training
samples, compiled at ``p_error=1e-3``). Per estimator and data set:
the twin's test score (accuracy, R², or D² for the GLMs, as scikit-learn scores them), qfhe's
clear and simulated test score, PBS and widest value, keygen and FHE seconds per sample over
``--n-exec`` executed samples (whose outputs are checked against the simulated ones).

Writes ``benchmarks/results/builtin_models.json`` and ``.png``.

    python benchmarks/builtin_models.py [--n-exec 2] [--only LinearSVC Lasso ...] [--output NAME]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import qfhe  # noqa: E402
import qfhe.sklearn as qs  # noqa: E402
from common import RESULTS, machine, table, write_json  # noqa: E402

CLASSIFIERS = [
    "LogisticRegression",
    "LinearSVC",
    "SGDClassifier",
    "DecisionTreeClassifier",
    "RandomForestClassifier",
    "XGBClassifier",
    "GradientBoostingClassifier",
    "HistGradientBoostingClassifier",
    "NeuralNetClassifier",
    "KNeighborsClassifier",
]
REGRESSORS = [
    "LinearRegression",
    "Ridge",
    "Lasso",
    "ElasticNet",
    "LinearSVR",
    "SGDRegressor",
    "PoissonRegressor",
    "GammaRegressor",
    "TweedieRegressor",
    "DecisionTreeRegressor",
    "RandomForestRegressor",
    "XGBRegressor",
    "GradientBoostingRegressor",
    "HistGradientBoostingRegressor",
    "NeuralNetRegressor",
]
#: Parameters beyond the defaults: scikit-learn's own advice where its default does not converge or fit
PARAMS = {
    "SGDClassifier": {"loss": "log_loss", "random_state": 0},
    "SGDRegressor": {"random_state": 0},
    "LinearSVC": {"random_state": 0},
    "LinearSVR": {"random_state": 0, "max_iter": 10000},
    "Lasso": {"alpha": 0.1},
    "ElasticNet": {"alpha": 0.1},
    "TweedieRegressor": {"power": 1.5},
    "DecisionTreeClassifier": {"max_depth": 6, "random_state": 0},
    "DecisionTreeRegressor": {"max_depth": 6, "random_state": 0},
    "RandomForestClassifier": {"n_estimators": 20, "max_depth": 4, "random_state": 0},
    "RandomForestRegressor": {"n_estimators": 20, "max_depth": 4, "random_state": 0},
    "XGBClassifier": {"n_estimators": 20, "max_depth": 3},
    "XGBRegressor": {"n_estimators": 20, "max_depth": 3},
    "GradientBoostingClassifier": {"n_estimators": 20, "max_depth": 3, "random_state": 0},
    "GradientBoostingRegressor": {"n_estimators": 20, "max_depth": 3, "random_state": 0},
    "HistGradientBoostingClassifier": {"max_iter": 20, "max_depth": 3, "random_state": 0},
    "HistGradientBoostingRegressor": {"max_iter": 20, "max_depth": 3, "random_state": 0},
    "NeuralNetClassifier": {"random_state": 0},
    "NeuralNetRegressor": {"random_state": 0},
}
#: k-NN holds its training set in the circuit (about 3.5 lookups per sample): it is fitted on a
#: stratified subsample, and compiled at a per-lookup p_error (the default budget's keys take 5-9 GB)
SUBSAMPLE = {"KNeighborsClassifier": 128}
COMPILE = {"KNeighborsClassifier": {"p_error": 1e-3}}
TREES = {"DecisionTree", "RandomForest", "XGB", "GradientBoosting", "HistGradientBoosting"}
COLUMNS = [
    ("estimator", "estimator"),
    ("dataset", "data set"),
    ("twin", "twin score"),
    ("clear", "qfhe clear"),
    ("simulated", "qfhe simulated"),
    ("pbs", "PBS"),
    ("max_bits", "widest"),
    ("keygen_s", "keygen s"),
    ("fhe_s", "FHE s/sample"),
]


def datasets():
    X, y = load_breast_cancer(return_X_y=True)
    yield "breast_cancer", X, y, CLASSIFIERS
    X, y = load_digits(return_X_y=True)
    yield "digits", X, y, CLASSIFIERS
    X, y = load_diabetes(return_X_y=True)
    yield "diabetes", X, y, REGRESSORS


def run_one(name: str, dataset: str, X, y, n_exec: int) -> dict:
    is_tree = any(name.startswith(t) for t in TREES)
    stratify = y if dataset != "diabetes" else None
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=stratify)
    if not is_tree:
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    if name in SUBSAMPLE:
        Xtr, _, ytr, _ = train_test_split(Xtr, ytr, train_size=SUBSAMPLE[name], random_state=0, stratify=ytr)
    est = getattr(qs, name)(**PARAMS.get(name, {}))
    start = time.perf_counter()
    est, twin = est.fit_benchmark(Xtr, ytr) if hasattr(est, "fit_benchmark") else (est.fit(Xtr, ytr), None)
    fit_s = time.perf_counter() - start
    if twin is None:
        twin = est.sklearn_model_
    est.compile(Xtr, **COMPILE.get(name, {}))
    row = {
        "estimator": name,
        "dataset": dataset,
        "fit_s": fit_s,
        "twin": float(twin.score(Xte, yte)),
        "clear": float(est.score(Xte, yte)),
        "simulated": float(est.score(Xte, yte, fhe="simulate")),
    }
    st = est.quantized_module_.statistics
    row.update(pbs=int(st["pbs_count"]), max_bits=int(st["max_bit_width"]))
    start = time.perf_counter()
    est.fhe_circuit.keygen()
    row["keygen_s"] = time.perf_counter() - start
    est.predict(Xte[:1], fhe="execute")  # warm-up
    start = time.perf_counter()
    executed = est.predict(Xte[1 : 1 + n_exec], fhe="execute")
    row["fhe_s"] = (time.perf_counter() - start) / n_exec
    row["execute_equals_simulate"] = bool(np.array_equal(executed, est.predict(Xte[1 : 1 + n_exec], fhe="simulate")))
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for ax, dataset in zip(axes, ["breast_cancer", "digits", "diabetes"]):
        r = [x for x in rows if x["dataset"] == dataset]
        if not r:  # --only a classifier: no regression row
            ax.set_visible(False)
            continue
        ax.scatter([max(x["fhe_s"], 1e-4) for x in r], [x["simulated"] - x["twin"] for x in r])
        for x in r:
            ax.annotate(
                x["estimator"].replace("Classifier", "").replace("Regressor", ""),
                (max(x["fhe_s"], 1e-4), x["simulated"] - x["twin"]),
                fontsize=7,
            )
        ax.axhline(0, color="grey", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("FHE seconds per sample (2 cores)")
        ax.set_ylabel("simulated score minus the twin's")
        ax.set_title(dataset)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-exec", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=None, help="estimator class names")
    parser.add_argument("--output", default="builtin_models", help="results name (JSON and PNG)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=qfhe.CalibrationWarning)
    warnings.filterwarnings("ignore", category=qfhe.InputClippingWarning)
    rows = []
    for dataset, X, y, names in datasets():
        for name in names:
            if args.only is None or name in args.only:
                rows.append(run_one(name, dataset, X, y, args.n_exec))
    info = machine()
    print(f"\nBuilt-in estimators, measured {info['date']} on {info['machine']}\n")
    print(table(rows, COLUMNS))
    print(f"\nwrote {write_json(args.output, {'machine': info, 'rows': rows})}")
    plot(rows, RESULTS / f"{args.output}.png")
    print(f"wrote {RESULTS / (args.output + '.png')}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
