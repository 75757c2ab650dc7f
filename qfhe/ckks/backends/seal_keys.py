"""SEAL keys, context and serialization: the client side of CKKS on real encryption.

:class:`SEALKeys` holds the secret key, encrypts inputs and decrypts outputs, and hands out the
evaluation keys (public key, relinearization keys, Galois keys for exactly the rotation steps a
graph uses) as bytes. SEAL objects are serialized with SEAL's own ``save``/``load``
(:func:`to_bytes`, :func:`load_bytes`); the binding only writes files, so a temporary file carries them.

Examples
--------
>>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[1])
>>> keys.steps, keys.params.is_secure
([1], True)
"""

from __future__ import annotations

import math  # noqa: F401  (doctests)
import os
import tempfile
from dataclasses import dataclass, field, replace

import numpy as np

from qfhe.ckks.backends.fake import FakeBackend
from qfhe.ckks.params import CKKSParameters
from qfhe.errors import ConfigurationError, InputValidationError
from qfhe.ir.graph import Graph


def _seal():
    try:
        import tenseal.sealapi as sealapi
    except ImportError as exc:  # pragma: no cover - tenseal is a declared dependency of the ckks extra
        raise ConfigurationError("real CKKS encryption needs tenseal (pip install 'qfhe[ckks]')") from exc
    return sealapi


def to_bytes(obj) -> bytes:
    """Serialize a SEAL object (parameters, keys, ciphertext) with its own ``save``.

    Examples
    --------
    >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[])
    >>> to_bytes(keys.relin_keys)[:2]
    b'^\\xa1'
    """
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "obj")
        obj.save(path)
        with open(path, "rb") as f:
            return f.read()


def serialized_size(obj) -> int:
    """Bytes ``to_bytes(obj)`` would return, without holding them in memory (Galois keys reach GBs).

    Examples
    --------
    >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[])
    >>> serialized_size(keys.relin_keys) == len(to_bytes(keys.relin_keys))
    True
    """
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "obj")
        obj.save(path)
        return os.path.getsize(path)


def load_bytes(kind: str, data: bytes, context=None):
    """Load a SEAL object of ``kind`` (``"parameters"``, ``"public_key"``, ``"relin_keys"``,
    ``"galois_keys"``, ``"ciphertext"``, ``"secret_key"``) from bytes written by :func:`to_bytes`.

    Raises
    ------
    InputValidationError
        When the bytes are not a valid SEAL object of that kind for ``context``.

    Examples
    --------
    >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[])
    >>> type(load_bytes("relin_keys", to_bytes(keys.relin_keys), keys.context)).__name__
    'RelinKeys'
    """
    s = _seal()
    classes = {
        "parameters": s.EncryptionParameters,
        "public_key": s.PublicKey,
        "relin_keys": s.RelinKeys,
        "galois_keys": s.GaloisKeys,
        "ciphertext": s.Ciphertext,
        "secret_key": s.SecretKey,
    }
    if kind not in classes:
        raise ConfigurationError(f"kind must be one of {tuple(classes)}, got {kind!r}")
    obj = classes[kind](s.SCHEME_TYPE.CKKS) if kind == "parameters" else classes[kind]()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "obj")
        with open(path, "wb") as f:
            f.write(bytes(data))
        try:
            obj.load(path) if kind == "parameters" else obj.load(context, path)
        except (ValueError, RuntimeError, TypeError, MemoryError):
            # SEAL's own message is not passed on: it may reach a remote client
            raise InputValidationError(
                f"these bytes are not a valid SEAL {kind.replace('_', ' ')} for this "
                "context; send what to_bytes wrote, with the same parameters"
            ) from None
    return obj


def seal_context(params: CKKSParameters):
    """The SEAL context of ``params`` and the parameters carrying SEAL's real primes.

    128-bit security is enforced unless ``params.allow_insecure``.

    Examples
    --------
    >>> ctx, real = seal_context(CKKSParameters(8192, [60, 40, 60], 2**40))
    >>> real.prime_values[1] != 2**40, abs(math.log2(real.prime(1)) - 40) < 1e-3
    (True, True)
    """
    s = _seal()
    params.check_security(real_encryption=True)
    parms = s.EncryptionParameters(s.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(params.poly_modulus_degree)
    try:
        parms.set_coeff_modulus(s.CoeffModulus.Create(params.poly_modulus_degree, list(params.coeff_modulus)))
    except (ValueError, RuntimeError) as exc:
        raise ConfigurationError(
            f"SEAL cannot build coeff_modulus {list(params.coeff_modulus)} at N = "
            f"{params.poly_modulus_degree} ({exc}); use fewer primes of one size or other bit "
            "sizes (SEAL needs primes = 1 mod 2N, at most 60 bits)"
        ) from None
    level = s.SEC_LEVEL_TYPE.TC128 if params.is_secure else s.SEC_LEVEL_TYPE.NONE
    ctx = s.SEALContext(parms, True, level)
    if not ctx.parameters_set():
        raise ConfigurationError(
            f"SEAL refused the CKKS parameters {params.describe()}: {ctx.parameters_error_message()}"
        )
    return ctx, replace(params, prime_values=tuple(m.value() for m in parms.coeff_modulus()))


def rotation_steps(graph: Graph) -> list[int]:
    """The slot rotation steps the graph's ``rotate`` nodes use (k times the packing stride).

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "encrypt", [], {"length": 4, "stride": 2, "strategy": "column_major"}),
    ...            Node("r", "rotate", ["x"], {"k": 1}), Node("y", "decrypt", ["r"], {"length": 4})], ["y"])
    >>> rotation_steps(g)
    [2]
    """
    stride = FakeBackend._layout(graph)["stride"]
    return sorted({int(n.attrs["k"]) * stride for n in graph.nodes if n.op == "rotate"})


def galois_elements(steps, n: int) -> list[int]:
    """SEAL's Galois element of each left-rotation step: 3^step mod 2N (right rotations wrap).

    Passed as elements because the binding would read a list of non-negative steps as elements.

    Examples
    --------
    >>> galois_elements([1, 2, -1], 8192)
    [3, 9, 10923]
    """
    half = n // 2
    out = []
    for k in steps:
        if not -half < int(k) < half or int(k) == 0:
            raise ConfigurationError(f"rotation step {k} is outside (-{half}, {half}) or zero")
        out.append(pow(3, int(k) % half, 2 * n))
    return out


@dataclass
class SEALKeys:
    """The client's key set: SEAL context, secret key, and the evaluation keys it hands out.

    Create with :meth:`generate`. ``evaluation_keys()`` is what a server needs (public key,
    relinearization keys, Galois keys for ``steps``); the secret key stays here.

    Examples
    --------
    >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[1, 4])
    >>> keys.steps, sorted(keys.sizes())
    ([1, 4], ['galois_keys', 'public_key', 'relin_keys'])
    """

    params: CKKSParameters
    context: object
    secret_key: object
    public_key: object
    relin_keys: object
    galois_keys: object
    steps: list = field(default_factory=list)

    @classmethod
    def generate(cls, params: CKKSParameters, steps) -> "SEALKeys":
        """Generate keys for ``params``, with Galois keys only for the rotation ``steps``.

        Examples
        --------
        >>> SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[]).galois_keys is None
        True
        """
        s = _seal()
        ctx, real = seal_context(params)
        kg = s.KeyGenerator(ctx)
        pk, rk = s.PublicKey(), s.RelinKeys()
        kg.create_public_key(pk)
        kg.create_relin_keys(rk)
        steps = sorted({int(k) for k in steps})
        gk = None
        if steps:
            gk = s.GaloisKeys()
            kg.create_galois_keys(galois_elements(steps, params.poly_modulus_degree), gk)
        return cls(real, ctx, kg.secret_key(), pk, rk, gk, steps)

    def evaluation_keys(self) -> dict:
        """The public part as bytes: ``parameters``, ``public_key``, ``relin_keys``, ``galois_keys``.

        Examples
        --------
        >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[1])
        >>> sorted(keys.evaluation_keys())
        ['galois_keys', 'parameters', 'public_key', 'relin_keys', 'steps']
        """
        parms = self.context.key_context_data().parms()
        out = {
            "parameters": to_bytes(parms),
            "public_key": to_bytes(self.public_key),
            "relin_keys": to_bytes(self.relin_keys),
            "steps": list(self.steps),
        }
        out["galois_keys"] = to_bytes(self.galois_keys) if self.galois_keys is not None else b""
        return out

    def sizes(self) -> dict[str, int]:
        """In-memory bytes of each evaluation key (serialized, SEAL compresses them by about a quarter).

        A key-switching key holds, per data prime, one size-2 ciphertext over all primes; there is
        one for relinearization and one per Galois step.

        Examples
        --------
        >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[1, 2])
        >>> keys.sizes()["galois_keys"] == 2 * keys.sizes()["relin_keys"]
        True
        """
        p = self.params
        n_data, n_all = len(p.coeff_modulus) - 1, len(p.coeff_modulus)
        switch_key = n_data * 2 * n_all * p.poly_modulus_degree * 8
        return {
            "public_key": 2 * n_all * p.poly_modulus_degree * 8,
            "relin_keys": switch_key,
            "galois_keys": switch_key * len(self.steps),
        }

    def serialized_sizes(self) -> dict[str, int]:
        """Bytes of each evaluation key as sent (SEAL's ``save``, compressed).

        Examples
        --------
        >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[])
        >>> keys.serialized_sizes()["galois_keys"]
        0
        """
        return {
            "public_key": serialized_size(self.public_key),
            "relin_keys": serialized_size(self.relin_keys),
            "galois_keys": serialized_size(self.galois_keys) if self.galois_keys is not None else 0,
        }

    # -- client side ------------------------------------------------------------------------------
    def encrypt(self, graph: Graph, X: np.ndarray) -> dict:
        """Encrypt a batch for one graph evaluation: input name → ciphertext.

        ``X`` is one sample (row_major/diagonal) or up to ``stride`` samples (column_major),
        shape (n, features). Client-rotated copies (``diagonal`` packing) are rotated in the clear.

        Examples
        --------
        >>> from qfhe.ir import Graph, Node
        >>> g = Graph([Node("x", "encrypt", [], {"length": 2, "stride": 1, "strategy": "row_major"}),
        ...            Node("y", "decrypt", ["x"], {"length": 2})], ["y"])
        >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[])
        >>> cts = keys.encrypt(g, np.array([[0.5, -1.25]]))
        >>> np.round(keys.decrypt(g, {"y": cts["x"]}, 1), 6)
        array([[ 0.5 , -1.25]])
        """
        s = _seal()
        encoder, encryptor = s.CKKSEncoder(self.context), s.Encryptor(self.context, self.public_key)
        layout, slots = FakeBackend._layout(graph), self.params.slots
        out = {}
        for n in graph.nodes:
            if n.op != "encrypt":
                continue
            v = FakeBackend.pack(n, X, layout, slots)[0]
            pt, ct = s.Plaintext(), s.Ciphertext()
            encoder.encode(v.tolist(), float(self.params.scale), pt)
            encryptor.encrypt(pt, ct)
            out[n.name] = ct
        return out

    def decrypt(self, graph: Graph, outputs: dict, batch: int) -> np.ndarray:
        """Decrypt and decode the output ciphertexts of one evaluation: (batch, output features).

        Examples
        --------
        >>> from qfhe.ir import Graph, Node
        >>> g = Graph([Node("x", "encrypt", [], {"length": 4, "stride": 1, "strategy": "row_major"}),
        ...            Node("y", "decrypt", ["x"], {"length": 3})], ["y"])
        >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[])
        >>> keys.decrypt(g, {"y": keys.encrypt(g, np.array([[1.0, 2.0, 3.0]]))["x"]}, 1).shape
        (1, 3)
        """
        s = _seal()
        encoder, decryptor = s.CKKSEncoder(self.context), s.Decryptor(self.context, self.secret_key)
        layout = FakeBackend._layout(graph)
        parts = []
        for o in graph.outputs:
            pt = s.Plaintext()
            decryptor.decrypt(outputs[o], pt)
            slots = np.asarray(encoder.decode_double(pt))[None]
            parts.append(FakeBackend.decrypt(slots, layout, graph[o].attrs["length"], batch))
        return np.concatenate(parts, axis=1)
