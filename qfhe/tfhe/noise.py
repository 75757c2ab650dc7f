"""A seeded model of TFHE table-lookup errors, run by the numpy reference interpreter.

Tuning (:func:`qfhe.find_best_p_error`, ``rounding_threshold_bits="auto"``) judges many
candidates on a whole validation set, several times each. concrete-python's simulation cannot do
that job well: it draws its noise from a generator that cannot be seeded (two runs on the same
input differ), and it needs a batch circuit compiled for every error probability. This model
runs on the reference interpreter instead, with a ``numpy.random.Generator``:

* every table lookup (PBS) reads its input plus a Gaussian error whose standard deviation
  ``sigma`` makes ``P(|error| > 1/2 step) = p_error``: it reads one step off with probability
  ``p_error`` and two steps off far more rarely, as concrete's simulation does;
* approximate rounding is done by that same lookup: the error lands *before* the fraction is
  rounded, so values near a midpoint go either way at random and the rest round exactly;
* exact rounding is computed exactly (the few lookups it uses internally are not modelled); the
  lookup after it reads ``round(error)`` steps off (a step of a rounded value is ``2^lsbs``);
* an index pushed beyond the lookup's representable range wraps around negacyclically (TFHE's
  padding bit): the table value comes out negated, as measured in concrete's simulation.

The per-PBS ``p_error`` to use is the compiled circuit's own (``statistics["p_error"]``), which
concrete guarantees for every lookup; the model applies it to all of them, so it errs on the
pessimistic side. ``benchmarks/tuning.py`` compares it with concrete's simulation.

Examples
--------
>>> import numpy as np
>>> round(noise_sigma(0.01), 3)
0.194
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from qfhe.ir.graph import Graph, Node
from qfhe.ir.interpreter import run
from qfhe.ir.ops import evaluate
from qfhe.passes.bitwidth import ValueInfo


def noise_sigma(p_error: float) -> float:
    """Standard deviation, in lookup steps, of the error that reads one step off with
    probability ``p_error``.

    Examples
    --------
    >>> noise_sigma(1e-300) < 0.1 < noise_sigma(0.3)
    True
    """
    return float(0.5 / ndtri(1.0 - p_error / 2.0))


def run_with_lookup_errors(
    server_graph: Graph, info: dict[str, ValueInfo], codes: np.ndarray, p_error: float, rng: np.random.Generator
) -> np.ndarray:
    """Run a circuit's integer graph on input codes with modelled lookup errors.

    Parameters
    ----------
    server_graph : Graph
        The circuit's nodes, with one integer ``input`` (``QuantizedModule``'s server graph).
    info : dict of str to ValueInfo
        Bit-width table of the circuit (every lookup's representable input range).
    codes : ndarray of int
        Circuit input codes, shape (n, ...).
    p_error : float
        Per-lookup error probability, in (0, 1).
    rng : numpy.random.Generator
        The only source of randomness: equal seeds give equal outputs.

    Returns
    -------
    ndarray of int
        Output codes, like :func:`qfhe.ir.interpreter.run`.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = Graph([Node("x", "input", [], {"shape": (1,), "dtype": "int"}),
    ...            Node("t", "tlu", ["x"], {"chain": []})], ["t"])
    >>> info = {"x": ValueInfo(0, 63, 6, False), "t": ValueInfo(0, 63, 6, False)}
    >>> x = np.arange(1, 63).reshape(-1, 1).repeat(100, axis=0)
    >>> y = run_with_lookup_errors(g, info, x, 0.1, np.random.default_rng(0))
    >>> round(float((y != x).mean()), 2)
    0.1
    """
    sigma = noise_sigma(p_error)
    approximate = {n.name for n in server_graph.nodes if n.op == "round" and n.attrs["method"] == "approximate"}
    # A rounded value keeps its scale (round_bit_pattern clears LSBs): one step is 2^lsbs.
    step_of = {n.name: 1 << n.attrs["lsbs"] for n in server_graph.nodes if n.op == "round"}

    def evaluator(node: Node, xs: list[np.ndarray]) -> np.ndarray:
        if node.name in approximate:
            step = float(1 << node.attrs["lsbs"])
            noisy = xs[0] / step + 0.5 + rng.normal(0.0, sigma, np.shape(xs[0]))
            return np.floor(noisy).astype(np.int64) << node.attrs["lsbs"]
        if node.op != "tlu":
            return evaluate(node.op, xs, node.attrs)
        index = xs[0]
        if node.inputs[0] not in approximate:
            step = step_of.get(node.inputs[0], 1)
            index = index + step * np.rint(rng.normal(0.0, sigma, np.shape(index))).astype(np.int64)
        lo, hi = info[node.inputs[0]].bounds
        outside = (index < lo) | (index > hi)
        if not outside.any():
            return evaluate("tlu", [index], node.attrs)
        wrapped = np.where(outside, (index - lo) % (hi - lo + 1) + lo, index)
        value = evaluate("tlu", [wrapped], node.attrs)
        return np.where(outside, -value, value)

    return run(server_graph, [codes], evaluator=evaluator)[0]
