"""The server side of CKKS on real encryption: evaluate a compiled HE graph on SEAL, op for op.

:class:`SEALEvaluator` holds the public context and the evaluation keys, never the secret key.
It encodes every plaintext operand once, at the level and exact scale its op needs, runs one SEAL
call per node in topological order, frees each ciphertext after its last use, and checks SEAL's
level and scale against the schedule after every op (an error names the node). The counts and
seconds of a run go to a :class:`RunReport`.

Examples
--------
>>> RunReport(seconds=1.0, evaluations=1, samples=4).latency_per_sample
0.25
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from qfhe.ckks.backends.fake import FakeBackend
from qfhe.ckks.backends.seal_keys import SEALKeys, _seal, galois_elements, load_bytes, rotation_steps, seal_context
from qfhe.ckks.hegraph import COUNTED_OPS, ValueState, annotate
from qfhe.ckks.params import CKKSParameters
from qfhe.errors import CKKSPrecisionWarning, CKKSScheduleError, ConfigurationError, InputValidationError
from qfhe.ir.graph import Graph
from qfhe.validation import user_stacklevel

_SCALE_RTOL = 1e-9
#: Relative error of the ct×ct scale-aligning constant above which keygen warns. 40-bit primes stay
#: below it (1e-7 to 1.1e-5 measured up to 15 levels at N = 2^15); 30-bit primes do not (1e-4 to 1e-3).
ADJUST_TOLERANCE = 1e-4


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
            pk, rk, gk, steps = (
                evaluation_keys.public_key,
                evaluation_keys.relin_keys,
                evaluation_keys.galois_keys,
                evaluation_keys.steps,
            )
        else:  # bytes from a client: what they claim to hold is checked, not believed
            self.context, self.params = seal_context(params)
            pk = load_bytes("public_key", evaluation_keys["public_key"], self.context)
            rk = load_bytes("relin_keys", evaluation_keys["relin_keys"], self.context)
            needed = rotation_steps(graph)
            gk = load_bytes("galois_keys", evaluation_keys["galois_keys"], self.context) if needed else None
            steps = [k for k, e in zip(needed, galois_elements(needed, params.poly_modulus_degree)) if gk.has_key(e)]
        missing = sorted(set(rotation_steps(graph)) - set(steps))
        if missing:
            raise ConfigurationError(
                f"the evaluation keys have no Galois keys for rotation steps {missing}; generate "
                "keys for this compiled model (keygen())"
            )
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
            scale = (
                plaintext_scale(n, self.graph, self.states, self.params, users) if n.op == "plaintext_mult" else x.scale
            )
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
                raise CKKSScheduleError(
                    f"node '{n.name}' ({n.op}): SEAL cannot encode its plaintext at scale "
                    f"2^{math.log2(scale):.2f}, level {x.level} ({exc}); use a smaller scale or "
                    "larger primes"
                ) from None
            out[n.name] = pt
        if worst[0] > ADJUST_TOLERANCE:
            # The constant 1 that aligns a ct×ct operand is encoded at q_l/Δ, close to 1: SEAL rounds it
            # to an integer, so the product is off by that rounding (|q_l/Δ - 1| for primes near Δ).
            warnings.warn(
                f"node '{worst[1]}': the constant that aligns a ct×ct product's scale is encoded at scale "
                f"{worst[2]:.6g}, which SEAL rounds to {round(worst[2])}: each such product is off by a relative "
                f"{worst[0]:.1e}. Use rescaling primes of at least 40 bits (CKKSParameters.for_model with "
                "precision_bits >= 30), whose real values are within about 1e-5 of the scale",
                CKKSPrecisionWarning,
                stacklevel=user_stacklevel(),
            )
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
        vals, remaining, outputs = {}, dict(self.uses), {}
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
            raise CKKSScheduleError(
                f"node '{n.name}' ({n.op}): SEAL's ciphertext is at level {level}, the schedule "
                f"says {state.level}; the graph and the keys' parameters do not match"
            )
        if not math.isclose(ct.scale, state.scale, rel_tol=_SCALE_RTOL):
            raise CKKSScheduleError(
                f"node '{n.name}' ({n.op}): SEAL's scale 2^{math.log2(ct.scale):.4f} differs from "
                f"the schedule's 2^{state.log2_scale:.4f}; recompile with these parameters"
            )
        if n.op == "decrypt":
            return
        ct.scale = state.scale  # round-off only (checked above): SEAL compares scales to about one ulp
        if ct.size() != state.size:
            raise CKKSScheduleError(
                f"node '{n.name}' ({n.op}): a size-{ct.size()} ciphertext where the schedule has size {state.size}"
            )


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
            "(NonlinearToPolynomialPass(degree=...))"
        )
