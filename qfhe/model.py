"""A compiled model: client-side (de)quantization around an integer circuit.

Examples
--------
>>> import numpy as np, torch, qfhe
>>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> X = np.random.RandomState(0).randn(64, 4)
>>> qm = qfhe.compile_torch_model(m, X, n_bits=4)
>>> qm.forward(X[:2], fhe="simulate").shape
(2, 2)
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from qfhe.errors import (
    CircuitOverflowError,
    ConfigurationError,
    LatencyWarning,
    NotCompiledError,
    OverflowRiskWarning,
    SaturationError,
    SaturationWarning,
)
from qfhe.ir.graph import Graph, Node
from qfhe.ir.interpreter import run
from qfhe.ir.ops import evaluate
from qfhe.passes.bitwidth import ValueInfo, bitwidth_rows, client_input_nodes, value_layers
from qfhe.quant.calibration import saturated
from qfhe.quant.preprocess import apply_preprocess, raw_shape
from qfhe.quant.quantizer import quantize_input_codes
from qfhe.report import BitwidthReport
from qfhe.tfhe.circuit import (
    CompiledCircuits,
    add_batch_circuit,
    as_inputs,
    compile_circuits,
    execute,
    make_configuration,
    simulate,
)
from qfhe.tfhe.lower import circuit_graph, make_circuit_function
from qfhe.validation import as_bool, as_int, check_input, user_stacklevel

FHE_MODES = ("disable", "simulate", "execute")
#: Evaluation keys above this size get a warning at compile: keygen needs about as much memory and
#: minutes (a 64-sample k-NN circuit at the default error probability: 8.7 GB, 138 s of keygen)
LARGE_KEYS = 8e9


def _warn_key_size(stats: dict) -> None:
    size = stats.get("size_of_bootstrap_keys", 0) + stats.get("size_of_keyswitch_keys", 0)
    if size > LARGE_KEYS:
        warnings.warn(
            f"the evaluation keys of this circuit take {size / 1e9:.1f} GB ({stats['pbs_count']} table "
            "lookups at a per-lookup error probability of "
            f"{stats['p_error']:.1e}): keygen needs about that much memory and takes minutes. A larger "
            "per-lookup p_error (e.g. compile(..., p_error=1e-3)) or narrower lookups shrink them",
            LatencyWarning,
            stacklevel=user_stacklevel(),
        )


def _describe_n_bits(nb) -> str:
    if nb is None:
        return "-"
    if len({nb.model_inputs, nb.op_inputs, nb.op_weights, nb.model_outputs}) == 1:
        return str(nb.op_inputs)
    return (
        f"(inputs {nb.model_inputs}, activations {nb.op_inputs}, weights {nb.op_weights}, outputs {nb.model_outputs})"
    )


class QuantizedModule:
    """A quantized model, and once compiled, its TFHE circuits.

    Built by :func:`qfhe.compile_torch_model` (quantized and compiled) or
    :func:`qfhe.quantize_torch_model` (quantized only: ``fhe="disable"`` works, and
    :meth:`compile` makes the circuits later, at any error probability, without re-importing).

    Attributes
    ----------
    graph : Graph
        The fused, rounded integer graph with the client's input ``quant`` and output ``dequant``.
    float_graph : Graph
        The canonical float graph it was quantized from.
    bitwidths : dict of str to ValueInfo
        Range and width of every encrypted value.
    fhe_circuit : concrete.fhe.Circuit
        The single-sample circuit (keygen, encrypted execution).
    statistics : dict
        ``pbs_count``, ``max_bit_width``, ``compile_seconds`` and more, for the single-sample circuit.
    rounding_plan : qfhe.tune.RoundingPlan or None
        With ``rounding_threshold_bits="auto"``: the per-layer rounding chosen, printable, and
        ``as_dict()`` to reproduce it.

    Examples
    --------
    >>> import numpy as np, torch, qfhe
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 2))
    >>> qm = qfhe.quantize_torch_model(m, np.random.RandomState(0).randn(64, 4), n_bits=4)
    >>> qm.forward(np.zeros((1, 4))).shape
    (1, 2)
    """

    def __init__(
        self,
        float_graph: Graph,
        fused_graph: Graph,
        graph: Graph,
        bitwidths: dict[str, ValueInfo],
        input_shape: tuple,
        settings: dict,
        compile_codes,
        preprocess: list | None = None,
    ):
        self.float_graph = float_graph
        self.fused_graph = fused_graph
        self.graph = graph
        self.bitwidths = bitwidths
        self._compile_codes = compile_codes  # one array per circuit input (an array when there is one)
        self._compiled: CompiledCircuits | None = None
        model_inputs = [n for n in graph.nodes if n.op == "input"]
        #: The client's clear-side transform of each model input before quantization (``None``, or a
        #: :mod:`qfhe.quant.preprocess` spec: per-feature scaling, an estimator's standardisation, a
        #: tree model's unary code).
        self.preprocess = list(preprocess) if preprocess is not None else [None] * len(model_inputs)
        # the shape the circuit's graph reads: a unary code is wider than the features it encodes
        encoded = [tuple(n.attrs["shape"]) for n in model_inputs]
        #: Per-sample shape of each model input, in the order of ``forward``'s arguments.
        self.input_shapes = [raw_shape(p, s) for p, s in zip(self.preprocess, encoded)]
        #: The per-sample input shape (a tuple of shapes for a model with several inputs).
        self.input_shape = self.input_shapes[0] if len(model_inputs) == 1 else tuple(self.input_shapes)
        self.settings = dict(settings)
        #: The per-layer plan ``rounding_threshold_bits="auto"`` chose (a RoundingPlan), else None.
        self.rounding_plan = None
        # One circuit input per client quantizer; a model input with two quantizers (Brevitas) has two.
        self._input_nodes: list[Node] = client_input_nodes(graph)
        self._input_node: Node = self._input_nodes[0]
        names = [n.name for n in model_inputs]
        self._input_of = [names.index(q.inputs[0]) for q in self._input_nodes]
        self._layers = value_layers(graph)
        self._output_node: Node = graph[graph.outputs[0]]
        # The reference interpreter runs exactly the circuit's nodes, fed with the client's codes.
        self._server_graph = circuit_graph(graph)
        zeros = [
            np.full((1,) + encoded[i], q.attrs.get("zero_point", 0), np.int64)
            for q, i in zip(self._input_nodes, self._input_of)
        ]
        self.output_shape = tuple(self.dequantize_output(run(self._server_graph, zeros)[0]).shape[1:])

    def __deepcopy__(self, memo):
        """A deep copy of the quantized model; the compiled circuits and their keys are shared with the
        original (concrete objects cannot be copied, and a copy that silently lost them would need
        compiling and keygen again).

        Examples
        --------
        >>> import copy, numpy as np, torch, qfhe
        >>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(40, 3), n_bits=3)
        >>> twin = copy.deepcopy(qm)
        >>> twin.is_compiled, twin.fhe_circuit is qm.fhe_circuit, twin.graph is qm.graph
        (True, True, False)
        """
        import copy

        twin = object.__new__(type(self))
        memo[id(self)] = twin
        for k, v in self.__dict__.items():
            setattr(twin, k, v if k == "_compiled" else copy.deepcopy(v, memo))
        return twin

    def with_ranges(
        self, inputset, bitwidth_method: str | None = None, calibration_margin: float | None = None
    ) -> "QuantizedModule":
        """The same model (quantizers, weights, preprocessing) with its integer ranges, and so its
        rounding and bit-widths, planned again on ``inputset``; not compiled.

        Parameters
        ----------
        inputset : array-like, shape (n, ...)
            Raw inputs, as ``forward`` takes them.
        bitwidth_method, calibration_margin : optional
            As in :func:`qfhe.compile_torch_model`; default: this model's.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> X = np.random.RandomState(0).randn(40, 3)
        >>> qm = qfhe.quantize_torch_model(torch.nn.Linear(3, 2), X, n_bits=4)
        >>> wide = qm.with_ranges(X, bitwidth_method="interval")
        >>> bool((wide.forward(X) == qm.forward(X)).all()), wide.settings["bitwidth_method"]
        (True, 'interval')
        """
        from qfhe.passes.bitwidth import check_bitwidth_method
        from qfhe.passes.pipelines import plan_rounding
        from qfhe.validation import as_float

        method = check_bitwidth_method(bitwidth_method or self.settings.get("bitwidth_method", "calibration"))
        margin = (
            self.settings.get("calibration_margin", 0.0)
            if calibration_margin is None
            else as_float("calibration_margin", calibration_margin, 0.0, 10.0, closed=True)
        )
        names = ["inputset"] * len(self.input_shapes)
        X = tuple(
            apply_preprocess(p, check_input(x, s, n))
            for x, s, n, p in zip(
                inputset if isinstance(inputset, tuple) else (inputset,), self.input_shapes, names, self.preprocess
            )
        )
        feed = X[0] if len(X) == 1 else list(X)
        graph, info = plan_rounding(
            self.fused_graph, feed, self.settings.get("rounding"), method, margin, self.settings.get("qat", False)
        )
        codes = [evaluate("quant", [X[i]], q.attrs) for q, i in zip(self._input_nodes, self._input_of)]
        settings = {**self.settings, "bitwidth_method": method, "calibration_margin": margin}
        out = QuantizedModule(
            self.float_graph,
            self.fused_graph,
            graph,
            info,
            self.input_shapes[0],
            settings,
            codes[0] if len(codes) == 1 else codes,
            self.preprocess,
        )
        out.rounding_plan = self.rounding_plan
        return out

    def __getstate__(self) -> dict:
        """Pickling keeps the quantized model and drops the circuits (concrete objects cannot be
        pickled): call :meth:`compile` again after loading.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(40, 3), n_bits=3)
        >>> qm.__getstate__()["_compiled"] is None, qm.is_compiled
        (True, True)
        """
        return {**self.__dict__, "_compiled": None}

    # -- public API -----------------------------------------------------------------------------
    def compile(
        self,
        p_error: float | None = None,
        global_p_error: float | None = None,
        configuration=None,
        simulate_batch_size: int = 64,
    ) -> "QuantizedModule":
        """Compile (or recompile) the TFHE circuits; returns self.

        Parameters
        ----------
        p_error, global_p_error : float, optional
            Error probability per table lookup, or for the whole circuit; give at most one.
            Default: ``global_p_error=1e-5``.
        configuration : concrete.fhe.Configuration, optional
            Passed through to concrete-python.
        simulate_batch_size : int
            Samples per call of the batch simulation circuit.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        >>> qm = qfhe.quantize_torch_model(m, np.random.RandomState(0).randn(64, 4), n_bits=4)
        >>> qm.compile(p_error=0.01).statistics["p_error"] <= 0.01
        True
        """
        self._adopt(*self._compile_candidate(p_error, global_p_error, configuration, simulate_batch_size))
        _warn_key_size(self._compiled.statistics)
        return self

    def _compile_candidate(
        self, p_error=None, global_p_error=None, configuration=None, simulate_batch_size: int = 64
    ) -> tuple[CompiledCircuits, object]:
        """The single-sample circuit only, leaving ``self`` unchanged (tuning compiles candidates
        with it and keeps the one it chooses); returns it with its configuration."""
        simulate_batch_size = as_int("simulate_batch_size", simulate_batch_size, 1, None, "a positive int")
        cfg = make_configuration(configuration, p_error, global_p_error)
        fn = make_circuit_function(self.graph, self.bitwidths)
        return compile_circuits(fn, self._compile_codes, cfg, simulate_batch_size, with_batch=False), cfg

    def _adopt(self, compiled: CompiledCircuits, configuration) -> "QuantizedModule":
        """Make ``compiled`` (from :meth:`_compile_candidate`) this model's circuits, adding the
        batch simulation circuit."""
        fn = make_circuit_function(self.graph, self.bitwidths)
        self._compiled = add_batch_circuit(fn, self._compile_codes, compiled, configuration)
        return self

    @property
    def has_lookups(self) -> bool:
        """Whether the circuit has a table lookup (without one, ``p_error`` has no effect).

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> qfhe.quantize_torch_model(torch.nn.Linear(3, 2), np.random.randn(40, 3), n_bits=3).has_lookups
        False
        """
        return any(n.op in ("tlu", "table") for n in self._server_graph.nodes)

    @property
    def is_compiled(self) -> bool:
        """Whether :meth:`compile` has run.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> qfhe.quantize_torch_model(torch.nn.Linear(3, 2), np.random.randn(40, 3), n_bits=3).is_compiled
        False
        """
        return self._compiled is not None

    def _require_compiled(self) -> CompiledCircuits:
        if self._compiled is None:
            raise NotCompiledError(
                "this model is quantized but has no circuit yet: call qm.compile() (or use compile_torch_model) "
                "before fhe='simulate' or 'execute', fhe_circuit or statistics"
            )
        return self._compiled

    @property
    def fhe_circuit(self):
        """The single-sample concrete-python circuit (call ``keygen()`` on it before executing).

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(40, 3), n_bits=3)
        >>> qm.fhe_circuit.keys.are_generated
        False
        """
        return self._require_compiled().circuit

    @property
    def statistics(self) -> dict:
        """Statistics of the single-sample circuit (a copy).

        Keys: ``pbs_count``, ``max_bit_width`` (concrete's ``maximum_integer_bit_width()``),
        ``compile_seconds``, ``batch_compile_seconds``, ``p_error`` (per table lookup),
        ``global_p_error`` (probability that at least one lookup of a run errs),
        ``complexity``, ``pbs_count_per_layer``, key sizes.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), np.random.randn(40, 3), n_bits=3)
        >>> sorted(qm.statistics)[:3]
        ['batch_compile_seconds', 'compile_seconds', 'complexity']
        """
        return dict(self._require_compiled().statistics)

    def bitwidth_report(self) -> BitwidthReport:
        """Per-layer accumulator range and width, and what each table lookup reads.

        Returns
        -------
        BitwidthReport
            A list of dicts (``layer, acc_min, acc_max, acc_bits, tlu_bits, lsbs_removed``) whose
            ``str()`` is a table.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        >>> qm = qfhe.quantize_torch_model(m, np.random.RandomState(0).randn(64, 4), n_bits=4)
        >>> print(qm.bitwidth_report())                  # doctest: +ELLIPSIS
        layer  acc_min  acc_max  acc_bits  tlu_bits  lsbs_removed
        0 ...
        """
        return BitwidthReport(bitwidth_rows(self.graph, self.bitwidths))

    def forward(self, *X, fhe: str = "disable", strict: bool = False, progress: Callable | None = None) -> np.ndarray:
        """Run the model on a batch.

        Parameters
        ----------
        *X : ndarray or torch.Tensor, shape (n, ...)
            Float inputs: one array, or one per model input (``forward(X1, X2)``), with the same
            number of samples.
        fhe : {"disable", "simulate", "execute"}
            ``disable``: the numpy integer reference interpreter (vectorised), which also checks
            every intermediate value against the compiled ranges. ``simulate``: concrete-python's
            simulation of the compiled circuit, in batches. ``execute``: real encryption, run and
            decryption, one sample at a time (needs ``fhe_circuit.keygen()`` first).
        strict : bool
            Raise instead of warning. Every mode first runs the model on the clear integers (it
            is cheap) and checks two things the circuit would do silently: a value that leaves
            its compiled range (it would wrap around: :class:`CircuitOverflowError` /
            ``OverflowRiskWarning``), and, for post-training quantization, a hidden activation
            beyond its calibrated range, which its requantization clips (:class:`SaturationError` /
            ``SaturationWarning``, counted per layer).
        progress : callable, optional
            Wraps the sample iterator in ``execute`` mode (e.g. ``tqdm.tqdm``).

        Returns
        -------
        ndarray of float, shape (n, ...)
            Dequantized outputs.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        >>> X = np.random.RandomState(0).randn(64, 4)
        >>> qm = qfhe.compile_torch_model(m, X, n_bits=4)
        >>> bool((qm.forward(X[:3], fhe="simulate") == qm.forward(X[:3])).all())
        True
        """
        if fhe not in FHE_MODES:
            raise ConfigurationError(f"fhe must be one of {FHE_MODES}, got {fhe!r}")
        as_bool("strict", strict)
        compiled = None if fhe == "disable" else self._require_compiled()
        codes = self._codes(X)
        if len(codes[0]) == 0:
            return np.zeros((0,) + self.output_shape)
        out = self._reference(codes, strict)  # the range check, in every mode
        if fhe == "simulate":
            out = simulate(compiled, codes)
        elif fhe == "execute":
            out = execute(compiled.circuit, codes, progress)
        return self.dequantize_output(out)

    def __call__(self, *X, fhe: str = "disable", strict: bool = False, progress: Callable | None = None) -> np.ndarray:
        """``qm(X, ...)`` is ``qm.forward(X, ...)``, as for the torch model.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> qm = qfhe.quantize_torch_model(torch.nn.Linear(3, 2), np.random.randn(40, 3), n_bits=3)
        >>> bool((qm(np.ones((2, 3))) == qm.forward(np.ones((2, 3)))).all())
        True
        """
        return self.forward(*X, fhe=fhe, strict=strict, progress=progress)

    def __repr__(self) -> str:
        """Layers with their accumulator and lookup widths, and the compile state.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        >>> qfhe.quantize_torch_model(m, np.random.RandomState(0).randn(64, 4), n_bits=4)  # doctest: +ELLIPSIS
        QuantizedModule(input (4,) -> output (2,), PTQ n_bits=4, bitwidth_method='calibration', not compiled
          layer  acc_min  acc_max  acc_bits  tlu_bits  lsbs_removed
          0 ...
        )
        """
        nb = self.settings.get("n_bits")
        quant = "QAT (Brevitas)" if self.settings.get("qat") else f"PTQ n_bits={_describe_n_bits(nb)}"
        if self._compiled is None:
            state = "not compiled"
        else:
            st = self._compiled.statistics
            state = f"compiled: {st['pbs_count']} PBS, max bit-width {st['max_bit_width']}, p_error {st['p_error']:.3g}"
        table = "\n".join("  " + line for line in str(self.bitwidth_report()).splitlines())
        return (
            f"QuantizedModule(input {self.input_shape} -> output {self.output_shape}, {quant}, "
            f"bitwidth_method={self.settings.get('bitwidth_method')!r}, {state}\n{table}\n)"
        )

    def quantize_input(self, *X):
        """Client side: validate, scale per feature (``preprocess``), clip (with a warning) and quantize
        inputs to circuit codes.

        Returns an array of codes, or a tuple with one per circuit input for a model with several
        inputs (or one input with two quantizers).

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 2))
        >>> qm = qfhe.quantize_torch_model(m, np.random.RandomState(0).randn(64, 4), n_bits=4)
        >>> qm.quantize_input(np.zeros((1, 4))).dtype
        dtype('int64')
        """
        codes = self._codes(X)
        return codes[0] if len(codes) == 1 else tuple(codes)

    def _codes(self, X: tuple) -> list[np.ndarray]:
        if any(isinstance(x, str) for x in X):
            raise ConfigurationError("pass fhe, strict and progress by keyword: forward(X, fhe='simulate')")
        if len(X) != len(self.input_shapes):
            raise ConfigurationError(
                f"this model takes {len(self.input_shapes)} input(s) (shapes "
                f"{', '.join(str(s) for s in self.input_shapes)}); got {len(X)}"
            )
        # A QAT input quantizer was trained to clip: that is the model, as in Brevitas, not news.
        why = None if self.settings.get("qat") else "calibrate on data that covers them"
        names = [f"X{i + 1}" if len(X) > 1 else "X" for i in range(len(X))]
        arrays = [
            apply_preprocess(p, check_input(x, s, name))
            for x, s, name, p in zip(X, self.input_shapes, names, self.preprocess)
        ]
        if len({len(a) for a in arrays}) > 1:
            raise ConfigurationError(f"the inputs have different numbers of samples: {[len(a) for a in arrays]}")
        return [
            quantize_input_codes(arrays[i], q.attrs, why, self.preprocess[i])
            for q, i in zip(self._input_nodes, self._input_of)
        ]

    def dequantize_output(self, codes: np.ndarray) -> np.ndarray:
        """Client side: circuit output codes → float outputs (adds the last layer's bias).

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> m = torch.nn.Linear(3, 2)
        >>> qm = qfhe.quantize_torch_model(m, np.random.randn(40, 3), n_bits=3, per_feature_inputs=False)
        >>> # a zero accumulator of the last layer decodes to that layer's bias
        >>> bool(np.allclose(qm.dequantize_output(np.zeros((1, 2), int)), m.bias.detach().numpy()))
        True
        """
        return evaluate("dequant", [np.asarray(codes)], self._output_node.attrs)

    # -- internals ------------------------------------------------------------------------------
    def _reference(self, codes, strict: bool) -> np.ndarray:
        problems: list[str] = []
        clipped: list[str] = []
        # PTQ only: a QAT activation quantizer's clipping was trained with the model.
        watch = set() if self.settings.get("qat") else {n.inputs[0] for n in self._server_graph.nodes if n.op == "tlu"}
        seen: dict[str, np.ndarray] = {}

        def observe(node: Node, value: np.ndarray) -> None:
            if node.name in watch:
                seen[node.name] = value
            if node.op == "tlu" and node.inputs[0] in seen:
                hit = saturated(node, seen[node.inputs[0]])
                if hit is not None and hit.any():
                    clipped.append(f"layer '{self._layers.get(node.name, node.name)}': {int(hit.sum())} of {len(hit)}")
            info = self.bitwidths.get(node.name)
            if info is None:
                return
            lo, hi = info.bounds
            bad = ((value < lo) | (value > hi)).reshape(len(value), -1).any(axis=1)
            if bad.any():
                layer = self._layers.get(node.name, node.name)
                kind = {"round": "rounded accumulator", "tlu": "lookup output", "reshape": "reshaped value"}
                what = f"layer '{layer}'" + ("" if layer == node.name else f" ({kind.get(node.op, node.op)})")
                problems.append(
                    f"{what}: {int(bad.sum())} of {len(value)} samples leave the compiled range "
                    f"[{lo}, {hi}] ({info.bits} bits)"
                )

        out = run(self._server_graph, as_inputs(codes), observe)[0]
        if problems:
            msg = (
                "values outside the range the circuit was compiled for would wrap around in FHE: "
                + "; ".join(problems)
                + ". Recalibrate on data that covers these inputs, or compile with bitwidth_method='interval'"
            )
            if strict:
                raise CircuitOverflowError(msg)
            warnings.warn(msg, OverflowRiskWarning, stacklevel=user_stacklevel())
        if clipped:
            msg = (
                "hidden activations beyond their calibrated range were clipped to its edge (in every FHE mode "
                "alike, so results can be far from the float model's): " + "; ".join(clipped) + " samples. The "
                "inputs lie in the calibrated input box but combine unlike the calibration data: calibrate on "
                "data that covers such inputs"
            )
            if strict:
                raise SaturationError(msg)
            warnings.warn(msg, SaturationWarning, stacklevel=user_stacklevel())
        return out
