"""Client/server deployment over HTTP: the server never sees the data or the secret key.

1. The developer compiles a digits MLP and saves ``client.zip`` + ``server.zip`` (FHEModelDev),
   signed with an Ed25519 key (``dev-key``; its public half ``dev-key.pub`` is what others verify).
2. ``qfhe serve --verify-key dev-key.pub`` runs on 127.0.0.1 in a subprocess: it refuses an
   artifact its developer did not sign, and runs FHE work in worker processes.
3. The client checks the signature of ``client.zip``, generates keys (kept in ``keys/``), uploads
   the evaluation keys once, then sends encrypted samples and decrypts the answers. The decrypted
   answers equal the simulated ones.

Run: ``python examples/client_server.py`` (``--short`` trains less and sends fewer requests).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import qfhe
from qfhe.deploy import FHEModelClient, FHEModelDev, HTTPClient, generate_signing_key
from qfhe.deploy.http import ServerProcess


def train_mlp(X, y, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(X.shape[1], 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    return model.eval()


def main(short: bool = False, workdir: str | None = None) -> dict:
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    varying = Xtr.std(axis=0) > 0  # 4 pixels are always 0 in the training split: the client drops them
    Xtr, Xte = Xtr[:, varying], Xte[:, varying]
    n_requests = 1 if short else 8
    root = Path(workdir or tempfile.mkdtemp(prefix="qfhe-deploy-"))

    # -- the developer ---------------------------------------------------------------------------
    model = train_mlp(Xtr, ytr, epochs=60 if short else 150)
    # p_error 1e-6 per lookup: the whole circuit errs with probability about 2e-4, so the decrypted answer
    # equals fhe="simulate" (at 1e-3 it would differ by a step in about 1 run in 6)
    qm = qfhe.compile_torch_model(model, Xtr, n_bits=4, rounding_threshold_bits=5, p_error=1e-6)
    generate_signing_key(root / "dev-key")  # dev-key stays with the developer; dev-key.pub is published
    paths = FHEModelDev(root / "artifacts", qm, signing_key=root / "dev-key").save()
    print(
        f"artifacts: {paths['client'].stat().st_size / 1e3:.1f} kB client.zip, "
        f"{paths['server'].stat().st_size / 1e3:.1f} kB server.zip"
    )

    # -- the server ------------------------------------------------------------------------------
    with (
        ServerProcess(root / "artifacts", ["--verify-key", str(root / "dev-key.pub")]) as server,
        HTTPClient(server.url) as http,
    ):
        print(f"server: {server.url}, {http.info()['statistics']}")

        # -- the client --------------------------------------------------------------------------
        client = FHEModelClient(root / "artifacts", key_dir=root / "keys", verify_key=root / "dev-key.pub")
        start = time.perf_counter()
        eval_keys = client.get_serialized_evaluation_keys()
        keygen = time.perf_counter() - start
        start = time.perf_counter()
        key_id = http.upload_keys(eval_keys)
        upload = time.perf_counter() - start

        latencies, correct, agree = [], 0, 0
        for i in range(n_requests):
            enc = client.quantize_encrypt_serialize(Xte[i : i + 1])
            start = time.perf_counter()
            enc_out = http.predict(enc, key_id)
            latencies.append(time.perf_counter() - start)
            logits = client.deserialize_decrypt_dequantize(enc_out)
            agree += int(np.array_equal(logits, qm.forward(Xte[i : i + 1], fhe="simulate")))
            correct += int(logits.argmax(1)[0] == yte[i])

    sizes = {
        "evaluation_keys_MB": len(eval_keys) / 1e6,
        "ciphertext_in_kB": len(enc) / 1e3,
        "ciphertext_out_kB": len(enc_out) / 1e3,
    }
    print(
        f"keygen {keygen:.1f} s; key upload {upload:.2f} s; evaluation keys {sizes['evaluation_keys_MB']:.1f} MB; "
        f"encrypted input {sizes['ciphertext_in_kB']:.1f} kB, encrypted output {sizes['ciphertext_out_kB']:.1f} kB"
    )
    print(
        f"{n_requests} requests: latency per request {np.mean(latencies):.2f} s (median {np.median(latencies):.2f} s), "
        f"{correct}/{n_requests} correct, {agree}/{n_requests} equal to fhe='simulate'"
    )
    return {"latencies": latencies, "agree": agree, "n_requests": n_requests, "correct": correct, **sizes}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="train less, send 1 request")
    main(ap.parse_args().short)
