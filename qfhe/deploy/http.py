"""The HTTP inference server (FastAPI + uvicorn): ``qfhe serve artifacts/``.

=================== ========================================================================
``GET /health``     ``{"status": "ok", "workers": n}``
``GET /info``       scheme, model fingerprint, shapes, versions, circuit statistics, limits
``GET /client.zip`` the client artifact, when the served directory has one
``POST /keys``      body: serialized evaluation keys → ``{"key_id": ...}``
``POST /predict``   ``?key_id=...``, body: encrypted inputs → encrypted outputs
=================== ========================================================================

The main process holds no circuit and runs no native code on request bytes: it checks headers,
sizes and key ids, stores keys, and hands FHE work to worker processes
(:class:`~qfhe.deploy.workers.WorkerPool`). A worker that crashes costs its own request a JSON
500 and is replaced; other requests and every stored key survive. Every resource is bounded by a
:class:`ServingConfig` option: body sizes (derived from the circuit by default: a key upload can
only be as large as this circuit's keys), samples per request, queued work, concurrent key
uploads, the request deadline (a request whose client disconnects is cancelled), key memory
(counted at loaded size) and key disk (enforced across restarts). Every response that is not a
success is JSON ``{"error": class, "detail": message}``; details never carry native messages,
addresses or paths (the server log has them).

Examples
--------
>>> from fastapi.testclient import TestClient
>>> import numpy as np, torch, qfhe, tempfile
>>> from qfhe.deploy import FHEModelDev
>>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(50, 3), n_bits=3, p_error=0.01)
>>> d = tempfile.mkdtemp(); _ = FHEModelDev(d, qm).save()
>>> with TestClient(create_app(load_server_spec(d), ServingConfig(workers=1))) as http:
...     r = http.post("/predict", params={"key_id": "nope"}, content=b"x", headers={"content-type": "text/plain"})
...     print(http.get("/health").json()["status"], r.status_code, r.json()["error"])
ok 404 UnknownKeyError
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import threading
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import Request  # module level: FastAPI resolves the endpoints' annotations here

from qfhe.deploy import envelope
from qfhe.deploy.server import ServerSpec, load_server_spec, server_info
from qfhe.errors import (
    ArtifactError,
    CiphertextError,
    CKKSScheduleError,
    ConfigurationError,
    InputValidationError,
    QfheError,
    RequestTimeoutError,
    ServerBusyError,
    UnknownKeyError,
    WorkerCrashedError,
)
from qfhe.validation import as_float, as_int

log = logging.getLogger("qfhe.deploy")
OCTET = "application/octet-stream"
#: HTTP status of each refusal; anything else is a 500 whose detail is not sent to the client.
STATUS = {
    UnknownKeyError: 404,
    CiphertextError: 400,
    InputValidationError: 400,
    CKKSScheduleError: 400,
    ServerBusyError: 503,
    RequestTimeoutError: 504,
    WorkerCrashedError: 500,
    ArtifactError: 500,
}
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}|\b[0-9a-f]{12,16}\b|(?:/[\w.+-]+){2,}")
_DISCONNECT_POLL = 0.25


@dataclass(frozen=True)
class ServingConfig:
    """Every limit of ``qfhe serve``, each with a safe default.

    Parameters
    ----------
    workers : int
        Worker processes running FHE work (each holds the circuit and its own key cache).
    max_samples : int
        Samples one ``/predict`` request may carry.
    request_timeout : float
        Seconds a request may take, queueing included; past it the worker is replaced and the
        client gets 504.
    max_pending : int
        Requests queued or running; beyond it ``/predict`` answers 503 (try later).
    max_key_uploads : int
        ``/keys`` requests processed at once; beyond it 503.
    max_request_bytes : int, optional
        Largest ``/predict`` body. Default: what ``max_samples`` samples of this circuit take.
    max_key_bytes : int, optional
        Largest ``/keys`` body. Default: the size of this circuit's evaluation keys (TFHE: exact;
        CKKS: uncompressed) plus framing.
    max_key_memory_bytes : int
        Loaded keys kept in memory, over all workers, counted at their loaded size.
    max_key_disk_bytes : int
        Stored keys kept on disk (least recently used deleted first, across restarts).
    key_dir : str, optional
        Where uploaded keys are stored (kept across restarts); default a temporary directory
        removed when the server stops.

    Examples
    --------
    >>> ServingConfig(workers=0)
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: workers must be a positive int from 1 to 64, got 0 (int)
    """

    workers: int = 2
    max_samples: int = 16
    request_timeout: float = 300.0
    max_pending: int = 8
    max_key_uploads: int = 2
    max_request_bytes: int | None = None
    max_key_bytes: int | None = None
    max_key_memory_bytes: int = 2 << 30
    max_key_disk_bytes: int = 8 << 30
    key_dir: str | None = None

    def __post_init__(self):
        as_int("workers", self.workers, 1, 64, "a positive int")
        as_int("max_samples", self.max_samples, 1, 1 << 16, "a positive int")
        as_float("request_timeout", self.request_timeout, 0, 86400)
        as_int("max_pending", self.max_pending, 1, 1 << 16, "a positive int")
        as_int("max_key_uploads", self.max_key_uploads, 1, 1024, "a positive int")
        for name in ("max_request_bytes", "max_key_bytes"):
            if getattr(self, name) is not None:
                as_int(name, getattr(self, name), 1, None, "a positive int")
        as_int("max_key_memory_bytes", self.max_key_memory_bytes, 1, None, "a positive int")
        as_int("max_key_disk_bytes", self.max_key_disk_bytes, 1, None, "a positive int")

    def limits(self, spec: ServerSpec) -> dict:
        """The limits in force for ``spec``'s model (defaults resolved from the circuit).

        Examples
        --------
        >>> callable(ServingConfig.limits)
        True
        """
        items = max(1, self.max_samples // spec.samples_per_item)
        request = self.max_request_bytes or items * spec.sample_bytes + (64 << 10)
        keys = self.max_key_bytes or spec.key_bytes
        out = {k: v for k, v in asdict(self).items() if k != "key_dir"}
        # Per worker: Python with torch and concrete and the circuit (measured under 600 MiB for the
        # tests' and examples' models), its share of the key cache (at least one key set: the one in
        # use is never evicted), and three copies of one key upload while it loads (the bytes, the
        # checked re-encoding, concrete's keys). The main process: FastAPI and bodies in flight.
        cache = max(self.max_key_memory_bytes // self.workers, spec.loaded_key_bytes)
        bound = (400 << 20) + self.max_key_uploads * keys + self.workers * ((600 << 20) + cache + 3 * keys)
        out.update(
            {
                "max_request_bytes": request,
                "max_key_bytes": keys,
                "max_items": items,
                "loaded_key_bytes": spec.loaded_key_bytes,
                "memory_bound_bytes": bound,
            }
        )
        return out


# -- what the workers run -----------------------------------------------------------------------------
def setup_worker(artifact: bytes, key_memory_bytes: int):
    """A serving worker's state: the server built from the artifact's bytes, with its key cache.

    Examples
    --------
    >>> callable(setup_worker)
    True
    """
    from qfhe.deploy.server import FHEModelServer

    return FHEModelServer(artifact, max_key_memory_bytes=key_memory_bytes)


def check_keys(server, key_id: str, data: bytes) -> None:
    """Check and load uploaded keys in a worker (and keep them loaded under ``key_id``).

    Examples
    --------
    >>> callable(check_keys)
    True
    """
    server.cache.put(key_id, server.load_keys(data), server.spec.loaded_key_bytes)


def predict(server, key_id: str, key_path: str, blob: bytes, max_items: int) -> bytes:
    """Run one request in a worker with the keys of ``key_id`` (cached, else read from ``key_path``).

    Examples
    --------
    >>> callable(predict)
    True
    """
    keys = server.cache.get(key_id)
    if keys is None:
        try:
            data = Path(key_path).read_bytes()
        except FileNotFoundError:
            raise UnknownKeyError(
                f"unknown key_id {key_id[:8]!r}…: upload the evaluation keys again (POST /keys)"
            ) from None
        keys = server.load_keys(data)
        server.cache.put(key_id, keys, server.spec.loaded_key_bytes)
    return server.run_loaded(blob, keys, max_items)


# -- the application ------------------------------------------------------------------------------------
class _Refusal(Exception):
    def __init__(self, status: int, error: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def _safe(detail: str) -> str:
    """A message fit for a client: no addresses or paths, at most 500 characters."""
    return _ADDRESS.sub("…", str(detail))[:500]


def _refusal(exc: QfheError) -> _Refusal | None:
    for cls, status in STATUS.items():
        if isinstance(exc, cls):
            name = "WorkerCrashed" if isinstance(exc, WorkerCrashedError) else type(exc).__name__
            if isinstance(exc, ArtifactError):
                return _Refusal(500, "ServerUnavailable", "the server cannot load its model; its log has the details")
            headers = {"Retry-After": "5"} if status == 503 else None
            return _Refusal(status, name, _safe(str(exc)), headers)
    return None


def create_app(spec: ServerSpec, config: ServingConfig | None = None, client_artifact=None, pool=None):
    """The FastAPI application serving ``spec``'s model (see the module docstring).

    Parameters
    ----------
    spec : ServerSpec
        From :func:`~qfhe.deploy.server.load_server_spec`.
    config : ServingConfig, optional
    client_artifact : path, optional
        ``client.zip`` to offer at ``GET /client.zip``.
    pool : WorkerPool, optional
        Workers already started (``serve`` starts them first, to report a model that does not
        load before listening); by default the app starts them when it starts.

    Examples
    --------
    >>> create_app(None)
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: create_app needs a ServerSpec (qfhe.deploy.server.load_server_spec(path)), got NoneType
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException

    from qfhe.deploy.keystore import KeyStore
    from qfhe.deploy.workers import WorkerPool

    if not isinstance(spec, ServerSpec):
        raise ConfigurationError(
            f"create_app needs a ServerSpec (qfhe.deploy.server.load_server_spec(path)), got {type(spec).__name__}"
        )
    config = config or ServingConfig()
    limits = config.limits(spec)
    state: dict = {"pool": pool}
    uploads = threading.BoundedSemaphore(config.max_key_uploads)
    key_dir = None if config.key_dir is None else Path(config.key_dir) / spec.fingerprint[:16]

    @asynccontextmanager
    async def lifespan(app):
        state["store"] = KeyStore(key_dir, config.max_key_disk_bytes)
        if state["pool"] is None:
            state["pool"] = await asyncio.to_thread(
                WorkerPool,
                config.workers,
                "qfhe.deploy.http:setup_worker",
                (spec.artifact.data, max(1, config.max_key_memory_bytes // config.workers)),
            )
        try:
            yield
        finally:
            state["pool"].close()
            state["store"].close()

    app = FastAPI(title="qfhe inference server", version="2", lifespan=lifespan)

    @app.exception_handler(_Refusal)
    async def refused(request, exc: _Refusal):
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        return JSONResponse(
            {"error": names.get(exc.status_code, "HTTPError"), "detail": _safe(exc.detail)}, status_code=exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        return JSONResponse(
            {"error": "InvalidRequest", "detail": "query parameters: key_id must be one string"}, status_code=422
        )

    @app.exception_handler(Exception)
    async def internal(request, exc):
        log.exception("internal error on %s", request.url.path)
        return JSONResponse(
            {"error": "InternalError", "detail": "the server failed on this request; its log has the details"},
            status_code=500,
        )

    async def body(request: Request, limit: int, what: str) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != OCTET:
            raise _Refusal(415, "UnsupportedMediaType", f"{what} must be sent as {OCTET}, got {_safe(ctype)[:60]!r}")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _Refusal(413, "PayloadTooLarge", f"{what}: {int(length)} bytes; this server accepts at most {limit}")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _Refusal(413, "PayloadTooLarge", f"{what}: more than {limit} bytes, the limit of this server")
            chunks.append(chunk)
        return b"".join(chunks)

    def check(fn, *args):
        try:
            return fn(*args)
        except QfheError as exc:
            refusal = _refusal(exc)
            if refusal is None:
                raise
            raise refusal from None

    async def in_worker(request: Request, fn: str, *args):
        """Run ``fn`` in a worker; cancel it if the client goes away; map its errors to responses."""
        future = state["pool"].submit(fn, *args, timeout=config.request_timeout)
        waiting = asyncio.wrap_future(future)
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=_DISCONNECT_POLL)
                if done:
                    return check(waiting.result)
                if await request.is_disconnected():
                    state["pool"].cancel(future)
                    waiting.add_done_callback(lambda f: f.cancelled() or f.exception())
                    raise _Refusal(499, "ClientClosedRequest", "the client disconnected; the request was cancelled")
        except asyncio.CancelledError:
            state["pool"].cancel(future)
            raise

    @app.get("/health")
    async def health():
        return {"status": "ok", "workers": state["pool"].alive}

    @app.get("/info")
    async def info():
        pool = state["pool"]
        return {
            **server_info(spec),
            "limits": limits,
            "workers": {
                "alive": pool.alive,
                "started": pool.starts,
                "crashed": pool.crashes,
                "stopped": pool.restarts,
                "pending": pool.pending,
            },
            "keys": {"stored": len(state["store"]), "disk_bytes": state["store"].disk_bytes},
        }

    @app.get("/client.zip")
    async def client_zip():
        if client_artifact is None or not Path(client_artifact).is_file():
            raise _Refusal(
                404,
                "NotFound",
                "this server does not offer the client artifact; get client.zip from the model's developer",
            )
        return FileResponse(client_artifact, media_type="application/zip", filename="client.zip")

    @app.post("/keys")
    async def keys(request: Request):
        if not uploads.acquire(blocking=False):
            raise _Refusal(
                503,
                "ServerBusyError",
                f"{config.max_key_uploads} key uploads are in progress; try again shortly",
                {"Retry-After": "5"},
            )
        try:
            data = await body(request, limits["max_key_bytes"], "the evaluation keys")
            check(envelope.unpack, data, spec.fingerprint, "keys", 1)
            key_id = secrets.token_hex(16)
            await in_worker(request, "qfhe.deploy.http:check_keys", key_id, data)
            check(state["store"].put, data, key_id)
            return {"key_id": key_id}
        finally:
            uploads.release()

    @app.post("/predict")
    async def predict_endpoint(request: Request, key_id: str | None = None):
        key_id = key_id or request.headers.get("x-key-id")
        if not key_id:
            raise _Refusal(400, "MissingKeyId", "send the key_id POST /keys returned, as ?key_id=...")
        path = check(state["store"].path, key_id)
        data = await body(request, limits["max_request_bytes"], "the encrypted input")
        check(envelope.unpack, data, spec.fingerprint, "inputs", limits["max_items"])
        if state["pool"].pending >= config.max_pending:
            raise _Refusal(
                503,
                "ServerBusyError",
                f"{config.max_pending} requests are queued or running; try again shortly",
                {"Retry-After": "5"},
            )
        out = await in_worker(request, "qfhe.deploy.http:predict", key_id, str(path), data, limits["max_items"])
        return Response(out, media_type=OCTET)

    app.state.qfhe = state
    return app


def serve(
    path,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServingConfig | None = None,
    verify_key=None,
    log_level: str = "info",
) -> None:
    """Load the server artifact at ``path``, start the workers, and serve with uvicorn until stopped.

    Raises
    ------
    ArtifactError
        Before listening, when the artifact is not valid or its circuit does not build.

    Examples
    --------
    >>> callable(serve)
    True
    """
    import uvicorn

    from qfhe.deploy.artifacts import ARTIFACT_FILES
    from qfhe.deploy.workers import WorkerPool

    config = config or ServingConfig()
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s qfhe-serve %(levelname)s %(message)s",
    )
    spec = load_server_spec(path, verify_key)
    pool = WorkerPool(
        config.workers,
        "qfhe.deploy.http:setup_worker",
        (spec.artifact.data, max(1, config.max_key_memory_bytes // config.workers)),
    )
    client_zip = Path(path) / ARTIFACT_FILES["client"] if Path(path).is_dir() else None
    try:
        app = create_app(spec, config, client_zip, pool)
        # uvicorn answers 503 itself beyond this many connections: queued work plus a margin for /health and /info
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_keep_alive=5,
            limit_concurrency=config.max_pending + config.max_key_uploads + 16,
        )
    finally:
        pool.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now.

    Examples
    --------
    >>> 0 < free_port() < 65536
    True
    """
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM when its parent dies, so a server started by
    a test, an example or a benchmark never outlives it (its workers exit when their pipes close)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerProcess:
    """``qfhe serve`` in a subprocess, for examples, tests and benchmarks: a context manager that
    starts it, waits until ``/health`` answers, yields, then stops it.

    Parameters
    ----------
    path : str or Path
        Artifact directory.
    args : sequence of str
        Extra ``qfhe serve`` options (e.g. ``["--max-request-mb", "1"]``).
    host : str
    startup_timeout : float
        Seconds to wait for ``/health``.
    env : dict, optional
        Environment variables to set for the server (e.g. ``TMPDIR``).

    Examples
    --------
    >>> ServerProcess("artifacts/").url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(self, path, args=(), host: str = "127.0.0.1", startup_timeout: float = 180.0, env: dict | None = None):
        self.path, self.args, self.host, self.env = str(path), list(args), host, env
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.startup_timeout = startup_timeout
        self.process = None

    def __enter__(self) -> "ServerProcess":
        import os
        import subprocess
        import sys
        import tempfile
        import time

        import httpx

        cmd = [
            sys.executable,
            "-m",
            "qfhe.cli",
            "serve",
            self.path,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *self.args,
        ]
        self.log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would block the server
        env = None if self.env is None else {**os.environ, **self.env}
        self.process = subprocess.Popen(
            cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"qfhe serve exited with status {self.process.returncode}:\n{self.output()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"qfhe serve did not answer /health within {self.startup_timeout} s")

    def output(self) -> str:
        """What the server printed so far.

        Examples
        --------
        >>> callable(ServerProcess.output)
        True
        """
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except Exception:  # noqa: BLE001 - a server that ignores SIGTERM is killed
                self.process.kill()
                self.process.wait()
