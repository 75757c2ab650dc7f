"""Structured pruning with torch-pruning: whole neurons and channels go, so there are fewer lookups.

torch-pruning's ``DependencyGraph`` keeps coupled layers consistent (Linear → Linear, Conv →
BatchNorm → Conv, residual adds, concatenation). The model's input and output dimensions are
never pruned. Brevitas layers subclass the torch layers torch-pruning knows; a Brevitas quantizer
with a per-channel parameter (per-channel weight or activation scales) would be left with the
wrong size, so such a model is refused with the layer named rather than pruned inconsistently.

Examples
--------
>>> import torch
>>> m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> small = prune_structured(m, torch.randn(2, 8), ratio=0.5)
>>> small[0].out_features, small[2].out_features
(8, 3)
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from qfhe.errors import ConfigurationError, UnsupportedOpError
from qfhe.validation import as_bool, as_float

IMPORTANCES = ("l1", "l2", "random")


def _importance(name: str):
    if name == "random":
        return tp.importance.RandomImportance()
    return tp.importance.MagnitudeImportance(p=1 if name == "l1" else 2)


def _output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The layers whose outputs reach the model output without another weighted layer between."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    last: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: last.append(mod)) for m in layers]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return last[-1:]


def _float_view(model: nn.Module):
    """Trace with Brevitas quantization switched off: torch-pruning then sees plain tensors (a
    QuantTensor hid the flatten between a trained conv and a linear layer from its graph)."""
    if not any(type(m).__module__.startswith("brevitas.") for m in model.modules()):
        return contextlib.nullcontext()
    from brevitas.graph.calibrate import quantization_status_manager

    return quantization_status_manager(
        model, disable_act_quant=True, disable_weight_quant=True, disable_bias_quant=True, is_training=False
    )


def _check_brevitas(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if not type(module).__module__.startswith("brevitas."):
            continue
        per_channel = [
            (pname, tuple(p.shape))
            for pname, p in module.named_parameters(recurse=True)
            if "quant" in pname and p.numel() > 1
        ]
        if hasattr(module, "quant_weight") and module.quant_weight().scale.numel() > 1:
            per_channel.append(("weight scale", tuple(module.quant_weight().scale.shape)))
        if per_channel:
            pname, shape = per_channel[0]
            raise UnsupportedOpError(
                f"layer '{name}' ({type(module).__name__}) has a per-channel quantizer parameter ({pname}, shape "
                f"{shape}), which torch-pruning would not resize: use per-tensor scales, or prune the float model "
                "before quantization-aware training"
            )


def _keep_one(model: nn.Module, ratio: float, ignored) -> dict:
    """Per-layer ratios that leave one neuron where ``ratio`` would leave none (torch-pruning then
    skips the layer altogether: ``ratio=0.95`` on 16 neurons used to prune nothing)."""
    out = {}
    for m in model.modules():
        width = getattr(m, "out_features", None) or getattr(m, "out_channels", None)
        if m in ignored or not isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) or not width:
            continue
        if int(width * (1 - ratio)) < 1:
            out[m] = (width - 1) / width - 1e-6 / width  # int(width * (1 - r)) == 1
    return out


def prune_structured(
    model: nn.Module, example_input, ratio: float = 0.5, importance: str = "l2", inplace: bool = False
) -> nn.Module:
    """Remove a fraction of the neurons/channels of every hidden layer, keeping the model consistent.

    Parameters
    ----------
    model : torch.nn.Module
        Float or Brevitas QAT model.
    example_input : array-like or torch.Tensor
        A couple of samples, to trace the dependency graph.
    ratio : float in [0, 1)
        Fraction of each hidden layer's output neurons/channels to remove; every layer keeps at
        least one.
    importance : {"l1", "l2", "random"}
        How channels are ranked (weight-magnitude norms) before the lowest are removed.
    inplace : bool
        Prune ``model`` itself; by default a deep copy is pruned and returned.

    Returns
    -------
    torch.nn.Module
        A physically smaller model with the same input and output sizes (training flag restored).

    Raises
    ------
    ConfigurationError
        For a ratio outside [0, 1) or an unknown importance.
    UnsupportedOpError
        If torch-pruning cannot trace the model, or a Brevitas layer has per-channel quantizer
        parameters (the message names it).

    Examples
    --------
    >>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
    ...                         torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 2))
    >>> small = prune_structured(m, torch.randn(2, 1, 6, 6), ratio=0.25)
    >>> small[0].out_channels, small[1].num_features, small[4].in_features
    (6, 6, 96)
    """
    ratio = as_float("ratio", ratio, 0.0, 1.0, closed=True)
    if ratio >= 1.0:
        raise ConfigurationError(f"ratio must be in [0, 1), got {ratio!r}: pruning every channel leaves no model")
    if importance not in IMPORTANCES:
        raise ConfigurationError(f"importance must be one of {IMPORTANCES}, got {importance!r}")
    masked = next((name for name, m in model.named_modules() if hasattr(m, "weight_mask")), None)
    if masked is not None:
        raise ConfigurationError(
            f"layer '{masked}' carries an unstructured pruning mask: prune_structured first, then "
            "prune_to_accumulator (or call qfhe.prune.remove_masks before structured pruning)"
        )
    target = model if as_bool("inplace", inplace) else copy.deepcopy(model)
    was_training = target.training
    target.eval()
    if ratio == 0.0:
        return target
    example = np.asarray(example_input, dtype=np.float32)
    if example.ndim < 2:
        raise ConfigurationError(
            f"example_input must have shape (n_samples, ...), got shape {example.shape}: pass a "
            "couple of samples, e.g. X[:2] (or x[None] for a single sample x)"
        )
    example = torch.as_tensor(example[:2])
    _check_brevitas(target)
    try:
        ignored = _output_layers(target, example)
        with warnings.catch_warnings():
            # about the tools' own internals, not the user's model: Brevitas' fx module and its
            # optional kernels, and the quantizer scales torch-pruning (rightly) leaves alone
            for message in ("brevitas.fx is deprecated", "fast_hadamard_transform", "Unwrapped parameters detected"):
                warnings.filterwarnings("ignore", message=f".*{message}")
            with _float_view(target):
                pruner = tp.pruner.MetaPruner(
                    target,
                    example,
                    importance=_importance(importance),
                    pruning_ratio=ratio,
                    pruning_ratio_dict=_keep_one(target, ratio, ignored),
                    ignored_layers=ignored,
                )
                pruner.step()
        target.eval()
        with torch.no_grad():
            target(example)  # the pruned model still runs
    except (UnsupportedOpError, ConfigurationError):
        raise
    except Exception as exc:  # torch-pruning raises many kinds when it cannot trace a model
        raise UnsupportedOpError(
            f"torch-pruning could not prune {type(model).__name__}: {type(exc).__name__}: {exc}. Structured pruning "
            "needs a model torch-pruning can trace (standard Linear/Conv/BatchNorm layers, adds, concatenation)"
        ) from exc
    target.train(was_training)
    return target
