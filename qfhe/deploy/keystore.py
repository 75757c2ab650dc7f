"""Evaluation keys a server holds: on disk under random ids, and loaded in memory for the recent ones.

:class:`KeyStore` keeps the uploaded bytes on disk with a size limit that also holds across
restarts (the directory is indexed when the store opens; least recently used keys go first), and
removes the temporary directory it made when it is closed or the process exits.
:class:`KeyCache` keeps loaded keys in memory under a byte budget counted at their *loaded* size
(a TFHE key set takes several times its compressed upload once expanded).

Examples
--------
>>> import tempfile
>>> store = KeyStore(tempfile.mkdtemp(), max_disk_bytes=10)
>>> a = store.put(b"aaaaaa"); b = store.put(b"bbbbbb")   # 12 bytes > 10: a, the least recent, goes
>>> a in store, store.read(b)
(False, b'bbbbbb')
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

from qfhe.errors import CiphertextError, ConfigurationError, UnknownKeyError
from qfhe.validation import as_int

_KEY_ID = re.compile(r"^[0-9a-f]{32}$")
_SUFFIX = ".keys"


def _shown(key_id) -> str:
    key_id = str(key_id)
    return key_id if len(key_id) <= 12 else key_id[:8] + "…"


def private_directory(path, what: str) -> Path:
    """Create ``path`` (mode 0700) or check an existing one: a directory of ours that no one else can write.

    Raises
    ------
    ConfigurationError
        For a file in the way, or a directory owned by another user or writable by group or others.

    Examples
    --------
    >>> import tempfile, os
    >>> d = private_directory(os.path.join(tempfile.mkdtemp(), "keys"), "key_dir")
    >>> oct(d.stat().st_mode & 0o777)
    '0o700'
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigurationError(f"{what} {path} exists and is not a directory; give a directory")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ConfigurationError(f"{what} {path} belongs to another user; use a directory of your own")
    if st.st_mode & 0o022:
        raise ConfigurationError(
            f"{what} {path} is writable by group or others (mode {oct(st.st_mode & 0o777)}); "
            f"chmod 700 it or use another directory"
        )
    return path


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a new random temporary file in the same directory
    (``O_EXCL | O_NOFOLLOW``, so a planted file or link is never followed), then rename it.

    Examples
    --------
    >>> import tempfile, os
    >>> p = Path(tempfile.mkdtemp()) / "k"
    >>> write_atomic(p, b"secret"); p.read_bytes(), oct(p.stat().st_mode & 0o777)
    (b'secret', '0o600')
    """
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class KeyStore:
    """Serialized evaluation keys on disk, by random ``key_id``, within a disk budget.

    Parameters
    ----------
    directory : str or Path, optional
        Where key files live (created 0700). Keys already there (from an earlier run) are indexed,
        oldest first, and count against the budget. Without it, a temporary directory that is
        removed by :meth:`close` or when the process exits.
    max_disk_bytes : int
        Over it, the least recently used keys are deleted (their ``key_id`` becomes unknown and the
        client uploads its keys again).

    Examples
    --------
    >>> KeyStore(max_disk_bytes=0)
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: max_disk_bytes must be a positive int >= 1, got 0 (int)
    """

    def __init__(self, directory=None, max_disk_bytes: int = 8 << 30):
        self.max_disk_bytes = as_int("max_disk_bytes", max_disk_bytes, 1, None, "a positive int")
        if directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="qfhe-keys-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, True)
        else:
            self.directory = private_directory(directory, "key_dir")
            self._cleanup = None
        self._lock = threading.Lock()
        self._disk: OrderedDict[str, int] = OrderedDict()  # key_id -> size, least recently used first
        self._index()

    def _index(self) -> None:
        """Adopt the keys an earlier run left, oldest first; drop half-written files; enforce the budget."""
        found = []
        for p in self.directory.iterdir():
            if p.name.endswith(".tmp") and p.is_file():
                p.unlink(missing_ok=True)
            elif p.suffix == _SUFFIX and _KEY_ID.match(p.stem) and p.is_file() and not p.is_symlink():
                st = p.stat()
                found.append((st.st_mtime, p.stem, st.st_size))
        with self._lock:
            for _, key_id, size in sorted(found):
                self._disk[key_id] = size
            self._evict()

    def _path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}{_SUFFIX}"

    def put(self, data: bytes, key_id: str | None = None) -> str:
        """Store serialized keys (already checked by the caller) under ``key_id`` (a new random one by
        default, or 32 hex digits the caller drew); return it.

        Raises
        ------
        CiphertextError
            For keys larger than the whole disk budget.

        Examples
        --------
        >>> len(KeyStore().put(b"k"))
        32
        """
        size = len(data)
        if size > self.max_disk_bytes:
            raise CiphertextError(
                f"these evaluation keys have {size} bytes, more than the server's key storage limit "
                f"({self.max_disk_bytes} bytes)"
            )
        key_id = secrets.token_hex(16) if key_id is None else key_id
        if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
            raise ConfigurationError("key_id must be 32 hex digits")
        write_atomic(self._path(key_id), bytes(data))
        with self._lock:
            self._disk[key_id] = size
            self._evict()
        return key_id

    def __contains__(self, key_id) -> bool:
        with self._lock:
            return isinstance(key_id, str) and key_id in self._disk

    def check(self, key_id) -> str:
        """``key_id`` if the store has it (marking it recently used).

        Raises
        ------
        UnknownKeyError
            For an id that was never issued or whose keys were evicted.

        Examples
        --------
        >>> KeyStore().check("0" * 32)
        Traceback (most recent call last):
        ...
        qfhe.errors.UnknownKeyError: unknown key_id '00000000…': upload the evaluation keys again (POST /keys)
        """
        with self._lock:
            if isinstance(key_id, str) and _KEY_ID.match(key_id) and key_id in self._disk:
                self._disk.move_to_end(key_id)
                return key_id
        raise UnknownKeyError(f"unknown key_id {_shown(key_id)!r}: upload the evaluation keys again (POST /keys)")

    def path(self, key_id) -> Path:
        """The file of ``key_id``'s keys (see :meth:`check`).

        Examples
        --------
        >>> s = KeyStore(); s.path(s.put(b"k")).suffix
        '.keys'
        """
        return self._path(self.check(key_id))

    def read(self, key_id) -> bytes:
        """The stored bytes of ``key_id``.

        Examples
        --------
        >>> s = KeyStore(); s.read(s.put(b"k"))
        b'k'
        """
        try:
            return self.path(key_id).read_bytes()
        except FileNotFoundError:  # deleted behind the store's back
            with self._lock:
                self._disk.pop(key_id, None)
            raise UnknownKeyError(
                f"unknown key_id {_shown(key_id)!r}: upload the evaluation keys again (POST /keys)"
            ) from None

    def __len__(self) -> int:
        with self._lock:
            return len(self._disk)

    @property
    def disk_bytes(self) -> int:
        """Bytes of stored keys.

        Examples
        --------
        >>> KeyStore().disk_bytes
        0
        """
        with self._lock:
            return sum(self._disk.values())

    def _evict(self) -> None:
        while sum(self._disk.values()) > self.max_disk_bytes and self._disk:
            oldest, _ = self._disk.popitem(last=False)
            self._path(oldest).unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the temporary directory (a given ``directory`` is kept, with its keys).

        Examples
        --------
        >>> s = KeyStore(); d = s.directory; s.close(); d.exists()
        False
        """
        if self._cleanup is not None:
            self._cleanup()


class KeyCache:
    """Loaded keys by ``key_id``, least recently used first out, within ``max_bytes`` of memory.

    Each entry is counted at the memory its keys take loaded (for TFHE, the expanded bootstrap
    keys in both domains, not the compressed upload). The key being used is never evicted, so one
    key set larger than the budget still runs.

    Examples
    --------
    >>> c = KeyCache(100)
    >>> c.put("a", "A", 60); c.put("b", "B", 60)
    >>> c.get("a"), c.get("b"), c.loaded_bytes
    (None, 'B', 60)
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = as_int("max_key_memory_bytes", max_bytes, 1, None, "a positive int")
        self._items: OrderedDict[str, tuple] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_id: str):
        """The loaded keys, or None.

        Examples
        --------
        >>> KeyCache(1).get("x") is None
        True
        """
        with self._lock:
            if key_id not in self._items:
                return None
            self._items.move_to_end(key_id)
            return self._items[key_id][0]

    def put(self, key_id: str, loaded, cost: int) -> None:
        """Keep ``loaded`` (costing ``cost`` bytes), evicting the least recently used others.

        Examples
        --------
        >>> c = KeyCache(10); c.put("a", 1, 50); c.get("a")
        1
        """
        with self._lock:
            self._items[key_id] = (loaded, int(cost))
            self._items.move_to_end(key_id)
            while self._used() > self.max_bytes and len(self._items) > 1:
                self._items.popitem(last=False)

    def _used(self) -> int:
        return sum(c for _, c in self._items.values())

    @property
    def loaded_bytes(self) -> int:
        """Memory the cached keys take, as counted.

        Examples
        --------
        >>> KeyCache(1).loaded_bytes
        0
        """
        with self._lock:
            return self._used()

    def __contains__(self, key_id) -> bool:
        with self._lock:
            return key_id in self._items
