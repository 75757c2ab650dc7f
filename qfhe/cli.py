"""The ``qfhe`` command line: ``qfhe serve ARTIFACTS``.

Examples
--------
>>> parser().parse_args(["serve", "artifacts/", "--port", "9000"]).port
9000
"""

from __future__ import annotations

import argparse
import sys

MB = 1 << 20


def parser() -> argparse.ArgumentParser:
    """The argument parser.

    Examples
    --------
    >>> parser().prog
    'qfhe'
    """
    p = argparse.ArgumentParser(prog="qfhe", description="qfhe: machine learning on encrypted data")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve a deployed model over HTTP",
                       description="Serve the server artifact written by qfhe.deploy.FHEModelDev over HTTP "
                                   "(FastAPI + uvicorn): POST /keys, POST /predict, GET /health, GET /info.")
    s.add_argument("path", help="artifact directory (with server.zip; client.zip is offered at /client.zip if present)")
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=2, help="FHE requests run concurrently (threads)")
    s.add_argument("--max-request-mb", type=float, default=64, help="largest /predict body")
    s.add_argument("--max-keys-mb", type=float, default=4096, help="largest /keys body")
    s.add_argument("--key-dir", default=None, help="where uploaded evaluation keys are stored (default: a temp dir)")
    s.add_argument("--key-memory-mb", type=float, default=4096, help="loaded keys kept in memory (LRU)")
    s.add_argument("--key-disk-mb", type=float, default=65536, help="stored keys kept on disk (LRU)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p


def main(argv=None) -> int:
    """Entry point of the ``qfhe`` console script.

    Examples
    --------
    >>> callable(main)
    True
    """
    args = parser().parse_args(argv)
    if args.command == "serve":
        try:
            from qfhe.deploy.http import serve
        except ImportError as exc:  # pragma: no cover - depends on the installation
            print(f"qfhe serve needs FastAPI and uvicorn: pip install 'qfhe[deploy]' ({exc})", file=sys.stderr)
            return 2
        from qfhe.errors import QfheError

        try:
            serve(args.path, args.host, args.port, args.workers, int(args.max_request_mb * MB),
                  int(args.max_keys_mb * MB), args.key_dir, int(args.key_memory_mb * MB), int(args.key_disk_mb * MB),
                  args.log_level)
        except QfheError as exc:
            print(f"qfhe serve: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
