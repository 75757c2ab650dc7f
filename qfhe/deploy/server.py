"""The server: the compiled circuit and evaluation keys; it never holds a secret key or sees plaintext.

Loading happens in two stages:

* :func:`load_server_spec` reads and checks the artifact as data only (manifest, signature,
  fingerprint, the circuit graph against qfhe's vocabulary, the key set it implies). It runs no
  native code, which is why ``qfhe serve``'s main process can do it.
* :class:`FHEModelServer` then builds the circuit with qfhe's own lowering (TFHE) or SEAL's
  evaluator (CKKS) and runs requests in the calling process. ``qfhe serve`` and ``run_batch`` run
  it inside worker processes (:mod:`qfhe.deploy.workers`), so a crash in native code costs one
  request, not the server.

Examples
--------
>>> FHEModelServer.__name__
'FHEModelServer'
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from qfhe.deploy import envelope
from qfhe.deploy.artifacts import Artifact, ArtifactLimits, read_artifact
from qfhe.deploy.dev import fingerprint, graph_from_plain
from qfhe.deploy.keystore import KeyCache, KeyStore
from qfhe.errors import ArtifactError, CiphertextError, ConfigurationError, InputValidationError, QfheError
from qfhe.validation import as_int

#: Items of a request's envelope, as framing overhead, when sizes are estimated.
_ENVELOPE_SLACK = 64 << 10


@dataclass
class ServerSpec:
    """A server artifact, read and checked as data (no circuit built, no native code run).

    Attributes
    ----------
    scheme, fingerprint : str
    input_shape, output_shape : tuple
    statistics : dict
        Circuit statistics recorded at save time (TFHE).
    artifact : Artifact
        The verified artifact (its bytes are what worker processes load).
    key_bytes : int
        Exact (TFHE) or largest (CKKS) size of a valid evaluation-key upload, envelope included.
    loaded_key_bytes : int
        Memory one client's evaluation keys take once loaded.
    sample_bytes : int
        Size of one encrypted input item, envelope excluded (an upper bound for CKKS).
    samples_per_item : int
        Samples one item carries (CKKS packs several per ciphertext).

    Examples
    --------
    >>> ServerSpec.__name__
    'ServerSpec'
    """

    scheme: str
    fingerprint: str
    input_shape: tuple
    output_shape: tuple
    artifact: Artifact
    statistics: dict = field(default_factory=dict)
    key_bytes: int = 0
    loaded_key_bytes: int = 0
    sample_bytes: int = 0
    samples_per_item: int = 1
    details: dict = field(default_factory=dict, repr=False)


def _shape(value, what: str) -> tuple:
    if (
        not isinstance(value, list)
        or not 0 < len(value) <= 8
        or not all(type(d) is int and 0 < d <= 1 << 24 for d in value)
    ):
        raise ArtifactError(f"server.zip: model.json has an invalid {what}")
    return tuple(value)


def _tfhe_spec(artifact: Artifact, doc: dict) -> dict:
    from qfhe.deploy.circuit_doc import circuit_from_plain
    from qfhe.deploy.concrete_wire import check_client_specs, expected_keys, gates

    artifact.only({"model.json", "circuit.json", "client.specs.json"}, ("circuit/",))
    specs = check_client_specs(artifact.json("client.specs.json"))
    circuit = artifact.plain("circuit.json", "circuit/")
    circuit_from_plain(circuit)  # the vocabulary check, before any worker lowers it
    ins, outs = gates(specs)
    if len(ins) != 1 or len(outs) != 1:
        raise ArtifactError("server.zip: the circuit must have one input and one output")
    keys = expected_keys(specs.get("keyset", {}))
    raw = ins[0].get("rawInfo", {}) if isinstance(ins[0], dict) else {}
    try:
        dims = [int(d) for d in raw["shape"]["dimensions"]]
        sample = 8 * math.prod(dims) + 1024
    except (KeyError, TypeError, ValueError):
        raise ArtifactError("server.zip: client.specs.json has no input shape") from None
    return {
        "specs": specs,
        "circuit": circuit,
        "expected_keys": keys,
        "gates": (ins[0], outs[0]),
        "key_bytes": keys["payload_bytes"] + _ENVELOPE_SLACK,
        "loaded_key_bytes": keys["loaded_bytes"],
        "sample_bytes": sample,
        "samples_per_item": 1,
    }


def _ckks_spec(artifact: Artifact, doc: dict) -> dict:
    from qfhe.ckks.backends.seal_keys import rotation_steps
    from qfhe.ckks.hegraph import HE_OPS, annotate
    from qfhe.ckks.params import CKKSParameters

    artifact.only({"model.json", "graph.json", "params.json"}, ("graph/",))
    raw = artifact.json("params.json")
    try:
        params = CKKSParameters(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items()})
    except (TypeError, ValueError, AttributeError):
        raise ArtifactError("server.zip: params.json does not hold valid CKKS parameters") from None
    graph = graph_from_plain(artifact.plain("graph.json", "graph/"), "server.zip: graph.json")
    bad = [n for n in graph.nodes if n.op not in HE_OPS or n.op == "bootstrap"]
    if bad:
        raise ArtifactError(
            f"server.zip: graph node '{bad[0].name[:80]}' has op '{bad[0].op[:40]}', which SEAL cannot run"
        )
    try:
        annotate(graph, params)
        steps = rotation_steps(graph)
    except (QfheError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError):
        raise ArtifactError("server.zip: the HE graph breaks the level/scale rules of its parameters") from None
    n, k = params.poly_modulus_degree, len(params.coeff_modulus)
    switch_key = (k - 1) * 2 * n * k * 8  # one key-switching key: (k-1) size-2 ciphertexts over k primes
    per_item = doc.get("samples_per_ciphertext", 1)
    if type(per_item) is not int or per_item < 1:
        raise ArtifactError("server.zip: model.json has an invalid samples_per_ciphertext")
    n_inputs = sum(1 for node in graph.nodes if node.op == "encrypt")
    return {
        "params": params,
        "graph": graph,
        "steps": steps,
        "key_bytes": switch_key * (len(steps) + 1) + 2 * n * k * 8 + _ENVELOPE_SLACK,
        "loaded_key_bytes": switch_key * (len(steps) + 1) + 2 * n * k * 8,
        "sample_bytes": n_inputs * 2 * n * k * 8 + 1024,
        "samples_per_item": per_item,
    }


def load_server_spec(
    source, verify_key=None, expected_sha256: str | None = None, limits: ArtifactLimits | None = None
) -> ServerSpec:
    """Read and check a server artifact as data.

    Parameters
    ----------
    source : str, Path or bytes
        The artifact directory, ``server.zip``, or its bytes.
    verify_key : optional
        Require a valid Ed25519 signature by this public key.
    expected_sha256 : str, optional
        Require this SHA-256 of ``server.zip``.
    limits : ArtifactLimits, optional

    Raises
    ------
    ArtifactError
        For anything that is not a well-formed, untampered qfhe server artifact of this version.

    Examples
    --------
    >>> import numpy as np, torch, qfhe, tempfile
    >>> from qfhe.deploy import FHEModelDev
    >>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(50, 3), n_bits=3, p_error=0.01)
    >>> d = tempfile.mkdtemp(); _ = FHEModelDev(d, qm).save()
    >>> spec = load_server_spec(d)
    >>> spec.scheme, spec.input_shape, spec.key_bytes > spec.sample_bytes
    ('tfhe', (3,), True)
    """
    artifact = read_artifact(source, "server", verify_key, expected_sha256, limits)
    try:
        return _spec(artifact)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        # A checked field of another type than its check expects: still a malformed artifact.
        raise ArtifactError(f"server.zip: malformed content ({type(exc).__name__})") from None


def _spec(artifact: Artifact) -> ServerSpec:
    doc = artifact.plain()
    if (
        not isinstance(doc, dict)
        or doc.get("scheme") not in ("tfhe", "ckks")
        or doc["scheme"] != artifact.manifest["info"]["scheme"]
    ):
        raise ArtifactError("server.zip: model.json has no valid scheme")
    fp = doc.get("fingerprint")
    if fp != fingerprint(artifact.members):
        raise ArtifactError(
            "server.zip: the fingerprint in model.json does not match the circuit it holds (modified "
            "after saving); save the model again"
        )
    details = (_tfhe_spec if doc["scheme"] == "tfhe" else _ckks_spec)(artifact, doc)
    stats = doc.get("statistics", {})
    return ServerSpec(
        doc["scheme"],
        fp,
        _shape(doc.get("input_shape"), "input_shape"),
        _shape(doc.get("output_shape"), "output_shape"),
        artifact,
        stats if isinstance(stats, dict) else {},
        details["key_bytes"],
        details["loaded_key_bytes"],
        details["sample_bytes"],
        details["samples_per_item"],
        details,
    )


class _TFHERunner:
    """concrete-python: the circuit rebuilt by qfhe's lowering from the artifact's IR."""

    def __init__(self, spec: ServerSpec):
        from qfhe.deploy.tfhe import build_circuit

        circuit = build_circuit(spec.details["circuit"])
        if circuit.client.specs.serialize() != spec.artifact.members["client.specs.json"]:
            raise ArtifactError(
                "server.zip: the rebuilt circuit's parameters differ from its client specs (another "
                "concrete-python build, or a modified artifact); save the model again here"
            )
        self.server = circuit.server
        self.expected_keys = spec.details["expected_keys"]
        self.gate = spec.details["gates"][0]

    def load_keys(self, env: envelope.Envelope):
        from qfhe.deploy.tfhe import load_evaluation_keys

        if len(env.items) != 1:
            raise CiphertextError("these keys are not TFHE evaluation keys from FHEModelClient")
        return load_evaluation_keys(
            envelope.parts(env.items[0], {"evaluation_keys"}, "the evaluation keys")["evaluation_keys"],
            self.expected_keys,
        )

    def run_item(self, item: list, keys) -> list:
        from qfhe.deploy.tfhe import run_sample

        x = envelope.parts(item, {"x"}, "an encrypted sample")["x"]
        return [("y", run_sample(self.server, x, self.gate, keys))]


class _CKKSRunner:
    """SEAL: the HE op graph evaluated op for op (:class:`qfhe.ckks.backends.seal.SEALEvaluator`)."""

    def __init__(self, spec: ServerSpec):
        from qfhe.ckks.backends.seal import check_backend_support, seal_context

        self.params, self.graph = spec.details["params"], spec.details["graph"]
        check_backend_support(self.graph)
        try:
            seal_context(self.params)
        except ConfigurationError as exc:
            raise ArtifactError(f"server.zip: {exc}") from None
        self.inputs = [n.name for n in self.graph.nodes if n.op == "encrypt"]

    def load_keys(self, env: envelope.Envelope):
        from qfhe.ckks.backends.seal import SEALEvaluator

        if len(env.items) != 1:
            raise CiphertextError("these keys are not CKKS evaluation keys from FHEModelClient")
        keys = envelope.parts(env.items[0], {"public_key", "relin_keys", "galois_keys"}, "the CKKS evaluation keys")
        try:
            return SEALEvaluator(self.graph, self.params, keys)
        except (InputValidationError, ConfigurationError, ValueError, RuntimeError) as exc:
            detail = str(exc) if isinstance(exc, QfheError) else "they do not load"
            raise CiphertextError(f"invalid CKKS evaluation keys: {detail.split(' (')[0]}") from None

    def run_item(self, item: list, evaluator) -> list:
        from qfhe.ckks.backends.seal import load_bytes, to_bytes

        parts = envelope.parts(item, set(self.inputs), "an encrypted CKKS input")
        try:
            cts = {name: load_bytes("ciphertext", data, evaluator.context) for name, data in parts.items()}
        except InputValidationError:
            raise CiphertextError("an encrypted input is malformed or made with other parameters") from None
        try:
            out = evaluator.evaluate(cts)
        except (QfheError, ValueError, RuntimeError, TypeError):
            raise CiphertextError("the HE graph refused an encrypted input (wrong level, scale or size)") from None
        return [(name, to_bytes(ct)) for name, ct in out.items()]


class FHEModelServer:
    """Run a deployed model on encrypted inputs, in this process.

    Parameters
    ----------
    path : str, Path or bytes
        The artifact directory (with ``server.zip``), the ``server.zip`` itself, or its bytes.
        Checked on load (:func:`load_server_spec`); a TFHE circuit is rebuilt by qfhe's lowering and
        must reproduce the client specs recorded at save time.
    key_dir : str or Path, optional
        Where uploaded evaluation keys are stored (created 0700; keys from an earlier run are kept
        and counted). Without it, a temporary directory removed by :meth:`close` or at exit.
    max_key_memory_bytes : int
        Loaded keys kept in memory, counted at their loaded size (LRU).
    max_key_disk_bytes : int
        Stored keys kept on disk (LRU, across restarts).
    verify_key, expected_sha256 : optional
        Require a signature by this Ed25519 public key, or this SHA-256 of ``server.zip``.

    Notes
    -----
    Uploaded keys and ciphertexts are checked against the circuit before concrete or SEAL reads
    them, but native code still runs in this process: a network service should use ``qfhe serve``,
    which runs this class in worker processes it restarts.

    Examples
    --------
    >>> import numpy as np, torch, qfhe, tempfile
    >>> from qfhe.deploy import FHEModelDev
    >>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(50, 3), n_bits=3, p_error=0.01)
    >>> d = tempfile.mkdtemp(); _ = FHEModelDev(d, qm).save()
    >>> FHEModelServer(d).info()["scheme"]
    'tfhe'
    """

    def __init__(
        self,
        path,
        key_dir=None,
        max_key_memory_bytes: int = 2 << 30,
        max_key_disk_bytes: int = 8 << 30,
        verify_key=None,
        expected_sha256: str | None = None,
    ):
        self.path = path
        self.spec = path if isinstance(path, ServerSpec) else load_server_spec(path, verify_key, expected_sha256)
        self.scheme, self.fingerprint = self.spec.scheme, self.spec.fingerprint
        self.input_shape, self.output_shape = self.spec.input_shape, self.spec.output_shape
        self.manifest = self.spec.artifact.manifest
        self.artifact_bytes = self.spec.artifact.data  # what worker processes load the same server from
        self._runner = (_TFHERunner if self.scheme == "tfhe" else _CKKSRunner)(self.spec)
        self._key_dir = None if key_dir is None else f"{key_dir}/{self.fingerprint[:16]}"
        self._max_key_disk_bytes = as_int("max_key_disk_bytes", max_key_disk_bytes, 1, None, "a positive int")
        self._store: KeyStore | None = None
        self.cache = KeyCache(max_key_memory_bytes)
        self.last_run_seconds = 0.0

    @property
    def keys(self) -> KeyStore:
        """The key store (created on first use, so a server that only runs with given keys makes no directory).

        Examples
        --------
        >>> callable(FHEModelServer.add_keys)
        True
        """
        if self._store is None:
            self._store = KeyStore(self._key_dir, self._max_key_disk_bytes)
        return self._store

    def close(self) -> None:
        """Remove a temporary key directory (a ``key_dir`` is kept).

        Examples
        --------
        >>> callable(FHEModelServer.close)
        True
        """
        if self._store is not None:
            self._store.close()

    def load_keys(self, data: bytes):
        """Check and load serialized evaluation keys (bytes from the client), without storing them.

        Raises
        ------
        CiphertextError
            For keys of another model or another circuit, malformed, truncated or forged keys,
            or (CKKS) keys missing a rotation the graph needs.

        Examples
        --------
        >>> callable(FHEModelServer.load_keys)
        True
        """
        return self._runner.load_keys(envelope.unpack(data, self.fingerprint, "keys", max_items=1))

    def info(self) -> dict:
        """What a client may know: scheme, fingerprint, shapes, versions, circuit statistics.

        Examples
        --------
        >>> callable(FHEModelServer.info)
        True
        """
        return server_info(self.spec)

    def add_keys(self, evaluation_keys: bytes) -> str:
        """Check, store and load a client's serialized evaluation keys; returns the ``key_id`` to run with.

        Raises
        ------
        CiphertextError
            See :meth:`load_keys`; also for keys over the storage limit.

        Examples
        --------
        >>> callable(FHEModelServer.add_keys)
        True
        """
        loaded = self.load_keys(bytes(evaluation_keys))
        key_id = self.keys.put(bytes(evaluation_keys))
        self.cache.put(key_id, loaded, self.spec.loaded_key_bytes)
        return key_id

    def keys_for(self, evaluation_keys):
        """Loaded keys from a ``key_id`` (cache, else the store) or from serialized keys.

        Examples
        --------
        >>> callable(FHEModelServer.keys_for)
        True
        """
        if isinstance(evaluation_keys, str):
            key_id = self.keys.check(evaluation_keys)
            loaded = self.cache.get(key_id)
            if loaded is None:
                loaded = self.load_keys(self.keys.read(key_id))
                self.cache.put(key_id, loaded, self.spec.loaded_key_bytes)
            return loaded
        if isinstance(evaluation_keys, (bytes, bytearray, memoryview)):
            return self.load_keys(bytes(evaluation_keys))
        raise InputValidationError(
            f"evaluation_keys must be the serialized keys (bytes) or a key_id (str) from "
            f"add_keys, got {type(evaluation_keys).__name__}"
        )

    def run(self, encrypted: bytes, evaluation_keys, max_items: int = envelope.MAX_ITEMS) -> bytes:
        """Run the model on serialized encrypted inputs; return encrypted outputs.

        Parameters
        ----------
        encrypted : bytes
            From :meth:`FHEModelClient.quantize_encrypt_serialize`.
        evaluation_keys : bytes or str
            The client's serialized evaluation keys, or the ``key_id`` :meth:`add_keys` returned
            (cheaper: loaded once).
        max_items : int
            Most items (samples for TFHE) accepted in one call.

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
        return self.run_loaded(encrypted, self.keys_for(evaluation_keys), max_items)

    def run_loaded(self, encrypted: bytes, keys, max_items: int = envelope.MAX_ITEMS) -> bytes:
        """:meth:`run` with loaded keys (workers load them once).

        Examples
        --------
        >>> callable(FHEModelServer.run_loaded)
        True
        """
        env = envelope.unpack(encrypted, self.fingerprint, "inputs", max_items)
        start = time.perf_counter()
        items = [self._runner.run_item(item, keys) for item in env.items]
        self.last_run_seconds = time.perf_counter() - start
        meta = {"samples": env.samples} if "samples" in env.meta else {}
        if env.request:
            meta["request"] = env.request
        return envelope.pack(self.fingerprint, "outputs", items, meta)

    def run_batch(
        self, encrypted: list, evaluation_keys, executor=None, max_workers: int | None = None, retries: int = 1
    ):
        """Run many encrypted requests in parallel: over local processes, or a Dask cluster.

        See :func:`qfhe.deploy.batch.run_batch`.

        Examples
        --------
        >>> callable(FHEModelServer.run_batch)
        True
        """
        from qfhe.deploy.batch import run_batch

        return run_batch(self, encrypted, evaluation_keys, executor=executor, max_workers=max_workers, retries=retries)


def server_info(spec: ServerSpec) -> dict:
    """What a client may know about a deployed model.

    Examples
    --------
    >>> callable(server_info)
    True
    """
    return {
        "scheme": spec.scheme,
        "fingerprint": spec.fingerprint,
        "input_shape": list(spec.input_shape),
        "output_shape": list(spec.output_shape),
        "versions": spec.artifact.manifest.get("versions", {}),
        "statistics": spec.statistics,
        "samples_per_ciphertext": spec.samples_per_item,
        "signed": bool(spec.artifact.signed),
        "artifact_sha256": spec.artifact.sha256,
    }


__all__ = ["FHEModelServer", "ServerSpec", "load_server_spec", "server_info"]
