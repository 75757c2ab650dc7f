"""InputPackingPass: choose the slot layout, encrypt the input, decrypt the outputs."""

from __future__ import annotations

import numpy as np

from qfhe.ckks.passes.base import HEPass, check_strategy
from qfhe.ckks.passes.linear import bsgs_split
from qfhe.errors import ConfigurationError, PassError
from qfhe.ir.graph import Graph, Node
from qfhe.validation import as_int

STRATEGIES = ("row_major", "column_major", "diagonal")


def _pad(v, length: int) -> np.ndarray:
    out = np.zeros(length)
    out[: len(v)] = v
    return out


def next_pow2(n: int) -> int:
    """Smallest power of two ≥ n.

    Examples
    --------
    >>> next_pow2(5), next_pow2(8)
    (8, 8)
    """
    return 1 << max(0, (int(n) - 1).bit_length())


def _widest(graph: Graph) -> int:
    """The largest period any value will have: inputs and layer outputs, as powers of two."""
    widths = [n.attrs["features"] for n in graph.nodes if n.op == "input"]
    widths += [n.attrs["matrix"].shape[0] for n in graph.nodes if n.op == "linear"]
    return next_pow2(max(widths, default=1))


class InputPackingPass(HEPass):
    """Pack the input into slots and give every value its period.

    Strategies (N/2 slots):

    * ``row_major``: each sample fills its own slot vector (its own ciphertext), replicated with
      period n (n = features rounded up to a power of two), so cyclic rotations act on it.
    * ``column_major``: up to ``batch`` samples interleaved in ONE ciphertext (slot i·B + b holds
      feature i of sample b); every rotation moves all samples at once (SIMD across the batch).
      ``batch=None`` (the default) fits as many samples as the slots allow: slots divided by the
      largest layer width, rounded to powers of two.
    * ``diagonal``: ``row_major`` slots, and the client also encrypts the input's baby-step
      rotations for the first linear layer (``client_rotations`` ciphertexts), which removes those
      rotations from the server.

    An input with more features than slots is split into several ciphertexts (``row_major`` and
    ``diagonal``); the linear layers reading it multiply block by block.

    Requires: the high-level graph (``input``, ``linear``, ``activation``, ``affine``, ``add``).
    Ensures: ``input`` became ``encrypt`` (with ``strategy``, ``stride`` and ``length``), each output
    is read by a ``decrypt``, residual adds and per-feature affines (unfolded BatchNorm) are HE ops,
    and every node has ``period`` and ``features``.

    Examples
    --------
    >>> InputPackingPass("row_major").strategy
    'row_major'
    """

    def __init__(self, strategy: str = "row_major", batch: int | None = None):
        check_strategy(self.name, strategy, STRATEGIES)
        self.strategy = strategy
        self.batch = None if batch is None else as_int(f"{self.name} batch", batch, 1)

    def __call__(self, graph: Graph, context) -> Graph:
        if graph is None:
            raise PassError(f"{self.name} got no graph")
        if any(n.op == "encrypt" for n in graph.nodes):
            return graph.copy()
        slots = context.params.slots
        stride = 1
        if self.strategy == "column_major":
            stride = next_pow2(self.batch) if self.batch is not None else max(1, slots // _widest(graph))
        nodes, features, period = [], {}, {}
        split = context.meta.setdefault("split_inputs", {})
        for n in graph.nodes:
            if n.op == "input":
                features[n.name] = n.attrs["features"]
            elif n.op == "linear":
                features[n.name] = n.attrs["matrix"].shape[0]
            else:
                features[n.name] = features[n.inputs[0]]
            if n.op in ("input", "linear"):
                period[n.name] = next_pow2(features[n.name])
            else:
                period[n.name] = period[n.inputs[0]]
            if n.op == "add" and period[n.inputs[0]] != period[n.inputs[1]]:
                raise ConfigurationError(
                    f"node '{n.name}' adds vectors of {features[n.inputs[0]]} and "
                    f"{features[n.inputs[1]]} features; a residual add needs equal sizes"
                )
            if n.op == "input" and period[n.name] > slots:
                nodes += self._split_input(graph, n, features[n.name], slots, context)
                period[n.name] = slots
                continue
            need = period[n.name] * stride
            if n.op == "linear":
                need = max(need, period[n.inputs[0]] * stride)
            if need > slots:
                raise ConfigurationError(
                    f"node '{n.name}' needs {need} slots ({period[n.name]} features x {stride} samples) but "
                    f"N={context.params.poly_modulus_degree} has {slots}; use a larger poly_modulus_degree or a "
                    "smaller column_major batch (only a model input is split across ciphertexts)"
                )
            attrs = {**n.attrs, "period": period[n.name], "features": features[n.name], "layer": n.name}
            if n.op == "linear" and n.inputs[0] in split:
                attrs["parts"] = split[n.inputs[0]]
            if n.op == "add":
                nodes.append(Node(n.name, "ciphertext_add", list(n.inputs), attrs))
            elif n.op == "affine":
                scale, shift = _pad(n.attrs["scale"], period[n.name]), _pad(n.attrs["shift"], period[n.name])
                base = {"period": period[n.name], "layer": n.name}
                nodes.append(
                    Node(
                        f"{n.name}_scale", "plaintext_mult", list(n.inputs), {**base, "value": scale, "encode": "prime"}
                    )
                )
                nodes.append(Node(n.name, "plaintext_add", [f"{n.name}_scale"], {**base, "value": shift}))
            elif n.op == "input":
                enc = {**attrs, "length": period[n.name], "stride": stride, "strategy": self.strategy}
                nodes.append(Node(n.name, "encrypt", [], enc))
                if self.strategy == "diagonal":
                    nodes += self._client_rotations(graph, n, enc, context)
            else:
                nodes.append(n.clone(attrs=attrs, inputs=attrs.get("parts", n.inputs)))
        outs = []
        for o in graph.outputs:
            name = f"{o}_decrypt"
            nodes.append(Node(name, "decrypt", [o], {"length": features[o], "period": period[o], "layer": o}))
            outs.append(name)
        context.meta["packing"] = {"strategy": self.strategy, "stride": stride, "batch": stride if stride > 1 else 1}
        return Graph(nodes, outs)

    def _split_input(self, graph: Graph, node: Node, features: int, slots: int, context) -> list[Node]:
        """An input larger than the slot count becomes several ciphertexts of ``slots`` features;
        only linear layers may read it (block by block)."""
        users = [graph[u] for u in graph.consumers()[node.name]]
        if self.strategy == "column_major" or any(u.op != "linear" for u in users):
            raise ConfigurationError(
                f"input '{node.name}' has {features} features, more than the {slots} slots of one ciphertext; it can "
                "be split across ciphertexts only with row_major/diagonal packing and only if linear layers read it"
            )
        parts = []
        for k in range(-(-features // slots)):
            parts.append(
                Node(
                    f"{node.name}_part{k}",
                    "encrypt",
                    [],
                    {
                        "length": slots,
                        "stride": 1,
                        "strategy": self.strategy,
                        "chunk": k,
                        "period": slots,
                        "features": min(slots, features - k * slots),
                        "layer": node.name,
                    },
                )
            )
        context.meta.setdefault("split_inputs", {})[node.name] = [p.name for p in parts]
        return parts

    @staticmethod
    def _client_rotations(graph: Graph, node: Node, enc: dict, context) -> list[Node]:
        """Encryptions of the input rotated by the first layer's baby steps (done in the clear)."""
        users = [graph[u] for u in graph.consumers()[node.name] if graph[u].op == "linear"]
        if not users:
            return []
        d = next_pow2(users[0].attrs["matrix"].shape[0])
        n1, _ = bsgs_split(max(d, 1))
        made, out = {}, []
        for k in range(1, n1):
            name = f"{node.name}_rot{k}"
            out.append(Node(name, "encrypt", [], {**enc, "rotation": k}))
            made[k] = name
        context.meta.setdefault("client_rotations", {})[node.name] = made
        return out
