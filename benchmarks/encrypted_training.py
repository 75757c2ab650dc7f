"""SGDClassifier(fit_encrypted=True) on breast_cancer: accuracy against scikit-learn, time per batch.

One run. 80/20 split (``random_state=0``). scikit-learn's ``SGDClassifier(loss="log_loss")`` on
standardised features is the baseline (its own defaults: ``learning_rate="optimal"``, up to 1000
epochs). qfhe trains with one circuit call per batch of 8 (``eta0=1``, weights in [-4, 4]) for
1 and 3 epochs at ``training_n_bits`` 6 and 7 with ``fhe="disable"`` (which ``"simulate"`` and
``"execute"`` equal exactly, as the tests check). The step circuit (batch 8, 30 features) is
compiled at several widths and error probabilities (PBS, widest value, evaluation-key size), and
one setting is executed: keygen and seconds per batch over ``--n-exec`` batches (their weights
checked against the simulated ones), and the hours an epoch would take.

Writes ``benchmarks/results/encrypted_training.json``.

    python benchmarks/encrypted_training.py [--n-exec 1] [--execute-bits 5 --execute-p-error 0.01]
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
import qfhe  # noqa: E402
from common import machine, table, write_json  # noqa: E402
from qfhe.quant.preprocess import range_spec  # noqa: E402
from qfhe.sklearn import SGDClassifier  # noqa: E402
from qfhe.sklearn.encrypted_training import training_circuit  # noqa: E402

STEP_COLUMNS = [
    ("training_n_bits", "bits"),
    ("p_error", "p_error"),
    ("pbs", "PBS"),
    ("max_bits", "widest"),
    ("key_gb", "keys GB"),
    ("keygen_s", "keygen s"),
    ("fhe_s_per_batch", "FHE s/batch"),
    ("epoch_h", "h/epoch"),
    ("error", "compile"),
]
COLUMNS = [("setting", "setting"), ("epochs", "epochs"), ("steps", "circuit calls"), ("accuracy", "test accuracy")]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-exec", type=int, default=1)
    parser.add_argument("--execute-bits", type=int, default=5)
    parser.add_argument("--execute-p-error", type=float, default=1e-2)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=qfhe.InputClippingWarning)
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    twin = sklm.SGDClassifier(loss="log_loss", random_state=0).fit(scaler.transform(Xtr), ytr)
    rows = [
        {
            "setting": "scikit-learn SGDClassifier (float)",
            "epochs": int(twin.n_iter_),
            "steps": None,
            "accuracy": float(twin.score(scaler.transform(Xte), yte)),
        }
    ]
    for bits in (6, 7):
        for epochs in (1, 3):
            clf = SGDClassifier(
                loss="log_loss",
                learning_rate="constant",
                eta0=1.0,
                max_iter=epochs,
                fit_encrypted=True,
                training_n_bits=bits,
                random_state=0,
            ).fit(Xtr, ytr)
            rows.append(
                {
                    "setting": f"qfhe, encrypted training, {bits} bits",
                    "epochs": epochs,
                    "steps": clf.training_steps_,
                    "accuracy": float(clf.score(Xte, yte)),
                }
            )
            print(rows[-1], flush=True)
    # the encrypted step itself: its size at several settings, and one setting executed
    spec = range_spec(Xtr)
    Xs = (Xtr - spec["mean"]) / spec["scale"]
    circuits = []
    for bits, p_error in ((7, None), (6, None), (6, 1e-3), (5, 1e-2)):
        entry = {"training_n_bits": bits, "p_error": p_error}
        start = time.perf_counter()
        try:
            qm = training_circuit(Xs, 8, 1.0, 0.0, (-4.0, 4.0), bits, 0, {"p_error": p_error})
        except qfhe.NoParametersError as exc:
            entry["error"] = str(exc).split(":")[0]
            circuits.append(entry)
            print(entry, flush=True)
            continue
        st = qm.statistics
        entry.update(
            compile_s=time.perf_counter() - start,
            pbs=int(st["pbs_count"]),
            max_bits=int(st["max_bit_width"]),
            key_gb=(st["size_of_bootstrap_keys"] + st["size_of_keyswitch_keys"]) / 1e9,
        )
        if (bits, p_error) == (args.execute_bits, args.execute_p_error):
            entry.update(_execute(qm, Xs, ytr, args.n_exec))
        circuits.append(entry)
        print(entry, flush=True)
    info = machine()
    print(f"\nEncrypted training on breast_cancer, measured {info['date']} on {info['machine']}\n")
    print(table(rows, COLUMNS))
    print("\nOne encrypted step (batch 8, 30 features):")
    print(table(circuits, STEP_COLUMNS))
    print(f"\nwrote {write_json('encrypted_training', {'machine': info, 'rows': rows, 'step': circuits})}")
    return {"rows": rows, "step": circuits}


def _execute(qm, Xs, y, n_exec: int) -> dict:
    start = time.perf_counter()
    qm.fhe_circuit.keygen()
    out = {"keygen_s": time.perf_counter() - start}
    rng = np.random.RandomState(0)
    w, b = np.zeros((1, Xs.shape[1], 1)), np.zeros((1, 1, 1))
    same = True
    start = time.perf_counter()
    for _ in range(n_exec):
        rows = rng.choice(len(Xs), 8, replace=False)
        inputs = (Xs[rows][None], y[rows, None][None] * 1.0, w, b)
        new = qm.forward(*inputs, fhe="execute")
        same &= bool(np.array_equal(new, qm.forward(*inputs, fhe="simulate")))
        w, b = np.clip(new[:, :-1, None], -4, 4), np.clip(new[:, -1:, None], -4, 4)
    out["fhe_s_per_batch"] = (time.perf_counter() - start) / n_exec
    out["execute_equals_simulate"] = same
    out["epoch_h"] = out["fhe_s_per_batch"] * int(np.ceil(len(Xs) / 8)) / 3600
    return out


if __name__ == "__main__":
    main()
