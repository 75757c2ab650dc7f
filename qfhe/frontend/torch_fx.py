"""Import a float ``torch.nn.Module`` into a float qfhe graph through ``torch.fx``.

The trace is shape-propagated on two samples so that every view/reshape/flatten gets a concrete
per-sample shape and a reshape that mixes the batch axis is caught. Ops the TFHE and CKKS paths can
compile are mapped to the IR vocabulary (see :mod:`qfhe.ir.ops`); anything else raises
:class:`~qfhe.errors.UnsupportedOpError` naming the fx node and its target.

Examples
--------
>>> import torch
>>> g = import_torch(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()), torch.zeros(2, 3))
>>> g.ops()
['input', 'gemm', 'activation']
"""

from __future__ import annotations

import operator
from numbers import Number

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from qfhe.errors import InputsetError, UnsupportedOpError
from qfhe.frontend.lowering import Emitter, activation_forms
from qfhe.ir.graph import Graph

_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze"}
_ALIAS_METHODS = {"contiguous", "clone", "detach"}
_ADD = {operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__radd__"}
_SUB = {operator.sub, operator.isub, torch.sub, "sub", "sub_"}
_MUL = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_DIV = {operator.truediv, operator.itruediv, torch.div, "div", "div_"}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_RESHAPE_FUNCS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}


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
        return torch.fx.GraphModule(model, (tracer or torch.fx.Tracer()).trace(model))
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
    sample : torch.Tensor
        At least two samples of valid input, shape (n, ...), used for shape propagation.

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
    brevitas = next((f"module '{name}' ({type(m).__name__})" for name, m in model.named_modules()
                     if type(m).__module__.startswith("brevitas.")), None)
    if brevitas is not None:
        raise UnsupportedOpError(
            f"{brevitas} is a Brevitas quantized layer: compile a Brevitas QAT model with "
            "qfhe.compile_brevitas_qat_model, which keeps its trained quantizers (compile_torch_model would re-quantize it)")
    was_training = model.training
    model.eval()
    try:
        gm = trace(model)
        check_single_input(gm)
        record_outputs(gm, sample)
        return convert(gm)
    finally:
        model.train(was_training)


def check_single_input(gm: torch.fx.GraphModule) -> None:
    """Raise :class:`UnsupportedOpError` unless the traced forward takes exactly one tensor.

    Examples
    --------
    >>> check_single_input(trace(torch.nn.Linear(2, 2))) is None
    True
    """
    names = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
    if len(names) != 1:
        raise UnsupportedOpError(
            f"the model's forward takes {len(names)} tensor arguments ({', '.join(map(str, names))}); qfhe compiles "
            "models with exactly one input: concatenate the inputs into one tensor and split it inside forward")


class _Recorder(torch.fx.Interpreter):
    """Runs the traced graph once, keeping each node's output and per-sample shape."""

    def __init__(self, gm: torch.fx.GraphModule):
        super().__init__(gm)
        self.outputs: dict[str, object] = {}

    def run_node(self, n: torch.fx.Node):
        out = super().run_node(n)
        value = getattr(out, "value", out)  # a Brevitas QuantTensor carries its tensor in .value
        n.meta["qfhe_shape"] = tuple(value.shape) if isinstance(value, torch.Tensor) else None
        self.outputs[n.name] = out
        return out


def record_outputs(gm: torch.fx.GraphModule, sample: torch.Tensor) -> dict[str, object]:
    """Run ``gm`` on two samples; store shapes in ``node.meta["qfhe_shape"]`` and return outputs.

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
    sample = torch.as_tensor(sample)[:2].to(dtype)  # a .double() model runs on float64 samples
    if sample.shape[0] < 2:
        sample = torch.cat([sample, sample])
    recorder = _Recorder(gm)
    with torch.no_grad():
        try:
            recorder.run(sample)
        except Exception as exc:  # the model's own error (shape mismatch, dtype, ...)
            root = exc
            while root.__cause__ is not None:
                root = root.__cause__
            raise InputsetError(
                f"the model failed on inputset samples of shape {tuple(sample.shape)}: {type(root).__name__}: {root}. "
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
    check_single_input(gm)
    for node in gm.graph.nodes:
        shape = node.meta.get("qfhe_shape")
        if shape is not None and len(shape) >= 1 and shape[0] != 2 and node.op != "output":
            raise UnsupportedOpError(
                f"node '{node.name}' ({_describe(node)}) changes the batch axis (shape {shape} for a batch of 2); "
                "keep axis 0 as the sample axis, e.g. x.view(x.shape[0], -1) or x.flatten(1)"
            )
        per_sample = shape[1:] if shape is not None else None

        if node.op == "placeholder":
            env[node.name] = em.input(node.name, per_sample)
        elif node.op == "output":
            outs = node.args[0]
            if not isinstance(outs, torch.fx.Node):
                raise UnsupportedOpError(
                    "the model returns several values; qfhe compiles models with exactly one output tensor"
                )
            return em.graph([_value(env, outs, node)])
        elif node.op == "get_attr":
            raise UnsupportedOpError(
                f"node '{node.name}' reads parameter '{node.target}' directly; use a module (nn.Linear, nn.Conv2d) "
                "so qfhe can quantize its weights"
            )
        elif node.op == "call_module":
            # Module paths ("features.0", "fc1") name layers better than fx's mangled names.
            name, mod = str(node.target), modules[node.target]
            value = module_hook(em, env, node, mod, per_sample, name) if module_hook else None
            env[node.name] = value if value is not None else _module(em, env, node, mod, per_sample, name)
        else:
            env[node.name] = _function(em, env, node, per_sample)
    raise UnsupportedOpError("the traced graph has no output node")  # pragma: no cover


def _describe(node: torch.fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", str(target))
    return f"{node.op} {name}"


def _value(env: dict, arg, node: torch.fx.Node) -> str:
    if isinstance(arg, torch.fx.Node):
        v = env[arg.name]
        if isinstance(v, str):
            return v
    raise UnsupportedOpError(
        f"node '{node.name}' ({_describe(node)}) expects a tensor argument, got {arg!r}"
    )


def _input_shape(node: torch.fx.Node) -> tuple:
    return tuple(node.args[0].meta["qfhe_shape"][1:])


def _module(em: Emitter, env: dict, node: torch.fx.Node, mod: nn.Module, shape, name: str) -> str:
    x = _value(env, node.args[0], node)
    forms = activation_forms()
    if type(mod) in forms.modules:
        act = forms.modules[type(mod)]
        return em.activation(name, x, act.name, {p: getattr(mod, p) for p in act.params})
    if isinstance(mod, _IDENTITY_MODULES):
        return x
    if isinstance(mod, nn.Linear):
        return em.gemm(name, x, _np(mod.weight), _np(mod.bias))
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        if mod.padding_mode != "zeros":
            raise UnsupportedOpError(
                f"node '{node.name}' ({type(mod).__name__}) uses padding_mode='{mod.padding_mode}'; only 'zeros' is supported"
            )
        padding = _conv_padding(node, mod)
        return em.conv(name, x, _np(mod.weight), _np(mod.bias), mod.stride, padding, mod.dilation,
                       mod.groups, _input_shape(node), shape)
    if isinstance(mod, nn.AvgPool2d):
        return _avgpool(em, node, x, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode,
                        mod.count_include_pad, mod.divisor_override, shape, name)
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        return _adaptive_avgpool(em, node, x, mod.output_size, shape, name)
    if isinstance(mod, nn.Flatten):
        return em.reshape(name, x, shape)
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _batchnorm(em, node, x, mod, name)
    raise UnsupportedOpError(
        f"node '{node.name}' calls module {type(mod).__name__}, which qfhe cannot compile. Supported: Linear, "
        "Conv1d/2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, BatchNorm1d/2d, Dropout, Identity and the activations "
        f"{sorted(a.name for a in forms.modules.values())}"
    )


def _function(em: Emitter, env: dict, node: torch.fx.Node, shape) -> object:
    target = node.target
    forms = activation_forms()
    args = list(node.args)
    if shape is None and (target in ("size", operator.getitem, getattr)):
        return ("shape-maths", node.name)  # only feeds view/reshape, whose shape comes from ShapeProp
    act = forms.methods.get(target) if node.op == "call_method" else forms.functions.get(target)
    if act is not None:
        return em.activation(node.name, _value(env, args[0], node), act.name, forms.bind(act, args[1:], node.kwargs))
    if node.op == "call_method" and target in _ALIAS_METHODS:
        return _value(env, args[0], node)
    if target is getattr and len(args) == 2 and args[1] == "value":
        return _value(env, args[0], node)  # a Brevitas QuantTensor's real value: the same IR value
    if (node.op == "call_method" and target in _RESHAPE_METHODS) or target in _RESHAPE_FUNCS:
        return em.reshape(node.name, _value(env, args[0], node), shape)
    if target in _CAT:
        tensors = args[0]
        dim = node.kwargs.get("dim", args[1] if len(args) > 1 else 0)
        ndim = len(shape) + 1
        dim = dim + ndim if dim < 0 else dim
        if dim == 0:
            raise UnsupportedOpError(f"node '{node.name}' concatenates along the batch axis; use dim >= 1")
        return em.concat(node.name, [_value(env, t, node) for t in tensors], dim)
    if target in _ADD | _SUB | _MUL | _DIV:
        return _arith(em, env, node, target)
    if target in (F.avg_pool2d,):
        kw = dict(zip(["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"], args[1:]))
        kw.update(node.kwargs)
        return _avgpool(em, node, _value(env, args[0], node), kw["kernel_size"], kw.get("stride"),
                        kw.get("padding", 0), kw.get("ceil_mode", False), kw.get("count_include_pad", True),
                        kw.get("divisor_override"), shape)
    if target in (F.adaptive_avg_pool2d,):
        out = node.kwargs.get("output_size", args[1] if len(args) > 1 else None)
        return _adaptive_avgpool(em, node, _value(env, args[0], node), out, shape)
    raise UnsupportedOpError(
        f"node '{node.name}' ({_describe(node)}) is not supported by qfhe. Supported: linear and convolution layers, "
        "average pooling, flatten/view/reshape, BatchNorm, addition of two tensors, torch.cat, scalar add/sub/mul/div, "
        "and elementwise activations"
    )


def _arith(em: Emitter, env: dict, node: torch.fx.Node, target) -> str:
    a, b = node.args[0], node.args[1]
    if node.kwargs.get("alpha", 1) != 1:
        raise UnsupportedOpError(f"node '{node.name}' ({_describe(node)}) uses alpha != 1; write it as a scalar multiply")
    tensors = [isinstance(v, torch.fx.Node) and isinstance(env.get(v.name), str) for v in (a, b)]
    if all(tensors):
        if target in _ADD:
            return em.add(node.name, env[a.name], env[b.name])
        raise UnsupportedOpError(
            f"node '{node.name}' ({_describe(node)}) combines two encrypted tensors with '{getattr(target, '__name__', target)}'; "
            "only the sum of two tensors is supported"
        )
    if tensors[0] and isinstance(b, Number):
        x, c = env[a.name], float(b)
        scale, shift = {
            True: (1.0, c) if target in _ADD else (1.0, -c) if target in _SUB else (c, 0.0) if target in _MUL else (1.0 / c, 0.0)
        }[True]
        return em.affine(node.name, x, np.float64(scale), np.float64(shift))
    if tensors[1] and isinstance(a, Number) and target in _ADD | _MUL | _SUB:
        x, c = env[b.name], float(a)
        scale, shift = (1.0, c) if target in _ADD else (c, 0.0) if target in _MUL else (-1.0, c)
        return em.affine(node.name, x, np.float64(scale), np.float64(shift))
    raise UnsupportedOpError(f"node '{node.name}' ({_describe(node)}) has arguments qfhe cannot compile: {node.args}")


def _np(p) -> np.ndarray | None:
    return None if p is None else p.detach().cpu().numpy().astype(np.float64)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_padding(node, mod) -> tuple:
    if isinstance(mod.padding, str):
        if mod.padding == "valid":
            return (0,) * len(mod.kernel_size)
        pads = []
        for k, d in zip(mod.kernel_size, mod.dilation):
            total = d * (k - 1)
            if total % 2:
                raise UnsupportedOpError(
                    f"node '{node.name}' uses padding='same' with an even kernel, which pads asymmetrically; pad explicitly"
                )
            pads.append(total // 2)
        return tuple(pads)
    return tuple(mod.padding)


def _avgpool(em, node, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor, shape, name=None) -> str:
    kernel = _pair(kernel)
    stride = kernel if stride is None or stride == [] else _pair(stride)
    padding = _pair(padding)
    if ceil_mode:
        raise UnsupportedOpError(f"node '{node.name}' uses AvgPool2d(ceil_mode=True); use ceil_mode=False")
    if any(padding) and not count_include_pad:
        raise UnsupportedOpError(
            f"node '{node.name}' uses AvgPool2d(count_include_pad=False) with padding; use count_include_pad=True"
        )
    channels = _input_shape(node)[0]
    div = divisor or kernel[0] * kernel[1]
    weight = np.full((channels, 1) + kernel, 1.0 / div)
    return em.conv(name or node.name, x, weight, None, stride, padding, (1, 1), channels, _input_shape(node), shape)


def _adaptive_avgpool(em, node, x, output_size, shape, name=None) -> str:
    c, h, w = _input_shape(node)
    oh, ow = _pair(output_size)
    oh, ow = oh or h, ow or w
    if h % oh or w % ow:
        raise UnsupportedOpError(
            f"node '{node.name}' uses AdaptiveAvgPool2d({(oh, ow)}) on a {h}x{w} input; qfhe needs the input size to be "
            "a multiple of the output size (uniform windows)"
        )
    k = (h // oh, w // ow)
    return _avgpool(em, node, x, k, k, 0, False, True, None, shape, name)


def _batchnorm(em, node, x, mod, name) -> str:
    if not mod.track_running_stats or mod.running_mean is None:
        raise UnsupportedOpError(f"node '{node.name}' is a BatchNorm without running statistics; set track_running_stats=True")
    var = mod.running_var.detach().double().numpy()
    mean = mod.running_mean.detach().double().numpy()
    gamma = _np(mod.weight) if mod.affine else np.ones_like(var)
    beta = _np(mod.bias) if mod.affine else np.zeros_like(var)
    scale = gamma / np.sqrt(var + mod.eps)
    shift = beta - mean * scale
    ndim = len(_input_shape(node))
    bshape = (1, -1) + (1,) * (ndim - 1)
    return em.affine(name, x, scale.reshape(bshape), shift.reshape(bshape))
