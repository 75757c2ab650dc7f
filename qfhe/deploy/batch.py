"""Batch serving: many encrypted requests over local processes or a Dask cluster.

Each worker loads the server artifact and the evaluation keys once (the set-up of a
:class:`~qfhe.deploy.workers.WorkerPool`, or a Dask worker plugin that every current and future
worker runs once), then runs requests. Results come back in the order of the inputs, and no
finished result is ever lost: a worker that dies fails only the item it was running, is replaced,
and that item is retried (once by default); an item that fails every attempt is reported in
:class:`BatchResult`'s ``errors``. (A ``ProcessPoolExecutor`` would lose every pending item, and
finished ones with the batch, when one worker dies.)

Examples
--------
>>> r = BatchResult([b"a", None], {1: "CiphertextError: truncated"}, [1, 2], 0.1)
>>> r.ok, len(r), r[0]
(False, 2, b'a')
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

from qfhe.deploy.workers import WorkerPool
from qfhe.errors import ConfigurationError, QfheError
from qfhe.validation import as_int


@dataclass
class BatchResult:
    """Per-item results of :meth:`FHEModelServer.run_batch`, in input order.

    Attributes
    ----------
    outputs : list of bytes or None
        Encrypted outputs; None where the item failed twice.
    errors : dict of int to str
        Index → the last error of each failed item.
    attempts : list of int
        Attempts per item (1, or 2 after a retry).
    seconds : float
        Wall time of the whole batch.

    Examples
    --------
    >>> BatchResult([b"x"], {}, [1], 0.0).raise_for_errors() is None
    True
    """

    outputs: list
    errors: dict
    attempts: list
    seconds: float

    @property
    def ok(self) -> bool:
        """Whether every item succeeded.

        Examples
        --------
        >>> BatchResult([], {}, [], 0.0).ok
        True
        """
        return not self.errors

    def __len__(self) -> int:
        return len(self.outputs)

    def __getitem__(self, i):
        return self.outputs[i]

    def __iter__(self):
        return iter(self.outputs)

    def raise_for_errors(self) -> None:
        """Raise :class:`~qfhe.errors.QfheError` listing the failed items, if any.

        Examples
        --------
        >>> BatchResult([None], {0: "boom"}, [2], 0.0).raise_for_errors()
        Traceback (most recent call last):
        ...
        qfhe.errors.QfheError: 1 of 1 batch items failed after a retry: item 0: boom
        """
        if self.errors:
            shown = "; ".join(f"item {i}: {m}" for i, m in sorted(self.errors.items())[:5])
            raise QfheError(f"{len(self.errors)} of {len(self.outputs)} batch items failed after a retry: {shown}")


# -- local processes -----------------------------------------------------------------------------------
def setup_batch_worker(artifact: bytes, keys: bytes) -> tuple:
    """A batch worker's state: the server built from the artifact's bytes and the loaded keys.

    Examples
    --------
    >>> callable(setup_batch_worker)
    True
    """
    from qfhe.deploy.server import FHEModelServer

    server = FHEModelServer(artifact)
    return server, server.load_keys(keys)


def run_batch_item(state: tuple, blob: bytes) -> bytes:
    """Run one encrypted request with a batch worker's state.

    Examples
    --------
    >>> callable(run_batch_item)
    True
    """
    server, keys = state
    return server.run_loaded(blob, keys)


# -- Dask ------------------------------------------------------------------------------------------------
def _dask_plugin(artifact: bytes, keys: bytes, name: str):
    from distributed.diagnostics.plugin import WorkerPlugin

    class QfheServerPlugin(WorkerPlugin):
        """Loads the server and the evaluation keys once on each worker."""

        def __init__(self):
            self.name = name
            self.artifact, self.keys = artifact, keys

        def setup(self, worker):
            self.state = setup_batch_worker(self.artifact, self.keys)

    return QfheServerPlugin()


def _run_on_dask_worker(blob: bytes, plugin_name: str) -> bytes:
    from distributed import get_worker

    return run_batch_item(get_worker().plugins[plugin_name].state, blob)


def _is_dask_client(executor) -> bool:
    return type(executor).__name__ == "Client" and type(executor).__module__.startswith("distributed")


def run_batch(
    server,
    encrypted: list,
    evaluation_keys: bytes,
    executor=None,
    max_workers: int | None = None,
    retries: int = 1,
    item_timeout: float | None = None,
) -> BatchResult:
    """Run ``encrypted`` (a list of :meth:`FHEModelClient.quantize_encrypt_serialize` blobs) in parallel.

    Parameters
    ----------
    server : FHEModelServer
    encrypted : list of bytes
    evaluation_keys : bytes
        The client's serialized evaluation keys (sent to each worker once).
    executor : None, "processes" or distributed.Client
        None / ``"processes"``: a pool of local processes; a Dask ``distributed.Client``: its
        cluster's workers.
    max_workers : int, optional
        Local processes (default: the number of CPUs, at most one per item).
    retries : int
        Extra attempts for a failed item (default 1), on a fresh worker when the worker died.
    item_timeout : float, optional
        Local processes: seconds an item may take (its worker is replaced past it).

    Returns
    -------
    BatchResult

    Examples
    --------
    >>> callable(run_batch)
    True
    """
    if not isinstance(evaluation_keys, (bytes, bytearray)):
        raise ConfigurationError(
            "run_batch needs the serialized evaluation keys (bytes), which each worker loads once; "
            f"got {type(evaluation_keys).__name__}"
        )
    retries = as_int("retries", retries, 0, 5)
    blobs = [bytes(b) for b in encrypted]
    server.load_keys(bytes(evaluation_keys))  # refuse bad keys here, not n times in the workers
    start = time.perf_counter()
    if executor is None or executor == "processes":
        n = (
            as_int("max_workers", max_workers, 1, None)
            if max_workers is not None
            else min(len(blobs) or 1, os.cpu_count() or 1)
        )
        with WorkerPool(
            n, "qfhe.deploy.batch:setup_batch_worker", (server.artifact_bytes, bytes(evaluation_keys))
        ) as pool:
            outputs, errors, attempts = _collect(
                lambda b: pool.submit("qfhe.deploy.batch:run_batch_item", b, timeout=item_timeout), blobs, retries
            )
    elif _is_dask_client(executor):
        digest = hashlib.sha256(server.artifact_bytes + bytes(evaluation_keys)).hexdigest()[:16]
        name = f"qfhe-server-{digest}"
        executor.register_plugin(_dask_plugin(server.artifact_bytes, bytes(evaluation_keys), name), name=name)
        outputs, errors, attempts = _collect(
            lambda b: executor.submit(_run_on_dask_worker, b, name, pure=False), blobs, retries
        )
    else:
        raise ConfigurationError(
            f"executor must be None, 'processes' or a dask distributed.Client, got {type(executor).__name__}"
        )
    return BatchResult(outputs, errors, attempts, time.perf_counter() - start)


def _collect(submit, blobs: list, retries: int) -> tuple[list, dict, list]:
    """Submit every item, keep each result as it finishes, resubmit failures up to ``retries`` times."""
    outputs: list = [None] * len(blobs)
    errors: dict = {}
    attempts = [1] * len(blobs)
    pending = {i: submit(b) for i, b in enumerate(blobs)}
    while pending:
        again = {}
        for i, fut in pending.items():
            try:
                outputs[i] = fut.result()
                errors.pop(i, None)
            except Exception as exc:  # noqa: BLE001 - any worker failure is reported per item
                errors[i] = f"{type(exc).__name__}: {exc}"
                if attempts[i] <= retries:
                    attempts[i] += 1
                    again[i] = submit(blobs[i])
        pending = again
    return outputs, errors, attempts
