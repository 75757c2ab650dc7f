"""FakeBackend: runs an HE op graph in numpy with CKKS slot semantics, checking every rule.

Each ciphertext is a real slot vector (one row per ciphertext) plus its level, scale and size.
Rotation is a cyclic roll of the slot vector; plaintexts are expanded to slots from the value's
period. At every op the backend applies :func:`qfhe.ckks.hegraph.transition` (levels, scales,
sizes) and checks that magnitude × scale stays below Q_level with ``margin_bits`` to spare, so a
wrong pass order fails loudly instead of computing something.

With ``simulate_noise=True`` it adds CKKS-like noise: Gaussian error of standard deviation
``noise_std * sqrt(N) / scale`` at encryption, after each multiply, rescale and key switch (rotate,
relinearize), and ``bootstrap_error`` (relative to the value's magnitude) at each bootstrap.

Examples
--------
>>> import numpy as np
>>> from qfhe.ir import Graph, Node
>>> from qfhe.ckks.params import CKKSParameters
>>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
>>> g = Graph([Node("x", "encrypt", [], {"length": 4, "stride": 1, "strategy": "row_major"}),
...            Node("r", "rotate", ["x"], {"k": 1}), Node("y", "decrypt", ["r"], {"length": 4})], ["y"])
>>> FakeBackend().run(g, p, np.array([[1.0, 2.0, 3.0, 4.0]]))
array([[2., 3., 4., 1.]])
"""

from __future__ import annotations

import math

import numpy as np

from qfhe.ckks.hegraph import ValueState, check_scale, expand_plaintext, plaintext_scale, transition
from qfhe.ckks.params import CKKSParameters
from qfhe.errors import CKKSScheduleError, ConfigurationError
from qfhe.ir.graph import Graph


class FakeBackend:
    """Numpy CKKS simulator (no encryption) that enforces the level/scale/size rules.

    Parameters
    ----------
    simulate_noise : bool
        Add CKKS-like noise (see module docstring).
    noise_std : float
        Fresh-noise standard deviation in units of the scale (3.2, as SEAL's error distribution).
    bootstrap_error : float
        Relative error a bootstrap adds.
    margin_bits : float
        Bits of headroom required between magnitude × scale and Q_level.
    seed : int
        Noise seed.

    Examples
    --------
    >>> FakeBackend(simulate_noise=True).name
    'fake'
    """

    name = "fake"
    real_encryption = False

    def __init__(
        self,
        simulate_noise: bool = False,
        noise_std: float = 3.2,
        bootstrap_error: float = 1e-7,
        margin_bits: float = 4.0,
        seed: int = 0,
    ):
        self.simulate_noise = simulate_noise
        self.noise_std = noise_std
        self.bootstrap_error = bootstrap_error
        self.margin_bits = margin_bits
        self.seed = seed

    # -- layout ---------------------------------------------------------------------------------
    @staticmethod
    def _layout(graph: Graph) -> dict:
        enc = next(n for n in graph.nodes if n.op == "encrypt" and not n.attrs.get("rotation"))
        return enc.attrs

    @staticmethod
    def encode(value, length: int, stride: int, slots: int) -> np.ndarray:
        """Plaintext vector of period ``length`` (in logical positions) laid out on ``slots``."""
        v = expand_plaintext(value, length)
        return v[(np.arange(slots) // stride) % length]

    def encrypt(self, X: np.ndarray, layout: dict, slots: int) -> np.ndarray:
        """Client-side packing: rows of slot vectors (row_major: one per sample; column_major: one).

        Examples
        --------
        >>> FakeBackend().encrypt(np.array([[1.0, 2.0]]), {"length": 2, "stride": 1, "strategy": "row_major"}, 4)
        array([[1., 2., 1., 2.]])
        """
        n, stride = layout["length"], layout["stride"]
        batch, features = X.shape
        padded = np.zeros((batch, n))
        padded[:, :features] = X
        s = np.arange(slots)
        if layout["strategy"] == "column_major":
            if batch > stride:
                raise ConfigurationError(f"column_major packing holds {stride} samples; got {batch}")
            b, i = s % stride, (s // stride) % n
            rows = np.where(b < batch, padded[np.minimum(b, batch - 1), i], 0.0)[None]
            return rows
        return padded[:, s % n]

    @classmethod
    def pack(cls, node, X: np.ndarray, layout: dict, slots: int) -> np.ndarray:
        """The slot rows an ``encrypt`` node holds: its block of a split input, rotated in the clear
        for a client-rotated copy (``diagonal`` packing). Every backend's client packs this way.

        Examples
        --------
        >>> from qfhe.ir import Node
        >>> node = Node("x_rot1", "encrypt", [], {"rotation": 1})
        >>> FakeBackend.pack(node, np.array([[1.0, 2.0]]), {"length": 2, "stride": 1, "strategy": "row_major"}, 4)
        array([[2., 1., 2., 1.]])
        """
        Xs = np.asarray(X, np.float64)
        if "chunk" in node.attrs:  # one block of an input split across ciphertexts
            Xs = Xs[:, node.attrs["chunk"] * slots : (node.attrs["chunk"] + 1) * slots]
        v = cls.encrypt(cls(), Xs, layout, slots)
        if node.attrs.get("rotation"):  # the client rotated this copy in the clear
            v = np.roll(v, -node.attrs["rotation"] * layout["stride"], axis=1)
        return v

    @staticmethod
    def decrypt(rows: np.ndarray, layout: dict, length: int, batch: int) -> np.ndarray:
        """Read the first ``length`` logical positions of each sample."""
        if layout["strategy"] == "column_major":
            stride = layout["stride"]
            idx = np.arange(length)[None, :] * stride + np.arange(batch)[:, None]
            return rows[0][idx]
        return rows[:, :length]

    # -- execution ------------------------------------------------------------------------------
    def run(self, graph: Graph, params: CKKSParameters, X: np.ndarray) -> np.ndarray:
        """Execute ``graph`` on a float batch ``X`` (n, features); return decrypted outputs.

        Raises
        ------
        CKKSScheduleError
            Naming the node, when a level, scale, size or magnitude rule is broken.

        Examples
        --------
        >>> FakeBackend().simulate_noise
        False
        """
        rng = np.random.default_rng(self.seed)
        layout = self._layout(graph)
        slots, stride = params.slots, layout["stride"]
        users = graph.consumers()
        vals: dict[str, np.ndarray] = {}
        states: dict[str, ValueState] = {}
        outputs: dict[str, np.ndarray] = {}
        batch = X.shape[0]
        for n in graph.nodes:
            ins = [vals[i] for i in n.inputs]
            pt = plaintext_scale(n, graph, states, params, users) if n.op == "plaintext_mult" else None
            state = transition(n, [states[i] for i in n.inputs], params, pt)
            check_scale(n, state, params)
            length = n.attrs.get("length")
            if n.op == "encrypt":
                v = self.pack(n, X, layout, slots)
            elif n.op == "decrypt":
                outputs[n.name] = self.decrypt(ins[0], layout, length, batch)
                v = ins[0]
            elif n.op == "ciphertext_add":
                v = ins[0] + ins[1]
            elif n.op == "ciphertext_mult":
                v = ins[0] * ins[1]
            elif n.op == "plaintext_add":
                v = ins[0] + self.encode(n.attrs["value"], n.attrs["period"], stride, slots)
            elif n.op == "plaintext_mult":
                v = ins[0] * self.encode(n.attrs["value"], n.attrs["period"], stride, slots)
            elif n.op == "rotate":
                v = np.roll(ins[0], -n.attrs["k"] * stride, axis=1)
            elif n.op == "bootstrap":
                v = ins[0]
                if self.simulate_noise:
                    v = v + rng.normal(0, self.bootstrap_error * max(1.0, float(np.abs(v).max())), v.shape)
            else:  # rescale, relinearize, mod_switch: the value is unchanged (only its state)
                v = ins[0]
            if self.simulate_noise and n.op in (
                "encrypt",
                "ciphertext_mult",
                "plaintext_mult",
                "rescale",
                "rotate",
                "relinearize",
            ):
                v = v + rng.normal(0, self.noise_std * math.sqrt(params.poly_modulus_degree) / state.scale, v.shape)
            self._check_magnitude(n, v, state, params)
            vals[n.name] = v
            states[n.name] = state
        return np.concatenate([outputs[o] for o in graph.outputs], axis=1)

    def _check_magnitude(self, node, v: np.ndarray, state: ValueState, params: CKKSParameters) -> None:
        peak = float(np.abs(v).max()) if v.size else 0.0
        if peak == 0.0:
            return
        need = math.log2(peak) + state.log2_scale + self.margin_bits
        if need > params.log_q(state.level):
            raise CKKSScheduleError(
                f"node '{node.name}' ({node.op}): magnitude {peak:.3g} at scale 2^{state.log2_scale:.1f} needs "
                f"{need:.1f} bits but level {state.level} has Q of {params.log_q(state.level)} bits; rescale sooner, "
                "or use larger primes"
            )
