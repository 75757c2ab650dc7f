"""Compile the lowered function with concrete-python and run it in the three modes.

Two circuits come out of one compile:

* the **single-sample circuit** (input shape ``(1, ...)``), used for keygen and encrypted
  execution, and reported in ``statistics``;
* the **batch simulation circuit** (input shape ``(B, ...)``), compiled with the single circuit's
  own per-PBS ``p_error`` and no ``global_p_error`` so it simulates the same parameters. A circuit
  compiled for one shape rejects every other, so the last chunk is padded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from concrete import fhe

from qfhe.errors import ConfigurationError, KeysNotGeneratedError

#: qfhe's default error budget when neither ``p_error`` nor ``global_p_error`` is given: the
#: whole single-sample circuit fails (any PBS off by one step or more) with probability at most 1e-5.
DEFAULT_GLOBAL_P_ERROR = 1e-5


def make_configuration(configuration: fhe.Configuration | None, p_error: float | None,
                       global_p_error: float | None) -> fhe.Configuration:
    """Merge the user's configuration with qfhe's error settings.

    Raises
    ------
    ConfigurationError
        If both ``p_error`` and ``global_p_error`` are given, or one is outside (0, 1).

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
    for name, value in (("p_error", p_error), ("global_p_error", global_p_error)):
        if value is not None and not 0 < value < 1:
            raise ConfigurationError(f"{name} must be in (0, 1), got {value!r}")
    base = configuration if configuration is not None else fhe.Configuration()
    if p_error is None and global_p_error is None:
        if base.p_error is not None or base.global_p_error is not None:
            return base
        global_p_error = DEFAULT_GLOBAL_P_ERROR
    return base.fork(p_error=p_error, global_p_error=global_p_error)


@dataclass
class CompiledCircuits:
    """The single-sample circuit, the batch simulation circuit and compile statistics."""

    circuit: fhe.Circuit
    batch_circuit: fhe.Circuit
    batch_size: int
    statistics: dict


def compile_circuits(fn: Callable, inputset: np.ndarray, configuration: fhe.Configuration,
                     batch_size: int) -> CompiledCircuits:
    """Compile ``fn`` for one sample and for a batch of ``batch_size`` samples.

    Parameters
    ----------
    fn : callable
        From :func:`qfhe.tfhe.lower.make_circuit_function`.
    inputset : ndarray of int
        Circuit input codes, shape (n, ...).
    configuration : fhe.Configuration
    batch_size : int
        Chunk size of the batch simulation circuit.
    """
    start = time.perf_counter()
    circuit = fhe.Compiler(fn, {"x": "encrypted"}).compile([s[None] for s in inputset], configuration)
    compile_seconds = time.perf_counter() - start
    batch_cfg = configuration.fork(p_error=circuit.p_error, global_p_error=None, fhe_execution=False,
                                   fhe_simulation=True)
    chunks = [_pad(inputset[i : i + batch_size], batch_size) for i in range(0, len(inputset), batch_size)]
    start = time.perf_counter()
    batch = fhe.Compiler(fn, {"x": "encrypted"}).compile(chunks, batch_cfg)
    stats = {
        "pbs_count": int(circuit.programmable_bootstrap_count),
        "max_bit_width": int(circuit.graph.maximum_integer_bit_width()),
        "compile_seconds": compile_seconds,
        "batch_compile_seconds": time.perf_counter() - start,
        "p_error": float(circuit.p_error),
        "global_p_error": float(circuit.global_p_error),
        "complexity": float(circuit.complexity),
        "pbs_count_per_layer": {k: int(v) for k, v in circuit.programmable_bootstrap_count_per_tag.items()},
        "size_of_bootstrap_keys": int(circuit.size_of_bootstrap_keys),
        "size_of_keyswitch_keys": int(circuit.size_of_keyswitch_keys),
    }
    return CompiledCircuits(circuit, batch, batch_size, stats)


def _pad(chunk: np.ndarray, size: int) -> np.ndarray:
    if len(chunk) == size:
        return chunk
    return np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])


def simulate(compiled: CompiledCircuits, codes: np.ndarray) -> np.ndarray:
    """Run the batch simulation circuit over ``codes`` chunk by chunk."""
    b = compiled.batch_size
    outs = [compiled.batch_circuit.simulate(_pad(codes[i : i + b], b))[: len(codes[i : i + b])]
            for i in range(0, len(codes), b)]
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
    rows = range(len(codes)) if progress is None else progress(range(len(codes)))
    outs = []
    for i in rows:
        enc = circuit.encrypt(codes[i : i + 1])
        outs.append(circuit.decrypt(circuit.run(enc)))
    return np.concatenate(outs).astype(np.int64)
