"""SEALBackend: run the compiled HE op graph on real CKKS ciphertexts (SEAL, through ``tenseal.sealapi``).

The backend executes exactly the nodes the passes placed, one SEAL call per node, so the op counts
of a run equal :attr:`CostAnalysis.total_operations`. It is split the way a deployment is:

* :class:`SEALKeys` (the client) holds the secret key; it encrypts inputs and decrypts outputs.
* :class:`SEALEvaluator` (the server) holds the public context and the evaluation keys (public
  key, relinearization keys, and Galois keys for exactly the rotation steps the graph uses); it
  never sees the secret key. Plaintext operands (diagonals, constants) are encoded once, at the
  level and scale each op needs, when the evaluator is built.

Scales are computed from SEAL's real primes (``CKKSParameters.prime_values``), so every product
still lands on Δ·q_l and one rescale brings it back to Δ. SEAL compares scales to within about one
unit in the last place; after each op the backend checks SEAL's scale and level against the
schedule (an error names the node if they differ by more than 1e-9) and then pins the scale to the
schedule's value, which removes floating-point round-off only.

Serialization goes through SEAL's own ``save``/``load`` (:func:`to_bytes`, :func:`load_bytes`).

Examples
--------
>>> SEALBackend().name, SEALBackend().real_encryption, SEALBackend().can_bootstrap
('seal', True, False)
"""

from __future__ import annotations

import time

import numpy as np

from qfhe.ckks.backends.seal_eval import ADJUST_TOLERANCE, RunReport, SEALEvaluator, check_backend_support
from qfhe.ckks.backends.seal_keys import (
    SEALKeys,
    galois_elements,
    load_bytes,
    rotation_steps,
    seal_context,
    serialized_size,
    to_bytes,
)
from qfhe.ckks.params import CKKSParameters
from qfhe.ir.graph import Graph

__all__ = [
    "SEALBackend",
    "SEALKeys",
    "SEALEvaluator",
    "RunReport",
    "check_backend_support",
    "seal_context",
    "rotation_steps",
    "galois_elements",
    "to_bytes",
    "load_bytes",
    "serialized_size",
    "ADJUST_TOLERANCE",
]


class SEALBackend:
    """Real CKKS encryption with SEAL. Use it in a :class:`~qfhe.ckks.CompilationContext`.

    Compiling for it refuses bootstrap nodes and parameters that are not 128-bit secure (unless
    ``allow_insecure``). ``compiled.keygen()`` then makes the keys, and ``compiled(x)`` encrypts,
    evaluates on SEAL and decrypts.

    Examples
    --------
    >>> SEALBackend().real_encryption
    True
    """

    name = "seal"
    real_encryption = True
    can_bootstrap = False

    def check(self, graph: Graph, params: CKKSParameters) -> None:
        """What compiling for SEAL requires: no bootstraps, secure (or explicitly insecure) parameters.

        Examples
        --------
        >>> from qfhe.ir import Graph, Node
        >>> SEALBackend().check(Graph([Node("x", "encrypt", [])], ["x"]), CKKSParameters(8192, [60, 40, 60], 2**40))
        """
        check_backend_support(graph)
        params.check_security(real_encryption=True)

    def run(
        self,
        graph: Graph,
        params: CKKSParameters,
        X: np.ndarray,
        keys: SEALKeys | None = None,
        evaluator: SEALEvaluator | None = None,
        report: RunReport | None = None,
    ) -> np.ndarray:
        """Encrypt ``X``, evaluate ``graph`` on SEAL and decrypt: (n, outputs).

        ``X`` is one ciphertext group (one sample for row_major packing, up to the batch for
        column_major). ``keys`` from :meth:`SEALKeys.generate`; ``evaluator`` reuses encoded
        plaintexts across calls.

        Examples
        --------
        >>> callable(SEALBackend.run)
        True
        """
        if keys is None:
            from qfhe.errors import KeysNotGeneratedError

            raise KeysNotGeneratedError("the SEAL backend needs keys: call keygen() on the compiled model first")
        evaluator = evaluator or SEALEvaluator(graph, params, keys)
        report = report if report is not None else RunReport()
        start = time.perf_counter()
        cts = keys.encrypt(graph, X)
        t1 = time.perf_counter()
        outs = evaluator.evaluate(cts, report)
        t2 = time.perf_counter()
        y = keys.decrypt(graph, outs, len(X))
        report.encrypt_seconds += t1 - start
        report.seconds += t2 - t1
        report.decrypt_seconds += time.perf_counter() - t2
        report.evaluations += 1
        report.samples += len(X)
        return y
