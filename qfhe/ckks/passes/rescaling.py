"""RescalingInsertionPass: keep every ciphertext on the waterline, and align levels.

Every multiply is arranged to produce Δ·q_l (Δ = ``params.scale``, q_l the prime of its level) so
that exactly one rescale brings it back to Δ, whatever the primes are:

* a plaintext operand is encoded at q_l;
* a ct×ct product of two values at Δ would give Δ², which a rescale would turn into Δ²/q_l (with
  60-bit primes and Δ = 2^40: 2^20, then 2^-20 — the failure seen on real SEAL); so one operand is
  first multiplied by the plaintext 1 encoded at q_l/Δ (skipped when every prime equals Δ).

``eager`` rescales right after each multiply. ``lazy`` (waterline rule, as EVA) defers the rescale
until the value feeds a multiply, is an output, has several uses, or meets an already-rescaled
value in an add; a sum of products then needs one rescale instead of one per product.
Operands of binary ops are then mod-switched to equal levels (:func:`align_levels`).

Examples
--------
>>> RescalingInsertionPass("lazy").strategy
'lazy'
"""

from __future__ import annotations

import math

from qfhe.ckks.hegraph import MULTIPLIES, align_levels
from qfhe.ckks.passes.base import Deferred, HEPass, Rewriter, check_strategy, require
from qfhe.ckks.passes.linear import lower_remaining
from qfhe.ir.graph import Graph

_STRATEGIES = ("eager", "lazy")


class RescalingInsertionPass(HEPass):
    """Insert rescales (``eager`` or ``lazy``), scale adjustments and level alignment.

    Requires: a lowered HE graph without rescales. Ensures: the level/scale rules hold (see
    :mod:`qfhe.ckks.hegraph`). Idempotent (a graph that has rescales is only re-aligned).

    Examples
    --------
    >>> RescalingInsertionPass("sometimes")
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: RescalingInsertionPass strategy must be one of ('eager', 'lazy'), got 'sometimes'
    """

    def __init__(self, strategy: str = "lazy"):
        check_strategy(self.name, strategy, _STRATEGIES)
        self.strategy = strategy

    def __call__(self, graph: Graph, context) -> Graph:
        require(graph, self.name, absent={"activation": "NonlinearToPolynomialPass"})
        graph = lower_remaining(graph, context)  # linear layers no BSGS pass took: plain diagonals
        params = context.params
        if any(n.op == "rescale" for n in graph.nodes):
            return align_levels(graph, params)
        needs_adjust = any(b != math.log2(params.scale) for b in params.coeff_modulus[:-1])
        uses = {k: len(v) for k, v in graph.consumers().items()}
        rw = Rewriter({n.name for n in graph.nodes})
        pending = Deferred(rw, graph, "rescale", "rs")  # values sitting at Δ·q_l

        for n in graph.nodes:
            mixed_add = n.op == "ciphertext_add" and not all(pending.owes(j) for j in n.inputs)
            force = n.op in MULTIPLIES or n.op in ("decrypt", "bootstrap") or mixed_add
            ins = [pending.settle(i) if force else pending.read(i) for i in n.inputs]
            if n.op == "ciphertext_mult" and needs_adjust:
                ins[0] = rw.emit(
                    f"{n.name}_adj",
                    "plaintext_mult",
                    [ins[0]],
                    n.attrs.get("layer"),
                    value=1.0,
                    encode="adjust",
                    period=n.attrs.get("period"),
                )
            rw.keep(n.clone(inputs=ins))
            if (n.op in MULTIPLIES and n.attrs.get("encode") != "adjust") or (
                n.op in ("ciphertext_add", "plaintext_add", "rotate") and any(i in pending.waiting for i in ins)
            ):
                pending.mark(n.name)
                if self.strategy == "eager" or uses.get(n.name, 0) > 1:
                    pending.settle(n.name)
        return align_levels(Graph(rw.nodes, graph.outputs), params)
