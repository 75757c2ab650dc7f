"""Serving benchmark: the HTTP server under 1, 2 and 4 concurrent clients, and batch runs over
local processes and a Dask LocalCluster against sequential execution, all in one run.

Model: the digits MLP of ``examples/client_server.py`` (60→32→10, n_bits 4, rounding 5,
p_error 1e-3). Also measured: evaluation-key and ciphertext sizes with and without concrete's
compression.

    python benchmarks/serving.py [--requests 8] [--batch 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

import qfhe
from qfhe.deploy import FHEModelClient, FHEModelDev, FHEModelServer, HTTPClient
from qfhe.deploy.http import ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_example, machine, table, write_json  # noqa: E402


def model_and_data():
    ex = load_example("client_server")
    X, y = ex.load_digits(return_X_y=True)
    Xtr, Xte, ytr, _ = ex.train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    varying = Xtr.std(axis=0) > 0
    Xtr, Xte = Xtr[:, varying], Xte[:, varying]
    model = ex.train_mlp(Xtr, ytr, epochs=150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = qfhe.compile_torch_model(model, Xtr, n_bits=4, rounding_threshold_bits=5, p_error=1e-3)
    return qm, Xte


def http_load(url: str, client: FHEModelClient, key_id: str, blobs: list, concurrency: int) -> dict:
    """Send ``blobs`` from ``concurrency`` client threads; latency of each request, throughput."""
    latencies, lock = [], threading.Lock()
    queue = list(enumerate(blobs))

    def worker():
        with HTTPClient(url) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    _, blob = queue.pop()
                start = time.perf_counter()
                http.predict(blob, key_id)
                with lock:
                    latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - start
    return {"clients": concurrency, "requests": len(blobs), "throughput_rps": len(blobs) / wall,
            "p50_s": float(np.percentile(latencies, 50)), "p95_s": float(np.percentile(latencies, 95)), "wall_s": wall}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=8, help="requests per concurrency level")
    ap.add_argument("--batch", type=int, default=16, help="samples in the batch runs")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="qfhe-serving-"))
    qm, Xte = model_and_data()

    # -- sizes, with and without compression --------------------------------------------------------
    sizes = []
    for compress in (False, True):
        FHEModelDev(root / f"art-{compress}", qm, compress=compress).save()
        c = FHEModelClient(root / f"art-{compress}")
        start = time.perf_counter()
        ek = c.get_serialized_evaluation_keys()
        sizes.append({"compressed": compress, "keygen_s": time.perf_counter() - start, "eval_keys_MB": len(ek) / 1e6,
                      "input_kB": len(c.quantize_encrypt_serialize(Xte[:1])) / 1e3})
    art = root / "art-True"
    client, server = FHEModelClient(art), FHEModelServer(art)
    eval_keys = client.get_serialized_evaluation_keys()

    # -- HTTP: 1, 2, 4 concurrent clients, against in-process sequential runs -----------------------------
    blobs = [client.quantize_encrypt_serialize(Xte[i:i + 1]) for i in range(args.requests)]
    key_id = server.add_keys(eval_keys)
    server.run(blobs[0], key_id)  # warm-up
    start = time.perf_counter()
    seq = [server.run(b, key_id) for b in blobs]
    seq_wall = time.perf_counter() - start
    http_rows = [{"clients": "in-process, sequential (baseline)", "requests": len(blobs),
                  "throughput_rps": len(blobs) / seq_wall, "p50_s": seq_wall / len(blobs), "p95_s": None}]
    with ServerProcess(art, ["--workers", "4"]) as proc, HTTPClient(proc.url) as http:
        remote_key = http.upload_keys(eval_keys)
        http.predict(blobs[0], remote_key)  # warm-up
        for concurrency in (1, 2, 4):
            http_rows.append(http_load(proc.url, client, remote_key, blobs, concurrency))
    same = all(np.array_equal(client.deserialize_decrypt(a), qm._reference(qm.quantize_input(Xte[i:i + 1]), False))
               for i, a in enumerate(seq))

    # -- batch: sequential vs local processes vs Dask LocalCluster -----------------------------------------
    import distributed

    batch = [client.quantize_encrypt_serialize(Xte[i:i + 1]) for i in range(args.batch)]
    start = time.perf_counter()
    reference = [server.run(b, eval_keys) for b in batch]
    batch_rows = [{"executor": "sequential, one process (baseline)", "seconds": time.perf_counter() - start}]
    result = server.run_batch(batch, eval_keys, max_workers=2)
    batch_rows.append({"executor": "run_batch, 2 local processes", "seconds": result.seconds, "ok": result.ok})
    start = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as dask_client:
        startup = time.perf_counter() - start
        result = server.run_batch(batch, eval_keys, executor=dask_client)
        batch_rows.append({"executor": "run_batch, Dask LocalCluster (2 workers)", "seconds": result.seconds,
                           "ok": result.ok, "cluster_startup_s": startup})
    equal = all(np.array_equal(client.deserialize_decrypt(a), client.deserialize_decrypt(b))
                for a, b in zip(result, reference))
    base = batch_rows[0]["seconds"]
    for r in batch_rows:
        r["speedup"] = base / r["seconds"]
        r["per_sample_s"] = r["seconds"] / len(batch)

    print(f"\n{machine()}\nstatistics: {qm.statistics['pbs_count']} PBS, max width {qm.statistics['max_bit_width']}")
    print("\nsizes\n" + table(sizes, [("compressed", "compressed"), ("eval_keys_MB", "evaluation keys (MB)"),
                                      ("input_kB", "encrypted input (kB)"), ("keygen_s", "keygen (s)")]))
    print("\nHTTP on loopback\n" + table(http_rows, [("clients", "concurrent clients"), ("requests", "requests"),
                                                       ("throughput_rps", "requests/s"), ("p50_s", "p50 (s)"),
                                                       ("p95_s", "p95 (s)")]))
    print(f"\nbatch of {len(batch)} samples (Dask results equal to sequential: {equal})\n" + table(
        batch_rows, [("executor", "executor"), ("seconds", "wall (s)"), ("per_sample_s", "s/sample"),
                     ("speedup", "speedup")]))
    payload = {"machine": machine(), "sizes": sizes, "http": http_rows, "batch": batch_rows,
               "decrypted_equal_reference": same, "dask_equal_sequential": equal}
    print(f"\nwrote {write_json('serving', payload)}")
    return payload


if __name__ == "__main__":
    main()
