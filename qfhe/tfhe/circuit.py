"""Compile the lowered function with concrete-python and run it in the three modes.

Two circuits come out of one compile:

* the **single-sample circuit** (input shape ``(1, ...)``), used for keygen and encrypted
  execution, and reported in ``statistics``;
* the **batch simulation circuit** (input shape ``(B, ...)``), compiled with the single circuit's
  own per-PBS ``p_error`` and no ``global_p_error`` so it simulates the same parameters. A circuit
  compiled for one shape rejects every other, so the last chunk is padded.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from qfhe._concrete import fhe
from qfhe.errors import ConfigurationError, KeysNotGeneratedError, NoParametersError, PassError
from qfhe.validation import as_float

#: qfhe's default error budget when neither ``p_error`` nor ``global_p_error`` is given: the
#: whole single-sample circuit fails (any PBS off by one step or more) with probability at most 1e-5.
DEFAULT_GLOBAL_P_ERROR = 1e-5


def make_configuration(
    configuration: fhe.Configuration | None, p_error: float | None, global_p_error: float | None
) -> fhe.Configuration:
    """Merge the user's configuration with qfhe's error settings.

    Raises
    ------
    ConfigurationError
        If both ``p_error`` and ``global_p_error`` are given, one is outside (0, 1), or
        ``configuration`` sets a different error probability than the arguments.

    Examples
    --------
    >>> make_configuration(None, 0.01, None).p_error
    0.01
    >>> make_configuration(None, 0.01, 0.01)
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: give p_error (per table lookup) or global_p_error (whole circuit), not both
    """
    if p_error is not None and global_p_error is not None:
        raise ConfigurationError("give p_error (per table lookup) or global_p_error (whole circuit), not both")
    p_error = None if p_error is None else as_float("p_error", p_error, 0, 1)
    global_p_error = None if global_p_error is None else as_float("global_p_error", global_p_error, 0, 1)
    if configuration is not None and not isinstance(configuration, fhe.Configuration):
        raise ConfigurationError(
            f"configuration must be a concrete.fhe.Configuration, got {configuration!r} "
            f"({type(configuration).__name__}); build one with concrete.fhe.Configuration(...)"
        )
    base = configuration if configuration is not None else fhe.Configuration()
    given = {k: v for k, v in (("p_error", p_error), ("global_p_error", global_p_error)) if v is not None}
    inside = {k: getattr(base, k) for k in ("p_error", "global_p_error") if getattr(base, k) is not None}
    if given and inside and given != inside:
        raise ConfigurationError(
            "the error probability is given twice: configuration sets "
            + ", ".join(f"{k}={v:g}" for k, v in inside.items())
            + " and the arguments say "
            + ", ".join(f"{k}={v:g}" for k, v in given.items())
            + "; give it in one place"
        )
    if p_error is None and global_p_error is None:
        if base.p_error is not None or base.global_p_error is not None:
            return base
        global_p_error = DEFAULT_GLOBAL_P_ERROR
    return base.fork(p_error=p_error, global_p_error=global_p_error)


@dataclass
class CompiledCircuits:
    """The single-sample circuit, the batch simulation circuit (None until built), compile
    statistics, and the value bounds the single-sample circuit was typed from (:func:`bounds_record`)."""

    circuit: fhe.Circuit
    batch_circuit: fhe.Circuit | None
    batch_size: int
    statistics: dict
    bounds: list | None = None


def compile_circuits(
    fn: Callable, inputset: np.ndarray, configuration: fhe.Configuration, batch_size: int, with_batch: bool = True
) -> CompiledCircuits:
    """Compile ``fn`` for one sample and (``with_batch``) for a batch of ``batch_size`` samples.

    Parameters
    ----------
    fn : callable
        From :func:`qfhe.tfhe.lower.make_circuit_function`.
    inputset : ndarray of int, or list of them
        Circuit input codes, shape (n, ...); a list holds one array per circuit input.
    configuration : fhe.Configuration
    batch_size : int
        Chunk size of the batch simulation circuit.
    with_batch : bool
        Also compile the batch simulation circuit; tuning leaves it out for candidates it only
        judges with :mod:`qfhe.tfhe.noise` and adds it with :func:`add_batch_circuit` at the end.
    """
    start = time.perf_counter()
    bounds: list = []
    try:
        circuit = compile_with_ranges(fn, _samples(inputset, 1), configuration, record=bounds)
    except RuntimeError as exc:
        if "NoParametersFound" not in str(exc):
            raise
        asked = (
            f"p_error={configuration.p_error:g}"
            if configuration.p_error is not None
            else f"global_p_error={configuration.global_p_error:g}"
        )
        raise NoParametersError(
            f"concrete-python found no cryptographic parameters for this circuit at {asked}: its table lookups are "
            "too wide for that error probability. Allow a larger p_error, or round the lookups' inputs "
            "(rounding_threshold_bits)"
        ) from None
    compile_seconds = time.perf_counter() - start
    # Circuit.global_p_error in concrete-python 2.11 returns the per-PBS p_error; the module's
    # statistics carry the whole-circuit figure.
    module_stats = circuit.statistics
    stats = {
        "pbs_count": int(circuit.programmable_bootstrap_count),
        "max_bit_width": int(circuit.graph.maximum_integer_bit_width()),
        "compile_seconds": compile_seconds,
        "batch_compile_seconds": None,
        "p_error": float(circuit.p_error),
        "global_p_error": float(module_stats["global_p_error"]),
        "complexity": float(circuit.complexity),
        "pbs_count_per_layer": _per_layer(circuit.programmable_bootstrap_count_per_tag, getattr(fn, "layers", {})),
        "size_of_bootstrap_keys": int(circuit.size_of_bootstrap_keys),
        "size_of_keyswitch_keys": int(circuit.size_of_keyswitch_keys),
    }
    compiled = CompiledCircuits(circuit, None, batch_size, stats, bounds)
    return add_batch_circuit(fn, inputset, compiled, configuration) if with_batch else compiled


def add_batch_circuit(
    fn: Callable, inputset: np.ndarray, compiled: CompiledCircuits, configuration: fhe.Configuration
) -> CompiledCircuits:
    """Add the batch simulation circuit, compiled with the single circuit's own per-PBS ``p_error``
    (and no ``global_p_error``) so that it simulates the same parameters.

    Examples
    --------
    >>> def f(x):
    ...     return x + 1
    >>> c = compile_circuits(f, np.arange(4).reshape(4, 1), fhe.Configuration(), 2, with_batch=False)
    >>> c.batch_circuit is None, add_batch_circuit(f, np.arange(4).reshape(4, 1), c, fhe.Configuration()).batch_size
    (True, 2)
    """
    size = compiled.batch_size
    batch_cfg = configuration.fork(
        p_error=batch_p_error(configuration, compiled.circuit.p_error),
        global_p_error=None,
        fhe_execution=False,
        fhe_simulation=True,
    )
    start = time.perf_counter()
    batch = compile_with_ranges(fn, _samples(inputset, size), batch_cfg)
    stats = {**compiled.statistics, "batch_compile_seconds": time.perf_counter() - start}
    return CompiledCircuits(compiled.circuit, batch, size, stats, compiled.bounds)


def _tags_ready() -> None:
    """concrete 2.11 keeps its tag stack in a ``threading.local`` that only the importing thread
    initializes, so tracing in any other thread (a Dask worker, a server thread) fails with an
    AttributeError. Give this thread its own empty stack, as concrete does for the first one."""
    from concrete.fhe.extensions.tag import tag_context

    if not hasattr(tag_context, "stack"):
        tag_context.stack = []


def batch_p_error(configuration: fhe.Configuration, achieved: float) -> float:
    """The per-lookup ``p_error`` that gives a batch circuit the single circuit's parameters.

    A requested ``p_error`` is reused as it was. Under a ``global_p_error`` the single circuit's
    achieved per-lookup figure is the target, loosened by one part in a million: concrete 2.11's
    optimizer checks its own solution against an exact target with float rounding and, when it
    lands a hair over, panics and aborts the process (seen with a 2-bit MLP: target 9.40112262302082e-06).
    The loosening is far smaller than the step between parameter sets, so the parameters are the same.

    Examples
    --------
    >>> batch_p_error(fhe.Configuration(p_error=0.01), 0.0093)
    0.01
    >>> batch_p_error(fhe.Configuration(global_p_error=1e-5), 1e-7) / 1e-7
    1.000001
    """
    if configuration.p_error is not None:
        return configuration.p_error
    return achieved * (1 + 1e-6)


def compile_with_ranges(
    fn: Callable, inputset: list, configuration: fhe.Configuration, record: list | None = None
) -> fhe.Circuit:
    """Compile ``fn`` so that concrete types every value for the range qfhe predicted.

    concrete takes a value's type (width and sign) from the range it sees on the inputset, and a
    width hint carries no sign: a value predicted in [-105, 105] that the inputset never made
    negative became ``uint8`` and wrapped silently. So each measured range is widened to the
    predicted one (``fn.predicted_ranges``, from the bit-width analysis) before concrete assigns
    types; with ``bitwidth_method="interval"`` the circuit is then right for every clipped input.
    A function without ``predicted_ranges`` compiles from the inputset alone. ``record``, a list,
    receives the bounds of every traced value (:func:`bounds_record`), from which
    :func:`compile_from_bounds` rebuilds the same circuit without the inputset.

    Examples
    --------
    >>> def f(x):
    ...     return x - 3
    >>> f.predicted_ranges, f.input_names = {}, ["x"]
    >>> c = compile_with_ranges(f, [np.array([5]), np.array([7])], fhe.Configuration())
    >>> str(c.graph.ordered_outputs()[0].output.dtype)   # the inputset alone: never negative
    'uint3'
    >>> def g(x):
    ...     with fhe.tag("y"):
    ...         return fhe.hint(x - 3, bit_width=4)
    >>> g.predicted_ranges, g.input_names = {"x": (0, 7), "y": (-3, 4)}, ["x"]
    >>> str(compile_with_ranges(g, [np.array([5]), np.array([7])], fhe.Configuration()).graph
    ...     .ordered_outputs()[0].output.dtype)
    'int4'
    """
    _tags_ready()
    compiler = fhe.Compiler(fn, {p: "encrypted" for p in inspect.signature(fn).parameters})
    ranges = getattr(fn, "predicted_ranges", {})
    if not ranges and record is None:
        return compiler.compile(inputset, configuration)
    graph = compiler.trace(inputset, configuration)
    if not callable(getattr(graph, "measure_bounds", None)):  # pragma: no cover - concrete API drift
        raise PassError(
            "compile_with_ranges: this concrete-python version has no Graph.measure_bounds; "
            "qfhe supports concrete-python 2.10-2.11"
        )
    measured = graph.measure_bounds

    def predicted(node) -> tuple | None:
        if not ranges:
            return None
        if node.operation == fhe.representation.Operation.Input:
            return ranges.get(fn.input_names[graph.input_indices[node]])
        if "bit_width_hint" in node.properties:  # the hinted node is the tagged value itself
            return ranges.get(node.tag)
        return None

    def measure_with_predictions(samples):
        bounds = measured(samples)
        for node, b in bounds.items():
            r = predicted(node)
            if r is not None and isinstance(b["min"], (np.integer, int)):
                b["min"], b["max"] = np.int64(min(int(b["min"]), r[0])), np.int64(max(int(b["max"]), r[1]))
        if record is not None:
            record[:] = bounds_record(graph, bounds)
        return bounds

    # An attribute of this one graph object, read by the compile below: no global state changes.
    graph.measure_bounds = measure_with_predictions
    return compiler.compile(None, configuration)


_KINDS = {"int": np.int64, "float": np.float64, "bool": np.bool_}


def bounds_record(graph, bounds: dict) -> list:
    """Bounds of every value of a traced concrete graph as plain data, in the graph's node order
    (concrete adds nodes breadth first from the outputs, in a fixed order): ``[kind, min, max]``
    with ``kind`` one of ``"int"``, ``"float"``, ``"bool"``.

    Examples
    --------
    >>> def f(x):
    ...     return x + 1
    >>> graph = fhe.Compiler(f, {"x": "encrypted"}).trace([np.array([2])], fhe.Configuration())
    >>> bounds_record(graph, graph.measure_bounds([np.array([2]), np.array([5])]))
    [['int', 3, 6], ['int', 2, 5], ['int', 1, 1]]
    """
    out = []
    for node in graph.graph.nodes:
        lo, hi = bounds[node]["min"], bounds[node]["max"]
        kind = "bool" if isinstance(lo, (bool, np.bool_)) else "int" if isinstance(lo, (int, np.integer)) else "float"
        cast = {"bool": bool, "int": int, "float": float}[kind]
        out.append([kind, cast(lo), cast(hi)])
    return out


def compile_from_bounds(
    fn: Callable, input_shapes: list, bounds: list, configuration: fhe.Configuration
) -> fhe.Circuit:
    """Compile ``fn`` with every value typed from recorded bounds (:func:`bounds_record`), not from data.

    The same function, shapes, bounds and configuration give the same circuit as the compile that
    recorded them, so a server rebuilds a model's circuit from plain data without its calibration
    set.

    Raises
    ------
    PassError
        When the traced function has another number of values than ``bounds`` describes.

    Examples
    --------
    >>> def f(x):
    ...     return x - 3
    >>> c = compile_from_bounds(f, [(1,)], [["int", -3, 4], ["int", 0, 7], ["int", 3, 3]], fhe.Configuration())
    >>> str(c.graph.ordered_outputs()[0].output.dtype)
    'int4'
    """
    _tags_ready()
    compiler = fhe.Compiler(fn, {p: "encrypted" for p in inspect.signature(fn).parameters})
    sample = tuple(np.zeros((1,) + tuple(s), np.int64) for s in input_shapes)
    graph = compiler.trace([sample[0] if len(sample) == 1 else sample], configuration)
    nodes = list(graph.graph.nodes)
    if len(nodes) != len(bounds):
        raise PassError(
            f"compile_from_bounds: the function traces to {len(nodes)} values, the recorded bounds "
            f"describe {len(bounds)}"
        )
    recorded = {node: {"min": _KINDS[kind](lo), "max": _KINDS[kind](hi)} for node, (kind, lo, hi) in zip(nodes, bounds)}
    # An attribute of this one graph object, read by the compile below: no global state changes.
    graph.measure_bounds = lambda samples: recorded
    return compiler.compile(None, configuration)


def _per_layer(per_tag: dict, layers: dict) -> dict[str, int]:
    """concrete counts PBS per tag (qfhe tags each value with its node); sum them per layer."""
    out: dict[str, int] = {}
    for tag, count in per_tag.items():
        layer = layers.get(tag, tag)
        out[layer] = out.get(layer, 0) + int(count)
    return {k: v for k, v in out.items() if v}


def as_inputs(codes) -> list[np.ndarray]:
    """Circuit input codes as a list with one array per circuit input.

    Examples
    --------
    >>> len(as_inputs(np.zeros((3, 2)))), len(as_inputs([np.zeros((3, 2)), np.zeros((3, 1))]))
    (1, 2)
    """
    return list(codes) if isinstance(codes, (list, tuple)) else [codes]


def _samples(codes, size: int) -> list:
    """concrete's inputset: chunks of ``size`` samples (the last one padded), a tuple per chunk
    when the circuit has several inputs."""
    arrays = as_inputs(codes)
    n = len(arrays[0])
    chunks = [[_pad(a[i : i + size], size) for a in arrays] for i in range(0, n, size)]
    return [c[0] if len(c) == 1 else tuple(c) for c in chunks]


def _pad(chunk: np.ndarray, size: int) -> np.ndarray:
    if len(chunk) == size:
        return chunk
    return np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])


def simulate(compiled: CompiledCircuits, codes: np.ndarray) -> np.ndarray:
    """Run the batch simulation circuit over ``codes`` chunk by chunk."""
    b = compiled.batch_size
    arrays = as_inputs(codes)
    n = len(arrays[0])
    outs = [
        compiled.batch_circuit.simulate(*[_pad(a[i : i + b], b) for a in arrays])[: min(b, n - i)]
        for i in range(0, n, b)
    ]
    return np.concatenate(outs).astype(np.int64)


def execute(circuit: fhe.Circuit, codes: np.ndarray, progress: Callable | None = None) -> np.ndarray:
    """Encrypt, run and decrypt each sample with the single-sample circuit.

    Raises
    ------
    KeysNotGeneratedError
        If ``circuit.keygen()`` has not been called; concrete would otherwise generate keys
        silently inside ``encrypt``, which takes minutes and hides where the time goes.
    """
    if not circuit.keys.are_generated:
        raise KeysNotGeneratedError(
            "fhe='execute' needs keys: call qm.fhe_circuit.keygen() once before executing (it can take a while)"
        )
    arrays = as_inputs(codes)
    n = len(arrays[0])
    rows = range(n) if progress is None else progress(range(n))
    outs = []
    for i in rows:
        enc = circuit.encrypt(*[a[i : i + 1] for a in arrays])
        outs.append(circuit.decrypt(circuit.run(*enc) if isinstance(enc, tuple) else circuit.run(enc)))
    return np.concatenate(outs).astype(np.int64)
