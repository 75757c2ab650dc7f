"""The ``qfhe`` command line: ``qfhe serve ARTIFACTS`` and ``qfhe signing-key PATH``.

Every argument is validated by argparse (a one-line error and exit status 2, never a traceback);
``--help`` lists every default and every endpoint.

Examples
--------
>>> parser().parse_args(["signing-key", "dev-key"]).path
'dev-key'
>>> _port("70000")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: 70000 is not a port: use 1 to 65535
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

MB = 1 << 20

_ENDPOINTS = """endpoints:
  GET  /health       {"status": "ok", "workers": n}
  GET  /info         scheme, fingerprint, shapes, versions, statistics, limits
  GET  /client.zip   the client artifact (when PATH holds one)
  POST /keys         application/octet-stream evaluation keys -> {"key_id": ...}
  POST /predict      ?key_id=...; application/octet-stream encrypted inputs -> encrypted outputs
Refusals are JSON {"error", "detail"}: 400 malformed, 404 unknown key_id, 413 too large,
415 wrong content type, 503 busy (Retry-After), 504 past the deadline, 500 a worker crashed."""


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port: use 1 to 65535")
    return value


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
        return value

    parse.__name__ = kind.__name__
    return parse


def _directory(text: str) -> str:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    return text


def _artifacts(text: str) -> str:
    path = Path(text)
    if not (path.is_dir() and (path / "server.zip").is_file()) and not (path.is_file() and path.suffix == ".zip"):
        raise argparse.ArgumentTypeError(f"{text} is neither a directory with server.zip nor a server.zip")
    return text


def _file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    return text


def parser() -> argparse.ArgumentParser:
    """The argument parser.

    Examples
    --------
    >>> parser().prog
    'qfhe'
    """
    p = argparse.ArgumentParser(prog="qfhe", description="qfhe: machine learning on encrypted data")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "serve",
        help="serve a deployed model over HTTP",
        formatter_class=_Help,
        epilog=_ENDPOINTS,
        description="Serve the server artifact written by qfhe.deploy.FHEModelDev over HTTP "
        "(FastAPI + uvicorn). FHE work runs in worker processes that are restarted if "
        "they crash; every resource below is bounded.",
    )
    s.add_argument(
        "path",
        type=_artifacts,
        help="artifact directory with server.zip (its client.zip is offered at GET /client.zip), or a server.zip",
    )
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1: this machine only)")
    s.add_argument("--port", type=_port, default=8000, help="TCP port")
    s.add_argument("--workers", type=_positive(int), default=2, help="worker processes running FHE work")
    s.add_argument("--max-samples", type=_positive(int), default=16, help="samples per /predict request")
    s.add_argument(
        "--timeout", type=_positive(float), default=300.0, help="seconds a request may take, queueing included"
    )
    s.add_argument("--max-pending", type=_positive(int), default=8, help="requests queued or running (then 503)")
    s.add_argument("--max-key-uploads", type=_positive(int), default=2, help="concurrent /keys uploads (then 503)")
    s.add_argument(
        "--max-request-mb",
        type=_positive(float),
        default=None,
        help="largest /predict body (default: what --max-samples samples of this circuit take)",
    )
    s.add_argument(
        "--max-keys-mb",
        type=_positive(float),
        default=None,
        help="largest /keys body (default: the size of this circuit's evaluation keys)",
    )
    s.add_argument(
        "--key-dir",
        type=_directory,
        default=None,
        help="where uploaded keys are stored, kept across restarts (default: a temporary directory removed on exit)",
    )
    s.add_argument(
        "--key-memory-mb",
        type=_positive(float),
        default=2048,
        help="loaded keys kept in memory over all workers, at their loaded size",
    )
    s.add_argument("--key-disk-mb", type=_positive(float), default=8192, help="stored keys kept on disk")
    s.add_argument(
        "--verify-key", type=_file, default=None, help="Ed25519 public key (PEM): refuse a server.zip not signed by it"
    )
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    k = sub.add_parser(
        "signing-key",
        help="make an Ed25519 key pair to sign artifacts",
        formatter_class=_Help,
        description="Write a new private key to PATH (mode 0600) and its public key to PATH.pub. "
        "Sign with FHEModelDev(..., signing_key=PATH); verify with --verify-key PATH.pub.",
    )
    k.add_argument("path", help="where to write the private key (must not exist)")
    return p


def _mb(value) -> int | None:
    return None if value is None else max(1, int(value * MB))


def main(argv=None) -> int:
    """Entry point of the ``qfhe`` console script.

    Examples
    --------
    >>> callable(main)
    True
    """
    args = parser().parse_args(argv)
    from qfhe.errors import QfheError

    if args.command == "signing-key":
        from qfhe.deploy.signing import generate_signing_key

        try:
            generate_signing_key(args.path)
        except QfheError as exc:
            print(f"qfhe signing-key: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.path} (private, keep it secret) and {args.path}.pub (public)")
        return 0
    try:
        from qfhe.deploy.http import ServingConfig, serve
    except ImportError as exc:  # pragma: no cover - depends on the installation
        print(f"qfhe serve needs FastAPI and uvicorn: pip install 'qfhe[deploy]' ({exc})", file=sys.stderr)
        return 2
    try:
        config = ServingConfig(
            workers=args.workers,
            max_samples=args.max_samples,
            request_timeout=args.timeout,
            max_pending=args.max_pending,
            max_key_uploads=args.max_key_uploads,
            max_request_bytes=_mb(args.max_request_mb),
            max_key_bytes=_mb(args.max_keys_mb),
            max_key_memory_bytes=_mb(args.key_memory_mb),
            max_key_disk_bytes=_mb(args.key_disk_mb),
            key_dir=args.key_dir,
        )
        serve(args.path, args.host, args.port, config, args.verify_key, args.log_level)
    except QfheError as exc:
        print(f"qfhe serve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
