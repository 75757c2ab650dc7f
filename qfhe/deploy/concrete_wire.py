"""Check concrete-python's serialized evaluation keys and encrypted values before concrete reads them.

concrete 2.11 trusts these bytes: evaluation keys of another circuit deserialize fine and then
crash the process inside the keyswitch (SIGSEGV), and a few flipped bits in a ciphertext send its
deserializer into an endless loop that allocates gigabytes. Both formats are Cap'n Proto messages,
so qfhe parses them with pycapnp's bounds-checked reader (a traversal limit proportional to the
message size, a small nesting limit), requires every key description and every value's type to
equal what the circuit's program info (``client.specs.json``) declares, requires each payload to
have exactly the size those parameters imply, and hands concrete a canonical re-encoding of the
checked message rather than the bytes it received.

Examples
--------
>>> check_value(b"junk", {"rawInfo": {}, "typeInfo": {}}, "an encrypted input")
Traceback (most recent call last):
...
qfhe.errors.CiphertextError: an encrypted input cannot be read as a concrete-python Value (its size, 4 bytes, is not a whole number of 8-byte words); send what FHEModelClient produced
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from qfhe.errors import ArtifactError, CiphertextError

_WORD = 8
#: Cap'n Proto nesting the formats need (a value's type info is 6 levels deep).
_NESTING = 16
_KEY_KINDS = (
    ("lweBootstrapKeys", "LweBootstrapKeyInfo"),
    ("lweKeyswitchKeys", "LweKeyswitchKeyInfo"),
    ("packingKeyswitchKeys", "PackingKeyswitchKeyInfo"),
)


@lru_cache(maxsize=1)
def schema():
    """The Cap'n Proto schema of the checked formats (``concrete_wire.capnp``, loaded once).

    Examples
    --------
    >>> schema().Value.schema.fieldnames
    ('payload', 'rawInfo', 'typeInfo')
    """
    import capnp

    capnp.remove_import_hook()  # pycapnp would otherwise hook ``import`` for every .capnp file on sys.path
    return capnp.load(str(Path(__file__).with_name("concrete_wire.capnp")))


@contextmanager
def _reading(struct, data: bytes, what: str, remedy: str):
    """Open ``data`` as a ``struct`` message; any failure while it is read is a CiphertextError.

    pycapnp reads lazily, so a malformed pointer or an unknown enum value surfaces on field
    access (as KjException, RuntimeError, ...), not only when the message is opened. Its texts
    carry native stack addresses and are never passed on.
    """
    data = bytes(data)
    name = struct.schema.node.displayName.split(":")[-1]
    if len(data) < _WORD or len(data) % _WORD:
        raise CiphertextError(
            f"{what} cannot be read as a concrete-python {name} (its size, {len(data)} bytes, is "
            f"not a whole number of 8-byte words); {remedy}"
        )
    try:
        # Each word of the message may be traversed at most twice: no pointer amplification.
        with struct.from_bytes(
            data, traversal_limit_in_words=2 * len(data) // _WORD + 64, nesting_limit=_NESTING
        ) as message:
            yield message
    except (CiphertextError, ArtifactError):
        raise
    except Exception:  # noqa: BLE001 - every reader failure on untrusted bytes means the same thing
        raise CiphertextError(f"{what} cannot be read as a concrete-python {name} (malformed); {remedy}") from None


def _normalized(struct, plain: dict) -> dict:
    """A program-info dict as pycapnp writes it (defaults filled in), for exact comparison."""
    try:
        if not isinstance(plain, dict):
            raise TypeError
        return struct.new_message(**plain).to_dict()
    except Exception as exc:  # noqa: BLE001 - pycapnp raises KjException, AttributeError, TypeError... on bad data
        raise ArtifactError(
            f"client.specs.json does not describe a concrete-python circuit ({type(exc).__name__})"
        ) from None


def _payload_size(payload) -> int:
    return sum(len(blob) for blob in payload.data)


def check_value(data: bytes, gate: dict, what: str) -> bytes:
    """Check one serialized ``fhe.Value`` against the circuit gate it is meant for; return canonical bytes.

    Parameters
    ----------
    data : bytes
        ``fhe.Value.serialize()`` output, from an untrusted party.
    gate : dict
        The gate's entry in the program info: ``{"rawInfo": ..., "typeInfo": ...}``.
    what : str
        How the value is named in errors ("an encrypted input", "an encrypted result").

    Raises
    ------
    CiphertextError
        Unparseable bytes, another type (shape, encryption key, variance, encoding, compression),
        or a payload whose size does not match the shape.

    Examples
    --------
    >>> gate = {"rawInfo": {"shape": {"dimensions": [2]}, "integerPrecision": 64, "isSigned": False},
    ...         "typeInfo": {"plaintext": {"shape": {"dimensions": [2]}, "integerPrecision": 64, "isSigned": False}}}
    >>> ok = schema().Value.new_message(payload={"data": [bytes(16)]}, **gate).to_bytes()
    >>> check_value(ok, gate, "a value") == ok
    True
    >>> bad = schema().Value.new_message(payload={"data": [bytes(8)]}, **gate).to_bytes()
    >>> check_value(bad, gate, "a value")
    Traceback (most recent call last):
    ...
    qfhe.errors.CiphertextError: a value has a payload of 8 bytes; its type needs 16 (truncated or forged)
    """
    s = schema()
    remedy = "send what FHEModelClient produced"
    with _reading(s.Value, data, what, remedy) as value:
        expected = _normalized(s.Value, {"rawInfo": gate["rawInfo"], "typeInfo": gate["typeInfo"]})
        got = {"rawInfo": value.rawInfo.to_dict(), "typeInfo": value.typeInfo.to_dict()}
        if got != expected:
            raise CiphertextError(
                f"{what} was encrypted for another circuit or with other parameters (its shape, key "
                f"or encoding differs from this circuit's); {remedy} for this model"
            )
        raw = value.rawInfo
        need = math.prod(raw.shape.dimensions) * raw.integerPrecision // 8
        have = _payload_size(value.payload)
        if have != need:
            raise CiphertextError(f"{what} has a payload of {have} bytes; its type needs {need} (truncated or forged)")
        # Built afresh from checked parts: copying the received message (as_builder) would carry
        # whatever else it holds, and pycapnp aborts the process on some malformed pointers there.
        return s.Value.new_message(payload={"data": [bytes(b) for b in value.payload.data]}, **expected).to_bytes()


def _key_words(kind: str, info: dict) -> int:
    """64-bit words of one key's payload, from its parameters (concrete 2.11's layout)."""
    p, seeded = info["params"], info["compression"] == "seed"
    if kind == "lweBootstrapKeys":
        k1 = p["glweDimension"] + 1
        per_level = k1 * p["polynomialSize"] * (1 if seeded else k1)
        return p["inputLweDimension"] * p["levelCount"] * per_level + (2 if seeded else 0)
    if kind == "lweKeyswitchKeys":
        return p["inputLweDimension"] * p["levelCount"] * (1 if seeded else p["outputLweDimension"] + 1) + (
            2 if seeded else 0
        )
    raise ArtifactError(
        "this circuit needs packing keyswitch keys, which qfhe cannot check; compile it without "
        "them (they only appear with concrete's WoP-PBS or CRT encodings)"
    )


def expected_keys(keyset: dict) -> dict:
    """What evaluation keys of ``keyset`` (the program info's ``keyset``) contain.

    Returns
    -------
    dict
        ``{"infos": {kind: [info, ...]}, "payload_bytes": int, "loaded_bytes": int}``:
        the normalized key descriptions, the serialized payload size, and the memory the keys
        take once loaded (seeded keys expanded, bootstrap keys also in the Fourier domain).

    Examples
    --------
    >>> ks = {"lweBootstrapKeys": [], "lweKeyswitchKeys": [{"id": 0, "inputId": 0, "outputId": 1, "params": {
    ...       "levelCount": 3, "baseLog": 4, "variance": 1e-10, "integerPrecision": 64,
    ...       "modulus": {"modulus": {"native": {}}}, "keyType": "binary", "inputLweDimension": 10,
    ...       "outputLweDimension": 5}, "compression": "seed"}], "packingKeyswitchKeys": []}
    >>> e = expected_keys(ks)
    >>> e["payload_bytes"], e["loaded_bytes"]
    (256, 1440)
    """
    s = schema()
    infos, payload, loaded = {}, 0, 0
    for kind, struct in _KEY_KINDS:
        infos[kind] = [_normalized(getattr(s, struct), info) for info in keyset.get(kind, [])]
        for info in infos[kind]:
            if info.get("params", {}).get("integerPrecision") != 64:
                raise ArtifactError("client.specs.json: only 64-bit keys are supported")
            payload += _key_words(kind, info) * _WORD
            full = _key_words(kind, {**info, "compression": "none"}) * _WORD
            loaded += 2 * full if kind == "lweBootstrapKeys" else full
    return {"infos": infos, "payload_bytes": payload, "loaded_bytes": loaded}


def check_evaluation_keys(data: bytes, expected: dict) -> bytes:
    """Check serialized evaluation keys (``fhe.EvaluationKeys.serialize()``) against the circuit's key set.

    Every key must be one the circuit uses (same id, input and output secret keys, parameters and
    compression), none may be missing or extra, and every payload must have the size its
    parameters imply. Returns canonical bytes for concrete.

    Parameters
    ----------
    data : bytes
    expected : dict
        From :func:`expected_keys`.

    Raises
    ------
    CiphertextError
        Naming the key kind and what differs.

    Examples
    --------
    >>> check_evaluation_keys(b"\\x00" * 16, {"infos": {}, "payload_bytes": 0, "loaded_bytes": 0})
    Traceback (most recent call last):
    ...
    qfhe.errors.CiphertextError: these evaluation keys cannot be read as a concrete-python ServerKeyset (malformed); ...
    """
    s = schema()
    remedy = "send FHEModelClient.get_serialized_evaluation_keys() for this model"
    rebuilt: dict = {}
    with _reading(s.ServerKeyset, data, "these evaluation keys", remedy) as keys:
        for kind, _ in _KEY_KINDS:
            want = expected["infos"].get(kind, [])
            got = list(getattr(keys, kind))
            if len(got) != len(want):
                raise CiphertextError(
                    f"these evaluation keys hold {len(got)} {kind}, this circuit uses {len(want)}: they "
                    f"belong to another circuit; {remedy}"
                )
            rebuilt[kind] = []
            for i, (key, info) in enumerate(zip(got, want)):
                if key.info.to_dict() != info:
                    raise CiphertextError(
                        f"{kind}[{i}] of these evaluation keys has other parameters than this "
                        f"circuit's (another circuit, or other crypto-parameters); {remedy}"
                    )
                need, have = _key_words(kind, info) * _WORD, _payload_size(key.payload)
                if have != need:
                    raise CiphertextError(
                        f"{kind}[{i}] of these evaluation keys has {have} bytes of key material; its "
                        f"parameters need {need} (truncated or forged); {remedy}"
                    )
                rebuilt[kind].append({"info": info, "payload": {"data": [bytes(b) for b in key.payload.data]}})
        return s.ServerKeyset.new_message(**rebuilt).to_bytes()


#: Plausible ranges of key parameters: concrete's 128-bit parameter sets sit well inside them, and
#: a hostile ``client.specs.json`` cannot make key generation allocate without bound.
_PARAM_RANGES = {
    "lweDimension": (256, 1 << 16),
    "glweDimension": (1, 8),
    "polynomialSize": (256, 1 << 17),
    "levelCount": (1, 64),
    "baseLog": (1, 64),
    "inputLweDimension": (256, 1 << 16),
    "outputLweDimension": (256, 1 << 16),
    "integerPrecision": (64, 64),
}
_MAX_VALUES = 1 << 24


def check_client_specs(specs: dict) -> dict:
    """Check concrete's program info (``client.specs.json``, parsed) before concrete reads it.

    Every field must be one the format has, with its type; secret keys must exist for every
    reference to them; key parameters must lie in plausible ranges (see ``_PARAM_RANGES``) and
    encrypted values be of bounded size. Plausible is not secure: whether the parameters give
    128-bit security is what a signed or pinned artifact guarantees (``verify_key``,
    ``expected_sha256``).

    Raises
    ------
    ArtifactError
        Naming what is wrong.

    Examples
    --------
    >>> check_client_specs({"keyset": {}, "circuits": []})
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: client.specs.json: expected exactly one circuit with its inputs and outputs
    """
    if not isinstance(specs, dict) or set(specs) - {"keyset", "circuits", "tfhers_specs"}:
        raise ArtifactError("client.specs.json: expected the fields keyset, circuits and tfhers_specs")
    program = _normalized(schema().ProgramInfo, {k: specs.get(k) for k in ("keyset", "circuits")})
    tfhers = specs.get("tfhers_specs", {})
    if not isinstance(tfhers, dict) or any(
        not isinstance(v, dict)
        or any(x is not None for lst in v.values() for x in (lst if isinstance(lst, list) else [0]))
        for v in tfhers.values()
    ):
        raise ArtifactError("client.specs.json: TFHE-rs interoperability specs are not supported in deployment")
    ins, outs = gates(program)
    keyset = program.get("keyset", {})
    secret = {k["id"] for k in keyset.get("lweSecretKeys", [])}
    refs = [g["typeInfo"].get("lweCiphertext", {}).get("encryption", {}).get("keyId") for g in ins + outs]
    for kind, _ in _KEY_KINDS:
        for k in keyset.get(kind, []):
            refs += [k.get("inputId"), k.get("outputId")]
    if not secret or any(r not in secret for r in refs):
        raise ArtifactError("client.specs.json: a key or value refers to a secret key that does not exist")

    def params(obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in _PARAM_RANGES and isinstance(v, int):
                    lo, hi = _PARAM_RANGES[k]
                    if not lo <= v <= hi:
                        raise ArtifactError(f"client.specs.json: {k} = {v} is outside the plausible range [{lo}, {hi}]")
                params(v)
        elif isinstance(obj, list):
            for v in obj:
                params(v)

    params(keyset)
    for g in ins + outs:
        if math.prod(g["rawInfo"].get("shape", {}).get("dimensions", [])) > _MAX_VALUES:
            raise ArtifactError("client.specs.json: an encrypted value is implausibly large")
    return program


def gates(specs: dict) -> tuple[list, list]:
    """The input and output gates of the (single) circuit of a program info.

    Examples
    --------
    >>> g = {"rawInfo": {}, "typeInfo": {}}
    >>> gates({"circuits": [{"inputs": [g], "outputs": [g], "name": "main"}]})[0]
    [{'rawInfo': {}, 'typeInfo': {}}]
    """
    try:
        (circuit,) = specs["circuits"]
    except (KeyError, TypeError, ValueError):
        raise ArtifactError("client.specs.json: expected exactly one circuit with its inputs and outputs") from None
    if not (
        isinstance(circuit, dict)
        and isinstance(circuit.get("inputs"), list)
        and isinstance(circuit.get("outputs"), list)
        and all(
            isinstance(g, dict) and isinstance(g.get("rawInfo"), dict) and isinstance(g.get("typeInfo"), dict)
            for g in circuit["inputs"] + circuit["outputs"]
        )
    ):
        raise ArtifactError("client.specs.json: expected exactly one circuit with its inputs and outputs")
    return list(circuit["inputs"]), list(circuit["outputs"])
