"""Deployment artifacts: zip files of JSON, ``.npy`` arrays and text, each member with its SHA-256.

Nothing in an artifact is executed, compiled from its own text, or unpickled:

* structure and metadata are JSON; arrays are ``.npy`` read without pickle (:mod:`qfhe.deploy.plain`);
* a TFHE server artifact carries qfhe's own IR (the circuit graph with materialized integer
  tables, the value bounds, the compile options), which the server lowers with qfhe's lowering,
  and concrete's client specs (parameters, as JSON) which the rebuilt circuit must reproduce;
* ``manifest.json`` records the format, the versions of qfhe, concrete-python and Python, and the
  SHA-256 and size of every member; ``manifest.sig``, when present, is an Ed25519 signature of
  the manifest's exact bytes (:mod:`qfhe.deploy.signing`).

An artifact is treated as hostile until checked. Reading is bounded before anything is inflated:
the zip's size, its entry count (from the end-of-directory record, before the directory is
parsed), each member's declared size in the manifest against the zip directory, and the total;
members are then read through a bounded stream and hashed. Every failure is an
:class:`~qfhe.errors.ArtifactError` naming the file and member.

Examples
--------
>>> import tempfile, os
>>> p = write_artifact(os.path.join(tempfile.mkdtemp(), "client.zip"), "client", {"a.json": b"{}"}, {"scheme": "ckks"})
>>> read_artifact(p, "client").members
{'a.json': b'{}'}
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np  # noqa: F401  (doctests)

from qfhe.deploy.plain import decode, encode, load_json, load_npy, npy_bytes
from qfhe.deploy.signing import SIGNATURE_MEMBER, sign, verify
from qfhe.errors import ArtifactError, ConfigurationError

FORMAT = "qfhe-artifact"
#: 2: TFHE circuits as qfhe IR (no MLIR), signatures, declared sizes checked before reading.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 1 << 20
#: The file names of the two artifacts inside an artifact directory.
ARTIFACT_FILES = {"client": "client.zip", "server": "server.zip"}
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}){0,3}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_EOCD = struct.Struct("<4s4H2LH")


@dataclass(frozen=True)
class ArtifactLimits:
    """Bounds on what reading an artifact may cost.

    Parameters
    ----------
    max_bytes : int
        Size of the zip file.
    max_members : int
        Entries in the zip.
    max_member_bytes : int
        Uncompressed size of one member.
    max_total_bytes : int
        Uncompressed size of all members together.
    max_json_bytes : int
        Size of one JSON member.

    Examples
    --------
    >>> ArtifactLimits().max_members
    4096
    """

    max_bytes: int = 2 << 30
    max_members: int = 4096
    max_member_bytes: int = 1 << 30
    max_total_bytes: int = 2 << 30
    max_json_bytes: int = 256 << 20


def versions() -> dict[str, str]:
    """The versions an artifact records: qfhe, concrete-python, Python.

    Examples
    --------
    >>> sorted(versions())
    ['concrete-python', 'python', 'qfhe']
    """
    import qfhe

    return {
        "qfhe": qfhe.__version__,
        "concrete-python": metadata.version("concrete-python"),
        "python": platform.python_version(),
    }


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
        theirs = ", ".join(f"{n} {str(recorded.get(n, '?'))[:32]}" for n in names)
        ours = ", ".join(f"{n} {here[n]}" for n in names)
        raise ArtifactError(
            f"{member} was written by {theirs}; this is {ours}. Save the model again with this "
            "version (FHEModelDev(...).save()), or install the versions it was written with"
        )


def artifact_sha256(path) -> str:
    """SHA-256 (hex) of an artifact file, to pin it: ``FHEModelClient(path, expected_sha256=...)``.

    ``path`` is the zip or the directory that holds ``client.zip``.

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_artifact(os.path.join(tempfile.mkdtemp(), "client.zip"), "client", {}, {"scheme": "ckks"})
    >>> len(artifact_sha256(p))
    64
    """
    p = Path(path)
    if p.is_dir():
        p = p / ARTIFACT_FILES["client"]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Artifact:
    """A verified artifact: its manifest, its members (name → bytes), the zip's SHA-256 and bytes.

    Examples
    --------
    >>> Artifact({"kind": "client"}, {}).kind
    'client'
    """

    manifest: dict
    members: dict
    sha256: str = ""
    data: bytes = field(default=b"", repr=False)
    signed: bool = False
    limits: ArtifactLimits = field(default_factory=ArtifactLimits, repr=False)

    @property
    def kind(self) -> str:
        """``"client"`` or ``"server"``.

        Examples
        --------
        >>> Artifact({"kind": "server"}, {}).kind
        'server'
        """
        return self.manifest["kind"]

    @property
    def name(self) -> str:
        """The artifact's file name, for messages.

        Examples
        --------
        >>> Artifact({"kind": "server"}, {}).name
        'server.zip'
        """
        return ARTIFACT_FILES.get(self.manifest.get("kind"), "artifact")

    def only(self, names: set, prefixes: tuple = ()) -> None:
        """Refuse members other than ``names`` and ``.npy`` arrays under ``prefixes``: an artifact holds
        what its scheme uses and nothing else (a member from an older format, e.g. MLIR, is refused).

        Examples
        --------
        >>> Artifact({"kind": "server"}, {"circuit.mlir": b""}).only({"model.json"})
        Traceback (most recent call last):
        ...
        qfhe.errors.ArtifactError: server.zip: unexpected member circuit.mlir (this qfhe reads JSON and .npy members only; save the model again)
        """
        for member in self.members:
            if member not in names and not (member.startswith(prefixes) and member.endswith(".npy") and prefixes):
                raise ArtifactError(
                    f"{self.name}: unexpected member {member[:80]} (this qfhe reads JSON and .npy members "
                    "only; save the model again)"
                )

    def json(self, name: str):
        """Parse a JSON member (bounded size and depth).

        Examples
        --------
        >>> Artifact({}, {"a.json": b'{"x": 1}'}).json("a.json")
        {'x': 1}
        """
        if name not in self.members:
            raise ArtifactError(f"{self.name} has no member {name}")
        return load_json(self.members[name], f"{self.name}: member {name}", self.limits.max_json_bytes)

    def plain(self, name: str = "model.json", prefix: str = "arrays/"):
        """A JSON member with its arrays (the ``.npy`` members under ``prefix``) decoded.

        Examples
        --------
        >>> arrays = {}
        >>> doc = json.dumps(encode({"w": np.ones(2)}, arrays)).encode()
        >>> members = {"model.json": doc, **{k: npy_bytes(v) for k, v in arrays.items()}}
        >>> Artifact({}, members).plain()["w"]
        array([1., 1.])
        """
        arrays = {k: load_npy(v, k) for k, v in self.members.items() if k.startswith(prefix) and k.endswith(".npy")}
        return decode(self.json(name), arrays, f"{self.name}: {name}")


def build_members(doc: dict, where: str, name: str = "model.json", prefix: str = "arrays/") -> dict:
    """A JSON member ``name`` plus its ``.npy`` members under ``prefix``, from plain data.

    Examples
    --------
    >>> sorted(build_members({"w": np.ones(2)}, "model"))
    ['arrays/0.npy', 'model.json']
    """
    arrays: dict = {}
    data = encode(doc, arrays, where, prefix)
    members = {name: json.dumps(data, indent=1, allow_nan=True).encode("utf-8")}
    members.update({k: npy_bytes(v) for k, v in arrays.items()})
    return members


def write_artifact(path, kind: str, members: dict, info: dict, signing_key=None) -> Path:
    """Write ``members`` (name → bytes), a manifest with their digests, and with ``signing_key`` its
    signature, to the zip ``path`` (atomically: a temporary file in the same directory, then renamed).

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_artifact(os.path.join(tempfile.mkdtemp(), "client.zip"), "client", {"a.json": b"{}"},
    ...                    {"scheme": "tfhe"})
    >>> sorted(zipfile.ZipFile(p).namelist())
    ['a.json', 'manifest.json']
    """
    if MANIFEST in members or SIGNATURE_MEMBER in members:
        raise ArtifactError(f"{MANIFEST} and {SIGNATURE_MEMBER} are reserved member names")
    bad = [n for n in members if not _MEMBER_NAME.match(n)]
    if bad:
        raise ArtifactError(f"member name {bad[0]!r} is not allowed")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "versions": versions(),
        "info": info,
        "members": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in sorted(members.items())
        },
    }
    manifest_bytes = json.dumps(manifest, indent=1).encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST, manifest_bytes)
            if signing_key is not None:
                z.writestr(SIGNATURE_MEMBER, sign(signing_key, manifest_bytes))
            for name, data in sorted(members.items()):
                z.writestr(name, data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # never leave a half-written artifact under the real name
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _source(source, kind: str, limits: ArtifactLimits) -> tuple[str, bytes]:
    """(file name for messages, the zip's bytes), size-checked before the file is read."""
    if isinstance(source, (bytes, bytearray, memoryview)):  # batch workers receive the bytes once
        data = bytes(source)
        name = ARTIFACT_FILES[kind]
    else:
        path = Path(source)
        if path.is_dir():
            path = path / ARTIFACT_FILES[kind]
        if not path.is_file():
            raise ArtifactError(f"no {kind} artifact at {path}: write one with FHEModelDev(path, model).save()")
        name = path.name
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ArtifactError(f"{name} has {size} bytes, more than the {limits.max_bytes} allowed (ArtifactLimits)")
        with open(path, "rb") as f:
            data = f.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise ArtifactError(f"{name} has {len(data)} bytes, more than the {limits.max_bytes} allowed (ArtifactLimits)")
    return name, data


def _entry_count(data: bytes, name: str) -> int:
    """The number of entries the zip's end-of-central-directory record declares, read before
    ``zipfile`` builds an object per entry."""
    tail = data[-(_EOCD.size + 0xFFFF) :]
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise ArtifactError(f"{name} is not a readable zip archive (truncated or corrupted: no end of directory)")
    _, _, _, _, total, _, offset, _ = _EOCD.unpack_from(tail, at)
    if total == 0xFFFF or offset == 0xFFFFFFFF:
        raise ArtifactError(f"{name} is a zip64 archive; qfhe writes plain zip files, so it was not written by qfhe")
    return total


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, size: int, name: str) -> bytes:
    try:
        with z.open(info) as f:
            data = f.read(size + 1)  # a bounded stream: never more than the declared size is inflated
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError, zlib.error):
        raise ArtifactError(f"{name}: member {info.filename} is unreadable (truncated or modified)") from None
    if len(data) != size:
        raise ArtifactError(
            f"{name}: member {info.filename} has {len(data)} bytes, its manifest entry says {size} "
            "(truncated or modified)"
        )
    return data


def _check_manifest(m, name: str, kind: str, limits: ArtifactLimits) -> dict:
    """Every field of a manifest, type-checked; returns its members table."""
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ArtifactError(f"{name}: {MANIFEST} is not a qfhe artifact manifest")
    if m.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{name} has artifact format {str(m.get('format_version'))[:16]!r}; this qfhe reads format "
            f"{FORMAT_VERSION}. Save the model again with this version"
        )
    if m.get("kind") != kind:
        raise ArtifactError(f"{name} is a {str(m.get('kind'))[:16]!r} artifact, expected {kind!r}")
    info, vers, members = m.get("info"), m.get("versions"), m.get("members")
    if (
        not isinstance(info, dict)
        or info.get("scheme") not in ("tfhe", "ckks")
        or not isinstance(info.get("model_type", ""), str)
    ):
        raise ArtifactError(f"{name}: {MANIFEST} has no valid info.scheme ('tfhe' or 'ckks')")
    if not isinstance(vers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in vers.items()):
        raise ArtifactError(f"{name}: {MANIFEST} has no valid versions table")
    if not isinstance(members, dict) or len(members) > limits.max_members:
        raise ArtifactError(f"{name}: {MANIFEST} has no valid members table (at most {limits.max_members} members)")
    total = 0
    for member, entry in members.items():
        if not _MEMBER_NAME.match(member) or member in (MANIFEST, SIGNATURE_MEMBER):
            raise ArtifactError(f"{name}: {MANIFEST} lists a member with a forbidden name {member[:80]!r}")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not _HEX64.match(entry["sha256"])
            or type(entry.get("size")) is not int
            or entry["size"] < 0
        ):
            raise ArtifactError(f"{name}: {MANIFEST} entry of {member} needs a hex sha256 and a size")
        if entry["size"] > limits.max_member_bytes:
            raise ArtifactError(
                f"{name}: member {member} declares {entry['size']} bytes, more than the "
                f"{limits.max_member_bytes} allowed (ArtifactLimits)"
            )
        total += entry["size"]
    if total > limits.max_total_bytes:
        raise ArtifactError(
            f"{name}: its members declare {total} bytes in all, more than the {limits.max_total_bytes} "
            "allowed (ArtifactLimits)"
        )
    check_versions(vers, name, info["scheme"] == "tfhe")
    return members


def read_artifact(
    source, kind: str, verify_key=None, expected_sha256: str | None = None, limits: ArtifactLimits | None = None
) -> Artifact:
    """Open and verify an artifact: size, entries, manifest, signature, versions, every member's
    SHA-256 and size.

    Parameters
    ----------
    source : str, Path or bytes
        The zip itself, the artifact directory that holds it, or the zip's bytes.
    kind : {"client", "server"}
    verify_key : optional
        An Ed25519 public key (see :mod:`qfhe.deploy.signing`): the artifact must carry a valid
        signature by it.
    expected_sha256 : str, optional
        The zip file's SHA-256 (hex), e.g. published by the developer: anything else is refused.
    limits : ArtifactLimits, optional

    Raises
    ------
    ArtifactError
        Naming the file or member: not a zip (truncated), too large, no manifest, another kind,
        an incompatible version, a missing, extra, truncated or modified member, no or a wrong
        signature, another digest.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = write_artifact(os.path.join(d, "server.zip"), "server", {"a.json": b"{}"}, {"scheme": "ckks"})
    >>> read_artifact(d, "server").kind
    'server'
    >>> read_artifact(d, "server", expected_sha256="0" * 64)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: server.zip has SHA-256 ...; expected 0000000000000000...
    """
    if kind not in ARTIFACT_FILES:
        raise ConfigurationError(f"kind must be 'client' or 'server', got {kind!r}")
    limits = limits or ArtifactLimits()
    name, data = _source(source, kind, limits)
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None:
        if not isinstance(expected_sha256, str) or not _HEX64.match(expected_sha256.lower()):
            raise ConfigurationError("expected_sha256 must be 64 hex digits (qfhe.deploy.artifact_sha256(path))")
        if digest != expected_sha256.lower():
            raise ArtifactError(
                f"{name} has SHA-256 {digest[:16]}…; expected {expected_sha256.lower()[:16]}…: this is "
                "not the artifact that was published"
            )
    if _entry_count(data, name) > limits.max_members + 2:
        raise ArtifactError(f"{name} has more than {limits.max_members} entries (ArtifactLimits)")
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        raise ArtifactError(f"{name} is not a readable zip archive (truncated or corrupted)") from None
    with z:
        infos = z.infolist()
        by_name = {i.filename: i for i in infos}
        if len(by_name) != len(infos):
            raise ArtifactError(f"{name} holds two entries with one name (added after saving)")
        for i in infos:
            if i.flag_bits & 0x1 or i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ArtifactError(
                    f"{name}: member {i.filename[:80]} is encrypted or compressed with a method qfhe does not write"
                )
        if MANIFEST not in by_name:
            raise ArtifactError(f"{name} has no {MANIFEST}: it was not written by qfhe's FHEModelDev")
        if by_name[MANIFEST].file_size > MANIFEST_MAX_BYTES:
            raise ArtifactError(
                f"{name}: {MANIFEST} declares {by_name[MANIFEST].file_size} bytes, more than the "
                f"{MANIFEST_MAX_BYTES} a manifest may have"
            )
        manifest_bytes = _read_member(z, by_name[MANIFEST], by_name[MANIFEST].file_size, name)
        manifest = load_json(manifest_bytes, f"{name}: {MANIFEST}", MANIFEST_MAX_BYTES)
        signature = None
        if SIGNATURE_MEMBER in by_name:
            if by_name[SIGNATURE_MEMBER].file_size != 64:
                raise ArtifactError(f"{name}: {SIGNATURE_MEMBER} is not an Ed25519 signature (64 bytes)")
            signature = _read_member(z, by_name[SIGNATURE_MEMBER], 64, name)
        if verify_key is not None:
            if signature is None:
                raise ArtifactError(
                    f"{name} is not signed, and a verify_key was given: ask its developer for the signed "
                    "artifact (FHEModelDev(..., signing_key=...))"
                )
            verify(verify_key, manifest_bytes, signature, name)
        listed = _check_manifest(manifest, name, kind, limits)
        extra = sorted(set(by_name) - set(listed) - {MANIFEST, SIGNATURE_MEMBER})
        if extra:
            raise ArtifactError(f"{name}: member {extra[0][:80]} is not listed in the manifest (added after saving)")
        members = {}
        for member, entry in listed.items():
            if member not in by_name:
                raise ArtifactError(f"{name}: member {member} is missing")
            if by_name[member].file_size != entry["size"]:
                raise ArtifactError(
                    f"{name}: member {member} has {by_name[member].file_size} bytes in the zip, its "
                    f"manifest entry says {entry['size']} (truncated or modified)"
                )
            blob = _read_member(z, by_name[member], entry["size"], name)
            if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
                raise ArtifactError(
                    f"{name}: member {member} does not match its SHA-256 in the manifest "
                    "(modified or truncated); do not use this artifact, save it again"
                )
            members[member] = blob
    return Artifact(manifest, members, digest, data, signed=verify_key is not None, limits=limits)
