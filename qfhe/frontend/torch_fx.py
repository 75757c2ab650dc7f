"""Import a float ``torch.nn.Module`` into a float qfhe graph through ``torch.fx``.

The traced graph runs on two samples and on one, so every value gets a concrete shape and the
values that no longer keep axis 0 as the sample axis are known (the model then compiles per sample;
see :mod:`qfhe.frontend.shape_ops`). Buffers and constant expressions are folded from the values
that run computed. Ops the TFHE and CKKS paths can compile are mapped to the IR vocabulary (see
:mod:`qfhe.ir.ops`; :mod:`qfhe.frontend.torch_ops` and its siblings do the mapping); anything else
raises :class:`~qfhe.errors.UnsupportedOpError` naming the fx node and its target.

Examples
--------
>>> import torch
>>> g = import_torch(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()), torch.zeros(2, 3))
>>> g.ops()
['input', 'gemm', 'activation']
"""

from __future__ import annotations

import operator

import torch
import torch.fx
from torch import nn

from qfhe.errors import InputsetError, UnsupportedOpError
from qfhe.frontend.lowering import Emitter
from qfhe.frontend.shape_ops import sample_shape
from qfhe.frontend.torch_ops import Const, _function, _module, _value
from qfhe.ir.graph import Graph


class _Proxy(torch.fx.Proxy):
    """torch.fx's proxy, which also records ``x[mask] = value`` (torch.fx refuses item assignment)."""

    def __setitem__(self, key, value) -> None:
        self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})


class QfheTracer(torch.fx.Tracer):
    """The tracer of every qfhe frontend: torch.fx's, recording item assignments too.

    Examples
    --------
    >>> class Mask(torch.nn.Module):
    ...     def forward(self, x):
    ...         x[x < 0] = 0.0
    ...         return x
    >>> [n.target.__name__ for n in trace(Mask()).graph.nodes if n.op == "call_function"]
    ['lt', 'setitem']
    """

    def proxy(self, node: torch.fx.Node) -> torch.fx.Proxy:
        """Wrap ``node`` in a proxy that supports item assignment.

        Examples
        --------
        >>> g = torch.fx.Graph(); t = QfheTracer(); t.graph = g
        >>> type(t.proxy(g.placeholder("x"))).__name__
        '_Proxy'
        """
        return _Proxy(node, self)


def trace(model: nn.Module, tracer: torch.fx.Tracer | None = None) -> torch.fx.GraphModule:
    """Symbolically trace ``model`` with torch.fx, turning tracing failures into qfhe errors.

    Parameters
    ----------
    model : torch.nn.Module
    tracer : torch.fx.Tracer, optional
        A tracer with its own leaf modules (the Brevitas frontend passes one).

    Examples
    --------
    >>> trace(torch.nn.Linear(2, 2)).graph.find_nodes(op="call_module")[0].target
    '0'
    """
    try:
        if isinstance(model, torch.fx.GraphModule):
            return model
        if type(model).__module__.startswith("torch.nn.") and not list(model.children()):
            # A bare layer traces to functionals reading its parameters; wrapping keeps it a module call.
            model = nn.Sequential(model)
        return torch.fx.GraphModule(model, (tracer or QfheTracer()).trace(model))
    except Exception as exc:  # torch.fx raises many kinds (TraceError, TypeError, ...)
        raise UnsupportedOpError(
            f"torch.fx could not trace {type(model).__name__}: {exc}. qfhe needs a model without "
            "data-dependent control flow; move Python branches on tensor values out of forward()."
        ) from exc


def import_torch(model: nn.Module, sample: torch.Tensor) -> Graph:
    """Trace ``model`` and convert it to a float qfhe graph.

    Parameters
    ----------
    model : torch.nn.Module
        A float model in eval semantics (dropout ignored, BatchNorm uses running statistics).
    sample : torch.Tensor or tuple of torch.Tensor
        At least two samples of valid input, shape (n, ...), used for shape propagation; a tuple
        with one tensor per argument of ``forward``.

    Returns
    -------
    Graph
        Float graph with ops input, gemm, conv, activation, affine, add, concat, reshape.

    Raises
    ------
    UnsupportedOpError
        For an operation that has no integer/CKKS lowering; the message names the node.

    Examples
    --------
    >>> m = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(6, 1))
    >>> import_torch(m, torch.zeros(2, 2, 4)).ops()
    ['input', 'reshape', 'conv', 'reshape', 'reshape', 'gemm']
    """
    brevitas = next(
        (
            f"module '{name}' ({type(m).__name__})"
            for name, m in model.named_modules()
            if type(m).__module__.startswith("brevitas.")
        ),
        None,
    )
    if brevitas is not None:
        raise UnsupportedOpError(
            f"{brevitas} is a Brevitas quantized layer: compile a Brevitas QAT model with "
            "qfhe.compile_brevitas_qat_model, which keeps its trained quantizers (compile_torch_model would re-quantize it)"
        )
    embedding = next(
        (
            f"module '{name}' ({type(m).__name__})"
            for name, m in model.named_modules()
            if isinstance(m, (nn.Embedding, nn.EmbeddingBag))
        ),
        None,
    )
    if embedding is not None:
        raise UnsupportedOpError(
            f"{embedding} looks rows up by integer indices, and an encrypted index cannot select a row: one-hot "
            "encode the categories on the client and replace the embedding by a Linear layer without bias (its "
            "weight is the embedding matrix transposed), which computes the same values"
        )
    was_training = model.training
    model.eval()
    try:
        gm = trace(model)
        record_outputs(gm, sample)
        return convert(gm)
    finally:
        model.train(was_training)


class _Recorder(torch.fx.Interpreter):
    """Runs the traced graph once, keeping each node's output and shape."""

    def __init__(self, gm: torch.fx.GraphModule, suffix: str = ""):
        super().__init__(gm)
        self.outputs: dict[str, object] = {}
        self.suffix = suffix

    def run_node(self, n: torch.fx.Node):
        out = super().run_node(n)
        value = getattr(out, "value", out)  # a Brevitas QuantTensor carries its tensor in .value
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
        if self.suffix:  # the one-sample run: shapes, and the shape maths (x.size(0) is 1 here)
            n.meta["qfhe_shape1"] = shape
            n.meta["qfhe_b1"] = None if isinstance(value, torch.Tensor) else value
            return out
        n.meta["qfhe_shape"] = shape
        # A tensor computed from buffers and parameters alone is a constant: keep its value to fold it.
        constant = n.op == "get_attr" or (
            n.op in ("call_function", "call_method") and all(d.meta.get("qfhe_const") for d in n.all_input_nodes)
        )
        n.meta["qfhe_const"] = constant and isinstance(value, torch.Tensor)
        if n.meta["qfhe_const"]:
            # integer constants stay integers: they may index (x[:, idx], index_select)
            v = value.detach().cpu()
            n.meta["qfhe_value"] = (v.double() if v.is_floating_point() else v).numpy()
        self.outputs[n.name] = out
        return out


def record_outputs(gm: torch.fx.GraphModule, sample) -> dict[str, object]:
    """Run ``gm`` on two samples and on one; store shapes in ``node.meta`` and return the outputs.

    The shapes of the two runs tell which values keep axis 0 as the sample axis (``qfhe_shape``
    starts with 2, ``qfhe_shape1`` with 1, the rest equal); any other value is per sample as a
    whole (``x.view(-1, 1)``). ``sample`` is a tensor, or a tuple with one per model input.

    Raises
    ------
    InputsetError
        If the model fails on the sample (its own error is quoted).

    Examples
    --------
    >>> gm = trace(torch.nn.Sequential(torch.nn.Linear(3, 2)))
    >>> out = record_outputs(gm, torch.zeros(4, 3)); [n.meta["qfhe_shape"] for n in gm.graph.nodes][:2]
    [(2, 3), (2, 2)]
    """
    param = next(iter(gm.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    samples = list(sample) if isinstance(sample, (tuple, list)) else [sample]
    samples = [torch.as_tensor(s)[:2].to(dtype) for s in samples]  # a .double() model runs on float64 samples
    samples = [torch.cat([s, s]) if s.shape[0] < 2 else s for s in samples]
    placeholders = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(samples):
        raise InputsetError(
            f"the model's forward takes {len(placeholders)} tensor argument(s) ({', '.join(map(str, placeholders))}) "
            f"but the inputset gives {len(samples)}; pass a tuple with one array per argument, e.g. (X1, X2)"
        )
    recorder = _Recorder(gm)
    with torch.no_grad():
        for rec, batch in ((recorder, samples), (_Recorder(gm, "1"), [s[:1] for s in samples])):
            try:
                rec.run(*batch)
            except Exception as exc:  # the model's own error (shape mismatch, dtype, ...)
                root = exc
                while root.__cause__ is not None:
                    root = root.__cause__
                shapes = ", ".join(str(tuple(s.shape)) for s in batch)
                raise InputsetError(
                    f"the model failed on inputset samples of shape {shapes}: {type(root).__name__}: {root}. "
                    "Check that the inputset has the shape the model's forward expects"
                ) from exc
    return recorder.outputs


def convert(gm: torch.fx.GraphModule, module_hook=None) -> Graph:
    """Convert a traced, shape-recorded graph module to a float qfhe graph.

    Parameters
    ----------
    gm : torch.fx.GraphModule
        After :func:`record_outputs`.
    module_hook : callable, optional
        ``hook(em, env, node, module, per_sample_shape, name)`` tried first for every
        ``call_module`` node; returns an IR value name, or None to fall back to the torch mapping.
        Other frontends (Brevitas) plug in here.

    Examples
    --------
    >>> gm = trace(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()))
    >>> _ = record_outputs(gm, torch.zeros(2, 3)); convert(gm).ops()
    ['input', 'gemm', 'activation']
    """
    em = Emitter()
    env: dict[str, object] = {}  # fx node name -> IR value name, or a python value (shape maths)
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.meta.get("qfhe_const"):
            env[node.name] = Const(node.meta["qfhe_value"])
            continue
        per_sample = sample_shape(node)

        if node.op == "placeholder":
            env[node.name] = em.input(node.name, per_sample)
        elif node.op == "output":
            outs = node.args[0]
            if not isinstance(outs, torch.fx.Node):
                raise UnsupportedOpError(
                    "the model returns several values; qfhe compiles models with exactly one output tensor"
                )
            return em.graph([_value(env, outs, node)])
        elif node.op == "call_module":
            # Module paths ("features.0", "fc1") name layers better than fx's mangled names.
            name, mod = str(node.target), modules[node.target]
            value = module_hook(em, env, node, mod, per_sample, name) if module_hook else None
            env[node.name] = value if value is not None else _module(em, env, node, mod, per_sample, name)
        else:
            env[node.name] = _function(em, env, node, per_sample)
    raise UnsupportedOpError("the traced graph has no output node")  # pragma: no cover
