"""Deployment artifacts: zip files of JSON, ``.npy`` arrays and text, each member with its SHA-256.

Nothing in an artifact is executable or unpickled on load:

* structure and metadata are JSON; numpy arrays are ``.npy`` files read with ``allow_pickle=False``
  (an object array cannot be written or read);
* a TFHE circuit is its MLIR text, which the server recompiles (never concrete's compiled shared
  library, which the loading process would run as native code), and the compile options are plain
  JSON rather than concrete's own jsonpickle file (jsonpickle can build arbitrary objects);
* ``manifest.json`` records the format version, the versions of qfhe, concrete-python and Python,
  and the SHA-256 and size of every member. Loading checks all of them before anything is parsed:
  a tampered, truncated, missing or extra member raises :class:`~qfhe.errors.ArtifactError` naming it.

Examples
--------
>>> import io, numpy as np
>>> arrays = {}
>>> data = encode({"w": np.arange(3), "shape": (2, 3)}, arrays)
>>> data
{'w': {'__ndarray__': 'arrays/0.npy'}, 'shape': {'__tuple__': [2, 3]}}
>>> decode(data, {k: load_npy(npy_bytes(v), k) for k, v in arrays.items()})["shape"]
(2, 3)
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from qfhe.errors import ArtifactError

FORMAT = "qfhe-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: The file names of the two artifacts inside an artifact directory.
ARTIFACT_FILES = {"client": "client.zip", "server": "server.zip"}


def versions() -> dict[str, str]:
    """The versions an artifact records: qfhe, concrete-python, Python.

    Examples
    --------
    >>> sorted(versions())
    ['concrete-python', 'python', 'qfhe']
    """
    import qfhe

    return {"qfhe": qfhe.__version__, "concrete-python": metadata.version("concrete-python"),
            "python": platform.python_version()}


def _major_minor(v: str) -> str:
    return ".".join(v.split(".")[:2])


def check_versions(recorded: dict, member: str, needs_concrete: bool) -> None:
    """Refuse an artifact from another qfhe (major.minor) or, for a TFHE circuit, another
    concrete-python (major.minor), whose keys and parameters may differ.

    Examples
    --------
    >>> check_versions({**versions(), "qfhe": "9.0.0"}, "client.zip", False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: client.zip was written by qfhe 9.0.0; this is qfhe ...
    """
    here = versions()
    names = ("qfhe", "concrete-python") if needs_concrete else ("qfhe",)
    bad = [n for n in names if _major_minor(str(recorded.get(n, "?"))) != _major_minor(here[n])]
    if bad:
        theirs = ", ".join(f"{n} {recorded.get(n, '?')}" for n in names)
        ours = ", ".join(f"{n} {here[n]}" for n in names)
        raise ArtifactError(f"{member} was written by {theirs}; this is {ours}. Save the model again with this "
                            f"version (FHEModelDev(...).save()), or install the versions it was written with")


# -- plain data <-> JSON + arrays --------------------------------------------------------------------
def encode(obj, arrays: dict, where: str = "model"):
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
        if obj.dtype.hasobject:
            raise ArtifactError(f"{where}: an object array cannot be saved without pickle; convert it to numbers "
                                "or strings")
        name = f"arrays/{len(arrays)}.npy"
        arrays[name] = obj
        return {"__ndarray__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise ArtifactError(f"{where}: dict keys must be strings, got {bad[0]!r}")
        return {k: encode(v, arrays, f"{where}.{k}") for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ArtifactError(f"{where}: {type(obj).__name__} is not plain data (numbers, strings, lists, dicts, arrays)")


def decode(obj, arrays: dict):
    """Inverse of :func:`encode`.

    Examples
    --------
    >>> decode({"__tuple__": [1, 2]}, {})
    (1, 2)
    """
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            if obj["__ndarray__"] not in arrays:
                raise ArtifactError(f"model.json refers to the missing array member {obj['__ndarray__']!r}")
            return arrays[obj["__ndarray__"]]
        if set(obj) == {"__tuple__"}:
            return tuple(decode(v, arrays) for v in obj["__tuple__"])
        return {k: decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v, arrays) for v in obj]
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
    """Read ``.npy`` bytes with ``allow_pickle=False``.

    Examples
    --------
    >>> load_npy(b"junk", "arrays/0.npy")
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: member arrays/0.npy is not a valid .npy array ...
    """
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ArtifactError(f"member {member} is not a valid .npy array without pickle ({exc})") from None


# -- the zip with its manifest -----------------------------------------------------------------------
@dataclass
class Artifact:
    """A verified artifact: its manifest and members (name → bytes).

    Examples
    --------
    >>> Artifact({"kind": "client"}, {}).kind
    'client'
    """

    manifest: dict
    members: dict

    @property
    def kind(self) -> str:
        """``"client"`` or ``"server"``.

        Examples
        --------
        >>> Artifact({"kind": "server"}, {}).kind
        'server'
        """
        return self.manifest["kind"]

    def json(self, name: str):
        """Parse a JSON member.

        Examples
        --------
        >>> Artifact({}, {"a.json": b'{"x": 1}'}).json("a.json")
        {'x': 1}
        """
        try:
            return json.loads(self.members[name].decode("utf-8"))
        except KeyError:
            raise ArtifactError(f"the artifact has no member {name}") from None
        except ValueError as exc:
            raise ArtifactError(f"member {name} is not valid JSON ({exc})") from None

    def plain(self, name: str = "model.json"):
        """A JSON member with its arrays decoded (``.npy`` members, loaded without pickle).

        Examples
        --------
        >>> arrays = {}
        >>> doc = json.dumps(encode({"w": np.ones(2)}, arrays)).encode()
        >>> members = {"model.json": doc, **{k: npy_bytes(v) for k, v in arrays.items()}}
        >>> Artifact({}, members).plain()["w"]
        array([1., 1.])
        """
        arrays = {k: load_npy(v, k) for k, v in self.members.items() if k.endswith(".npy")}
        return decode(self.json(name), arrays)


def build_members(doc: dict, where: str) -> dict:
    """``model.json`` plus its ``.npy`` members, from plain data.

    Examples
    --------
    >>> sorted(build_members({"w": np.ones(2)}, "model"))
    ['arrays/0.npy', 'model.json']
    """
    arrays: dict = {}
    data = encode(doc, arrays, where)
    members = {"model.json": json.dumps(data, indent=1, allow_nan=True).encode("utf-8")}
    members.update({k: npy_bytes(v) for k, v in arrays.items()})
    return members


def write_artifact(path, kind: str, members: dict, info: dict) -> Path:
    """Write ``members`` (name → bytes) and a manifest with their digests to the zip ``path``.

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_artifact(os.path.join(tempfile.mkdtemp(), "client.zip"), "client", {"a.json": b"{}"}, {})
    >>> read_artifact(p, "client").members
    {'a.json': b'{}'}
    """
    if MANIFEST in members:
        raise ArtifactError(f"{MANIFEST} is reserved")
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "versions": versions(), "info": info,
        "members": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                    for name, data in sorted(members.items())},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(manifest, indent=1))
        for name, data in sorted(members.items()):
            z.writestr(name, data)
    tmp.replace(path)  # never leave a half-written artifact under the real name
    return path


def read_artifact(path, kind: str) -> Artifact:
    """Open and verify an artifact: format, kind, versions, and every member's SHA-256 and size.

    ``path`` is the zip itself, the artifact directory that holds it, or the zip's bytes.

    Raises
    ------
    ArtifactError
        Naming the file or member: not a zip (truncated), no manifest, another kind, an
        incompatible version, a missing, extra, truncated or modified member.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = write_artifact(os.path.join(d, "server.zip"), "server", {"a.json": b"{}"}, {})
    >>> read_artifact(d, "server").kind
    'server'
    """
    if isinstance(path, (bytes, bytearray)):  # the zip's bytes (batch workers receive them once)
        path, source = Path(ARTIFACT_FILES[kind]), io.BytesIO(bytes(path))
    else:
        path = Path(path)
        if path.is_dir():
            path = path / ARTIFACT_FILES[kind]
        if not path.exists():
            raise ArtifactError(f"no {kind} artifact at {path}: write one with FHEModelDev(path, model).save()")
        source = path
    try:
        z = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArtifactError(f"{path.name} is not a readable zip archive (truncated or corrupted: {exc})") from None
    with z:
        names = set(z.namelist())
        if MANIFEST not in names:
            raise ArtifactError(f"{path.name} has no {MANIFEST}: it was not written by qfhe's FHEModelDev")
        try:
            manifest = json.loads(z.read(MANIFEST).decode("utf-8"))
        except (ValueError, zipfile.BadZipFile, OSError) as exc:
            raise ArtifactError(f"{path.name}: member {MANIFEST} is unreadable ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ArtifactError(f"{path.name}: {MANIFEST} is not a qfhe artifact manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{path.name} has artifact format {manifest.get('format_version')!r}; this qfhe reads "
                                f"format {FORMAT_VERSION}. Save the model again with this version")
        if manifest.get("kind") != kind:
            raise ArtifactError(f"{path.name} is a {manifest.get('kind')!r} artifact, expected {kind!r}")
        listed = manifest.get("members", {})
        check_versions(manifest.get("versions", {}), path.name, manifest.get("info", {}).get("scheme") == "tfhe")
        extra = sorted(names - set(listed) - {MANIFEST})
        if extra:
            raise ArtifactError(f"{path.name}: member {extra[0]} is not listed in the manifest (added after saving)")
        members = {}
        for name, entry in listed.items():
            if name not in names:
                raise ArtifactError(f"{path.name}: member {name} is missing")
            try:
                data = z.read(name)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise ArtifactError(f"{path.name}: member {name} is unreadable (truncated or modified: {exc})") from None
            if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                raise ArtifactError(f"{path.name}: member {name} does not match its SHA-256 in the manifest "
                                    "(modified or truncated); do not use this artifact, save it again")
            members[name] = data
    return Artifact(manifest, members)
