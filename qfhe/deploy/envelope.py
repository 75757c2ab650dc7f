"""The wire format of encrypted data: a small JSON header, then the ciphertexts' own bytes.

One envelope carries a batch: a list of items (one circuit evaluation each: one sample for TFHE,
up to ``samples_per_ciphertext`` samples for CKKS), each a list of named parts (the serialized
ciphertexts concrete-python or SEAL produced). The header names the model (``fingerprint``) so a
ciphertext for another model is refused with a clear message instead of an error deep in the
backend.

Layout: ``b"QFHE1\\n"``, the header length (4 bytes, big endian), the header (UTF-8 JSON), the parts.

The parser treats every byte as hostile: the header is bounded in size and depth and checked
field by field (part names, sizes, item count, the metadata a kind may carry) before any part is
sliced, and the parts must fill the body exactly. Every failure is a
:class:`~qfhe.errors.CiphertextError`.

Examples
--------
>>> blob = pack("abc", "inputs", [[("x", b"12")], [("x", b"345")]], {"samples": [1, 1]})
>>> env = unpack(blob, "abc", "inputs")
>>> [dict(item)["x"] for item in env.items], env.meta
([b'12', b'345'], {'samples': [1, 1]})
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field

from qfhe.deploy.plain import load_json
from qfhe.errors import CiphertextError

MAGIC = b"QFHE1\n"
MAX_HEADER = 1 << 20
#: Items one envelope may carry at most (a server sets its own, lower, limit on samples).
MAX_ITEMS = 1 << 16
_PART = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_REQUEST = re.compile(r"^[0-9a-f]{32}$")
KINDS = ("inputs", "outputs", "keys", "secret")


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

    @property
    def samples(self) -> list:
        """Samples per item (``meta["samples"]``, checked), one each when absent.

        Examples
        --------
        >>> Envelope([[], []], {"samples": [2, 3]}).samples
        [2, 3]
        """
        return list(self.meta.get("samples", [1] * len(self.items)))

    @property
    def request(self) -> str | None:
        """The client's request id, if the envelope carries one.

        Examples
        --------
        >>> Envelope([], {"request": "ab" * 16}).request == "ab" * 16
        True
        """
        return self.meta.get("request")


def pack(fingerprint: str, kind: str, items: list, meta: dict | None = None) -> bytes:
    """Serialize ``items`` (each a list of ``(name, bytes)``) under the model's fingerprint.

    Examples
    --------
    >>> pack("f", "outputs", [[("y", b"")]])[:6]
    b'QFHE1\\n'
    """
    header = {
        "model": fingerprint,
        "kind": kind,
        "meta": meta or {},
        "items": [[[name, len(data)] for name, data in item] for item in items],
    }
    head = json.dumps(header).encode("utf-8")
    return b"".join([MAGIC, struct.pack(">I", len(head)), head] + [data for item in items for _, data in item])


def _check_meta(meta, kind: str, n_items: int) -> dict:
    """The metadata an envelope of ``kind`` may carry, type-checked: ``samples`` (a positive count
    per item) and ``request`` (32 hex digits) for inputs and outputs, nothing for keys."""
    if not isinstance(meta, dict):
        raise CiphertextError(f"encrypted {kind}: malformed header (meta is not an object)")
    allowed = {"samples", "request"} if kind in ("inputs", "outputs") else {"steps"} if kind == "secret" else set()
    if set(meta) - allowed:
        raise CiphertextError(f"encrypted {kind}: the header carries unknown fields {sorted(meta)[:5]}")
    if "samples" in meta:
        s = meta["samples"]
        if not isinstance(s, list) or len(s) != n_items or not all(type(c) is int and 0 < c <= MAX_ITEMS for c in s):
            raise CiphertextError(f"encrypted {kind}: malformed header (samples must give a positive count per item)")
    if "request" in meta and not (isinstance(meta["request"], str) and _REQUEST.match(meta["request"])):
        raise CiphertextError(f"encrypted {kind}: malformed header (request must be 32 hex digits)")
    if "steps" in meta and not (isinstance(meta["steps"], list) and all(type(k) is int for k in meta["steps"])):
        raise CiphertextError(f"encrypted {kind}: malformed header (steps)")
    return meta


def unpack(blob: bytes, fingerprint: str, kind: str, max_items: int = MAX_ITEMS) -> Envelope:
    """Parse and check an envelope; every failure is a :class:`~qfhe.errors.CiphertextError`.

    Parameters
    ----------
    blob : bytes
    fingerprint : str
        The model the envelope must be for.
    kind : {"inputs", "outputs", "keys", "secret"}
    max_items : int
        Most items accepted (checked on the header, before any part is read).

    Examples
    --------
    >>> unpack(pack("f", "inputs", [[("x", b"123")]])[:-1], "f", "inputs")
    Traceback (most recent call last):
    ...
    qfhe.errors.CiphertextError: encrypted inputs are truncated: the header announces 3 bytes of ciphertext, the body has 2
    >>> unpack(pack("f", "inputs", [[("x", b"1")]] * 3), "f", "inputs", max_items=2)
    Traceback (most recent call last):
    ...
    qfhe.errors.CiphertextError: encrypted inputs hold 3 items; this server accepts at most 2 per request
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CiphertextError(f"encrypted {kind} must be bytes, got {type(blob).__name__}")
    blob = memoryview(blob).cast("B") if not isinstance(blob, memoryview) else blob.cast("B")
    if bytes(blob[: len(MAGIC)]) != MAGIC:
        raise CiphertextError(
            f"this is not qfhe encrypted {kind}: make it with FHEModelClient."
            + ("quantize_encrypt_serialize" if kind == "inputs" else "… on the server's run")
        )
    if len(blob) < len(MAGIC) + 4:
        raise CiphertextError(f"encrypted {kind} are truncated: no header")
    (n,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if n > MAX_HEADER or start + n > len(blob):
        raise CiphertextError(f"encrypted {kind} are truncated or malformed: header of {n} bytes")
    header = load_json(bytes(blob[start : start + n]), f"encrypted {kind}: the header", MAX_HEADER, CiphertextError)
    if (
        not isinstance(header, dict)
        or not isinstance(header.get("items"), list)
        or not isinstance(header.get("model"), str)
        or not isinstance(header.get("kind"), str)
    ):
        raise CiphertextError(f"encrypted {kind}: malformed header (model, kind and items are required)")
    if header["kind"] != kind:
        raise CiphertextError(f"expected encrypted {kind}, got encrypted {header['kind'][:20]}")
    if header["model"] != fingerprint:
        raise CiphertextError(
            f"these encrypted {kind} were made for another model (fingerprint "
            f"{header['model'][:12]}…, this one is {fingerprint[:12]}…): use the client artifact of "
            "this server"
        )
    layout = header["items"]
    if len(layout) > max_items:
        raise CiphertextError(
            f"encrypted {kind} hold {len(layout)} items; this server accepts at most {max_items} per request"
        )
    sizes = []
    for item in layout:
        if (
            not isinstance(item, list)
            or not 0 < len(item) <= 64
            or not all(
                isinstance(p, list)
                and len(p) == 2
                and isinstance(p[0], str)
                and _PART.match(p[0])
                and type(p[1]) is int
                and p[1] >= 0
                for p in item
            )
        ):
            raise CiphertextError(f"encrypted {kind}: malformed header (each item is a list of [name, size] parts)")
        sizes.append([(name, size) for name, size in item])
    meta = _check_meta(header.get("meta", {}), kind, len(sizes))
    body = blob[start + n :]
    total = sum(size for item in sizes for _, size in item)
    if total != len(body):
        what = "truncated" if total > len(body) else "malformed"
        raise CiphertextError(
            f"encrypted {kind} are {what}: the header announces {total} bytes of ciphertext, the body has {len(body)}"
        )
    items, pos = [], 0
    for item in sizes:
        parts = []
        for name, size in item:
            parts.append((name, bytes(body[pos : pos + size])))
            pos += size
        items.append(parts)
    return Envelope(items, meta)


def parts(item: list, names: set, what: str) -> dict:
    """An item's parts by name, which must be exactly ``names``.

    Examples
    --------
    >>> parts([("x", b"1")], {"x"}, "an encrypted sample")
    {'x': b'1'}
    >>> parts([("x", b"1"), ("x", b"2")], {"x"}, "an encrypted sample")
    Traceback (most recent call last):
    ...
    qfhe.errors.CiphertextError: an encrypted sample has parts ['x', 'x'], expected ['x']
    """
    got = dict(item)
    if len(got) != len(item) or set(got) != set(names):
        raise CiphertextError(f"{what} has parts {sorted(n for n, _ in item)[:8]}, expected {sorted(names)}")
    return got
