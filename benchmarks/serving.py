"""Serving benchmark: the HTTP server under 1, 2 and 4 concurrent clients, a soak with hostile
requests mixed in, and batch runs over worker processes and a Dask LocalCluster against sequential
execution, all in one run.

Model: the digits MLP of ``examples/client_server.py`` (60→32→10, n_bits 4, rounding 5,
p_error 1e-3). Also measured: evaluation-key and ciphertext sizes with and without concrete's
compression.

    python benchmarks/serving.py [--requests 8] [--batch 16] [--soak 240]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import psutil

import qfhe
from qfhe.deploy import FHEModelClient, FHEModelDev, FHEModelServer, HTTPClient, envelope
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
    return {
        "clients": concurrency,
        "requests": len(blobs),
        "throughput_rps": len(blobs) / wall,
        "p50_s": float(np.percentile(latencies, 50)),
        "p95_s": float(np.percentile(latencies, 95)),
        "wall_s": wall,
    }


def soak(url: str, pid: int, client: FHEModelClient, key_id: str, X, n: int, clients: int = 8) -> dict:
    """``clients`` threads send ``n`` requests, one in four hostile (truncated, junk, forged bits, too many
    samples, unknown key); latency of the good ones, peak memory of the server's process tree."""
    good = [client.quantize_encrypt_serialize(X[i : i + 1]) for i in range(16)]
    value = envelope.unpack(good[0], client.fingerprint, "inputs").items[0][0][1]
    hostile = [
        good[0][:-20],
        b"\0" * 64,
        envelope.pack(client.fingerprint, "inputs", [[("x", value[:64] + bytes(len(value) - 64))]]),
        envelope.pack(client.fingerprint, "inputs", [[("x", value)]] * 17),
    ]
    latencies, statuses, peak, stop, lock = [], {}, [0], threading.Event(), threading.Lock()

    def watch():
        while not stop.is_set():
            total = 0
            for p in [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total)
            time.sleep(0.25)

    def run(t):
        with httpx.Client(base_url=url, timeout=600) as h:
            for k in range(t, n, clients):
                bad = k % 4 == 3
                blob = hostile[k % len(hostile)] if bad else good[k % len(good)]
                kid = "0" * 32 if bad and k % 8 == 7 else key_id
                start = time.perf_counter()
                r = h.post(
                    "/predict",
                    params={"key_id": kid},
                    content=blob,
                    headers={"content-type": "application/octet-stream"},
                )
                with lock:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if not bad and r.status_code == 200:
                        latencies.append(time.perf_counter() - start)

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(t,)) for t in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - start
    stop.set()
    watcher.join()
    info = httpx.get(url + "/info").json()
    return {
        "clients": clients,
        "requests": n,
        "good": len(latencies),
        "statuses": statuses,
        "wall_s": wall,
        "good_rps": len(latencies) / wall,
        "p50_s": float(np.percentile(latencies, 50)),
        "p95_s": float(np.percentile(latencies, 95)),
        "peak_rss_MB": peak[0] / 2**20,
        "bound_MB": info["limits"]["memory_bound_bytes"] / 2**20,
        "worker_crashes": info["workers"]["crashed"],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=8, help="requests per concurrency level")
    ap.add_argument("--batch", type=int, default=16, help="samples in the batch runs")
    ap.add_argument("--soak", type=int, default=240, help="requests in the soak (one in four hostile)")
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
        sizes.append(
            {
                "compressed": compress,
                "keygen_s": time.perf_counter() - start,
                "eval_keys_MB": len(ek) / 1e6,
                "input_kB": len(c.quantize_encrypt_serialize(Xte[:1])) / 1e3,
            }
        )
    art = root / "art-True"
    client, server = FHEModelClient(art), FHEModelServer(art)
    eval_keys = client.get_serialized_evaluation_keys()

    # -- HTTP: 1, 2, 4 concurrent clients, against in-process sequential runs -----------------------------
    blobs = [client.quantize_encrypt_serialize(Xte[i : i + 1]) for i in range(args.requests)]
    key_id = server.add_keys(eval_keys)
    server.run(blobs[0], key_id)  # warm-up
    start = time.perf_counter()
    for b in blobs:
        server.run(b, key_id)
    seq_wall = time.perf_counter() - start
    http_rows = [
        {
            "clients": "in-process, sequential (baseline)",
            "requests": len(blobs),
            "throughput_rps": len(blobs) / seq_wall,
            "p50_s": seq_wall / len(blobs),
            "p95_s": None,
        }
    ]
    with ServerProcess(art, ["--workers", "2"]) as proc, HTTPClient(proc.url) as http:
        remote_key = http.upload_keys(eval_keys)
        http.predict(blobs[0], remote_key)  # warm-up
        for concurrency in (1, 2, 4):
            http_rows.append(http_load(proc.url, client, remote_key, blobs, concurrency))
        soak_row = soak(proc.url, proc.process.pid, client, remote_key, Xte, args.soak)

    # -- batch: sequential vs local processes vs Dask LocalCluster -----------------------------------------
    import distributed

    batch = [client.quantize_encrypt_serialize(Xte[i : i + 1]) for i in range(args.batch)]
    clear = [qm._reference(qm.quantize_input(Xte[i : i + 1]), False) for i in range(args.batch)]

    def agree(outputs) -> int:
        """Samples whose decrypted codes equal the clear integers (p_error 1e-3 on 192 lookups: most, not all)."""
        return sum(int(np.array_equal(client.deserialize_decrypt(o), c)) for o, c in zip(outputs, clear))

    start = time.perf_counter()
    reference = [server.run(b, eval_keys) for b in batch]
    batch_rows = [
        {
            "executor": "sequential, one process (baseline)",
            "seconds": time.perf_counter() - start,
            "equal_to_clear": agree(reference),
        }
    ]
    result = server.run_batch(batch, eval_keys, max_workers=2)
    batch_rows.append(
        {
            "executor": "run_batch, 2 local processes",
            "seconds": result.seconds,
            "ok": result.ok,
            "equal_to_clear": agree(result),
        }
    )
    start = time.perf_counter()
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        startup = time.perf_counter() - start
        result = server.run_batch(batch, eval_keys, executor=dask_client)
        batch_rows.append(
            {
                "executor": "run_batch, Dask LocalCluster (2 workers)",
                "seconds": result.seconds,
                "ok": result.ok,
                "cluster_startup_s": startup,
                "equal_to_clear": agree(result),
            }
        )
    base = batch_rows[0]["seconds"]
    for r in batch_rows:
        r["speedup"] = base / r["seconds"]
        r["per_sample_s"] = r["seconds"] / len(batch)

    print(f"\n{machine()}\nstatistics: {qm.statistics['pbs_count']} PBS, max width {qm.statistics['max_bit_width']}")
    print(
        "\nsizes\n"
        + table(
            sizes,
            [
                ("compressed", "compressed"),
                ("eval_keys_MB", "evaluation keys (MB)"),
                ("input_kB", "encrypted input (kB)"),
                ("keygen_s", "keygen (s)"),
            ],
        )
    )
    print(
        "\nHTTP on loopback\n"
        + table(
            http_rows,
            [
                ("clients", "concurrent clients"),
                ("requests", "requests"),
                ("throughput_rps", "requests/s"),
                ("p50_s", "p50 (s)"),
                ("p95_s", "p95 (s)"),
            ],
        )
    )
    print(
        "\nsoak, one request in four hostile\n"
        + table(
            [soak_row],
            [
                ("clients", "clients"),
                ("requests", "requests"),
                ("good_rps", "good requests/s"),
                ("p50_s", "p50 (s)"),
                ("p95_s", "p95 (s)"),
                ("peak_rss_MB", "peak RSS (MB)"),
                ("bound_MB", "stated bound (MB)"),
                ("worker_crashes", "worker crashes"),
            ],
        )
        + f"\nstatuses: {soak_row['statuses']}"
    )
    print(
        f"\nbatch of {len(batch)} samples\n"
        + table(
            batch_rows,
            [
                ("executor", "executor"),
                ("seconds", "wall (s)"),
                ("per_sample_s", "s/sample"),
                ("speedup", "speedup"),
                ("equal_to_clear", "samples equal to the clear integers"),
            ],
        )
    )
    payload = {"machine": machine(), "sizes": sizes, "http": http_rows, "soak": soak_row, "batch": batch_rows}
    print(f"\nwrote {write_json('serving', payload)}")
    return payload


if __name__ == "__main__":
    main()
