"""The client: keys, quantize + encrypt, decrypt + dequantize. It holds the secret key; the server never does.

Examples
--------
>>> import numpy as np, torch, qfhe, tempfile
>>> from qfhe.deploy import FHEModelDev, FHEModelClient, FHEModelServer
>>> X = np.random.RandomState(0).randn(50, 3)
>>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), X, n_bits=3)  # global_p_error 1e-5: decrypts as simulated
>>> d = tempfile.mkdtemp(); _ = FHEModelDev(d, qm).save()
>>> client = FHEModelClient(d, key_dir=tempfile.mkdtemp())
>>> enc_out = FHEModelServer(d).run(client.quantize_encrypt_serialize(X[:1]), client.get_serialized_evaluation_keys())
>>> bool(np.allclose(client.deserialize_decrypt_dequantize(enc_out), qm.forward(X[:1], fhe="simulate")))
True
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from qfhe.deploy import envelope
from qfhe.deploy.artifacts import read_artifact
from qfhe.deploy.keystore import private_directory, write_atomic
from qfhe.deploy.processing import check_processing, check_quantizers, postprocess, predict_labels, preprocess
from qfhe.errors import ArtifactError, CiphertextError, ConfigurationError, InputValidationError
from qfhe.ir.ops import evaluate
from qfhe.quant.quantizer import quantize_input_codes
from qfhe.validation import as_bool, as_int, check_input


class _TFHEKeys:
    """concrete-python's client: key generation and (de)cryption of single samples."""

    def __init__(self, doc: dict, members: dict, allow_insecure: bool):
        from qfhe.deploy.concrete_wire import check_client_specs, gates
        from qfhe.deploy.plain import load_json
        from qfhe.deploy.tfhe import load_specs

        if "client.specs.json" not in members:
            raise ArtifactError("client.zip has no client.specs.json")
        program = check_client_specs(load_json(members["client.specs.json"], "client.specs.json", 64 << 20))
        self.specs = load_specs(members["client.specs.json"])
        ins, outs = gates(program)
        if len(ins) != 1 or len(outs) != 1:
            raise ArtifactError("client.zip: the circuit must have one input and one output")
        self.out_gate = outs[0]
        self.client = None

    def generate(self, path: Path | None) -> None:
        from qfhe._concrete import fhe

        self.client = fhe.Client(self.specs)
        data = _read_private(path)
        if data is not None:
            try:
                self.client.keys.load_from_bytes(data)
                return
            except RuntimeError:
                raise ArtifactError(f"the key file {path} is unreadable; delete it to generate new keys") from None
        self.client.keygen()
        if path is not None:
            write_atomic(path, self.client.keys.serialize())

    def evaluation_parts(self) -> tuple[list, dict]:
        return [("evaluation_keys", self.client.evaluation_keys.serialize())], {}

    def encrypt(self, codes: np.ndarray) -> tuple[list, list]:
        return [[("x", self.client.encrypt(codes[i : i + 1]).serialize())] for i in range(len(codes))], [1] * len(codes)

    def decrypt(self, env: envelope.Envelope) -> np.ndarray:
        from qfhe._concrete import fhe
        from qfhe.deploy.concrete_wire import check_value

        outs = []
        for item in env.items:
            value = check_value(
                envelope.parts(item, {"y"}, "an encrypted result")["y"], self.out_gate, "an encrypted result"
            )
            try:
                outs.append(np.asarray(self.client.decrypt(fhe.Value.deserialize(value))))
            except (RuntimeError, ValueError):
                raise CiphertextError("an encrypted result does not decrypt (malformed)") from None
        return np.concatenate(outs).astype(np.int64)


class _CKKSKeys:
    """SEAL: key generation, packing + encryption of sample groups, decryption + unpacking."""

    def __init__(self, doc: dict, members: dict, allow_insecure: bool):
        from dataclasses import replace

        from qfhe.ckks.params import CKKSParameters
        from qfhe.deploy.dev import graph_from_plain

        params = CKKSParameters(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in doc["params"].items()})
        # Whoever serves the artifact does not choose the client's security: the caller does.
        self.params = replace(params, allow_insecure=bool(allow_insecure))
        self.graph = graph_from_plain(doc["graph"], "client.zip: model.json")
        if {n.op for n in self.graph.nodes} - {"encrypt", "decrypt"}:
            raise ArtifactError("client.zip: the client graph may only hold encrypt and decrypt nodes")
        self.steps = [int(s) for s in doc["steps"]]
        self.per_ciphertext = as_int("samples_per_ciphertext", doc["samples_per_ciphertext"], 1, 1 << 16)
        self.keys = None

    def generate(self, path: Path | None) -> None:
        from qfhe.ckks.backends.seal import SEALKeys, load_bytes, seal_context, to_bytes

        data = _read_private(path)
        if data is not None:
            env = envelope.unpack(data, "ckks-keys", "secret")
            parts = dict(env.items[0])
            ctx, real = seal_context(self.params)
            gk = load_bytes("galois_keys", parts["galois_keys"], ctx) if parts["galois_keys"] else None
            self.keys = SEALKeys(
                real,
                ctx,
                load_bytes("secret_key", parts["secret_key"], ctx),
                load_bytes("public_key", parts["public_key"], ctx),
                load_bytes("relin_keys", parts["relin_keys"], ctx),
                gk,
                list(env.meta["steps"]),
            )
            return
        self.keys = SEALKeys.generate(self.params, self.steps)
        if path is not None:
            k = self.keys
            parts = [
                ("secret_key", to_bytes(k.secret_key)),
                ("public_key", to_bytes(k.public_key)),
                ("relin_keys", to_bytes(k.relin_keys)),
                ("galois_keys", to_bytes(k.galois_keys) if k.galois_keys is not None else b""),
            ]
            write_atomic(path, envelope.pack("ckks-keys", "secret", [parts], {"steps": k.steps}))

    def evaluation_parts(self) -> tuple[list, dict]:
        ek = self.keys.evaluation_keys()
        return [(k, ek[k]) for k in ("public_key", "relin_keys", "galois_keys")], {"steps": ek["steps"]}

    def encrypt(self, X: np.ndarray) -> tuple[list, list]:
        from qfhe.ckks.backends.seal import to_bytes

        X = X.reshape(len(X), -1)
        b, items, counts = self.per_ciphertext, [], []
        for i in range(0, len(X), b):
            cts = self.keys.encrypt(self.graph, X[i : i + b])
            items.append([(name, to_bytes(ct)) for name, ct in cts.items()])
            counts.append(len(X[i : i + b]))
        return items, counts

    def decrypt(self, env: envelope.Envelope) -> np.ndarray:
        from qfhe.ckks.backends.seal import load_bytes

        outs = []
        for item, n in zip(env.items, env.samples):
            try:
                cts = {name: load_bytes("ciphertext", data, self.keys.context) for name, data in item}
            except InputValidationError as exc:
                raise CiphertextError(f"an encrypted result is malformed: {exc}") from None
            outs.append(self.keys.decrypt(self.graph, cts, int(n)))
        return np.concatenate(outs)


def _read_private(path: Path | None) -> bytes | None:
    """The secret key file's bytes, or None if there is none. Refuses a link, another owner's file,
    or a file others can read (whoever planted it may know the key)."""
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError:  # ELOOP: a symbolic link
        raise ArtifactError(
            f"the key file {path} is a link or unreadable; delete it (a planted key file would let "
            "whoever wrote it decrypt your data)"
        ) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()) or st.st_mode & 0o077:
            raise ArtifactError(
                f"the key file {path} is not a private file of yours (mode {oct(st.st_mode & 0o777)}); "
                "delete it to generate new keys"
            )
        return f.read()


_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
#: Requests whose result count the client remembers (the most recent ones).
_REMEMBERED_REQUESTS = 4096


class FHEModelClient:
    """The client of a deployed model.

    Parameters
    ----------
    path : str or Path
        The artifact directory (with ``client.zip``) or the ``client.zip`` itself. Verified on
        load (SHA-256 of every member, versions).
    key_dir : str or Path, optional
        Where the secret and evaluation keys are kept: generated there on first use and reused
        afterwards (one file per model). Without it, keys live in memory only. The directory is
        created with mode 0700 (an existing one must be yours and not writable by others); the key
        file is written atomically with mode 0600, and a linked or shared key file is refused.
    verify_key : optional
        An Ed25519 public key: ``client.zip`` must be signed by it (see
        :func:`qfhe.deploy.generate_signing_key`).
    expected_sha256 : str, optional
        The SHA-256 of ``client.zip`` as published by its developer (:func:`qfhe.deploy.artifact_sha256`).
    allow_insecure : bool
        CKKS: accept parameters below 128-bit security. The caller decides this; a flag in the
        artifact does not.

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

    def __init__(
        self, path, key_dir=None, verify_key=None, expected_sha256: str | None = None, allow_insecure: bool = False
    ):
        artifact = read_artifact(path, "client", verify_key, expected_sha256)
        artifact.only({"model.json", "client.specs.json"}, ("arrays/",))
        doc = artifact.plain()
        try:
            self.scheme = doc["scheme"]
            if self.scheme not in ("tfhe", "ckks") or self.scheme != artifact.manifest["info"]["scheme"]:
                raise ArtifactError("client.zip: model.json has no valid scheme")
            self.fingerprint = doc["fingerprint"]
            if not isinstance(self.fingerprint, str) or not _FINGERPRINT.match(self.fingerprint):
                raise ArtifactError("client.zip: the model fingerprint is not 64 hex digits")
            self.input_shape = tuple(as_int("input_shape", d, 1, 1 << 24) for d in doc["input_shape"])
            self.output_shape = tuple(as_int("output_shape", d, 1, 1 << 24) for d in doc["output_shape"])
            self._pre, self._post = check_processing(doc["preprocess"], doc["postprocess"])
            self._quant, self._dequant = doc.get("quant"), doc.get("dequant")
            if self.scheme == "tfhe":
                check_quantizers(self._quant, self._dequant)
            self._remedy = str(doc.get("clip_remedy", ""))[:200]
            self._keys = (_TFHEKeys if self.scheme == "tfhe" else _CKKSKeys)(
                doc, artifact.members, as_bool("allow_insecure", allow_insecure)
            )
        except ConfigurationError as exc:
            raise ArtifactError(f"client.zip: model.json is invalid ({exc})") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            if isinstance(exc, ArtifactError):
                raise
            raise ArtifactError(f"client.zip: malformed content ({type(exc).__name__})") from None
        if self.scheme == "ckks":  # not 128-bit secure: refused unless this caller allowed it
            self._keys.params.check_security(real_encryption=True)
        self.key_dir = None if key_dir is None else Path(key_dir)
        self.timings: dict = {}
        self._generated = False
        self._lock = threading.RLock()  # keys are generated once, and concrete's client is not shared unguarded
        self._requests: OrderedDict[str, list] = OrderedDict()

    @property
    def key_path(self) -> Path | None:
        """The key file in ``key_dir`` for this model (None without ``key_dir``).

        Examples
        --------
        >>> FHEModelClient.key_path.__doc__.split()[0]
        'The'
        """
        if self.key_dir is None:
            return None
        directory = private_directory(self.key_dir, "key_dir").resolve()
        name = f"{self.scheme}-{self.fingerprint[:24]}.keys"
        if not _FINGERPRINT.match(self.fingerprint) or Path(name).name != name:  # never resolved: a planted link
            raise ArtifactError(
                "client.zip: the model fingerprint would place the key file outside key_dir"
            )  # stays one
        return directory / name

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
        with self._lock:
            if self._generated and not force:
                return
            path = self.key_path
            if force and path is not None:
                path.unlink(missing_ok=True)
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
        with self._lock:
            parts, _ = self._keys.evaluation_parts()
        return envelope.pack(self.fingerprint, "keys", [parts])

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
        values = (
            quantize_input_codes(arr, self._quant, self._remedy or None, self._pre) if self.scheme == "tfhe" else arr
        )
        with self._lock:
            items, counts = self._keys.encrypt(values)
            request = secrets.token_hex(16)
            self._requests[request] = counts
            while len(self._requests) > _REMEMBERED_REQUESTS:
                self._requests.popitem(last=False)
        self.timings["encrypt"] = time.perf_counter() - start
        return envelope.pack(self.fingerprint, "inputs", items, {"samples": counts, "request": request})

    def deserialize_decrypt(self, data: bytes) -> np.ndarray:
        """Decrypt a server result: the circuit's raw output (integer codes for TFHE, floats for CKKS).

        The result must answer a request of this client: as many items and samples as it sent
        (a result for a request it does not remember must at least be self-consistent).

        Raises
        ------
        CiphertextError
            For a result of another model, a malformed or truncated one, or one with another number
            of results than the request had samples.

        Examples
        --------
        >>> callable(FHEModelClient.deserialize_decrypt)
        True
        """
        env = envelope.unpack(data, self.fingerprint, "outputs")
        with self._lock:
            sent = self._requests.get(env.request) if env.request else None
        if sent is not None and (len(env.items) != len(sent) or env.samples != sent):
            raise CiphertextError(
                f"the server returned {len(env.items)} results for a request of {len(sent)} "
                f"encrypted items ({sum(sent)} samples): a faulty or hostile server"
            )
        if "samples" in env.meta and self.scheme == "tfhe" and any(c != 1 for c in env.samples):
            raise CiphertextError("encrypted outputs: a TFHE result item holds exactly one sample")
        self.generate_private_and_evaluation_keys()
        start = time.perf_counter()
        with self._lock:
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
        return postprocess(self._post, self._dequantized(data))

    def _dequantized(self, data: bytes) -> np.ndarray:
        out = self.deserialize_decrypt(data)
        return evaluate("dequant", [out], self._dequant) if self.scheme == "tfhe" else out

    def deserialize_decrypt_predict(self, data: bytes) -> np.ndarray:
        """Like :meth:`deserialize_decrypt_dequantize`, but a classifier's labels (argmax of the probabilities).

        Examples
        --------
        >>> callable(FHEModelClient.deserialize_decrypt_predict)
        True
        """
        return predict_labels(self._post, self._dequantized(data))
