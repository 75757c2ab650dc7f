"""Deployment: artifacts without pickle, client/server round trips, the HTTP server, batch serving.

Every round trip encrypts with real concrete-python (or SEAL) keys and compares the decrypted
result with ``fhe="simulate"``.
"""

from __future__ import annotations

import json
import re
import threading
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import qfhe
from qfhe.deploy import FHEModelClient, FHEModelDev, FHEModelServer, HTTPClient, envelope
from qfhe.deploy.http import ServerProcess
from qfhe.errors import (
    ArtifactError,
    CiphertextError,
    ConfigurationError,
    NotCompiledError,
    ServerError,
    UnknownKeyError,
)

pytestmark = pytest.mark.execute


@pytest.fixture(scope="module")
def data():
    return np.random.RandomState(0).randn(200, 4)


@pytest.fixture(scope="module")
def qm(data):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return qfhe.compile_torch_model(m, data, n_bits=3, p_error=1e-5)


@pytest.fixture(scope="module")
def deployed(qm, tmp_path_factory):
    """Artifacts, a client with its keys in key_dir, a server, and the uploaded key_id."""
    root = tmp_path_factory.mktemp("deploy")
    FHEModelDev(root / "artifacts", qm).save()
    client = FHEModelClient(root / "artifacts", key_dir=root / "keys")
    server = FHEModelServer(root / "artifacts")
    eval_keys = client.get_serialized_evaluation_keys()
    return root, client, server, eval_keys, server.add_keys(eval_keys)


def test_round_trip_decrypts_to_simulate(deployed, qm, data):
    root, client, server, eval_keys, key_id = deployed
    enc = client.quantize_encrypt_serialize(data[:3])
    out = server.run(enc, key_id)
    np.testing.assert_array_equal(client.deserialize_decrypt_dequantize(out), qm.forward(data[:3], fhe="simulate"))
    np.testing.assert_array_equal(client.deserialize_decrypt(out), qm._reference(qm.quantize_input(data[:3]), False))
    # the evaluation keys as bytes work as well as the stored key_id
    assert client.deserialize_decrypt(server.run(enc, eval_keys)).shape == (3, 3)


def test_key_dir_keys_are_reused(deployed, data):
    root, client, server, eval_keys, key_id = deployed
    assert client.key_path.exists() and (client.key_path.stat().st_mode & 0o777) == 0o600
    again = FHEModelClient(root / "artifacts", key_dir=root / "keys")
    assert again.get_serialized_evaluation_keys() == eval_keys
    out = server.run(client.quantize_encrypt_serialize(data[:1]), key_id)
    np.testing.assert_array_equal(again.deserialize_decrypt(out), client.deserialize_decrypt(out))


def _pickle_opcodes(data: bytes) -> bool:
    """Whether ``data`` holds a pickle stream header (protocol 2 to 5)."""
    return any(
        bytes([0x80, p]) in data and (data.startswith(bytes([0x80, p])) or bytes([0x80, p, 0x95]) in data)
        for p in (2, 3, 4, 5)
    )


def test_artifacts_are_data(deployed):
    """JSON and .npy only: no pickle, no MLIR or other code; the client gets no weight but the output
    dequantizer (which adds the last layer's bias)."""
    root = deployed[0]
    for name in ("client.zip", "server.zip"):
        with zipfile.ZipFile(root / "artifacts" / name) as z:
            for member in z.namelist():
                data = z.read(member)
                assert not _pickle_opcodes(data), (name, member)
                assert member.rsplit(".", 1)[-1] in {"json", "npy"}, (name, member)
                assert b"llvm." not in data and b"func.func" not in data, (name, member)
                if member.endswith(".npy"):
                    np.load(__import__("io").BytesIO(data), allow_pickle=False)
                else:
                    json.loads(data)
            manifest = json.loads(z.read("manifest.json"))
            assert manifest["format_version"] == 2
            assert set(manifest["versions"]) == {"qfhe", "concrete-python", "python"}
            assert all(len(m["sha256"]) == 64 for m in manifest["members"].values())
    server = zipfile.ZipFile(root / "artifacts" / "server.zip").namelist()
    assert {"circuit.json", "client.specs.json", "model.json"} <= set(server)
    circuit = json.loads(zipfile.ZipFile(root / "artifacts" / "server.zip").read("circuit.json"))
    assert {n["op"] for n in circuit["graph"]["nodes"]} <= {"input", "qgemm", "table", "round"}
    client_doc = json.loads(zipfile.ZipFile(root / "artifacts" / "client.zip").read("model.json"))
    assert set(client_doc["dequant"]) == {"scale", "offset", "side"} and "circuit" not in client_doc
    assert "weight" not in json.dumps(client_doc) and "graph" not in client_doc


def test_server_rebuilds_the_compiled_circuit(qm, tmp_path):
    """Without compression the deployed circuit is the compiled one: same client specs, byte for byte."""
    FHEModelDev(tmp_path, qm, compress=False).save()
    specs = zipfile.ZipFile(tmp_path / "client.zip").read("client.specs.json")
    assert specs == qm.fhe_circuit.client.specs.serialize()
    assert FHEModelServer(tmp_path).fingerprint == FHEModelClient(tmp_path).fingerprint


def _rewrite(src, dst, change):
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    change(members)
    with zipfile.ZipFile(dst, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)


def test_tampered_truncated_and_incompatible_artifacts(deployed, tmp_path):
    src = deployed[0] / "artifacts" / "server.zip"

    def edit_circuit(m):
        m["circuit.json"] = b" " + m["circuit.json"]

    _rewrite(src, tmp_path / "server.zip", edit_circuit)
    with pytest.raises(ArtifactError, match=r"member circuit.json has \d+ bytes in the zip, its manifest entry says"):
        FHEModelServer(tmp_path)

    _rewrite(src, tmp_path / "server.zip", lambda m: m.update({"extra.json": b"{}"}))
    with pytest.raises(ArtifactError, match=r"member extra.json is not listed in the manifest"):
        FHEModelServer(tmp_path)

    def old_version(m):
        manifest = json.loads(m["manifest.json"])
        manifest["versions"]["concrete-python"] = "2.5.0"
        m["manifest.json"] = json.dumps(manifest).encode()

    _rewrite(src, tmp_path / "server.zip", old_version)
    with pytest.raises(
        ArtifactError,
        match=r"written by qfhe .*, concrete-python 2.5.0; this is qfhe .*, "
        r"concrete-python 2.11",
    ):
        FHEModelServer(tmp_path)

    (tmp_path / "server.zip").write_bytes(src.read_bytes()[:-200])
    with pytest.raises(ArtifactError, match=r"server.zip is not a readable zip archive \(truncated"):
        FHEModelServer(tmp_path)
    with pytest.raises(ArtifactError, match=r"no client artifact at"):
        FHEModelClient(tmp_path)


def test_bad_ciphertexts_and_keys_are_refused(deployed, data, qm, tmp_path):
    root, client, server, eval_keys, key_id = deployed
    enc = client.quantize_encrypt_serialize(data[:1])
    with pytest.raises(CiphertextError, match=r"encrypted inputs are truncated: the header announces \d+ bytes"):
        server.run(enc[:-100], key_id)
    with pytest.raises(CiphertextError, match=r"this is not qfhe encrypted inputs"):
        server.run(b"garbage", key_id)
    with pytest.raises(UnknownKeyError, match=r"unknown key_id 'deadbeef…': upload the evaluation keys again"):
        server.run(enc, "deadbeef" * 4)
    with pytest.raises(CiphertextError, match=r"encrypted keys are truncated"):
        server.add_keys(eval_keys[:-1000])
    junk = envelope.pack(client.fingerprint, "keys", [[("evaluation_keys", b"junk")]])
    with pytest.raises(
        CiphertextError, match=r"these evaluation keys cannot be read as a concrete-python ServerKeyset"
    ):
        server.add_keys(junk)
    # a ciphertext made for another model is named as such
    other = qfhe.compile_torch_model(nn.Linear(4, 3), data, n_bits=3, p_error=1e-5)
    FHEModelDev(tmp_path, other).save()
    other_enc = FHEModelClient(tmp_path).quantize_encrypt_serialize(data[:1])
    with pytest.raises(CiphertextError, match=r"made for another model"):
        server.run(other_enc, key_id)


def test_dev_errors(data):
    quantized = qfhe.quantize_torch_model(nn.Linear(4, 2), data, n_bits=3)
    with pytest.raises(NotCompiledError, match=r"call compile\(\)"):
        FHEModelDev("unused", quantized).save()
    with pytest.raises(ConfigurationError, match=r"FHEModelDev needs a compiled model.*got Linear"):
        FHEModelDev("unused", nn.Linear(4, 2)).save()


def test_estimators_deploy_with_probabilities_and_labels(tmp_path):
    from qfhe.sklearn import LogisticRegression, NeuralNetRegressor

    rng = np.random.RandomState(0)
    X = rng.randn(150, 4)
    y = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)]
    clf = LogisticRegression(n_bits=5).fit(X, y).compile(X, p_error=1e-5)
    FHEModelDev(tmp_path / "clf", clf).save()
    client, server = FHEModelClient(tmp_path / "clf"), FHEModelServer(tmp_path / "clf")
    out = server.run(client.quantize_encrypt_serialize(X[:3]), client.get_serialized_evaluation_keys())
    np.testing.assert_allclose(client.deserialize_decrypt_dequantize(out), clf.predict_proba(X[:3], fhe="simulate"))
    np.testing.assert_array_equal(client.deserialize_decrypt_predict(out), clf.predict(X[:3], fhe="simulate"))

    reg = NeuralNetRegressor(hidden_sizes=(8,), max_epochs=3, random_state=0).fit(X, 3 * X[:, 0] + 1)
    reg.compile(X, p_error=1e-5)
    FHEModelDev(tmp_path / "reg", reg).save()
    client, server = FHEModelClient(tmp_path / "reg"), FHEModelServer(tmp_path / "reg")
    out = server.run(client.quantize_encrypt_serialize(X[:2]), client.get_serialized_evaluation_keys())
    np.testing.assert_allclose(client.deserialize_decrypt_dequantize(out), reg.predict(X[:2], fhe="simulate"))


def test_ckks_model_deploys_through_seal(tmp_path):
    X = np.random.RandomState(0).randn(64, 4)
    torch.manual_seed(0)
    cm = qfhe.compile_torch_model(nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)), X, scheme="ckks")
    FHEModelDev(tmp_path, cm).save()
    client_doc = json.loads(zipfile.ZipFile(tmp_path / "client.zip").read("model.json"))
    assert {n["op"] for n in client_doc["graph"]["nodes"]} == {"encrypt", "decrypt"}  # no weights for the client
    client = FHEModelClient(tmp_path, key_dir=tmp_path / "keys")
    server = FHEModelServer(tmp_path)
    key_id = server.add_keys(client.get_serialized_evaluation_keys())
    out = client.deserialize_decrypt_dequantize(server.run(client.quantize_encrypt_serialize(X[:5]), key_id))
    np.testing.assert_allclose(out, cm.forward(X[:5], fhe="simulate"), atol=1e-3)
    np.testing.assert_allclose(out, cm.forward(X[:5]), atol=1e-3)
    again = FHEModelClient(tmp_path, key_dir=tmp_path / "keys")  # reloaded SEAL keys decrypt the same
    np.testing.assert_allclose(
        again.deserialize_decrypt_dequantize(server.run(client.quantize_encrypt_serialize(X[:1]), key_id)),
        out[:1],
        atol=1e-3,
    )


def test_cli_help(capsys):
    from qfhe.cli import main

    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "POST /predict" in out and "GET /client.zip" in out
    flat = " ".join(out[out.index("options:") :].split())
    for option, default in (
        ("--port", "8000"),
        ("--workers", "2"),
        ("--max-samples", "16"),
        ("--timeout", "300.0"),
        ("--key-memory-mb", "2048"),
        ("--key-disk-mb", "8192"),
        ("--max-keys-mb", "None"),
    ):
        assert re.search(rf"{option} [A-Z_]+ (?:(?! --).)*?\(default: {default}\)", flat), option


def test_http_server_end_to_end(deployed, qm, data):
    root, client = deployed[0], deployed[1]
    with ServerProcess(root / "artifacts", ["--max-request-mb", "0.05", "--workers", "2"]) as proc:
        with HTTPClient(proc.url) as http:
            assert http.info()["fingerprint"] == client.fingerprint
            key_id = http.upload_keys(client.get_serialized_evaluation_keys())

            # 4 concurrent clients, each with its own sample, all correct
            results, errors = {}, []

            def ask(i):
                try:
                    with HTTPClient(proc.url) as h:
                        results[i] = client.deserialize_decrypt_dequantize(
                            h.predict(client.quantize_encrypt_serialize(data[i : i + 1]), key_id)
                        )
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            assert not errors
            np.testing.assert_array_equal(
                np.concatenate([results[i] for i in range(4)]), qm.forward(data[:4], fhe="simulate")
            )

            enc = client.quantize_encrypt_serialize(data[:1])
            with pytest.raises(ServerError, match=r"404: UnknownKeyError: unknown key_id") as e:
                http.predict(enc, "0" * 32)
            with pytest.raises(ServerError, match=r"400: CiphertextError: encrypted inputs are truncated"):
                http.predict(enc[:-50], key_id)
            with pytest.raises(ServerError, match=r"413: PayloadTooLarge: the encrypted input: 100000 bytes"):
                http.predict(b"\0" * 100_000, key_id)
            r = http._http.post(
                "/predict", params={"key_id": key_id}, content=enc, headers={"content-type": "application/json"}
            )
            assert r.status_code == 415 and r.json()["error"] == "UnsupportedMediaType"
            assert e.value.status == 404
            # still serving, and still right
            assert http.health() == {"status": "ok", "workers": 2}
            np.testing.assert_array_equal(
                client.deserialize_decrypt_dequantize(http.predict(enc, key_id)), qm.forward(data[:1], fhe="simulate")
            )


def test_run_batch_local_processes_reports_failed_items(deployed, data):
    root, client, server, eval_keys, _ = deployed
    blobs = [client.quantize_encrypt_serialize(data[i : i + 1]) for i in range(3)]
    blobs.insert(1, blobs[0][:-10])
    result = server.run_batch(blobs, eval_keys, max_workers=2)
    assert not result.ok and set(result.errors) == {1} and result.attempts == [1, 2, 1, 1]
    assert "truncated" in result.errors[1] and result[1] is None
    expected = [server.run(b, eval_keys) for b in (blobs[0], blobs[2], blobs[3])]
    for got, want in zip((result[0], result[2], result[3]), expected):
        np.testing.assert_array_equal(client.deserialize_decrypt(got), client.deserialize_decrypt(want))
    with pytest.raises(qfhe.errors.QfheError, match=r"1 of 4 batch items failed after a retry: item 1"):
        result.raise_for_errors()


def test_run_batch_on_dask_local_cluster(deployed, data):
    distributed = pytest.importorskip("distributed")
    root, client, server, eval_keys, _ = deployed
    blobs = [client.quantize_encrypt_serialize(data[i : i + 1]) for i in range(4)]
    # worker threads in this process: the plugin, ordering and equality are the same as with worker processes
    # (benchmarks/serving.py uses processes), at a fraction of the start-up time
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        result = server.run_batch(blobs, eval_keys, executor=dask_client)
        assert result.ok and len(result) == 4
        # each worker loaded the server once (the plugin), whatever the number of tasks
        loaded = dask_client.run(lambda dask_worker: len([p for p in dask_worker.plugins if p.startswith("qfhe-")]))
        assert sorted(loaded.values()) == [1, 1]
    local = np.concatenate([client.deserialize_decrypt(server.run(b, eval_keys)) for b in blobs])
    np.testing.assert_array_equal(np.concatenate([client.deserialize_decrypt(r) for r in result]), local)


def test_key_store_evicts_least_recently_used_and_survives_restarts(tmp_path):
    from qfhe.deploy import KeyCache, KeyStore

    store = KeyStore(tmp_path / "keys", max_disk_bytes=12)
    a, b = store.put(b"aaaa"), store.put(b"bbbb")
    assert store.read(a) == b"aaaa"  # a is now the most recently used
    c = store.put(b"cccccc")  # 14 bytes > 12 on disk: b (least recent) goes
    with pytest.raises(UnknownKeyError, match=r"unknown key_id .*upload the evaluation keys again"):
        store.read(b)
    assert not (tmp_path / "keys" / f"{b}.keys").exists() and len(store) == 2
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    with pytest.raises(CiphertextError, match=r"more than the server's key storage limit \(12 bytes\)"):
        store.put(b"x" * 13)
    # a restart finds the keys, and a smaller budget is enforced at once, oldest first
    (tmp_path / "keys" / ".half-written.tmp").write_bytes(b"x")
    again = KeyStore(tmp_path / "keys", max_disk_bytes=8)
    assert len(again) == 1 and again.read(c) == b"cccccc" and a not in again
    assert not (tmp_path / "keys" / ".half-written.tmp").exists()
    # without a directory: a temporary one, removed on close
    temp = KeyStore()
    temp.put(b"k")
    directory = temp.directory
    temp.close()
    assert not directory.exists()

    cache = KeyCache(100)
    cache.put("a", "A", 60)
    cache.put("b", "B", 60)  # counted at loaded size: a goes
    assert "a" not in cache and cache.get("b") == "B" and cache.loaded_bytes == 60
    cache.put("c", "C", 500)  # larger than the budget: kept alone, it is in use
    assert cache.get("c") == "C" and "b" not in cache
