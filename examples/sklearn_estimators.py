"""The built-in estimators: fit, compile and predict on encrypted data without writing torch code.

1. ``NeuralNetClassifier()`` with its defaults on digits: fit (quantization-aware training with the
   per-neuron accumulator bound), compile, simulated accuracy, bit-widths, encrypted predictions.
2. ``prune()``: half of the hidden neurons removed and fine-tuned; before/after report.
3. ``LogisticRegression.from_sklearn_model`` on breast_cancer: a fitted scikit-learn model imported,
   compiled without table lookups, run encrypted.

    python examples/sklearn_estimators.py [--short]
"""

from __future__ import annotations

import argparse
import time

from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.model_selection import train_test_split

from qfhe.sklearn import LogisticRegression, NeuralNetClassifier


def split(loader):
    """80/20 split, stratified, fixed seed."""
    X, y = loader(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


def encrypted(est, X, y, n: int) -> list[tuple]:
    """Predict ``n`` samples under real encryption: (predicted, label, seconds) each."""
    start = time.perf_counter()
    est.fhe_circuit.keygen()
    print(f"  keygen {time.perf_counter() - start:.1f} s")
    out = []
    for i in range(n):
        start = time.perf_counter()
        pred = est.predict(X[i : i + 1], fhe="execute")[0]
        seconds = time.perf_counter() - start
        out.append((pred.item(), y[i].item(), seconds))
        print(f"  sample {i}: predicted {pred} (label {y[i]}) in {seconds:.2f} s")
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="fewer epochs, width 32, one encrypted sample")
    args = parser.parse_args(argv)
    n_enc, epochs = (1, 15) if args.short else (3, None)
    result = {}

    Xtr, Xte, ytr, yte = split(load_digits)
    # the short mode (tests) also narrows the net: keygen and execution scale with the lookups
    params = (
        {"random_state": 0} if epochs is None else {"random_state": 0, "max_epochs": epochs, "hidden_sizes": (32, 32)}
    )
    clf = NeuralNetClassifier(**params).fit(Xtr, ytr)
    clf.compile(Xtr)
    st = clf.quantized_module_.statistics
    result["nn_acc_sim"] = clf.score(Xte, yte, fhe="simulate")
    result["nn_statistics"] = {k: st[k] for k in ("pbs_count", "max_bit_width")}
    shown = "()" if epochs is None else f"(max_epochs={epochs}, hidden_sizes=(32, 32))"
    print(
        f"NeuralNetClassifier{shown} on digits: simulated accuracy "
        f"{result['nn_acc_sim']:.3f}, {st['pbs_count']} PBS, max bit-width {st['max_bit_width']}"
    )
    print(clf.quantized_module_.bitwidth_report())
    result["nn_encrypted"] = encrypted(clf, Xte, yte, n_enc)

    small = clf.prune(Xtr, ytr, n_prune_neurons_percentage=0.5)
    print("\nprune(n_prune_neurons_percentage=0.5), scores on the training set:")
    print(small.pruning_report_)
    result["pruned_acc"] = small.score(Xte, yte)
    print(f"pruned: test accuracy {result['pruned_acc']:.3f} (clear integers)")

    Xtr, Xte, ytr, yte = split(load_breast_cancer)
    sk = SkLogisticRegression(max_iter=5000).fit(Xtr, ytr)
    lin = LogisticRegression.from_sklearn_model(sk, Xtr, n_bits=8).compile(Xtr)
    result["linear_acc_sklearn"] = sk.score(Xte, yte)
    result["linear_acc_sim"] = lin.score(Xte, yte, fhe="simulate")
    result["linear_pbs"] = lin.quantized_module_.statistics["pbs_count"]
    print(
        f"\nLogisticRegression on breast_cancer: scikit-learn {result['linear_acc_sklearn']:.3f}, simulated "
        f"{result['linear_acc_sim']:.3f}, {result['linear_pbs']} PBS"
    )
    result["linear_encrypted"] = encrypted(lin, Xte, yte, n_enc)
    return result


if __name__ == "__main__":
    main()
