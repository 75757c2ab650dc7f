"""The CKKS op graph: ops, the level/scale/size rules, and level alignment.

The HE graph reuses :class:`qfhe.ir.Graph`. Before lowering it holds high-level nodes (``linear``,
``activation``); after lowering only these HE ops remain:

================== ==========================================================================
op                 rule (operands → result)
================== ==========================================================================
encrypt            fresh ciphertext: level L, scale Δ (the waterline), size 2
decrypt            reads any ciphertext
ciphertext_add     equal level and scale → same; size max
plaintext_add      plaintext encoded at the operand's scale and level → unchanged
ciphertext_mult    equal level, both size 2 (relinearized) → scale product, size 3
plaintext_mult     scale × plaintext scale (``encode``: ``prime`` = q_level, so one rescale lands
                   back on Δ; ``adjust`` = whatever makes the next ct×ct product Δ·q_level)
rotate             size 2 → unchanged
rescale            level ≥ 1 → level − 1, scale / q_level
relinearize        size 3 → size 2
mod_switch         level − k (k ≥ 1), scale unchanged
bootstrap          size 2 → level ``params.bootstrap_level``, scale Δ
================== ==========================================================================

A scale is valid when log2(scale) ≥ log2(Δ) − 1; the fake backend also checks, on real values, that
magnitude × scale stays below Q_level with a margin.

Examples
--------
>>> from qfhe.ir import Graph, Node
>>> from qfhe.ckks.params import CKKSParameters
>>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
>>> g = Graph([Node("x", "encrypt", [], {"length": 4}), Node("m", "plaintext_mult", ["x"], {"value": 2.0, "encode": "prime"}),
...            Node("r", "rescale", ["m"]), Node("y", "decrypt", ["r"], {"length": 4})], ["y"])
>>> annotate(g, p)["r"]
ValueState(level=1, scale=1099511627776.0, size=2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qfhe.ckks.params import CKKSParameters
from qfhe.errors import CKKSScheduleError
from qfhe.ir.graph import Graph, Node, unique_name

HE_OPS = (
    "encrypt",
    "decrypt",
    "ciphertext_add",
    "plaintext_add",
    "ciphertext_mult",
    "plaintext_mult",
    "rotate",
    "rescale",
    "relinearize",
    "mod_switch",
    "bootstrap",
)
#: Every op kind cost analysis counts (encrypt/decrypt are the client's).
COUNTED_OPS = (
    "ciphertext_add",
    "plaintext_add",
    "ciphertext_mult",
    "plaintext_mult",
    "rotate",
    "rescale",
    "relinearize",
    "mod_switch",
    "bootstrap",
)
MULTIPLIES = ("ciphertext_mult", "plaintext_mult")
_REMEDY_LEVELS = (
    "add BootstrappingInsertionPass to the pipeline, add primes to coeff_modulus, or lower the "
    "polynomial degree of NonlinearToPolynomialPass"
)


@dataclass(frozen=True)
class ValueState:
    """Level, scale and size of one ciphertext value.

    Examples
    --------
    >>> ValueState(3, 2.0**40, 2).log2_scale
    40.0
    """

    level: int
    scale: float
    size: int

    @property
    def log2_scale(self) -> float:
        """log2 of the scale.

        Examples
        --------
        >>> ValueState(0, 8.0, 2).log2_scale
        3.0
        """
        return math.log2(self.scale)


def _fail(node: Node, rule: str, remedy: str) -> None:
    raise CKKSScheduleError(f"node '{node.name}' ({node.op}): {rule}; {remedy}")


def plaintext_scale(node: Node, graph: Graph, states: dict, params: CKKSParameters, users: dict) -> float:
    """Scale a ``plaintext_mult`` encodes its plaintext at (see the module table).

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
    >>> g = Graph([Node("x", "encrypt", []), Node("m", "plaintext_mult", ["x"], {"encode": "prime"})], ["m"])
    >>> plaintext_scale(g["m"], g, {"x": ValueState(2, 2.0**40, 2)}, p, g.consumers()) == 2.0**40
    True
    """
    x = states[node.inputs[0]]
    if node.attrs.get("encode") == "adjust":
        via, mult = node.name, graph[users[node.name][0]]
        while mult.op in ("relinearize", "mod_switch"):  # scale-preserving steps before the multiply
            via, mult = mult.name, graph[users[mult.name][0]]
        other_name, drop = next(i for i in mult.inputs if i != via), 0
        while other_name not in states:  # a mod_switch placed between this node and the multiply
            drop += graph[other_name].attrs.get("levels", 1)
            other_name = graph[other_name].inputs[0]
        other = states[other_name]
        level = rescale_level(graph, users, mult.name, min(x.level, other.level - drop))
        return params.scale * params.prime(level) / (x.scale * other.scale)
    return params.prime(rescale_level(graph, users, node.name, x.level))


def rescale_level(graph: Graph, users: dict, name: str, level: int) -> int:
    """The level at which the product ``name`` (now at ``level``) will be rescaled.

    A lazily rescaled product may be mod-switched down to meet another operand before its
    rescale; it must then be encoded for the prime of that lower level. With real primes
    (unequal values of the same bit size) ``Δ·q_14`` rescaled by ``q_13`` would miss Δ.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "encrypt", []), Node("m", "plaintext_mult", ["x"]),
    ...            Node("s", "mod_switch", ["m"], {"levels": 1}), Node("r", "rescale", ["s"])], ["r"])
    >>> rescale_level(g, g.consumers(), "m", 3)
    2
    """
    cur = name
    while users.get(cur):
        nxt = graph[users[cur][0]]
        if nxt.op == "mod_switch":
            level -= nxt.attrs.get("levels", 1)
        elif nxt.op not in ("ciphertext_add", "plaintext_add", "rotate", "relinearize"):
            break
        cur = nxt.name
    return level


def transition(
    node: Node, ins: list[ValueState], params: CKKSParameters, pt_scale: float | None = None, check: bool = True
) -> ValueState:
    """The state a node's result has, or :class:`CKKSScheduleError` if a rule is broken.

    With ``check=False`` only levels are tracked (used while levels are being aligned).

    Examples
    --------
    >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
    >>> transition(Node("r", "rescale", ["x"]), [ValueState(0, 2.0**80, 2)], p)
    Traceback (most recent call last):
    ...
    qfhe.errors.CKKSScheduleError: node 'r' (rescale): its input is at level 0, no prime is left to divide by; add BootstrappingInsertionPass to the pipeline, add primes to coeff_modulus, or lower the polynomial degree of NonlinearToPolynomialPass
    """
    op = node.op
    if op == "encrypt":
        return ValueState(params.max_level, float(params.scale), 2)
    x = ins[0]
    if op in ("decrypt", "plaintext_add"):
        return x
    if op in MULTIPLIES and check and min(i.level for i in ins) < 1:
        _fail(
            node,
            "multiplies at level 0, so its product can never be rescaled: the model needs more levels than "
            "these parameters have",
            _REMEDY_LEVELS,
        )
    if op == "plaintext_mult":
        return ValueState(x.level, x.scale * pt_scale, x.size)
    if op in ("ciphertext_add", "ciphertext_mult") and not check:
        return ValueState(min(x.level, ins[1].level), x.scale, 2)
    if op in ("ciphertext_add", "ciphertext_mult"):
        y = ins[1]
        if x.level != y.level:
            _fail(
                node,
                f"operands at levels {x.level} and {y.level}",
                "mod-switch the higher one (RescalingInsertionPass aligns levels)",
            )
        if op == "ciphertext_add":
            if not math.isclose(x.scale, y.scale, rel_tol=1e-9):
                _fail(
                    node,
                    f"operands at scales 2^{x.log2_scale:.2f} and 2^{y.log2_scale:.2f}",
                    "rescale the pending product first (RescalingInsertionPass)",
                )
            return ValueState(x.level, x.scale, max(x.size, y.size))
        if x.size != 2 or y.size != 2:
            _fail(
                node,
                f"operand sizes {x.size} and {y.size}",
                "relinearize before multiplying (RelinearizationInsertionPass)",
            )
        return ValueState(x.level, x.scale * y.scale, 3)
    if op == "rotate":
        if x.size != 2 and check:
            _fail(
                node,
                f"rotating a size-{x.size} ciphertext",
                "relinearize before rotating (RelinearizationInsertionPass)",
            )
        return x
    if op == "rescale":
        if x.level < 1 and check:
            _fail(node, "its input is at level 0, no prime is left to divide by", _REMEDY_LEVELS)
        return ValueState(x.level - 1, x.scale / params.prime(max(x.level, 0)), x.size)
    if op == "mod_switch":
        k = node.attrs.get("levels", 1)
        if x.level - k < 0 and check:
            _fail(node, f"cannot drop {k} levels from level {x.level}", _REMEDY_LEVELS)
        return ValueState(x.level - k, x.scale, x.size)
    if op == "relinearize":
        if x.size != 3 and check:
            _fail(node, f"relinearizing a size-{x.size} ciphertext", "relinearize only ct×ct products")
        return ValueState(x.level, x.scale, 2)
    if op == "bootstrap":
        if x.size != 2 and check:
            _fail(node, f"bootstrapping a size-{x.size} ciphertext", "relinearize first")
        return ValueState(params.bootstrap_level, float(params.scale), 2)
    raise CKKSScheduleError(
        f"node '{node.name}' has op '{op}', which is not an HE op; lower it first "
        "(NonlinearToPolynomialPass, LinearLayerBSGSPass)"
    )


def check_scale(node: Node, state: ValueState, params: CKKSParameters) -> None:
    """The lower bound of a valid scale: log2(scale) ≥ log2(Δ) − 1.

    Examples
    --------
    >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
    >>> check_scale(Node("r", "rescale", ["x"]), ValueState(1, 2.0**20, 2), p)
    Traceback (most recent call last):
    ...
    qfhe.errors.CKKSScheduleError: node 'r' (rescale): scale 2^20.00 fell below the waterline 2^40; a rescale divided by a prime larger than the scale; rescale by the waterline rule (RescalingInsertionPass)
    """
    if state.log2_scale < math.log2(params.scale) - 1:
        _fail(
            node,
            f"scale 2^{state.log2_scale:.2f} fell below the waterline 2^{math.log2(params.scale):g}",
            "a rescale divided by a prime larger than the scale; rescale by the waterline rule (RescalingInsertionPass)",
        )


def annotate(graph: Graph, params: CKKSParameters) -> dict[str, ValueState]:
    """Level, scale and size of every value; raises on the first broken rule.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
    >>> g = Graph([Node("x", "encrypt", [], {"length": 2}), Node("y", "decrypt", ["x"], {"length": 2})], ["y"])
    >>> annotate(g, p)["x"].level
    2
    """
    states: dict[str, ValueState] = {}
    users = graph.consumers()
    for n in graph.nodes:
        ins = [states[i] for i in n.inputs]
        pt = plaintext_scale(n, graph, states, params, users) if n.op == "plaintext_mult" else None
        states[n.name] = transition(n, ins, params, pt)
        check_scale(n, states[n.name], params)
    return states


def align_levels(graph: Graph, params: CKKSParameters) -> Graph:
    """Re-derive every ``mod_switch``: operands of a ct+ct or ct×ct are brought to the lower level.

    Requires: an HE graph. Ensures: binary ops see equal levels; no other ``mod_switch`` remains.
    Idempotent.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> p = CKKSParameters(8192, [60, 40, 40, 60], 2**40)
    >>> g = Graph([Node("x", "encrypt", [], {"length": 2}), Node("m", "plaintext_mult", ["x"], {"value": 1.0}),
    ...            Node("r", "rescale", ["m"]), Node("a", "ciphertext_add", ["x", "r"]),
    ...            Node("y", "decrypt", ["a"], {"length": 2})], ["y"])
    >>> align_levels(g, p).ops()
    ['encrypt', 'plaintext_mult', 'rescale', 'mod_switch', 'ciphertext_add', 'decrypt']
    """
    alias: dict[str, str] = {}
    stripped = []
    for n in graph.nodes:
        if n.op == "mod_switch":
            alias[n.name] = alias.get(n.inputs[0], n.inputs[0])
            continue
        stripped.append(n.clone(inputs=[alias.get(i, i) for i in n.inputs]))
    outputs = [alias.get(o, o) for o in graph.outputs]
    used = {n.name for n in stripped}
    nodes: list[Node] = []
    levels: dict[str, ValueState] = {}
    for n in stripped:
        if n.op in ("ciphertext_add", "ciphertext_mult"):
            target = min(levels[i].level for i in n.inputs)
            new_inputs = []
            for i in n.inputs:
                if levels[i].level > target:
                    name = unique_name(f"{i}_ms", used)
                    ms = Node(
                        name, "mod_switch", [i], {"levels": levels[i].level - target, "layer": n.attrs.get("layer")}
                    )
                    nodes.append(ms)
                    levels[name] = transition(ms, [levels[i]], params, check=False)
                    i = name
                new_inputs.append(i)
            n = n.clone(inputs=new_inputs)
        nodes.append(n)
        levels[n.name] = transition(n, [levels[i] for i in n.inputs], params, 1.0, check=False)
    return Graph(nodes, outputs).verify("align_levels")


def make_node(name: str, op: str, inputs: list[str], layer: str | None, **attrs) -> Node:
    """An HE node tagged with the high-level layer it implements.

    Examples
    --------
    >>> make_node("r", "rotate", ["x"], "fc1", k=3).attrs
    {'k': 3, 'layer': 'fc1'}
    """
    return Node(name, op, list(inputs), {**attrs, "layer": layer})


def expand_plaintext(value, length: int) -> np.ndarray:
    """A plaintext operand as a vector of the value's period (scalars broadcast).

    Examples
    --------
    >>> expand_plaintext(2.0, 3)
    array([2., 2., 2.])
    """
    v = np.asarray(value, dtype=np.float64)
    return np.full(length, float(v)) if v.ndim == 0 else v
