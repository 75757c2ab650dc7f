"""The server: the compiled circuit and evaluation keys; it never holds a secret key or sees plaintext.

Examples
--------
>>> FHEModelServer.__name__
'FHEModelServer'
"""

from __future__ import annotations

import time

from qfhe.deploy import envelope
from qfhe.deploy.artifacts import read_artifact
from qfhe.errors import ArtifactError, CiphertextError, InputValidationError


class _TFHERunner:
    """concrete-python: the circuit recompiled from its MLIR text."""

    def __init__(self, doc: dict, members: dict):
        from qfhe.deploy.tfhe import make_server, server_parameters

        try:
            mlir = members["circuit.mlir"].decode("utf-8")
            import json

            options = json.loads(members["compile_options.json"].decode("utf-8"))
        except (KeyError, ValueError) as exc:
            raise ArtifactError(f"server.zip: circuit.mlir or compile_options.json is missing or unreadable ({exc})") from None
        self.server = make_server(mlir, options)
        got, expected = server_parameters(self.server), doc.get("parameters")
        if got != expected:
            raise ArtifactError(f"server.zip: the recompiled circuit has other crypto-parameters than the client's "
                                f"(key sizes {got} against {expected}); save the model again with this concrete-python")

    def load_keys(self, env: envelope.Envelope):
        from qfhe.deploy.tfhe import load_evaluation_keys

        parts = dict(env.items[0]) if len(env.items) == 1 else {}
        if "evaluation_keys" not in parts:
            raise CiphertextError("these keys are not TFHE evaluation keys from FHEModelClient")
        return load_evaluation_keys(parts["evaluation_keys"])

    def run_item(self, item: list, keys) -> list:
        from qfhe.deploy.tfhe import run_sample

        parts = dict(item)
        if set(parts) != {"x"}:
            raise CiphertextError(f"an encrypted sample has parts {sorted(parts)}, expected ['x']")
        return [("y", run_sample(self.server, parts["x"], keys))]


class _CKKSRunner:
    """SEAL: the HE op graph evaluated op for op (:class:`qfhe.ckks.backends.seal.SEALEvaluator`)."""

    def __init__(self, doc: dict, members: dict):
        from qfhe.ckks.params import CKKSParameters
        from qfhe.deploy.dev import graph_from_plain

        self.params = CKKSParameters(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in doc["params"].items()})
        self.graph = graph_from_plain(doc["graph"])
        self.per_ciphertext = int(doc["samples_per_ciphertext"])

    def load_keys(self, env: envelope.Envelope):
        from qfhe.ckks.backends.seal import SEALEvaluator

        parts = dict(env.items[0]) if len(env.items) == 1 else {}
        if set(parts) != {"public_key", "relin_keys", "galois_keys"}:
            raise CiphertextError("these keys are not CKKS evaluation keys from FHEModelClient")
        try:
            return SEALEvaluator(self.graph, self.params, {**parts, "steps": list(env.meta.get("steps", []))})
        except (InputValidationError, ValueError) as exc:
            raise CiphertextError(f"invalid CKKS evaluation keys: {exc}") from None

    def run_item(self, item: list, evaluator) -> list:
        from qfhe.ckks.backends.seal import load_bytes, to_bytes

        try:
            cts = {name: load_bytes("ciphertext", data, evaluator.context) for name, data in item}
        except InputValidationError as exc:
            raise CiphertextError(f"an encrypted input is malformed: {exc}") from None
        out = evaluator.evaluate(cts)
        return [(name, to_bytes(ct)) for name, ct in out.items()]


def _zip_bytes(path) -> bytes:
    from pathlib import Path

    from qfhe.deploy.artifacts import ARTIFACT_FILES

    if isinstance(path, (bytes, bytearray)):
        return bytes(path)
    p = Path(path)
    return (p / ARTIFACT_FILES["server"] if p.is_dir() else p).read_bytes()


class FHEModelServer:
    """Run a deployed model on encrypted inputs.

    Parameters
    ----------
    path : str or Path
        The artifact directory (with ``server.zip``) or the ``server.zip`` itself. Verified on
        load (SHA-256 of every member, versions); a TFHE circuit is recompiled from its MLIR and
        must come out with the parameters recorded at save time.
    key_dir : str or Path, optional
        Where uploaded evaluation keys are stored (a temporary directory by default).
    max_key_memory_bytes, max_key_disk_bytes : int
        Limits of the key store (:class:`~qfhe.deploy.keystore.KeyStore`): least recently used keys
        are unloaded from memory, then deleted from disk.

    Examples
    --------
    >>> import numpy as np, torch, qfhe, tempfile
    >>> from qfhe.deploy import FHEModelDev
    >>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(50, 3), n_bits=3, p_error=0.01)
    >>> d = tempfile.mkdtemp(); _ = FHEModelDev(d, qm).save()
    >>> FHEModelServer(d).info()["scheme"]
    'tfhe'
    """

    def __init__(self, path, key_dir=None, max_key_memory_bytes: int = 4 << 30, max_key_disk_bytes: int = 64 << 30):
        from qfhe.deploy.keystore import KeyStore

        self.path = path
        artifact = read_artifact(path, "server")
        self.artifact_bytes = _zip_bytes(path)  # what batch workers load the same server from
        self.manifest = artifact.manifest
        doc = artifact.plain()
        try:
            self.scheme = doc["scheme"]
            self.fingerprint = str(doc["fingerprint"])
            self.input_shape = tuple(doc["input_shape"])
            self.output_shape = tuple(doc["output_shape"])
            self._runner = (_TFHERunner if self.scheme == "tfhe" else _CKKSRunner)(doc, artifact.members)
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"server.zip: model.json is incomplete ({type(exc).__name__}: {exc})") from None
        self._doc = {k: v for k, v in doc.items() if k in ("statistics", "parameters", "samples_per_ciphertext")}
        self.keys = KeyStore(self._load_keys, key_dir, max_key_memory_bytes, max_key_disk_bytes)

    def _load_keys(self, data: bytes):
        return self._runner.load_keys(envelope.unpack(data, self.fingerprint, "keys"))

    def info(self) -> dict:
        """What a client may know: scheme, fingerprint, shapes, versions, circuit statistics.

        Examples
        --------
        >>> callable(FHEModelServer.info)
        True
        """
        return {"scheme": self.scheme, "fingerprint": self.fingerprint, "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape), "versions": self.manifest.get("versions", {}),
                **self._doc}

    def add_keys(self, evaluation_keys: bytes) -> str:
        """Store a client's serialized evaluation keys; returns the ``key_id`` to run with.

        Raises
        ------
        CiphertextError
            For keys of another model, malformed keys, or keys over the storage limit.

        Examples
        --------
        >>> callable(FHEModelServer.add_keys)
        True
        """
        return self.keys.put(bytes(evaluation_keys))

    def _keys_for(self, evaluation_keys):
        if isinstance(evaluation_keys, str):
            return self.keys.get(evaluation_keys)
        if isinstance(evaluation_keys, (bytes, bytearray, memoryview)):
            return self._load_keys(bytes(evaluation_keys))
        raise InputValidationError(f"evaluation_keys must be the serialized keys (bytes) or a key_id (str) from "
                                   f"add_keys, got {type(evaluation_keys).__name__}")

    def run(self, encrypted: bytes, evaluation_keys) -> bytes:
        """Run the model on serialized encrypted inputs (any number of samples); return encrypted outputs.

        Parameters
        ----------
        encrypted : bytes
            From :meth:`FHEModelClient.quantize_encrypt_serialize`.
        evaluation_keys : bytes or str
            The client's serialized evaluation keys, or the ``key_id`` :meth:`add_keys` returned
            (cheaper: loaded once).

        Raises
        ------
        CiphertextError
            For malformed or truncated inputs, inputs for another model, invalid keys.
        UnknownKeyError
            For a ``key_id`` the store does not have.

        Examples
        --------
        >>> callable(FHEModelServer.run)
        True
        """
        return self._run(encrypted, self._keys_for(evaluation_keys))

    def _run(self, encrypted: bytes, keys) -> bytes:
        """:meth:`run` with loaded keys (batch workers load them once)."""
        env = envelope.unpack(encrypted, self.fingerprint, "inputs")
        start = time.perf_counter()
        items = [self._runner.run_item(item, keys) for item in env.items]
        self.last_run_seconds = time.perf_counter() - start
        return envelope.pack(self.fingerprint, "outputs", items, {"samples": env.meta.get("samples", [])})

    def run_batch(self, encrypted: list, evaluation_keys, executor=None, max_workers: int | None = None,
                  retries: int = 1):
        """Run many encrypted requests in parallel: over local processes, or a Dask cluster.

        See :func:`qfhe.deploy.batch.run_batch`.

        Examples
        --------
        >>> callable(FHEModelServer.run_batch)
        True
        """
        from qfhe.deploy.batch import run_batch

        return run_batch(self, encrypted, evaluation_keys, executor=executor, max_workers=max_workers,
                         retries=retries)
