"""SGDClassifier(fit_encrypted=True) on breast_cancer: accuracy against scikit-learn, time per batch.

One run. 80/20 split (``random_state=0``). scikit-learn's ``SGDClassifier(loss="log_loss")`` on
standardised features is the baseline (its own defaults: ``learning_rate="optimal"``, up to 1000
epochs). qfhe trains with one circuit call per batch of 8 (``eta0=1``, weights in [-4, 4]) for
1 and 3 epochs at ``training_n_bits`` 6 and 7 with ``fhe="disable"`` (which ``"simulate"`` and
``"execute"`` equal exactly, as the tests check), and times the training circuit encrypted:
compile, keygen and seconds per batch over ``--n-exec`` batches (their weights checked against the
simulated ones).

Writes ``benchmarks/results/encrypted_training.json``.

    python benchmarks/encrypted_training.py [--n-exec 2]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn.linear_model as sklm
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, table, write_json  # noqa: E402

import qfhe  # noqa: E402
from qfhe.sklearn import SGDClassifier  # noqa: E402
from qfhe.quant.preprocess import range_spec  # noqa: E402
from qfhe.sklearn.encrypted_training import training_circuit  # noqa: E402

COLUMNS = [("setting", "setting"), ("epochs", "epochs"), ("steps", "circuit calls"), ("accuracy", "test accuracy")]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-exec", type=int, default=2)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=qfhe.InputClippingWarning)
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    twin = sklm.SGDClassifier(loss="log_loss", random_state=0).fit(scaler.transform(Xtr), ytr)
    rows = [{"setting": "scikit-learn SGDClassifier (float)", "epochs": int(twin.n_iter_), "steps": None,
             "accuracy": float(twin.score(scaler.transform(Xte), yte))}]
    for bits in (6, 7):
        for epochs in (1, 3):
            clf = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=1.0, max_iter=epochs,
                                fit_encrypted=True, training_n_bits=bits, random_state=0).fit(Xtr, ytr)
            rows.append({"setting": f"qfhe, encrypted training, {bits} bits", "epochs": epochs,
                         "steps": clf.training_steps_, "accuracy": float(clf.score(Xte, yte))})
            print(rows[-1], flush=True)
    # the encrypted step itself, at the default 7 bits
    spec = range_spec(Xtr)
    Xs = (Xtr - spec["mean"]) / spec["scale"]
    start = time.perf_counter()
    qm = training_circuit(Xs, 8, 1.0, 0.0, (-4.0, 4.0), 7, 0, {})
    timing = {"compile_s": time.perf_counter() - start, "pbs": int(qm.statistics["pbs_count"]),
              "max_bits": int(qm.statistics["max_bit_width"])}
    start = time.perf_counter()
    qm.fhe_circuit.keygen()
    timing["keygen_s"] = time.perf_counter() - start
    rng = np.random.RandomState(0)
    w, b = np.zeros((1, Xs.shape[1], 1)), np.zeros((1, 1, 1))
    same = True
    start = time.perf_counter()
    for _ in range(args.n_exec):
        rows_ = rng.choice(len(Xs), 8, replace=False)
        inputs = (Xs[rows_][None], ytr[rows_, None][None] * 1.0, w, b)
        out = qm.forward(*inputs, fhe="execute")
        same &= bool(np.array_equal(out, qm.forward(*inputs, fhe="simulate")))
        w, b = np.clip(out[:, :-1, None], -4, 4), np.clip(out[:, -1:, None], -4, 4)
    timing["fhe_s_per_batch"] = (time.perf_counter() - start) / args.n_exec
    timing["execute_equals_simulate"] = same
    timing["epoch_h"] = timing["fhe_s_per_batch"] * int(np.ceil(len(Xtr) / 8)) / 3600
    print(timing, flush=True)
    info = machine()
    print(f"\nEncrypted training on breast_cancer, measured {info['date']} on {info['machine']}\n")
    print(table(rows, COLUMNS))
    print(f"\nOne encrypted step (batch 8, 30 features, 7 bits): {timing}")
    print(f"\nwrote {write_json('encrypted_training', {'machine': info, 'rows': rows, 'step': timing})}")
    return {"rows": rows, "step": timing}


if __name__ == "__main__":
    main()
