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

import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from qfhe.ckks.backends.fake import FakeBackend
from qfhe.ckks.hegraph import COUNTED_OPS, ValueState, annotate
from qfhe.ckks.params import CKKSParameters
from qfhe.errors import CKKSPrecisionWarning, CKKSScheduleError, ConfigurationError, InputValidationError
from qfhe.ir.graph import Graph
from qfhe.validation import user_stacklevel

_SCALE_RTOL = 1e-9
#: Relative error of the ct×ct scale-aligning constant above which keygen warns.
ADJUST_TOLERANCE = 1e-5


def _seal():
    try:
        import tenseal.sealapi as sealapi
    except ImportError as exc:  # pragma: no cover - tenseal is a declared dependency of the ckks extra
        raise ConfigurationError("real CKKS encryption needs tenseal (pip install 'qfhe[ckks]')") from exc
    return sealapi


def to_bytes(obj) -> bytes:
    """Serialize a SEAL object (parameters, keys, ciphertext) with its own ``save``.

    Examples
    --------
    >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[])
    >>> to_bytes(keys.relin_keys)[:2]
    b'^\\xa1'
    """
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "obj")
        obj.save(path)
        with open(path, "rb") as f:
            return f.read()


def serialized_size(obj) -> int:
    """Bytes ``to_bytes(obj)`` would return, without holding them in memory (Galois keys reach GBs).

    Examples
    --------
    >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[])
    >>> serialized_size(keys.relin_keys) == len(to_bytes(keys.relin_keys))
    True
    """
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "obj")
        obj.save(path)
        return os.path.getsize(path)


def load_bytes(kind: str, data: bytes, context=None):
    """Load a SEAL object of ``kind`` (``"parameters"``, ``"public_key"``, ``"relin_keys"``,
    ``"galois_keys"``, ``"ciphertext"``) from bytes written by :func:`to_bytes`.

    Raises
    ------
    InputValidationError
        When the bytes are not a valid SEAL object of that kind for ``context``.

    Examples
    --------
    >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[])
    >>> type(load_bytes("relin_keys", to_bytes(keys.relin_keys), keys.context)).__name__
    'RelinKeys'
    """
    s = _seal()
    classes = {"parameters": s.EncryptionParameters, "public_key": s.PublicKey, "relin_keys": s.RelinKeys,
               "galois_keys": s.GaloisKeys, "ciphertext": s.Ciphertext}
    if kind not in classes:
        raise ConfigurationError(f"kind must be one of {tuple(classes)}, got {kind!r}")
    obj = classes[kind](s.SCHEME_TYPE.CKKS) if kind == "parameters" else classes[kind]()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "obj")
        with open(path, "wb") as f:
            f.write(bytes(data))
        try:
            obj.load(path) if kind == "parameters" else obj.load(context, path)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise InputValidationError(f"these bytes are not a valid SEAL {kind.replace('_', ' ')} for this "
                                       f"context ({exc}); send what to_bytes wrote, with the same parameters") from None
    return obj


def seal_context(params: CKKSParameters):
    """The SEAL context of ``params`` and the parameters carrying SEAL's real primes.

    128-bit security is enforced unless ``params.allow_insecure``.

    Examples
    --------
    >>> ctx, real = seal_context(CKKSParameters(8192, [60, 40, 60], 2**40))
    >>> real.prime_values[1] != 2**40, abs(math.log2(real.prime(1)) - 40) < 1e-3
    (True, True)
    """
    s = _seal()
    params.check_security(real_encryption=True)
    parms = s.EncryptionParameters(s.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(params.poly_modulus_degree)
    try:
        parms.set_coeff_modulus(s.CoeffModulus.Create(params.poly_modulus_degree, list(params.coeff_modulus)))
    except (ValueError, RuntimeError) as exc:
        raise ConfigurationError(f"SEAL cannot build coeff_modulus {list(params.coeff_modulus)} at N = "
                                 f"{params.poly_modulus_degree} ({exc}); use fewer primes of one size or other bit "
                                 "sizes (SEAL needs primes = 1 mod 2N, at most 60 bits)") from None
    level = s.SEC_LEVEL_TYPE.TC128 if params.is_secure else s.SEC_LEVEL_TYPE.NONE
    ctx = s.SEALContext(parms, True, level)
    if not ctx.parameters_set():
        raise ConfigurationError(f"SEAL refused the CKKS parameters {params.describe()}: "
                                 f"{ctx.parameters_error_message()}")
    return ctx, replace(params, prime_values=tuple(m.value() for m in parms.coeff_modulus()))


def rotation_steps(graph: Graph) -> list[int]:
    """The slot rotation steps the graph's ``rotate`` nodes use (k times the packing stride).

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "encrypt", [], {"length": 4, "stride": 2, "strategy": "column_major"}),
    ...            Node("r", "rotate", ["x"], {"k": 1}), Node("y", "decrypt", ["r"], {"length": 4})], ["y"])
    >>> rotation_steps(g)
    [2]
    """
    stride = FakeBackend._layout(graph)["stride"]
    return sorted({int(n.attrs["k"]) * stride for n in graph.nodes if n.op == "rotate"})


def galois_elements(steps, n: int) -> list[int]:
    """SEAL's Galois element of each left-rotation step: 3^step mod 2N (right rotations wrap).

    Passed as elements because the binding would read a list of non-negative steps as elements.

    Examples
    --------
    >>> galois_elements([1, 2, -1], 8192)
    [3, 9, 10923]
    """
    half = n // 2
    out = []
    for k in steps:
        if not -half < int(k) < half or int(k) == 0:
            raise ConfigurationError(f"rotation step {k} is outside (-{half}, {half}) or zero")
        out.append(pow(3, int(k) % half, 2 * n))
    return out


@dataclass
class SEALKeys:
    """The client's key set: SEAL context, secret key, and the evaluation keys it hands out.

    Create with :meth:`generate`. ``evaluation_keys()`` is what a server needs (public key,
    relinearization keys, Galois keys for ``steps``); the secret key stays here.

    Examples
    --------
    >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[1, 4])
    >>> keys.steps, sorted(keys.sizes())
    ([1, 4], ['galois_keys', 'public_key', 'relin_keys'])
    """

    params: CKKSParameters
    context: object
    secret_key: object
    public_key: object
    relin_keys: object
    galois_keys: object
    steps: list = field(default_factory=list)

    @classmethod
    def generate(cls, params: CKKSParameters, steps) -> "SEALKeys":
        """Generate keys for ``params``, with Galois keys only for the rotation ``steps``.

        Examples
        --------
        >>> SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[]).galois_keys is None
        True
        """
        s = _seal()
        ctx, real = seal_context(params)
        kg = s.KeyGenerator(ctx)
        pk, rk = s.PublicKey(), s.RelinKeys()
        kg.create_public_key(pk)
        kg.create_relin_keys(rk)
        steps = sorted({int(k) for k in steps})
        gk = None
        if steps:
            gk = s.GaloisKeys()
            kg.create_galois_keys(galois_elements(steps, params.poly_modulus_degree), gk)
        return cls(real, ctx, kg.secret_key(), pk, rk, gk, steps)

    def evaluation_keys(self) -> dict:
        """The public part as bytes: ``parameters``, ``public_key``, ``relin_keys``, ``galois_keys``.

        Examples
        --------
        >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[1])
        >>> sorted(keys.evaluation_keys())
        ['galois_keys', 'parameters', 'public_key', 'relin_keys', 'steps']
        """
        parms = self.context.key_context_data().parms()
        out = {"parameters": to_bytes(parms), "public_key": to_bytes(self.public_key),
               "relin_keys": to_bytes(self.relin_keys), "steps": list(self.steps)}
        out["galois_keys"] = to_bytes(self.galois_keys) if self.galois_keys is not None else b""
        return out

    def sizes(self) -> dict[str, int]:
        """In-memory bytes of each evaluation key (serialized, SEAL compresses them by about a quarter).

        A key-switching key holds, per data prime, one size-2 ciphertext over all primes; there is
        one for relinearization and one per Galois step.

        Examples
        --------
        >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[1, 2])
        >>> keys.sizes()["galois_keys"] == 2 * keys.sizes()["relin_keys"]
        True
        """
        p = self.params
        n_data, n_all = len(p.coeff_modulus) - 1, len(p.coeff_modulus)
        switch_key = n_data * 2 * n_all * p.poly_modulus_degree * 8
        return {"public_key": 2 * n_all * p.poly_modulus_degree * 8, "relin_keys": switch_key,
                "galois_keys": switch_key * len(self.steps)}

    def serialized_sizes(self) -> dict[str, int]:
        """Bytes of each evaluation key as sent (SEAL's ``save``, compressed).

        Examples
        --------
        >>> keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[])
        >>> keys.serialized_sizes()["galois_keys"]
        0
        """
        return {"public_key": serialized_size(self.public_key), "relin_keys": serialized_size(self.relin_keys),
                "galois_keys": serialized_size(self.galois_keys) if self.galois_keys is not None else 0}

    # -- client side ------------------------------------------------------------------------------
    def encrypt(self, graph: Graph, X: np.ndarray) -> dict:
        """Encrypt a batch for one graph evaluation: input name → ciphertext.

        ``X`` is one sample (row_major/diagonal) or up to ``stride`` samples (column_major),
        shape (n, features). Client-rotated copies (``diagonal`` packing) are rotated in the clear.

        Examples
        --------
        >>> callable(SEALKeys.encrypt)
        True
        """
        s = _seal()
        encoder, encryptor = s.CKKSEncoder(self.context), s.Encryptor(self.context, self.public_key)
        layout, slots = FakeBackend._layout(graph), self.params.slots
        out = {}
        for n in graph.nodes:
            if n.op != "encrypt":
                continue
            Xs = np.asarray(X, np.float64)
            if "chunk" in n.attrs:
                Xs = Xs[:, n.attrs["chunk"] * slots : (n.attrs["chunk"] + 1) * slots]
            v = FakeBackend.encrypt(FakeBackend(), Xs, layout, slots)[0]
            if n.attrs.get("rotation"):
                v = np.roll(v, -n.attrs["rotation"] * layout["stride"])
            pt, ct = s.Plaintext(), s.Ciphertext()
            encoder.encode(v.tolist(), float(self.params.scale), pt)
            encryptor.encrypt(pt, ct)
            out[n.name] = ct
        return out

    def decrypt(self, graph: Graph, outputs: dict, batch: int) -> np.ndarray:
        """Decrypt and decode the output ciphertexts of one evaluation: (batch, output features).

        Examples
        --------
        >>> callable(SEALKeys.decrypt)
        True
        """
        s = _seal()
        encoder, decryptor = s.CKKSEncoder(self.context), s.Decryptor(self.context, self.secret_key)
        layout = FakeBackend._layout(graph)
        parts = []
        for o in graph.outputs:
            pt = s.Plaintext()
            decryptor.decrypt(outputs[o], pt)
            slots = np.asarray(encoder.decode_double(pt))[None]
            parts.append(FakeBackend.decrypt(slots, layout, graph[o].attrs["length"], batch))
        return np.concatenate(parts, axis=1)


@dataclass
class RunReport:
    """What one SEAL run measured.

    Attributes
    ----------
    op_counts : dict
        Ops executed by one graph evaluation (equals ``cost_analysis.total_operations``).
    op_seconds : dict
        Server seconds per op kind, summed over the run.
    evaluations : int
        Graph evaluations (ciphertext groups): one per sample for row_major packing, one per
        ``samples_per_ciphertext`` samples for column_major.
    samples, samples_per_ciphertext : int
    seconds : float
        Server evaluation time of the whole run (encryption and decryption excluded).
    encrypt_seconds, decrypt_seconds : float
        Client time.
    predicted_seconds : float
        The cost model's estimate for the run (``estimated_latency`` × evaluations).
    peak_live_ciphertexts : int
        Most ciphertexts alive at once during an evaluation.

    Examples
    --------
    >>> RunReport(seconds=2.0, evaluations=2, samples=8).latency_per_sample
    0.25
    """

    op_counts: dict = field(default_factory=dict)
    op_seconds: dict = field(default_factory=dict)
    evaluations: int = 0
    samples: int = 0
    samples_per_ciphertext: int = 1
    seconds: float = 0.0
    encrypt_seconds: float = 0.0
    decrypt_seconds: float = 0.0
    predicted_seconds: float = 0.0
    peak_live_ciphertexts: int = 0

    @property
    def latency_per_ciphertext(self) -> float:
        """Server seconds per graph evaluation.

        Examples
        --------
        >>> RunReport(seconds=3.0, evaluations=3).latency_per_ciphertext
        1.0
        """
        return self.seconds / max(self.evaluations, 1)

    @property
    def latency_per_sample(self) -> float:
        """Server seconds per sample, amortised over the samples sharing a ciphertext.

        Examples
        --------
        >>> RunReport(seconds=1.0, evaluations=1, samples=4).latency_per_sample
        0.25
        """
        return self.seconds / max(self.samples, 1)


class SEALEvaluator:
    """The server side: evaluates one compiled graph with evaluation keys only.

    Parameters
    ----------
    graph : Graph
        The compiled HE op graph (no bootstrap nodes).
    params : CKKSParameters
        The parameters (SEAL's real primes are derived from them).
    evaluation_keys : dict
        :meth:`SEALKeys.evaluation_keys` (bytes), or a :class:`SEALKeys` (in-process use).

    Examples
    --------
    >>> callable(SEALEvaluator.evaluate)
    True
    """

    def __init__(self, graph: Graph, params: CKKSParameters, evaluation_keys):
        s = _seal()
        check_backend_support(graph)
        if isinstance(evaluation_keys, SEALKeys):
            self.context, self.params = evaluation_keys.context, evaluation_keys.params
            pk, rk, gk, steps = (evaluation_keys.public_key, evaluation_keys.relin_keys, evaluation_keys.galois_keys,
                                 evaluation_keys.steps)
        else:
            self.context, self.params = seal_context(params)
            pk = load_bytes("public_key", evaluation_keys["public_key"], self.context)
            rk = load_bytes("relin_keys", evaluation_keys["relin_keys"], self.context)
            steps = list(evaluation_keys.get("steps", []))
            gk = load_bytes("galois_keys", evaluation_keys["galois_keys"], self.context) if steps else None
        missing = sorted(set(rotation_steps(graph)) - set(steps))
        if missing:
            raise ConfigurationError(f"the evaluation keys have no Galois keys for rotation steps {missing}; generate "
                                     "keys for this compiled model (keygen())")
        self.graph = graph
        self.relin_keys, self.galois_keys = rk, gk
        self.evaluator = s.Evaluator(self.context)
        self.encryptor = s.Encryptor(self.context, pk)
        self.states = annotate(graph, self.params)
        self.stride = FakeBackend._layout(graph)["stride"]
        self.parms_ids = self._parms_ids()
        self.plaintexts = self._encode_plaintexts()
        users = graph.consumers()
        self.uses = {n.name: len(users.get(n.name, [])) for n in graph.nodes}

    def _parms_ids(self) -> dict[int, list]:
        ids, cd = {}, self.context.first_context_data()
        while cd is not None:
            ids[cd.chain_index()] = cd.parms_id()
            cd = cd.next_context_data()
        return ids

    def _encode_plaintexts(self) -> dict:
        """Every plaintext operand encoded once, at its op's level and exact scale."""
        from qfhe.ckks.hegraph import plaintext_scale

        s = _seal()
        encoder, slots = s.CKKSEncoder(self.context), self.params.slots
        users, out, worst = self.graph.consumers(), {}, (0.0, None, 1.0)
        for n in self.graph.nodes:
            if n.op not in ("plaintext_mult", "plaintext_add"):
                continue
            x = self.states[n.inputs[0]]
            scale = plaintext_scale(n, self.graph, self.states, self.params, users) if n.op == "plaintext_mult" else x.scale
            v = FakeBackend.encode(n.attrs.get("value", 1.0), n.attrs.get("period") or 1, self.stride, slots)
            if n.attrs.get("encode") == "adjust":
                worst = max(worst, (abs(round(scale) - scale) / scale, n.name, scale))
            if n.op == "plaintext_mult" and not np.any(v):
                out[n.name] = None  # SEAL refuses a product with zero (a transparent ciphertext)
                continue
            pt = s.Plaintext()
            try:
                encoder.encode(v.tolist(), self.parms_ids[x.level], float(scale), pt)
            except ValueError as exc:
                raise CKKSScheduleError(f"node '{n.name}' ({n.op}): SEAL cannot encode its plaintext at scale "
                                        f"2^{math.log2(scale):.2f}, level {x.level} ({exc}); use a smaller scale or "
                                        "larger primes") from None
            out[n.name] = pt
        if worst[0] > ADJUST_TOLERANCE:
            # The constant 1 that aligns a ct×ct operand is encoded at q_l/Δ, close to 1: SEAL rounds it
            # to an integer, so the product is off by that rounding (|q_l/Δ - 1| for primes near Δ).
            warnings.warn(
                f"node '{worst[1]}': the constant that aligns a ct×ct product's scale is encoded at scale "
                f"{worst[2]:.6g}, which SEAL rounds to {round(worst[2])}: each such product is off by a relative "
                f"{worst[0]:.1e}. Use rescaling primes of at least 40 bits (CKKSParameters.for_model with "
                "precision_bits >= 30), whose real values are within 1e-6 of the scale", CKKSPrecisionWarning,
                stacklevel=user_stacklevel())
        return out

    def evaluate(self, inputs: dict, report: RunReport | None = None) -> dict:
        """Run the graph on encrypted inputs (input name → ciphertext); return output name → ciphertext.

        Each ciphertext is freed after its last use. Op counts and seconds go to ``report``.

        Raises
        ------
        CKKSScheduleError
            Naming the node, when SEAL's level or scale differs from the schedule, or SEAL refuses an op.

        Examples
        --------
        >>> callable(SEALEvaluator.evaluate)
        True
        """
        s = _seal()
        report = report if report is not None else RunReport()
        ev, vals, remaining, outputs = self.evaluator, {}, dict(self.uses), {}
        counts = {op: 0 for op in COUNTED_OPS}
        peak = 0
        for n in self.graph.nodes:
            if n.op == "encrypt":
                if n.name not in inputs:
                    raise InputValidationError(f"no ciphertext for the encrypted input '{n.name}'")
                ct = inputs[n.name]
                self._check(n, ct, self.states[n.name])
                vals[n.name] = ct
                continue
            ins = [vals[i] for i in n.inputs]
            if n.op == "decrypt":
                outputs[n.name] = ins[0]
            else:
                out = s.Ciphertext()
                start = time.perf_counter()
                try:
                    self._apply(n, ins, out)
                except (ValueError, RuntimeError) as exc:
                    raise CKKSScheduleError(f"node '{n.name}' ({n.op}): SEAL refused it: {exc}") from None
                report.op_seconds[n.op] = report.op_seconds.get(n.op, 0.0) + time.perf_counter() - start
                counts[n.op] += 1
                self._check(n, out, self.states[n.name])
                vals[n.name] = out
            peak = max(peak, len(vals))
            for i in n.inputs:
                remaining[i] -= 1
                if remaining[i] == 0:
                    del vals[i]  # its last use: free the ciphertext
        report.op_counts = counts
        report.peak_live_ciphertexts = max(report.peak_live_ciphertexts, peak)
        return {o: outputs[o] for o in self.graph.outputs}

    def _apply(self, n, ins: list, out) -> None:
        ev, op = self.evaluator, n.op
        if op == "ciphertext_add":
            a, b = ins
            if a.scale != b.scale:  # equal up to round-off (checked by the schedule): make them identical
                b.scale = a.scale
            ev.add(a, b, out)
        elif op == "ciphertext_mult":
            ev.multiply(ins[0], ins[1], out)
        elif op == "plaintext_mult":
            pt = self.plaintexts[n.name]
            if pt is None:
                self.encryptor.encrypt_zero(ins[0].parms_id(), out)
                out.scale = self.states[n.name].scale
            else:
                ev.multiply_plain(ins[0], pt, out)
        elif op == "plaintext_add":
            ev.add_plain(ins[0], self.plaintexts[n.name], out)
        elif op == "rotate":
            ev.rotate_vector(ins[0], int(n.attrs["k"]) * self.stride, self.galois_keys, out)
        elif op == "rescale":
            ev.rescale_to_next(ins[0], out)
        elif op == "relinearize":
            ev.relinearize(ins[0], self.relin_keys, out)
        elif op == "mod_switch":
            target = self.parms_ids[self.states[n.name].level]
            ev.mod_switch_to(ins[0], target, out)
        else:
            raise CKKSScheduleError(f"node '{n.name}' has op '{op}', which the SEAL backend cannot run")

    def _check(self, n, ct, state: ValueState) -> None:
        level = self.context.get_context_data(ct.parms_id()).chain_index()
        if level != state.level:
            raise CKKSScheduleError(f"node '{n.name}' ({n.op}): SEAL's ciphertext is at level {level}, the schedule "
                                    f"says {state.level}; the graph and the keys' parameters do not match")
        if not math.isclose(ct.scale, state.scale, rel_tol=_SCALE_RTOL):
            raise CKKSScheduleError(f"node '{n.name}' ({n.op}): SEAL's scale 2^{math.log2(ct.scale):.4f} differs from "
                                    f"the schedule's 2^{state.log2_scale:.4f}; recompile with these parameters")
        if n.op == "decrypt":
            return
        ct.scale = state.scale  # round-off only (checked above): SEAL compares scales to about one ulp
        if ct.size() != state.size:
            raise CKKSScheduleError(f"node '{n.name}' ({n.op}): a size-{ct.size()} ciphertext where the schedule "
                                    f"has size {state.size}")


def check_backend_support(graph: Graph) -> None:
    """Refuse graphs SEAL cannot run: ``tenseal.sealapi`` has no CKKS bootstrapping.

    Raises
    ------
    ConfigurationError
        Naming the bootstrap nodes and what to change.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> check_backend_support(Graph([Node("x", "encrypt", []), Node("b", "bootstrap", ["x"])], ["b"]))
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: the graph has 1 bootstrap node(s) (['b']) but SEAL (tenseal.sealapi) has no CKKS bootstrapping, and qfhe never fakes a refresh. Compile without BootstrappingInsertionPass using parameters with enough levels (CKKSParameters.for_model picks them), use fewer layers, or a lower polynomial degree (NonlinearToPolynomialPass(degree=...))
    """
    boots = [n.name for n in graph.nodes if n.op == "bootstrap"]
    if boots:
        raise ConfigurationError(
            f"the graph has {len(boots)} bootstrap node(s) ({boots[:5]}) but SEAL (tenseal.sealapi) has no CKKS "
            "bootstrapping, and qfhe never fakes a refresh. Compile without BootstrappingInsertionPass using parameters "
            "with enough levels (CKKSParameters.for_model picks them), use fewer layers, or a lower polynomial degree "
            "(NonlinearToPolynomialPass(degree=...))")


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

    def run(self, graph: Graph, params: CKKSParameters, X: np.ndarray, keys: SEALKeys | None = None,
            evaluator: SEALEvaluator | None = None, report: RunReport | None = None) -> np.ndarray:
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
