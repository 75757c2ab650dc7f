"""The client: keys, quantize + encrypt, decrypt + dequantize. It holds the secret key; the server never does.

Examples
--------
>>> import numpy as np, torch, qfhe, tempfile
>>> from qfhe.deploy import FHEModelDev, FHEModelClient, FHEModelServer
>>> X = np.random.RandomState(0).randn(50, 3)
>>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), X, n_bits=3, p_error=0.01)
>>> d = tempfile.mkdtemp(); _ = FHEModelDev(d, qm).save()
>>> client = FHEModelClient(d, key_dir=tempfile.mkdtemp())
>>> enc_out = FHEModelServer(d).run(client.quantize_encrypt_serialize(X[:1]), client.get_serialized_evaluation_keys())
>>> bool(np.allclose(client.deserialize_decrypt_dequantize(enc_out), qm.forward(X[:1], fhe="simulate")))
True
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from qfhe.deploy import envelope
from qfhe.deploy.artifacts import read_artifact
from qfhe.deploy.processing import labels, postprocess, preprocess
from qfhe.errors import ArtifactError, CiphertextError, InputValidationError
from qfhe.ir.ops import evaluate
from qfhe.quant.quantizer import quantize_input_codes
from qfhe.validation import check_input


class _TFHEKeys:
    """concrete-python's client: key generation and (de)cryption of single samples."""

    def __init__(self, doc: dict, members: dict):
        from qfhe.deploy.tfhe import load_specs

        self.specs = load_specs(members["client.specs.json"])
        self.client = None

    def generate(self, path: Path | None) -> None:
        from concrete import fhe

        self.client = fhe.Client(self.specs)
        if path is not None and path.exists():
            try:
                self.client.keys.load_from_bytes(path.read_bytes())
                return
            except RuntimeError as exc:
                raise ArtifactError(f"the key file {path} is unreadable ({exc}); delete it to generate new keys") from None
        self.client.keygen()
        if path is not None:
            _write_private(path, self.client.keys.serialize())

    def evaluation_parts(self) -> tuple[list, dict]:
        return [("evaluation_keys", self.client.evaluation_keys.serialize())], {}

    def encrypt(self, codes: np.ndarray) -> tuple[list, list]:
        return [[("x", self.client.encrypt(codes[i:i + 1]).serialize())] for i in range(len(codes))], [1] * len(codes)

    def decrypt(self, env: envelope.Envelope) -> np.ndarray:
        from concrete import fhe

        outs = []
        for item in env.items:
            try:
                outs.append(np.asarray(self.client.decrypt(fhe.Value.deserialize(dict(item)["y"]))))
            except (RuntimeError, ValueError, KeyError) as exc:
                raise CiphertextError(f"an encrypted result is malformed ({exc})") from None
        return np.concatenate(outs).astype(np.int64)


class _CKKSKeys:
    """SEAL: key generation, packing + encryption of sample groups, decryption + unpacking."""

    def __init__(self, doc: dict, members: dict):
        from qfhe.ckks.params import CKKSParameters
        from qfhe.deploy.dev import graph_from_plain

        self.params = CKKSParameters(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in doc["params"].items()})
        self.graph = graph_from_plain(doc["graph"])
        self.steps = [int(s) for s in doc["steps"]]
        self.per_ciphertext = int(doc["samples_per_ciphertext"])
        self.keys = None

    def generate(self, path: Path | None) -> None:
        from qfhe.ckks.backends.seal import SEALKeys, load_bytes, seal_context, to_bytes

        if path is not None and path.exists():
            env = envelope.unpack(path.read_bytes(), "ckks-keys", "secret")
            parts = dict(env.items[0])
            ctx, real = seal_context(self.params)
            gk = load_bytes("galois_keys", parts["galois_keys"], ctx) if parts["galois_keys"] else None
            self.keys = SEALKeys(real, ctx, load_bytes("secret_key", parts["secret_key"], ctx),
                                 load_bytes("public_key", parts["public_key"], ctx),
                                 load_bytes("relin_keys", parts["relin_keys"], ctx), gk, list(env.meta["steps"]))
            return
        self.keys = SEALKeys.generate(self.params, self.steps)
        if path is not None:
            k = self.keys
            parts = [("secret_key", to_bytes(k.secret_key)), ("public_key", to_bytes(k.public_key)),
                     ("relin_keys", to_bytes(k.relin_keys)),
                     ("galois_keys", to_bytes(k.galois_keys) if k.galois_keys is not None else b"")]
            _write_private(path, envelope.pack("ckks-keys", "secret", [parts], {"steps": k.steps}))

    def evaluation_parts(self) -> tuple[list, dict]:
        ek = self.keys.evaluation_keys()
        return [(k, ek[k]) for k in ("public_key", "relin_keys", "galois_keys")], {"steps": ek["steps"]}

    def encrypt(self, X: np.ndarray) -> tuple[list, list]:
        from qfhe.ckks.backends.seal import to_bytes

        X = X.reshape(len(X), -1)
        b, items, counts = self.per_ciphertext, [], []
        for i in range(0, len(X), b):
            cts = self.keys.encrypt(self.graph, X[i:i + b])
            items.append([(name, to_bytes(ct)) for name, ct in cts.items()])
            counts.append(len(X[i:i + b]))
        return items, counts

    def decrypt(self, env: envelope.Envelope) -> np.ndarray:
        from qfhe.ckks.backends.seal import load_bytes

        counts = env.meta.get("samples", [])
        if len(counts) != len(env.items):
            raise CiphertextError("encrypted outputs: the sample counts do not match the items")
        outs = []
        for item, n in zip(env.items, counts):
            try:
                cts = {name: load_bytes("ciphertext", data, self.keys.context) for name, data in item}
            except InputValidationError as exc:
                raise CiphertextError(f"an encrypted result is malformed: {exc}") from None
            outs.append(self.keys.decrypt(self.graph, cts, int(n)))
        return np.concatenate(outs)


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret key file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


class FHEModelClient:
    """The client of a deployed model.

    Parameters
    ----------
    path : str or Path
        The artifact directory (with ``client.zip``) or the ``client.zip`` itself. Verified on
        load (SHA-256 of every member, versions).
    key_dir : str or Path, optional
        Where the secret and evaluation keys are kept: generated there on first use and reused
        afterwards (one file per model). Without it, keys live in memory only. The file holds the
        secret key: keep it private (it is written with mode 0600).

    Attributes
    ----------
    scheme : str
        ``"tfhe"`` or ``"ckks"``.
    fingerprint : str
        Identifies the compiled circuit; the server checks it on every request.
    input_shape, output_shape : tuple
    timings : dict
        Seconds of the last ``keygen``, ``encrypt`` and ``decrypt``.

    Examples
    --------
    >>> FHEModelClient.__name__
    'FHEModelClient'
    """

    def __init__(self, path, key_dir=None):
        artifact = read_artifact(path, "client")
        doc = artifact.plain()
        try:
            self.scheme = doc["scheme"]
            self.fingerprint = str(doc["fingerprint"])
            self.input_shape = tuple(int(d) for d in doc["input_shape"])
            self.output_shape = tuple(int(d) for d in doc["output_shape"])
            self._pre, self._post = doc["preprocess"], doc["postprocess"]
            self._quant, self._dequant = doc.get("quant"), doc.get("dequant")
            self._remedy = doc.get("clip_remedy", "")
            self._keys = (_TFHEKeys if self.scheme == "tfhe" else _CKKSKeys)(doc, artifact.members)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"client.zip: model.json is incomplete ({type(exc).__name__}: {exc})") from None
        self.key_dir = None if key_dir is None else Path(key_dir)
        self.timings: dict = {}
        self._generated = False

    @property
    def key_path(self) -> Path | None:
        """The key file in ``key_dir`` for this model (None without ``key_dir``).

        Examples
        --------
        >>> FHEModelClient.key_path.__doc__.split()[0]
        'The'
        """
        return None if self.key_dir is None else self.key_dir / f"{self.scheme}-{self.fingerprint[:24]}.keys"

    def generate_private_and_evaluation_keys(self, force: bool = False) -> None:
        """Generate keys, or load them from ``key_dir`` if this model's key file is there.

        Parameters
        ----------
        force : bool
            Generate new keys even if some exist (the old key file is replaced).

        Examples
        --------
        >>> callable(FHEModelClient.generate_private_and_evaluation_keys)
        True
        """
        if self._generated and not force:
            return
        path = self.key_path
        if force and path is not None and path.exists():
            path.unlink()
        start = time.perf_counter()
        self._keys.generate(path)
        self.timings["keygen"] = time.perf_counter() - start
        self._generated = True

    def get_serialized_evaluation_keys(self) -> bytes:
        """The evaluation keys, serialized (compressed where concrete-python can): safe to send to the server.

        Examples
        --------
        >>> callable(FHEModelClient.get_serialized_evaluation_keys)
        True
        """
        self.generate_private_and_evaluation_keys()
        parts, meta = self._keys.evaluation_parts()
        return envelope.pack(self.fingerprint, "keys", [parts], meta)

    def quantize_encrypt_serialize(self, X) -> bytes:
        """Validate, (standardise,) quantize and encrypt a batch ``X`` of shape (n, ...); one blob for all.

        Raises
        ------
        InputValidationError
            For a wrong shape, NaN/inf or a non-numeric dtype.

        Examples
        --------
        >>> callable(FHEModelClient.quantize_encrypt_serialize)
        True
        """
        arr = check_input(X, self.input_shape)
        if len(arr) == 0:
            raise InputValidationError("X has no samples; pass an array of shape (n, ...) with n >= 1")
        arr = preprocess(self._pre, arr)
        self.generate_private_and_evaluation_keys()
        start = time.perf_counter()
        values = quantize_input_codes(arr, self._quant, self._remedy) if self.scheme == "tfhe" else arr
        items, counts = self._keys.encrypt(values)
        self.timings["encrypt"] = time.perf_counter() - start
        return envelope.pack(self.fingerprint, "inputs", items, {"samples": counts})

    def deserialize_decrypt(self, data: bytes) -> np.ndarray:
        """Decrypt a server result: the circuit's raw output (integer codes for TFHE, floats for CKKS).

        Examples
        --------
        >>> callable(FHEModelClient.deserialize_decrypt)
        True
        """
        env = envelope.unpack(data, self.fingerprint, "outputs")
        self.generate_private_and_evaluation_keys()
        start = time.perf_counter()
        out = self._keys.decrypt(env)
        self.timings["decrypt"] = time.perf_counter() - start
        return out

    def deserialize_decrypt_dequantize(self, data: bytes) -> np.ndarray:
        """Decrypt and dequantize a server result into the model's outputs: a torch model's outputs,
        a classifier's probabilities (n, n_classes), a regressor's predictions.

        Examples
        --------
        >>> callable(FHEModelClient.deserialize_decrypt_dequantize)
        True
        """
        out = self.deserialize_decrypt(data)
        if self.scheme == "tfhe":
            out = evaluate("dequant", [out], self._dequant)
        return postprocess(self._post, out)

    def deserialize_decrypt_predict(self, data: bytes) -> np.ndarray:
        """Like :meth:`deserialize_decrypt_dequantize`, but a classifier's labels (argmax of the probabilities).

        Examples
        --------
        >>> callable(FHEModelClient.deserialize_decrypt_predict)
        True
        """
        return labels(self._post, self.deserialize_decrypt_dequantize(data))
