"""Evaluation keys a server holds, under random ids, with memory and disk limits (least recently used first out).

Examples
--------
>>> import tempfile
>>> store = KeyStore(lambda data: data.upper(), tempfile.mkdtemp(), max_memory_bytes=10, max_disk_bytes=100)
>>> a = store.put(b"aaaaaa"); b = store.put(b"bbbbbb")   # 12 bytes > 10 in memory: a stays on disk only
>>> store.in_memory(a), store.get(a), store.in_memory(b)
(False, b'AAAAAA', False)
"""

from __future__ import annotations

import secrets
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from qfhe.errors import CiphertextError, UnknownKeyError
from qfhe.validation import as_int

_ID_CHARS = set("0123456789abcdef")


class KeyStore:
    """Evaluation keys by ``key_id``: every key on disk, the recently used ones also loaded in memory.

    Parameters
    ----------
    loader : callable
        Bytes → the loaded keys object (it validates them; its errors propagate on ``put``).
    directory : str or Path, optional
        Where key files are written (a new temporary directory by default).
    max_memory_bytes, max_disk_bytes : int
        Limits on the serialized sizes of the loaded and the stored keys. Over the memory limit
        the least recently used keys are unloaded (they stay on disk and load again on use); over
        the disk limit they are deleted (their ``key_id`` becomes unknown and the client uploads
        its keys again).

    Examples
    --------
    >>> KeyStore(bytes, max_memory_bytes=0)
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: max_memory_bytes must be a positive int >= 1, got 0 (int)
    """

    def __init__(self, loader: Callable, directory=None, max_memory_bytes: int = 4 << 30,
                 max_disk_bytes: int = 64 << 30):
        self.loader = loader
        self.max_memory_bytes = as_int("max_memory_bytes", max_memory_bytes, 1, None, "a positive int")
        self.max_disk_bytes = as_int("max_disk_bytes", max_disk_bytes, 1, None, "a positive int")
        self.directory = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="qfhe-keys-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._disk: OrderedDict[str, int] = OrderedDict()  # key_id -> size, least recently used first
        self._memory: OrderedDict[str, tuple] = OrderedDict()  # key_id -> (loaded, size)
        self._lock = threading.Lock()

    def _path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}.keys"

    def put(self, data: bytes) -> str:
        """Validate and store serialized keys; return their new random ``key_id``.

        Raises
        ------
        CiphertextError
            For keys larger than the disk limit (or invalid, from ``loader``).

        Examples
        --------
        >>> len(KeyStore(bytes).put(b"k"))
        32
        """
        size = len(data)
        if size > self.max_disk_bytes:
            raise CiphertextError(f"these evaluation keys have {size} bytes, more than the server's key storage limit "
                                  f"({self.max_disk_bytes} bytes)")
        loaded = self.loader(data)
        key_id = secrets.token_hex(16)
        self._path(key_id).write_bytes(data)
        with self._lock:
            self._disk[key_id] = size
            self._memory[key_id] = (loaded, size)
            self._evict()
        return key_id

    def get(self, key_id: str):
        """The loaded keys of ``key_id`` (from memory, else loaded from disk).

        Raises
        ------
        UnknownKeyError
            For an id that was never issued or whose keys were evicted from disk.

        Examples
        --------
        >>> KeyStore(bytes).get("0" * 32)
        Traceback (most recent call last):
        ...
        qfhe.errors.UnknownKeyError: unknown key_id '00000000…': upload the evaluation keys again (POST /keys)
        """
        key_id = str(key_id)
        with self._lock:
            if key_id in self._memory:
                self._memory.move_to_end(key_id)
                self._disk.move_to_end(key_id)
                return self._memory[key_id][0]
            known = key_id in self._disk
        if not known or not set(key_id) <= _ID_CHARS:
            shown = key_id if len(key_id) <= 12 else key_id[:8] + "…"
            raise UnknownKeyError(f"unknown key_id {shown!r}: upload the evaluation keys again (POST /keys)")
        data = self._path(key_id).read_bytes()
        loaded = self.loader(data)
        with self._lock:
            if key_id in self._disk:
                self._memory[key_id] = (loaded, len(data))
                self._disk.move_to_end(key_id)
                self._evict(keep=key_id)
        return loaded

    def in_memory(self, key_id: str) -> bool:
        """Whether ``key_id``'s keys are loaded.

        Examples
        --------
        >>> KeyStore(bytes).in_memory("x")
        False
        """
        with self._lock:
            return key_id in self._memory

    def __len__(self) -> int:
        with self._lock:
            return len(self._disk)

    def _evict(self, keep: str | None = None) -> None:
        while sum(s for _, s in self._memory.values()) > self.max_memory_bytes and len(self._memory) > 0:
            oldest = next(iter(self._memory))
            if oldest == keep and len(self._memory) == 1:
                break
            self._memory.pop(oldest)
        while sum(self._disk.values()) > self.max_disk_bytes and self._disk:
            oldest, _ = self._disk.popitem(last=False)
            self._memory.pop(oldest, None)
            self._path(oldest).unlink(missing_ok=True)

