"""Worker processes for work that runs native code on untrusted bytes: a crash costs one job, not the caller.

:class:`WorkerPool` keeps ``n`` processes, each set up once by a module-level function (load the
artifact, build the circuit). A job runs in one of them; the parent waits on the job's answer
*and* on the process itself, so

* a worker that dies (segfault, abort, out of memory, killed) fails only its own job, with
  :class:`~qfhe.errors.WorkerCrashedError`, and is replaced by a fresh one;
* a job past its deadline, or cancelled (its client went away), has its worker killed and
  replaced: native code cannot be interrupted any other way;
* queued jobs and the other workers are untouched, and nothing is shared between jobs but the
  worker's own state (loaded circuit, cached keys).

Errors a job raises come back as the same :mod:`qfhe.errors` class with its message (qfhe's
messages name no memory address or source path); anything else comes back as an internal error
whose details stay in the worker's log. ``concurrent.futures.ProcessPoolExecutor`` cannot do this:
one dead worker breaks every pending future, and a running task cannot be stopped.

Messages between the parent and its own workers use ``multiprocessing`` connections (the parent
starts the workers itself; no other process can write to these pipes).

Examples
--------
>>> pool = WorkerPool(1, "qfhe.deploy.workers:echo_setup", ("state",))
>>> pool.submit("qfhe.deploy.workers:echo", b"hi").result(timeout=60)
(b'hi', 'state')
>>> pool.close()
"""

from __future__ import annotations

import importlib
import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
import traceback
from concurrent.futures import Future
from multiprocessing.connection import wait

from qfhe import errors
from qfhe.errors import ArtifactError, QfheError, RequestTimeoutError, WorkerCrashedError
from qfhe.validation import as_int

log = logging.getLogger("qfhe.deploy")
_POLL = 0.2


def _resolve(ref: str):
    """``"package.module:function"`` → the function (only module-level functions are ever sent)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def echo_setup(value):
    """A trivial setup for tests and examples: the worker's state is ``value``.

    Examples
    --------
    >>> echo_setup(3)
    3
    """
    return value


def echo(state, data):
    """A trivial job for tests and examples: ``(data, state)``.

    Examples
    --------
    >>> echo("s", b"x")
    (b'x', 's')
    """
    return data, state


def _error_reply(exc: BaseException) -> tuple:
    if isinstance(exc, QfheError):
        return "error", type(exc).__name__, str(exc)
    log.error("worker %d: internal error\n%s", os.getpid(), traceback.format_exc())
    return "error", "InternalError", "the server failed on this request; its log has the details"


def _worker_main(conn, setup: str, args: tuple, log_level: int) -> None:
    """A worker: set up once, then run jobs until the pipe closes."""
    logging.basicConfig(level=log_level, format="%(asctime)s qfhe-worker[%(process)d] %(levelname)s %(message)s")
    try:
        state = _resolve(setup)(*args)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(_error_reply(exc))
        return
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        job_id, fn, job_args = job
        try:
            conn.send(("done", job_id, _resolve(fn)(state, *job_args)))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back as a reply
            conn.send(("failed", job_id) + _error_reply(exc)[1:])


def _exception(name: str, message: str) -> QfheError:
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, QfheError)):
        cls = QfheError
    return cls(message)


class _Job:
    def __init__(self, fn: str, args: tuple, timeout: float | None):
        self.fn, self.args, self.timeout = fn, args, timeout
        self.deadline = None if timeout is None else time.monotonic() + float(timeout)
        self.future: Future = Future()
        self.future.qfhe_job = self  # what WorkerPool.cancel reaches a running job through
        self.abandoned = threading.Event()


class _Slot(threading.Thread):
    """One worker process and the parent thread that feeds it jobs and watches it."""

    def __init__(self, pool: "WorkerPool", index: int):
        super().__init__(name=f"qfhe-worker-slot-{index}", daemon=True)
        self.pool, self.index = pool, index
        self.process = None
        self.conn = None
        self.ready = threading.Event()
        self.setup_error: QfheError | None = None
        self.current: _Job | None = None

    # -- the process -------------------------------------------------------------------------------
    def _start(self) -> bool:
        """Start a worker and wait until it is set up; False (and ``setup_error``) if it cannot be."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main,
            name=f"qfhe-worker-{self.index}",
            args=(child, self.pool.setup, self.pool.setup_args, self.pool.log_level),
            daemon=True,
        )
        self.process.start()
        child.close()
        self.conn = parent
        deadline = time.monotonic() + self.pool.start_timeout
        while time.monotonic() < deadline and not self.pool.closing.is_set():
            ready = wait([self.conn, self.process.sentinel], timeout=_POLL)
            if self.conn in ready:
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    msg = None
                if msg == ("ready",):
                    self.pool.starts += 1
                    return True
                if msg and msg[0] == "error":
                    self.setup_error = _exception(msg[1], msg[2])
                    self._stop()
                    return False
            if self.process.sentinel in ready:
                break
        if self.pool.closing.is_set():
            self._stop()
            return False
        code = self.process.exitcode
        self._stop()
        self.setup_error = ArtifactError(
            f"a worker could not load the model: it {'stopped with exit code ' + str(code) if code is not None else 'did not finish within ' + str(self.pool.start_timeout) + ' s'}"
        )
        return False

    def _stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
        if self.process is not None:
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    # -- the loop -------------------------------------------------------------------------------------
    def run(self) -> None:
        failures = 0
        while not self.pool.closing.is_set():
            if self.process is None:
                if self._start():
                    failures = 0
                    self.ready.set()
                else:
                    failures += 1
                    self.ready.set()  # the pool reports the setup error
                    if failures >= 3 or self.pool.closing.is_set():
                        self.pool._slot_failed(self)
                        return
                    time.sleep(min(30.0, 2.0**failures))
                    continue
            try:
                job = self.pool._queue.get(timeout=_POLL)
            except queue.Empty:
                if not self.process.is_alive():  # died while idle: replace it before a job needs it
                    log.warning("idle worker %s died (exit code %s); restarting it", self.pid, self.process.exitcode)
                    self.pool.crashes += 1
                    self._stop()
                continue
            if job is None:
                break
            if not job.future.set_running_or_notify_cancel():
                continue
            self.current = job
            try:
                self._run(job)
            finally:
                self.current = None
        self._stop()

    def _run(self, job: _Job) -> None:
        job_id = next(self.pool._ids)
        for attempt in range(2):  # a job that never reached a dead worker goes to a fresh one
            try:
                if not self.process.is_alive():
                    raise OSError("the worker is gone")
                self.conn.send((job_id, job.fn, job.args))
                break
            except (OSError, ValueError):
                self.pool.crashes += 1
                self._stop()
                if attempt or not self._start():
                    job.future.set_exception(
                        WorkerCrashedError(
                            "the worker for this request stopped before it started and could not be replaced; try again"
                        )
                    )
                    return
        while True:
            ready = wait([self.conn, self.process.sentinel], timeout=_POLL)
            if self.conn in ready:
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    msg = None
                if msg is not None:
                    if msg[0] == "done":
                        job.future.set_result(msg[2])
                    else:
                        job.future.set_exception(_exception(msg[2], msg[3]))
                    return
            if self.process.sentinel in ready or (self.conn in ready and msg is None):
                code = self.process.exitcode
                log.warning("worker %s died (exit code %s) running %s; restarting it", self.pid, code, job.fn)
                self._stop()
                self.pool.crashes += 1
                job.future.set_exception(
                    WorkerCrashedError(
                        "the worker running this request stopped (a crash, or out of memory); the server restarted it "
                        "and keeps serving: if the request was valid, send it again"
                    )
                )
                return
            if job.abandoned.is_set() or (job.deadline is not None and time.monotonic() > job.deadline):
                self._stop()  # native code cannot be interrupted: the worker goes, a fresh one comes
                self.pool.restarts += 1
                if job.abandoned.is_set():
                    job.future.set_exception(WorkerCrashedError("the request was cancelled"))
                else:
                    job.future.set_exception(
                        RequestTimeoutError(
                            f"the request did not finish within the server's deadline ({job.timeout:g} s); "
                            "send fewer samples per request"
                        )
                    )
                return


class WorkerPool:
    """``n`` worker processes, each set up once, running jobs with isolation (see the module docstring).

    Parameters
    ----------
    n : int
        Worker processes.
    setup : str
        ``"module:function"`` run once in each worker with ``setup_args``; its result is the
        worker's state, passed as first argument to every job.
    setup_args : tuple
        Picklable arguments (bytes, numbers, strings).
    start_timeout : float
        Seconds a worker may take to set up.
    log_level : int
        Logging level in the workers.

    Raises
    ------
    ArtifactError
        (or the setup's own error) when the workers cannot be set up.

    Examples
    --------
    >>> WorkerPool(0, "qfhe.deploy.workers:echo_setup", (1,))
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: workers must be a positive int from 1 to 256, got 0 (int)
    """

    def __init__(
        self, n: int, setup: str, setup_args: tuple = (), start_timeout: float = 600.0, log_level: int = logging.WARNING
    ):
        self.n = as_int("workers", n, 1, 256, "a positive int")
        self.setup, self.setup_args = setup, tuple(setup_args)
        self.start_timeout, self.log_level = float(start_timeout), log_level
        self.closing = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        self._ids = itertools.count()
        self._dead: list = []
        self.starts = self.crashes = self.restarts = 0
        self._slots = [_Slot(self, i) for i in range(self.n)]
        for s in self._slots:
            s.start()
        for s in self._slots:
            s.ready.wait()
        errs = [s.setup_error for s in self._slots if s.setup_error is not None and not s.process]
        if len(errs) == self.n:
            self.close()
            raise errs[0]

    def _slot_failed(self, slot: _Slot) -> None:
        self._dead.append(slot)
        if len(self._dead) == self.n:  # nothing can run: fail what waits instead of hanging
            log.error("every worker failed to start: %s", slot.setup_error)
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    return
                if job is not None and job.future.set_running_or_notify_cancel():
                    job.future.set_exception(slot.setup_error or WorkerCrashedError("no worker can start"))

    def submit(self, fn: str, *args, timeout: float | None = None) -> Future:
        """Queue ``fn(state, *args)`` (``fn`` is ``"module:function"``); returns its future.

        ``timeout`` counts from now (queueing included); past it, the job fails with
        :class:`~qfhe.errors.RequestTimeoutError`.

        Examples
        --------
        >>> callable(WorkerPool.submit)
        True
        """
        if self.closing.is_set():
            raise WorkerCrashedError("the worker pool is closed")
        job = _Job(fn, args, timeout)
        self._queue.put(job)
        return job.future

    @staticmethod
    def cancel(future: Future) -> None:
        """Cancel a job: dropped if still queued, its worker killed and replaced if running.

        Examples
        --------
        >>> f = Future(); WorkerPool.cancel(f); f.cancelled()
        True
        """
        if not future.cancel():
            job = getattr(future, "qfhe_job", None)
            if job is not None:
                job.abandoned.set()

    @property
    def pending(self) -> int:
        """Jobs queued or running.

        Examples
        --------
        >>> callable(WorkerPool.pending.fget)
        True
        """
        return self._queue.qsize() + sum(1 for s in self._slots if s.current is not None)

    @property
    def alive(self) -> int:
        """Workers set up and able to run jobs.

        Examples
        --------
        >>> callable(WorkerPool.alive.fget)
        True
        """
        return sum(1 for s in self._slots if s.process is not None and s.process.is_alive())

    def pids(self) -> list:
        """Process ids of the current workers.

        Examples
        --------
        >>> callable(WorkerPool.pids)
        True
        """
        return [s.pid for s in self._slots if s.pid is not None]

    def close(self) -> None:
        """Stop every worker; queued jobs fail.

        Examples
        --------
        >>> callable(WorkerPool.close)
        True
        """
        self.closing.set()
        for _ in self._slots:
            self._queue.put(None)
        for s in self._slots:
            s.join(10)
            s._stop()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(WorkerCrashedError("the server is shutting down"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
