"""The wire format of encrypted data: a small JSON header, then the ciphertexts' own bytes.

One envelope carries a batch: a list of items (one circuit evaluation each: one sample for TFHE,
up to ``samples_per_ciphertext`` samples for CKKS), each a list of named parts (the serialized
ciphertexts concrete-python or SEAL produced). The header names the model (``fingerprint``) so a
ciphertext for another model is refused with a clear message instead of an error deep in the
backend; lengths are checked before anything is parsed, so a truncated body is reported as such.

Layout: ``b"QFHE1\\n"``, the header length (4 bytes, big endian), the header (UTF-8 JSON), the parts.

Examples
--------
>>> blob = pack("abc", "inputs", [[("x", b"12")], [("x", b"345")]], {"samples": [1, 1]})
>>> env = unpack(blob, "abc", "inputs")
>>> [dict(item)["x"] for item in env.items], env.meta
([b'12', b'345'], {'samples': [1, 1]})
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from qfhe.errors import CiphertextError

MAGIC = b"QFHE1\n"
MAX_HEADER = 1 << 20


@dataclass
class Envelope:
    """A parsed envelope: ``items`` (list of [(name, bytes), ...]) and ``meta``.

    Examples
    --------
    >>> Envelope([[("x", b"")]]).items[0][0][0]
    'x'
    """

    items: list
    meta: dict = field(default_factory=dict)


def pack(fingerprint: str, kind: str, items: list, meta: dict | None = None) -> bytes:
    """Serialize ``items`` (each a list of ``(name, bytes)``) under the model's fingerprint.

    Examples
    --------
    >>> pack("f", "outputs", [[("y", b"")]])[:6]
    b'QFHE1\\n'
    """
    header = {"model": fingerprint, "kind": kind, "meta": meta or {},
              "items": [[[name, len(data)] for name, data in item] for item in items]}
    head = json.dumps(header).encode("utf-8")
    return b"".join([MAGIC, struct.pack(">I", len(head)), head] + [data for item in items for _, data in item])


def unpack(blob: bytes, fingerprint: str, kind: str) -> Envelope:
    """Parse and check an envelope; every failure is a :class:`~qfhe.errors.CiphertextError`.

    Examples
    --------
    >>> unpack(pack("f", "inputs", [[("x", b"123")]])[:-1], "f", "inputs")
    Traceback (most recent call last):
    ...
    qfhe.errors.CiphertextError: encrypted inputs are truncated: the header announces 3 bytes of ciphertext, the body has 2
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CiphertextError(f"encrypted {kind} must be bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if not blob.startswith(MAGIC):
        raise CiphertextError(f"this is not qfhe encrypted {kind}: make it with FHEModelClient."
                              + ("quantize_encrypt_serialize" if kind == "inputs" else "… on the server's run"))
    if len(blob) < len(MAGIC) + 4:
        raise CiphertextError(f"encrypted {kind} are truncated: no header")
    (n,) = struct.unpack(">I", blob[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if n > MAX_HEADER or start + n > len(blob):
        raise CiphertextError(f"encrypted {kind} are truncated or malformed: header of {n} bytes")
    try:
        header = json.loads(blob[start:start + n].decode("utf-8"))
        model, got_kind, layout = header["model"], header["kind"], header["items"]
        sizes = [[(str(name), int(size)) for name, size in item] for item in layout]
    except (ValueError, KeyError, TypeError) as exc:
        raise CiphertextError(f"encrypted {kind}: malformed header ({exc})") from None
    if got_kind != kind:
        raise CiphertextError(f"expected encrypted {kind}, got encrypted {got_kind}")
    if model != fingerprint:
        raise CiphertextError(f"these encrypted {kind} were made for another model (fingerprint {str(model)[:12]}…, "
                              f"this one is {fingerprint[:12]}…): use the client artifact of this server")
    body = blob[start + n:]
    total = sum(size for item in sizes for _, size in item)
    if any(size < 0 for item in sizes for _, size in item) or total != len(body):
        what = "truncated" if total > len(body) else "malformed"
        raise CiphertextError(f"encrypted {kind} are {what}: the header announces {total} bytes of ciphertext, "
                              f"the body has {len(body)}")
    items, pos = [], 0
    for item in sizes:
        parts = []
        for name, size in item:
            parts.append((name, body[pos:pos + size]))
            pos += size
        items.append(parts)
    meta = header.get("meta", {})
    return Envelope(items, meta if isinstance(meta, dict) else {})
