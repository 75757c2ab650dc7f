"""Who wrote an artifact: Ed25519 signatures over its manifest (the ``cryptography`` package).

The manifest lists every member's SHA-256, so one signature over its exact bytes covers the
whole artifact. The developer signs with a private key (:func:`generate_signing_key` makes one);
servers and clients verify with the public key, which is not secret and can be published.

Keys are accepted as ``cryptography`` key objects, as PEM bytes, as the 32 raw bytes, or as the
path of a PEM file.

Examples
--------
>>> private_pem, public_pem = generate_signing_key()
>>> sig = sign(private_pem, b"manifest")
>>> verify(public_pem, b"manifest", sig, "client.zip")
>>> verify(public_pem, b"other", sig, "client.zip")
Traceback (most recent call last):
...
qfhe.errors.ArtifactError: client.zip: the signature does not match the verify_key: the artifact was changed after signing, or signed with another key
"""

from __future__ import annotations

import os
from pathlib import Path

from qfhe.errors import ArtifactError, ConfigurationError

SIGNATURE_MEMBER = "manifest.sig"


def _key_bytes(key, what: str) -> bytes:
    if isinstance(key, (bytes, bytearray)):
        return bytes(key)
    if isinstance(key, (str, Path)):
        path = Path(key)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{what}: cannot read the key file {path} ({exc.strerror})") from None
    raise ConfigurationError(
        f"{what} must be an Ed25519 key object, PEM bytes, 32 raw bytes or a PEM file path, got {type(key).__name__}"
    )


def private_key(key):
    """An ``Ed25519PrivateKey`` from any accepted form.

    Examples
    --------
    >>> type(private_key(generate_signing_key()[0])).__name__
    'Ed25519PrivateKey'
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if isinstance(key, Ed25519PrivateKey):
        return key
    data = _key_bytes(key, "signing_key")
    try:
        loaded = (
            Ed25519PrivateKey.from_private_bytes(data)
            if len(data) == 32
            else serialization.load_pem_private_key(data, password=None)
        )
    except (ValueError, TypeError):
        raise ConfigurationError(
            "signing_key is not an Ed25519 private key (PEM without password, or 32 raw "
            "bytes); make one with qfhe.deploy.generate_signing_key()"
        ) from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigurationError(f"signing_key is a {type(loaded).__name__}; qfhe signs with Ed25519 keys")
    return loaded


def public_key(key):
    """An ``Ed25519PublicKey`` from any accepted form.

    Examples
    --------
    >>> type(public_key(generate_signing_key()[1])).__name__
    'Ed25519PublicKey'
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, Ed25519PrivateKey):
        return key.public_key()
    data = _key_bytes(key, "verify_key")
    try:
        loaded = (
            Ed25519PublicKey.from_public_bytes(data) if len(data) == 32 else serialization.load_pem_public_key(data)
        )
    except (ValueError, TypeError):
        raise ConfigurationError(
            "verify_key is not an Ed25519 public key (PEM, or 32 raw bytes); it is the .pub file "
            "generate_signing_key wrote"
        ) from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise ConfigurationError(f"verify_key is a {type(loaded).__name__}; qfhe verifies Ed25519 signatures")
    return loaded


def generate_signing_key(path=None) -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as PEM: ``(private, public)``.

    With ``path``, also write the private key there (mode 0600, never over an existing file) and
    the public key to ``path`` + ``.pub``.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "dev-key")
    >>> _ = generate_signing_key(p)
    >>> oct(os.stat(p).st_mode & 0o777), os.path.exists(p + ".pub")
    ('0o600', True)
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if path is not None:
        path = Path(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise ConfigurationError(f"{path} exists; choose a new path (a signing key is never overwritten)") from None
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        Path(str(path) + ".pub").write_bytes(public)
    return private, public


def sign(key, data: bytes) -> bytes:
    """The Ed25519 signature of ``data``.

    Examples
    --------
    >>> len(sign(generate_signing_key()[0], b"x"))
    64
    """
    return private_key(key).sign(bytes(data))


def verify(key, data: bytes, signature: bytes, where: str) -> None:
    """Raise :class:`~qfhe.errors.ArtifactError` unless ``signature`` is ``key``'s over ``data``.

    Examples
    --------
    >>> priv, pub = generate_signing_key()
    >>> verify(pub, b"x", sign(priv, b"x"), "server.zip")
    """
    from cryptography.exceptions import InvalidSignature

    try:
        public_key(key).verify(bytes(signature), bytes(data))
    except InvalidSignature:
        raise ArtifactError(
            f"{where}: the signature does not match the verify_key: the artifact was changed after "
            "signing, or signed with another key"
        ) from None
