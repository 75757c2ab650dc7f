"""Gradient-boosted trees on encrypted tabular data, deployed: the server never sees a feature.

1. The developer fits ``XGBClassifier`` (20 trees of depth 3) on breast_cancer, compares it with
   its float twin (``fit_benchmark``), compiles it and saves ``client.zip`` + ``server.zip``.
2. The client (``FHEModelClient``) generates keys; each sample's features are quantized to 64
   levels and sent as encrypted unary codes. The server (``FHEModelServer``, evaluation keys only)
   runs the circuit: no comparison lookups, one small lookup per pair of sibling leaves.
3. The client decrypts the summed margins and applies the sigmoid; the answers equal the
   simulated circuit's.

Run: ``python examples/tabular_trees.py`` (``--short``: 5 trees, 2 requests).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from qfhe.deploy import FHEModelClient, FHEModelDev, FHEModelServer
from qfhe.sklearn import XGBClassifier


def main(short: bool = False, workdir: str | None = None) -> dict:
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    root = Path(workdir or tempfile.mkdtemp(prefix="qfhe-trees-"))
    n_requests = 2 if short else 10

    # -- the developer ---------------------------------------------------------------------------
    clf, twin = XGBClassifier(n_estimators=5 if short else 20, max_depth=3, n_bits=6, random_state=0).fit_benchmark(
        Xtr, ytr
    )
    acc_float, acc_clear = twin.score(Xte, yte), clf.score(Xte, yte)
    clf.compile(Xtr)
    stats = clf.quantized_module_.statistics
    acc_sim = clf.score(Xte, yte, fhe="simulate")
    print(
        f"float xgboost {acc_float:.3f}; quantized (6-bit features) {acc_clear:.3f}; simulated circuit "
        f"{acc_sim:.3f}; {stats['pbs_count']} lookups, widest value {stats['max_bit_width']} bits"
    )
    FHEModelDev(root / "artifacts", clf).save()

    # -- the client and the server ---------------------------------------------------------------
    client = FHEModelClient(root / "artifacts", key_dir=root / "keys")
    server = FHEModelServer(root / "artifacts")
    start = time.perf_counter()
    key_id = server.add_keys(client.get_serialized_evaluation_keys())
    keygen = time.perf_counter() - start
    latencies, agree, correct = [], 0, 0
    for i in range(n_requests):
        start = time.perf_counter()
        enc = client.quantize_encrypt_serialize(Xte[i : i + 1])
        enc_out = server.run(enc, key_id)
        label = client.deserialize_decrypt_predict(enc_out)[0]
        latencies.append(time.perf_counter() - start)
        agree += int(label == clf.predict(Xte[i : i + 1], fhe="simulate")[0])
        correct += int(label == yte[i])
    print(
        f"keygen {keygen:.1f} s; encrypted input {len(enc) / 1e3:.0f} kB; {n_requests} requests: "
        f"{np.mean(latencies):.2f} s each (encrypt, run, decrypt), {correct}/{n_requests} correct, "
        f"{agree}/{n_requests} equal to fhe='simulate'"
    )
    return {
        "acc_float": acc_float,
        "acc_clear": acc_clear,
        "acc_sim": acc_sim,
        "pbs": stats["pbs_count"],
        "latencies": latencies,
        "agree": agree,
        "correct": correct,
        "n_requests": n_requests,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="5 trees, 2 requests")
    main(ap.parse_args().short)
