"""Deployment: a client that holds the keys, a server that never sees plaintext, safe artifacts.

- :class:`FHEModelDev` saves a compiled model as ``client.zip`` and ``server.zip``: data only
  (JSON and ``.npy``; the circuit as qfhe IR, rebuilt by qfhe's lowering), a SHA-256 per member,
  and optionally an Ed25519 signature (:func:`generate_signing_key`).
- :class:`FHEModelClient` generates and keeps keys, quantizes + encrypts, decrypts + dequantizes.
- :class:`FHEModelServer` runs encrypted requests with evaluation keys only, after checking them
  against the circuit's key set; ``run_batch`` fans them out over worker processes or a Dask
  cluster.
- ``qfhe serve`` is the HTTP server (:mod:`qfhe.deploy.http`): FHE work in worker processes it
  restarts, every resource bounded; :class:`HTTPClient` talks to it.

Examples
--------
>>> import numpy as np, torch, qfhe, tempfile
>>> from qfhe.deploy import FHEModelDev, FHEModelClient, FHEModelServer, generate_signing_key
>>> X = np.random.RandomState(0).randn(50, 3)
>>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), X, n_bits=3)  # global_p_error 1e-5: decrypts as simulated
>>> d = tempfile.mkdtemp(); private, public = generate_signing_key()
>>> _ = FHEModelDev(d, qm, signing_key=private).save()
>>> client, server = FHEModelClient(d, verify_key=public), FHEModelServer(d, verify_key=public)
>>> key_id = server.add_keys(client.get_serialized_evaluation_keys())
>>> y = client.deserialize_decrypt_dequantize(server.run(client.quantize_encrypt_serialize(X[:2]), key_id))
>>> bool(np.allclose(y, qm.forward(X[:2], fhe="simulate")))
True
"""

from qfhe.deploy.artifacts import ArtifactLimits, artifact_sha256
from qfhe.deploy.batch import BatchResult
from qfhe.deploy.client import FHEModelClient
from qfhe.deploy.dev import FHEModelDev
from qfhe.deploy.keystore import KeyCache, KeyStore
from qfhe.deploy.server import FHEModelServer, ServerSpec, load_server_spec
from qfhe.deploy.signing import generate_signing_key
from qfhe.deploy.workers import WorkerPool


def __getattr__(name):
    if name == "HTTPClient":  # needs httpx, installed with the [deploy] extra
        from qfhe.deploy.http_client import HTTPClient

        return HTTPClient
    if name == "ServingConfig":  # needs FastAPI
        from qfhe.deploy.http import ServingConfig

        return ServingConfig
    raise AttributeError(f"module 'qfhe.deploy' has no attribute {name!r}")


__all__ = [
    "FHEModelDev",
    "FHEModelClient",
    "FHEModelServer",
    "ServerSpec",
    "load_server_spec",
    "KeyStore",
    "KeyCache",
    "BatchResult",
    "WorkerPool",
    "HTTPClient",
    "ServingConfig",
    "ArtifactLimits",
    "artifact_sha256",
    "generate_signing_key",
]
