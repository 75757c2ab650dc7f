"""The HTTP inference server (FastAPI + uvicorn): ``qfhe serve artifacts/``.

=================== ========================================================================
``GET /health``     ``{"status": "ok"}``
``GET /info``       scheme, model fingerprint, shapes, versions, circuit statistics, limits
``GET /client.zip`` the client artifact, when the served directory has one
``POST /keys``      body: serialized evaluation keys → ``{"key_id": ...}``
``POST /predict``   ``?key_id=...``, body: encrypted inputs → encrypted outputs
=================== ========================================================================

Bodies are ``application/octet-stream`` and read in chunks against a size limit (keys and
predictions have their own). FHE work runs on a thread pool of ``workers`` threads, off the
event loop (concrete-python and SEAL release the GIL while they compute), so ``/health`` answers
while requests run. Every refusal is a 4xx with a JSON body ``{"error": class, "detail": message}``,
and the server keeps serving.

Examples
--------
>>> from fastapi.testclient import TestClient
>>> import numpy as np, torch, qfhe, tempfile
>>> from qfhe.deploy import FHEModelDev, FHEModelServer
>>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(50, 3), n_bits=3, p_error=0.01)
>>> d = tempfile.mkdtemp(); _ = FHEModelDev(d, qm).save()
>>> http = TestClient(create_app(FHEModelServer(d)))
>>> http.get("/health").json()
{'status': 'ok'}
>>> r = http.post("/predict", params={"key_id": "nope"}, content=b"x", headers={"content-type": "text/plain"})
>>> r.status_code, r.json()["error"]
(415, 'UnsupportedMediaType')
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import Request  # module level: FastAPI resolves the endpoints' annotations here

from qfhe.errors import (ArtifactError, CiphertextError, CKKSScheduleError, InputValidationError, QfheError,
                         UnknownKeyError)
from qfhe.validation import as_int

OCTET = "application/octet-stream"
#: HTTP status of each refusal; anything else is a 500 whose detail is not sent to the client.
STATUS = {UnknownKeyError: 404, CiphertextError: 400, InputValidationError: 400, CKKSScheduleError: 400,
          ArtifactError: 400}


class _Refusal(Exception):
    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def _status_of(exc: Exception) -> int | None:
    for cls, status in STATUS.items():
        if isinstance(exc, cls):
            return status
    return None


def create_app(server, max_request_bytes: int = 64 << 20, max_key_bytes: int = 4 << 30, workers: int = 2,
               client_artifact=None):
    """The FastAPI application serving ``server`` (an :class:`~qfhe.deploy.FHEModelServer`).

    Parameters
    ----------
    server : FHEModelServer
    max_request_bytes : int
        Largest ``/predict`` body.
    max_key_bytes : int
        Largest ``/keys`` body (TFHE keys are tens to hundreds of MB compressed; CKKS Galois keys
        at N = 2^15 reach GBs).
    workers : int
        Threads running FHE work concurrently.
    client_artifact : path, optional
        ``client.zip`` to offer at ``GET /client.zip``.

    Examples
    --------
    >>> create_app(None, workers=0)
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: workers must be a positive int >= 1, got 0 (int)
    """
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, JSONResponse, Response

    workers = as_int("workers", workers, 1, None, "a positive int")
    max_request_bytes = as_int("max_request_bytes", max_request_bytes, 1, None, "a positive int")
    max_key_bytes = as_int("max_key_bytes", max_key_bytes, 1, None, "a positive int")
    pool = ThreadPoolExecutor(workers, thread_name_prefix="qfhe-fhe")
    app = FastAPI(title="qfhe inference server", version="1")

    @app.exception_handler(_Refusal)
    async def refused(request, exc: _Refusal):
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status)

    async def body(request: Request, limit: int, what: str) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != OCTET:
            raise _Refusal(415, "UnsupportedMediaType", f"{what} must be sent as {OCTET}, got {ctype or 'no content type'!r}")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _Refusal(413, "PayloadTooLarge", f"{what} has {int(length)} bytes; this server accepts at most {limit}")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _Refusal(413, "PayloadTooLarge", f"{what} exceeds {limit} bytes, the limit of this server")
            chunks.append(chunk)
        return b"".join(chunks)

    async def off_loop(fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except QfheError as exc:
            status = _status_of(exc)
            if status is None:
                raise
            raise _Refusal(status, type(exc).__name__, str(exc)) from None

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        return {**server.info(), "limits": {"max_request_bytes": max_request_bytes, "max_key_bytes": max_key_bytes,
                                            "workers": workers}}

    @app.get("/client.zip")
    async def client_zip():
        if client_artifact is None or not Path(client_artifact).exists():
            raise _Refusal(404, "NotFound", "this server does not offer the client artifact; get client.zip from the "
                                            "model's developer")
        return FileResponse(client_artifact, media_type="application/zip", filename="client.zip")

    @app.post("/keys")
    async def keys(request: Request):
        data = await body(request, max_key_bytes, "the evaluation keys")
        return {"key_id": await off_loop(server.add_keys, data)}

    @app.post("/predict")
    async def predict(request: Request, key_id: str | None = None):
        key_id = key_id or request.headers.get("x-key-id")
        if not key_id:
            raise _Refusal(400, "MissingKeyId", "send the key_id POST /keys returned, as ?key_id=...")
        data = await body(request, max_request_bytes, "the encrypted input")
        out = await off_loop(server.run, data, key_id)
        return Response(out, media_type=OCTET)

    app.state.pool = pool
    return app


def serve(path, host: str = "127.0.0.1", port: int = 8000, workers: int = 2, max_request_bytes: int = 64 << 20,
          max_key_bytes: int = 4 << 30, key_dir=None, max_key_memory_bytes: int = 4 << 30,
          max_key_disk_bytes: int = 64 << 30, log_level: str = "info") -> None:
    """Load the server artifact at ``path`` and serve it with uvicorn until interrupted.

    Examples
    --------
    >>> callable(serve)
    True
    """
    import uvicorn

    from qfhe.deploy.artifacts import ARTIFACT_FILES
    from qfhe.deploy.server import FHEModelServer

    server = FHEModelServer(path, key_dir, max_key_memory_bytes, max_key_disk_bytes)
    client_zip = Path(path) / ARTIFACT_FILES["client"] if Path(path).is_dir() else None
    app = create_app(server, max_request_bytes, max_key_bytes, workers, client_zip)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


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

    Examples
    --------
    >>> ServerProcess("artifacts/").url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(self, path, args=(), host: str = "127.0.0.1", startup_timeout: float = 120.0):
        self.path, self.args, self.host = str(path), list(args), host
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.startup_timeout = startup_timeout
        self.process = None

    def __enter__(self) -> "ServerProcess":
        import subprocess
        import sys
        import time

        import httpx

        cmd = [sys.executable, "-m", "qfhe.cli", "serve", self.path, "--host", self.host, "--port", str(self.port),
               "--log-level", "warning", *self.args]
        import tempfile

        self.log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would block the server
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"qfhe serve exited with status {self.process.returncode}:\n"
                                   f"{self.log.read()[-3000:].decode(errors='replace')}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"qfhe serve did not answer /health within {self.startup_timeout} s")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except Exception:  # noqa: BLE001 - a server that ignores SIGTERM is killed
                self.process.kill()
                self.process.wait()
