"""CKKSCompiler: run a pass pipeline on a model and return something you can call.

Examples
--------
>>> import numpy as np, torch
>>> from qfhe.ckks import CKKSParameters, CompilationContext, FakeBackend, HEScheme, CKKSCompiler
>>> from qfhe.ckks.passes import default_pipeline
>>> m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
>>> ctx = CompilationContext(HEScheme.CKKS, CKKSParameters(16384, [60] + [40] * 7 + [60], 2**40), FakeBackend())
>>> X = torch.randn(32, 4)
>>> compiled = CKKSCompiler(ctx, default_pipeline(bootstrapping=False)).compile(m, X)
>>> bool(np.abs(compiled(X[:3]) - m(X[:3]).detach().numpy()).max() < 0.05)
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from qfhe.ckks.backends.fake import FakeBackend
from qfhe.ckks.hegraph import annotate
from qfhe.ckks.lower import polynomial_reference, to_he_graph
from qfhe.ckks.params import CKKSParameters, HEScheme
from qfhe.ckks.passes.base import PassPipeline
from qfhe.ckks.passes.linear import lower_remaining
from qfhe.errors import ConfigurationError, PassError, PolynomialRangeError, PolynomialRangeWarning
from qfhe.frontend.torch_fx import import_torch
from qfhe.ir.graph import Graph
from qfhe.passes.pipelines import canonicalize
from qfhe.validation import as_bool, check_input, to_numpy, user_stacklevel, warn_about_calibration


@dataclass
class CompilationContext:
    """What every pass may read (scheme, parameters, backend) and write (``meta`` reports).

    Examples
    --------
    >>> CompilationContext(HEScheme.CKKS, CKKSParameters(), FakeBackend()).meta
    {}
    """

    scheme: HEScheme
    params: CKKSParameters
    backend: object = field(default_factory=FakeBackend)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.scheme is not HEScheme.CKKS:
            raise ConfigurationError(f"CompilationContext scheme must be HEScheme.CKKS, got {self.scheme!r}")


class CompiledCKKSModel:
    """An HE op graph bound to its parameters and backend.

    ``compiled(x)`` runs on the backend; ``meta`` holds the pass reports (``cost_analysis``,
    ``polynomials``, ``packing``, ``pass_seconds``).

    Examples
    --------
    >>> CompiledCKKSModel.__name__
    'CompiledCKKSModel'
    """

    def __init__(self, graph: Graph, he_graph: Graph, context: CompilationContext, input_shape: tuple):
        self.graph = graph
        self.he_graph = he_graph
        self.context = context
        self.params = context.params
        self.backend = context.backend
        self.meta = context.meta
        self.input_shape = tuple(input_shape)
        self.output_size = int(sum(graph[o].attrs.get("length", 0) for o in graph.outputs))
        self.keys = None
        self._evaluator = None
        self.last_run = None

    def _flat(self, x) -> np.ndarray:
        arr = check_input(x, self.input_shape)
        return arr.reshape(len(arr), int(np.prod(self.input_shape, dtype=int)))

    def __call__(self, x, strict: bool = False) -> np.ndarray:
        """Run the HE op graph on the context's backend (encrypt → evaluate → decrypt).

        Activation inputs outside their fitted polynomial ranges are counted on the clear path
        first: a warning, or :class:`~qfhe.errors.PolynomialRangeError` with ``strict=True``.
        """
        X = self._flat(x)
        if len(X) == 0:
            return np.zeros((0, self.output_size))
        self.check_ranges(X, strict)
        if getattr(self.backend, "real_encryption", False):
            return self._execute(X)
        layout = self.meta["packing"]
        if layout["strategy"] == "column_major":
            b = layout["stride"]
            return np.concatenate(
                [self.backend.run(self.graph, self.params, X[i : i + b]) for i in range(0, len(X), b)]
            )
        return self.backend.run(self.graph, self.params, X)

    @property
    def samples_per_ciphertext(self) -> int:
        """How many samples share one ciphertext: the column_major batch, else 1.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> cm = qfhe.compile_torch_model(torch.nn.Linear(2, 2), np.random.RandomState(0).randn(32, 2), scheme="ckks")
        >>> cm.samples_per_ciphertext
        1
        """
        layout = self.meta["packing"]
        return layout["stride"] if layout["strategy"] == "column_major" else 1

    def keygen(self):
        """Generate SEAL keys: secret, public, relinearization, and Galois keys for exactly the
        rotation steps this graph uses. Needed before ``forward(fhe="execute")``.

        Raises
        ------
        ConfigurationError
            If the graph has bootstrap nodes (SEAL cannot bootstrap) or the parameters are not
            128-bit secure (unless ``allow_insecure=True``).

        Returns
        -------
        qfhe.ckks.backends.seal.SEALKeys
            Also kept on the model (``keys``); ``keys.sizes()`` gives the evaluation key sizes.

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> from qfhe.ckks import CKKSParameters
        >>> X = np.random.RandomState(0).randn(32, 4)
        >>> cm = qfhe.compile_torch_model(torch.nn.Linear(4, 2), X, scheme="ckks",
        ...                               ckks_params=CKKSParameters(8192, [60, 40, 40, 60], 2**40))
        >>> cm.keygen().steps
        [1, 2]
        """
        from qfhe.ckks.backends.seal import SEALBackend, SEALEvaluator, SEALKeys, rotation_steps

        backend = self.backend if isinstance(self.backend, SEALBackend) else SEALBackend()
        backend.check(self.graph, self.params)
        self.keys = SEALKeys.generate(self.params, rotation_steps(self.graph))
        self._evaluator = SEALEvaluator(self.graph, self.params, self.keys)
        return self.keys

    def _execute(self, X: np.ndarray) -> np.ndarray:
        from qfhe.ckks.backends.seal import RunReport, SEALBackend

        if getattr(self, "keys", None) is None:
            from qfhe.errors import KeysNotGeneratedError

            raise KeysNotGeneratedError("fhe='execute' needs keys: call keygen() on the compiled CKKS model first")
        b = self.samples_per_ciphertext
        report = RunReport(samples_per_ciphertext=b)
        backend = self.backend if isinstance(self.backend, SEALBackend) else SEALBackend()
        out = np.concatenate(
            [
                backend.run(self.graph, self.params, X[i : i + b], self.keys, self._evaluator, report)
                for i in range(0, len(X), b)
            ]
        )
        report.predicted_seconds = self.cost_analysis.estimated_latency / 1000 * report.evaluations
        self.last_run = report
        return out

    def check_ranges(self, x, strict: bool = False) -> dict[str, int]:
        """Count, per activation, the inputs outside the range its polynomial was fitted on.

        Outside that range a polynomial extrapolates and its error grows fast (an error of 13 at
        3x the range was measured for a degree-8 fit). Warns with
        :class:`~qfhe.errors.PolynomialRangeWarning`, or raises
        :class:`~qfhe.errors.PolynomialRangeError` with ``strict=True``.

        Returns
        -------
        dict of str to int
            Layer name → number of values outside its fitted range (only layers with some).

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh())
        >>> cm = qfhe.compile_torch_model(m, np.random.RandomState(0).randn(64, 2), scheme="ckks")
        >>> cm.check_ranges(np.zeros((1, 2)))
        {}
        """
        X = self._flat(x)
        fits = self.meta.get("polynomials", {})
        outside: dict[str, int] = {}

        def observe(name: str, values: np.ndarray) -> None:
            if name in fits:
                lo, hi = fits[name]["range"]
                count = int(((values < lo) | (values > hi)).sum())
                if count:
                    outside[name] = count

        polynomial_reference(self.he_graph, X, self.meta.get("poly_functions", {}), observe)
        if outside:
            parts = "; ".join(
                f"layer '{k}': {v} values outside [{fits[k]['range'][0]:.4g}, {fits[k]['range'][1]:.4g}]"
                for k, v in outside.items()
            )
            msg = (
                f"activation inputs outside the range their polynomial was fitted on: {parts}. There the polynomial "
                "extrapolates and the result can be far off: calibrate on data that covers these inputs, or widen "
                "the fit (NonlinearToPolynomialPass(margin=...))"
            )
            if strict:
                raise PolynomialRangeError(msg)
            warnings.warn(msg, PolynomialRangeWarning, stacklevel=user_stacklevel())
        return outside

    def reference(self, x) -> np.ndarray:
        """The float model with every activation replaced by its fitted polynomial.

        Examples
        --------
        >>> CompiledCKKSModel.reference.__name__
        'reference'
        """
        return polynomial_reference(self.he_graph, self._flat(x), self.meta.get("poly_functions", {}))

    @property
    def cost_analysis(self):
        """The :class:`~qfhe.ckks.passes.CostAnalysis` (computed now if the pipeline had no CostAnalysisPass).

        Examples
        --------
        >>> isinstance(CompiledCKKSModel.cost_analysis, property)
        True
        """
        if "cost_analysis" not in self.meta:
            from qfhe.ckks.passes.cost import analyze_cost

            self.meta["cost_analysis"] = analyze_cost(self.graph, self.params)
        return self.meta["cost_analysis"]

    def forward(self, X, fhe: str = "disable", strict: bool = False) -> np.ndarray:
        """Same meaning as the TFHE model's ``forward``.

        ``disable``: the float model with the polynomial activations substituted. ``simulate``: the
        HE op graph on the FakeBackend (levels and scales checked at every op; CKKS-like noise unless
        the model was compiled for a FakeBackend without it). ``execute``: real
        CKKS encryption with SEAL (call :meth:`keygen` first); the run's measurements are in
        ``last_run`` (:class:`~qfhe.ckks.backends.seal.RunReport`). Every mode first counts the
        activation inputs outside their fitted ranges (:meth:`check_ranges`; ``strict=True``
        raises).

        Examples
        --------
        >>> import numpy as np, torch, qfhe
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.SiLU(), torch.nn.Linear(4, 2))
        >>> X = np.random.RandomState(0).randn(32, 4)
        >>> cm = qfhe.compile_torch_model(m, X, scheme="ckks")
        >>> bool(np.abs(cm.forward(X[:2], fhe="simulate") - cm.forward(X[:2])).max() < 1e-6)
        True
        """
        if fhe not in ("disable", "simulate", "execute"):
            raise ConfigurationError(f"fhe must be one of ('disable', 'simulate', 'execute'), got {fhe!r}")
        as_bool("strict", strict)
        if fhe == "disable":
            flat = self._flat(X)
            if len(flat) == 0:
                return np.zeros((0, self.output_size))
            self.check_ranges(flat, strict)
            return self.reference(flat)
        if fhe == "simulate":
            if isinstance(self.backend, FakeBackend):
                return self(X, strict)
            noisy = CompilationContext(HEScheme.CKKS, self.params, FakeBackend(simulate_noise=True), self.meta)
            return CompiledCKKSModel(self.graph, self.he_graph, noisy, self.input_shape)(X, strict)
        flat = self._flat(X)
        if len(flat) == 0:
            return np.zeros((0, self.output_size))
        self.check_ranges(flat, strict)
        return self._execute(flat)


class CKKSCompiler:
    """Compile a torch model with a :class:`PassPipeline` under a :class:`CompilationContext`.

    After the pipeline, linear layers that no pass lowered use the plain diagonal method, and the
    graph is checked against the level/scale/size rules (out of levels raises
    :class:`~qfhe.errors.CKKSScheduleError` naming the node and the remedies).

    Examples
    --------
    >>> CKKSCompiler(CompilationContext(HEScheme.CKKS, CKKSParameters(), FakeBackend()), PassPipeline([])).pipeline
    PassPipeline([])
    """

    def __init__(self, context: CompilationContext, pipeline: PassPipeline):
        self.context = context
        self.pipeline = pipeline

    def compile(self, model: torch.nn.Module, example_input) -> CompiledCKKSModel:
        """Import ``model``, calibrate activation ranges on ``example_input`` and run the pipeline.

        The compiler's context is left as it was: the model gets a copy, with its own ``meta``.

        Examples
        --------
        >>> callable(CKKSCompiler.compile)
        True
        """
        # Each compiled model owns its context: the passes write their reports into ``meta``, and a
        # shared one let a second compile overwrite the first model's polynomials.
        context = replace(self.context, meta={})
        context.params.check_security(real_encryption=getattr(context.backend, "real_encryption", False))
        X = to_numpy(example_input, "example_input")
        if X.ndim == 1:
            X = X[None]
        warn_about_calibration(X)
        float_graph = canonicalize(import_torch(model, torch.as_tensor(X[:2], dtype=torch.float32)))
        he = to_he_graph(float_graph, X)
        graph = self.pipeline.run(he, context)
        graph = finalize(graph, context)
        if hasattr(context.backend, "check"):  # what the backend can run (SEAL: no bootstrapping)
            context.backend.check(graph, context.params)
        return CompiledCKKSModel(graph, he, context, X.shape[1:])


def finalize(graph: Graph, context: CompilationContext) -> Graph:
    """Lower leftover linear layers (plain diagonals), refuse leftover high-level ops, check rules.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> ctx = CompilationContext(HEScheme.CKKS, CKKSParameters(), FakeBackend())
    >>> finalize(Graph([Node("x", "input", [])], ["x"]), ctx)
    Traceback (most recent call last):
    ...
    qfhe.errors.PassError: the pipeline never packed the input: put InputPackingPass first
    """
    if not any(n.op == "encrypt" for n in graph.nodes):
        raise PassError("the pipeline never packed the input: put InputPackingPass first")
    graph = lower_remaining(graph, context)
    left = [n.name for n in graph.nodes if n.op in ("activation", "affine", "add", "input")]
    if left:
        raise PassError(
            f"nodes {left} were not lowered to HE ops: the pipeline needs NonlinearToPolynomialPass "
            "before the rescaling/relinearization passes"
        )
    annotate(graph, context.params)
    return graph
