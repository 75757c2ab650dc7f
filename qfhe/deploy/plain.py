"""Plain data in deployment files: JSON with arrays stored beside it as ``.npy``, read defensively.

Everything here parses bytes that may be hostile (an artifact, a request header):

* JSON is size-checked before parsing and depth-checked after (deep nesting is refused, never a
  ``RecursionError``);
* ``.npy`` arrays are parsed from their header (numpy's own reader, ``allow_pickle`` never on),
  restricted to numbers, booleans and strings, and refused unless the declared shape matches the
  bytes present, so no array is ever allocated from a size the data does not have.

Examples
--------
>>> arrays = {}
>>> data = encode({"w": np.arange(3), "shape": (2, 3)}, arrays)
>>> data
{'w': {'__ndarray__': 'arrays/0.npy'}, 'shape': {'__tuple__': [2, 3]}}
>>> decode(data, {k: load_npy(npy_bytes(v), k) for k, v in arrays.items()})["shape"]
(2, 3)
"""

from __future__ import annotations

import io
import json

import numpy as np

from qfhe.errors import ArtifactError

#: Deepest nesting accepted in any JSON document qfhe reads (its own documents use fewer than 12 levels).
MAX_JSON_DEPTH = 64
#: Array kinds an artifact may hold: booleans, integers, floats, unicode strings.
_ARRAY_KINDS = "biufU"
_MAX_NDIM = 8


def encode(obj, arrays: dict, where: str = "model", prefix: str = "arrays/"):
    """Turn plain data into JSON-able data; arrays go to ``arrays`` (name → ndarray) by reference.

    Raises
    ------
    ArtifactError
        For a value that is not plain data (naming where it is), or an object-dtype array.

    Examples
    --------
    >>> encode({"a": [1.5, None]}, {})
    {'a': [1.5, None]}
    """
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ARRAY_KINDS:
            raise ArtifactError(
                f"{where}: a {obj.dtype} array cannot be saved without pickle; convert it to numbers or strings"
            )
        name = f"{prefix}{len(arrays)}.npy"
        arrays[name] = obj
        return {"__ndarray__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, arrays, f"{where}[{i}]", prefix) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, arrays, f"{where}[{i}]", prefix) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise ArtifactError(f"{where}: dict keys must be strings, got {bad[0]!r}")
        return {k: encode(v, arrays, f"{where}.{k}", prefix) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ArtifactError(f"{where}: {type(obj).__name__} is not plain data (numbers, strings, lists, dicts, arrays)")


def decode(obj, arrays: dict, where: str = "model.json"):
    """Inverse of :func:`encode`.

    Raises
    ------
    ArtifactError
        For a reference to an array that is not there.

    Examples
    --------
    >>> decode({"__tuple__": [1, 2]}, {})
    (1, 2)
    >>> decode({"__ndarray__": "arrays/9.npy"}, {})
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: model.json refers to the missing array member 'arrays/9.npy'
    """
    if isinstance(obj, dict):
        if len(obj) == 1 and "__ndarray__" in obj:
            name = obj["__ndarray__"]
            if not isinstance(name, str) or name not in arrays:
                raise ArtifactError(f"{where} refers to the missing array member {name!r}")
            return arrays[name]
        if len(obj) == 1 and "__tuple__" in obj and isinstance(obj["__tuple__"], list):
            return tuple(decode(v, arrays, where) for v in obj["__tuple__"])
        return {k: decode(v, arrays, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v, arrays, where) for v in obj]
    return obj


def json_depth(obj) -> int:
    """Nesting depth of parsed JSON, computed without recursion.

    Examples
    --------
    >>> json_depth({"a": [1, {"b": []}]}), json_depth(3)
    (4, 0)
    """
    deepest, stack = 0, [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in value)
    return deepest


def load_json(data: bytes, what: str, max_bytes: int, error=ArtifactError):
    """Parse JSON that may be hostile: bounded size and depth, UTF-8, every failure an ``error``.

    Examples
    --------
    >>> load_json(b'{"a": 1}', "x.json", 100)
    {'a': 1}
    >>> load_json(b"[" * 5000 + b"]" * 5000, "x.json", 10**6)
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: x.json nests deeper than 64 levels
    """
    if len(data) > max_bytes:
        raise error(f"{what} has {len(data)} bytes, more than the {max_bytes} allowed")
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except RecursionError:
        raise error(f"{what} nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise error(
            f"{what} is not valid UTF-8 JSON ({type(exc).__name__} at byte {getattr(exc, 'pos', '?')})"
        ) from None
    if json_depth(obj) > MAX_JSON_DEPTH:
        raise error(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    return obj


def npy_bytes(arr: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes, refusing object arrays.

    Examples
    --------
    >>> npy_bytes(np.zeros(2))[:6]
    b'\\x93NUMPY'
    """
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes, member: str) -> np.ndarray:
    """Read ``.npy`` bytes: a header numpy parses, a plain dtype, and exactly the bytes the shape needs.

    Raises
    ------
    ArtifactError
        Naming the member: not ``.npy``, an object/structured/void dtype, more than 8 dimensions,
        or a shape that the data does not fill exactly.

    Examples
    --------
    >>> load_npy(npy_bytes(np.arange(3)), "a.npy")
    array([0, 1, 2])
    >>> load_npy(npy_bytes(np.arange(3))[:-8], "a.npy")
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: member a.npy declares shape (3,) of int64 (24 bytes) but holds 16
    """
    fmt = np.lib.format
    f = io.BytesIO(bytes(data))
    try:
        version = fmt.read_magic(f)
        reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = reader(f, max_header_size=10_000)
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, tokenize.TokenError...
        raise ArtifactError(f"member {member} is not a valid .npy array ({type(exc).__name__})") from None
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ArtifactError(f"member {member} has dtype {dtype}; artifacts hold numbers, booleans and strings only")
    if len(shape) > _MAX_NDIM or any(not isinstance(d, int) or d < 0 for d in shape):
        raise ArtifactError(f"member {member} has an invalid shape {shape}")
    need = dtype.itemsize
    for d in shape:
        need *= d
    body = data[f.tell() :]
    if need != len(body):
        raise ArtifactError(
            f"member {member} declares shape {tuple(shape)} of {dtype} ({need} bytes) but holds {len(body)}"
        )
    arr = np.frombuffer(body, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.copy()  # writable, and independent of the member's bytes
