"""Per-neuron unstructured pruning to an accumulator width, with a guarantee.

Each output neuron (or convolution output channel) keeps its k largest-magnitude weights, k from
:func:`qfhe.prune.bound.max_inputs` for that layer's own weight and input code ranges. The ranges
come from qfhe's own importer (the graph ``compile_*`` would build): for a Brevitas model, the
weight quantizer's bit-width and narrow range, and the quantizer that feeds the layer; for a float
model, ``n_bits`` as post-training quantization would use them. Masks are
``torch.nn.utils.prune`` masks, which the optimizer cannot undo; :func:`remove_masks` makes them
permanent.

Examples
--------
>>> import torch
>>> m = torch.nn.Sequential(torch.nn.Linear(16, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> pruned = prune_to_accumulator(m, n_accum_bits=9, n_bits=3)
>>> int((pruned[0].weight != 0).sum(dim=1).max())
12
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from qfhe.errors import ConfigurationError, UnsupportedOpError
from qfhe.frontend.brevitas import import_brevitas
from qfhe.frontend.torch_fx import import_torch
from qfhe.ir.graph import Graph, Node
from qfhe.prune.bound import input_code_range, max_inputs, weight_code_range, worst_case_bits
from qfhe.quant.config import parse_n_bits
from qfhe.report import Table
from qfhe.validation import as_bool, as_int

#: Activations whose output is never negative: PTQ gives them zero point 0.
NONNEGATIVE = {"relu", "relu6", "sigmoid", "hardsigmoid", "softplus"}


@dataclass(frozen=True)
class LayerRange:
    """What bounds one layer's accumulator: its module, weight codes, input codes, integer bias.

    Examples
    --------
    >>> r = LayerRange("fc", torch.nn.Linear(2, 1), (-3, 3), (0, 7), np.zeros(1, np.int64))
    >>> max_inputs(8, r.weight, r.inputs)
    6
    """

    name: str
    module: nn.Module
    weight: tuple[int, int]
    inputs: tuple[int, int]
    bias: np.ndarray  # per output neuron (zeros when the bias is not in the accumulator)


class PruningReport(Table):
    """Per layer: fan-in, the bound k, the most non-zero weights a neuron has, and the worst-case
    accumulator width those give (``str()`` is a table).

    Examples
    --------
    >>> print(PruningReport([{"layer": "fc1", "fan_in": 64, "k": 6, "max_nonzero": 6, "kept": 0.09,
    ...                       "worst_case_bits": 8}]))
    layer  fan_in  k  max_nonzero  kept  worst_case_bits
    fc1        64  6            6  0.09                8
    """

    COLUMNS = ("layer", "fan_in", "k", "max_nonzero", "kept", "worst_case_bits")


def _is_brevitas(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("brevitas.") for m in model.modules())


def _sample(model: nn.Module, example_input) -> torch.Tensor:
    if example_input is not None:
        return torch.as_tensor(np.asarray(example_input, dtype=np.float32)[:2])
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))), None)
    if isinstance(first, nn.Linear):
        return torch.zeros(2, first.in_features)
    raise ConfigurationError(
        "example_input is needed to trace this model (its first layer is not a Linear layer): pass a few samples, "
        "e.g. example_input=X_train[:2]"
    )


def _source(graph: Graph, name: str) -> Node:
    node = graph[name]
    while node.op == "reshape":
        node = graph[node.inputs[0]]
    return node


def layer_ranges(model: nn.Module, example_input=None, n_bits=6) -> list[LayerRange]:
    """The weight and input code ranges of every prunable layer, as qfhe will compile it.

    Parameters
    ----------
    model : torch.nn.Module
        A Brevitas QAT model or a float model.
    example_input : array-like, optional
        A couple of samples; needed unless the first layer is a ``Linear``.
    n_bits : int or dict
        Float models only: the bit-widths post-training quantization will use (as in
        :func:`qfhe.compile_torch_model`).

    Raises
    ------
    UnsupportedOpError
        For a Brevitas layer whose input has no quantizer (the message names the layer).

    Examples
    --------
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> [(r.name, r.weight, r.inputs) for r in layer_ranges(m, n_bits=3)]
    [('0', (-3, 3), (-7, 7)), ('2', (-3, 3), (0, 7))]
    """
    qat = _is_brevitas(model)
    graph = (import_brevitas if qat else import_torch)(model, _sample(model, example_input))
    modules = dict(model.named_modules())
    nb = None if qat else parse_n_bits(n_bits)
    out = []
    for node in graph.nodes:
        module = modules.get(node.name)
        if node.op not in ("gemm", "conv") or not isinstance(getattr(module, "weight", None), torch.Tensor):
            continue  # pooling sums, repeated calls of a module
        n_out = module.weight.shape[0]
        src = _source(graph, node.inputs[0])
        bias = np.zeros(n_out, dtype=np.int64)
        if qat:
            if src.op != "fakequant":
                raise UnsupportedOpError(
                    f"layer '{node.name}' reads a value without a quantizer ('{src.name}', {src.op}), so its input "
                    "range is unknown: put a QuantIdentity or a quantized activation before it"
                )
            a = src.attrs
            inputs = (a["qmin"] - a["zero_point"], a["qmax"] - a["zero_point"])
            weight = weight_code_range(int(module.quant_weight().bit_width), bool(module.weight_quant.is_narrow_range))
            if node.attrs.get("bias_at_acc_scale") and node.attrs.get("bias") is not None:
                scale = a["scale"] * np.reshape(node.attrs["weight_scale"], -1)
                bias = np.rint(np.reshape(node.attrs["bias"], -1) / scale).astype(np.int64)
        else:
            first = src.op == "input"
            bits = nb.model_inputs if first else nb.op_inputs
            nonneg = src.op == "activation" and src.attrs["fn"] in NONNEGATIVE
            lo, hi = input_code_range(bits)
            inputs = (lo, hi) if nonneg else (-hi, hi)  # the zero point may sit anywhere in the codes
            weight = weight_code_range(nb.op_weights)
        out.append(LayerRange(node.name, module, weight, inputs, bias))
    return out


def _effective_weight(module: nn.Module) -> torch.Tensor:
    w = module.weight
    if hasattr(module, "weight_mask"):
        w = module.weight_orig * module.weight_mask
    return w.detach()


def prune_to_accumulator(
    model: nn.Module, n_accum_bits: int, example_input=None, n_bits=6, inplace: bool = False
) -> nn.Module:
    """Keep, in every neuron, only as many weights as its accumulator can sum within ``n_accum_bits``.

    For each ``Linear``/``Conv`` output neuron or channel (for a convolution the candidates are
    all its ``in_channels / groups x kernel`` weights) the k largest-magnitude weights stay, k
    computed exactly for that layer (:func:`qfhe.prune.bound.max_inputs`), including an integer
    bias Brevitas adds at the accumulator's scale. With ``bitwidth_method="interval"`` and no
    rounding, the compiled circuit then has no accumulator wider than ``n_accum_bits``, for every
    input. For a float model the bound is the post-training one for ``n_bits`` (inputs of a
    layer after a non-negative activation have zero point 0; others are bounded for any zero
    point); the bias PTQ adds at the accumulator's scale is not known before calibration and is
    not covered.

    Parameters
    ----------
    model : torch.nn.Module
        Brevitas QAT model, or float model.
    n_accum_bits : int
        Target accumulator width (sign included).
    example_input : array-like, optional
        A couple of samples (needed unless the first layer is ``Linear``).
    n_bits : int or dict
        Float models only, as in :func:`qfhe.compile_torch_model`.
    inplace : bool
        Prune ``model`` itself; by default a deep copy is pruned and returned.

    Returns
    -------
    torch.nn.Module
        The pruned model; its masks are ``torch.nn.utils.prune`` masks (see :func:`remove_masks`).

    Raises
    ------
    ConfigurationError
        If a layer cannot fit even one input in ``n_accum_bits`` (names the layer and the minimum).

    Examples
    --------
    >>> m = torch.nn.Sequential(torch.nn.Linear(32, 2))
    >>> p = prune_to_accumulator(m, n_accum_bits=9, n_bits=3)
    >>> int((p[0].weight != 0).sum(dim=1).max()), int((m[0].weight != 0).sum(dim=1).max())
    (12, 32)
    """
    n_acc = as_int("n_accum_bits", n_accum_bits, 2, 32)
    target = model if as_bool("inplace", inplace) else copy_model(model)
    for layer in layer_ranges(target, example_input, n_bits):
        w = _effective_weight(layer.module)
        rows = w.reshape(w.shape[0], -1)
        fan_in = rows.shape[1]
        ks = [max_inputs(n_acc, layer.weight, layer.inputs, int(b)) for b in layer.bias]
        if min(ks) == 0:
            need = max(worst_case_bits(1, layer.weight, layer.inputs, int(b)) for b in layer.bias)
            raise ConfigurationError(
                f"n_accum_bits={n_acc} is too small for layer '{layer.name}': one {layer.weight} weight times one "
                f"{layer.inputs} input already needs {need} bits. Use n_accum_bits >= {need}, or fewer weight/input bits"
            )
        if min(ks) >= fan_in:
            continue
        mask = torch.zeros_like(rows)
        for j, k in enumerate(ks):
            keep = torch.topk(rows[j].abs(), min(k, fan_in)).indices
            mask[j, keep] = 1.0
        prune.custom_from_mask(layer.module, "weight", mask.reshape(w.shape))
    return target


def accumulator_report(
    model: nn.Module, n_accum_bits: int | None = None, example_input=None, n_bits=6
) -> PruningReport:
    """Per layer: fan-in, the bound k for ``n_accum_bits``, the most non-zero weights any neuron
    has now, the fraction of weights kept, and the worst-case accumulator width.

    Examples
    --------
    >>> m = torch.nn.Sequential(torch.nn.Linear(32, 2))
    >>> r = accumulator_report(prune_to_accumulator(m, 9, n_bits=3), 9, n_bits=3)
    >>> r[0]["max_nonzero"] <= r[0]["k"], r[0]["worst_case_bits"] <= 9
    (True, True)
    """
    rows = []
    for layer in layer_ranges(model, example_input, n_bits):
        w = _effective_weight(layer.module)
        flat = w.reshape(w.shape[0], -1)
        nonzero = (flat != 0).sum(dim=1).numpy()
        worst = max(worst_case_bits(int(n), layer.weight, layer.inputs, int(b)) for n, b in zip(nonzero, layer.bias))
        k = (
            None
            if n_accum_bits is None
            else min(max_inputs(n_accum_bits, layer.weight, layer.inputs, int(b)) for b in layer.bias)
        )
        rows.append(
            {
                "layer": layer.name,
                "fan_in": flat.shape[1],
                "k": k,
                "max_nonzero": int(nonzero.max()),
                "kept": round(float((flat != 0).float().mean()), 3),
                "worst_case_bits": worst,
            }
        )
    return PruningReport(rows)


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy that also works on a model with pruning masks.

    A masked module's ``weight`` is computed from ``weight_orig * weight_mask``, a non-leaf tensor
    that ``copy.deepcopy`` refuses; it is detached before copying and recomputed in the copy.

    Examples
    --------
    >>> m = prune_to_accumulator(torch.nn.Sequential(torch.nn.Linear(32, 2)), 9, n_bits=3)
    >>> bool((copy_model(m)[0].weight == m[0].weight).all())
    True
    """
    for module in model.modules():
        if hasattr(module, "weight_mask"):
            module.weight = module.weight.detach()
    twin = copy.deepcopy(model)
    reapply_masks(model)
    reapply_masks(twin)
    return twin


def remove_masks(model: nn.Module) -> nn.Module:
    """Make pruning masks permanent: the zeros stay, the ``weight_orig``/``weight_mask`` pair goes.

    Examples
    --------
    >>> m = prune_to_accumulator(torch.nn.Sequential(torch.nn.Linear(32, 2)), 9, n_bits=3)
    >>> hasattr(remove_masks(m)[0], "weight_mask")
    False
    """
    for module in model.modules():
        if hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    return model


def reapply_masks(model: nn.Module) -> None:
    """Recompute every masked weight from ``weight_orig * weight_mask`` (after an optimizer step).

    torch applies a mask at the next forward; calling this right after the step keeps the
    module's ``weight`` exact at all times (e.g. when it is read without a forward).

    Examples
    --------
    >>> m = prune_to_accumulator(torch.nn.Sequential(torch.nn.Linear(32, 2)), 9, n_bits=3)
    >>> reapply_masks(m)
    """
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                hook(module, None)
