"""The Brevitas MLP behind the neural-network estimators, and its seeded training loop.

Each hidden layer is ``QuantLinear → BatchNorm1d → activation quantizer``. BatchNorm sits between
the accumulator and the quantizer, so it fuses into the table lookup and costs no accumulator
bit. The per-neuron accumulator bound is a ``torch.nn.utils.prune`` mask from
:func:`qfhe.prune.prune_to_accumulator`, fixed after a dense warm-up and kept by every optimizer
step (:func:`qfhe.prune.reapply_masks`).

Examples
--------
>>> m = QuantMLP(4, 3, hidden_sizes=(8,), n_input_bits=4, n_w_bits=3, n_a_bits=3)
>>> [type(layer).__name__ for layer in m.layers]
['QuantLinear', 'BatchNorm1d', 'QuantReLU', 'QuantLinear']
"""

from __future__ import annotations

import math
from typing import Callable

import brevitas.nn as qnn
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from qfhe.errors import ConfigurationError
from qfhe.prune import prune_to_accumulator, reapply_masks, remove_masks

#: Activation names and the torch modules they stand for (ReLU has a native Brevitas quantizer).
ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "hardtanh": nn.Hardtanh,
}


def activation_class(activation) -> type:
    """The torch activation class for a name or a class (``"relu"``, ``torch.nn.Tanh``, ...).

    Examples
    --------
    >>> activation_class("tanh").__name__, activation_class(nn.ReLU).__name__
    ('Tanh', 'ReLU')
    """
    if isinstance(activation, str) and activation.lower() in ACTIVATIONS:
        return ACTIVATIONS[activation.lower()]
    if isinstance(activation, type) and activation in ACTIVATIONS.values():
        return activation
    raise ConfigurationError(
        f"activation_function must be one of {sorted(ACTIVATIONS)} or the torch class (e.g. torch.nn.ReLU), "
        f"got {activation!r}"
    )


class QuantMLP(nn.Module):
    """``QuantIdentity`` on the (standardised) input, then hidden blocks, then a ``QuantLinear``.

    Parameters
    ----------
    n_in, n_out : int
        Input features and outputs (classes, or regression targets).
    hidden_sizes : sequence of int
        Width of each hidden layer.
    n_input_bits, n_w_bits, n_a_bits : int
        Input quantizer, weight and activation bit-widths.
    activation : str or type
        See :func:`activation_class`.

    Examples
    --------
    >>> m = QuantMLP(4, 2, (8, 8), 4, 2, 2, "tanh")
    >>> m(torch.randn(3, 4)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self, n_in: int, n_out: int, hidden_sizes, n_input_bits: int, n_w_bits: int, n_a_bits: int, activation="relu"
    ):
        super().__init__()
        #: the constructor's arguments: with ``state_dict()`` they rebuild the model (Brevitas modules
        #: themselves cannot be pickled)
        self.spec = dict(
            n_in=n_in,
            n_out=n_out,
            hidden_sizes=tuple(hidden_sizes),
            n_input_bits=n_input_bits,
            n_w_bits=n_w_bits,
            n_a_bits=n_a_bits,
            activation=activation,
        )
        act = activation_class(activation)
        # Standardised features are signed: a signed input quantizer spends codes on both sides.
        self.quant_in = qnn.QuantIdentity(bit_width=n_input_bits, return_quant_tensor=True)
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden_sizes:
            layers += [qnn.QuantLinear(width, h, bias=True, weight_bit_width=n_w_bits), nn.BatchNorm1d(h)]
            if act is nn.ReLU:
                layers.append(qnn.QuantReLU(bit_width=n_a_bits, return_quant_tensor=True))
            else:
                layers += [act(), qnn.QuantIdentity(bit_width=n_a_bits, return_quant_tensor=True)]
            width = h
        layers.append(qnn.QuantLinear(width, n_out, bias=True, weight_bit_width=n_w_bits))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        """Logits (or standardised regression outputs).

        Examples
        --------
        >>> QuantMLP(2, 1, (), 4, 3, 3)(torch.zeros(1, 2)).shape
        torch.Size([1, 1])
        """
        return self.layers(self.quant_in(x))


def to_state(module: QuantMLP) -> dict:
    """Plain data (constructor arguments and tensors) from which :func:`from_state` rebuilds ``module``.

    Examples
    --------
    >>> m = QuantMLP(3, 2, (4,), 4, 3, 3).eval()
    >>> x = torch.randn(5, 3)
    >>> bool((from_state(to_state(m))(x) == m(x)).all())
    True
    """
    # the widths the module has now: structured pruning shrinks layers after the spec was written
    hidden = tuple(m.out_features for m in module.layers if isinstance(m, nn.Linear))[:-1]
    return {
        "spec": {**module.spec, "hidden_sizes": hidden},
        "state_dict": {k: v.detach().clone() for k, v in module.state_dict().items()},
    }


def from_state(state: dict) -> QuantMLP:
    """The module :func:`to_state` described, in eval mode.

    Examples
    --------
    >>> from_state(to_state(QuantMLP(3, 2, (), 4, 3, 3))).training
    False
    """
    module = QuantMLP(**state["spec"])
    missing, unexpected = module.load_state_dict(state["state_dict"], strict=False)
    # Brevitas leaves out the scale of a quantizer that never saw data; the fresh one is the same
    if unexpected or any(not k.endswith("scaling_impl.value") for k in missing):
        raise ValueError(f"the state does not match the model: missing {missing}, unexpected {unexpected}")
    return module.eval()


def train_module(
    module: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    loss_fn: Callable,
    *,
    lr: float,
    max_epochs: int,
    batch_size: int,
    weight_decay: float,
    seed: int,
    n_accum_bits: int | None,
    warmup: float,
    verbose: bool,
    desc: str = "training",
    sample_weight=None,
) -> list[dict]:
    """AdamW with a cosine schedule; per-neuron accumulator masks fixed after ``warmup`` of the epochs.

    ``loss_fn`` may return one loss per sample (then ``sample_weight`` weights them) or their mean.

    The batch order comes from ``seed`` alone (a private generator). The masks are made permanent at the end (zeros stay, no ``weight_orig``).

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss``, ``lr``, ``masked``.

    Examples
    --------
    >>> m = QuantMLP(4, 2, (8,), 4, 3, 3)
    >>> X, y = np.random.RandomState(0).randn(40, 4), np.arange(40) % 2
    >>> h = train_module(m, X, y, nn.functional.cross_entropy, lr=1e-2, max_epochs=2, batch_size=16,
    ...                  weight_decay=0.0, seed=0, n_accum_bits=8, warmup=0.0, verbose=False)
    >>> [r["masked"] for r in h], int((m.layers[0].weight != 0).sum(1).max()) <= 8
    ([True, True], True)
    """
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y)
    wt = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight), dtype=torch.float32)
    n = len(Xt)
    generator = torch.Generator().manual_seed(seed)
    # decoupled decay: Adam's L2 form shrinks rarely-updated weights least, which 2-bit nets on small
    # tabular sets overfit with (5 splits, width 64, batches of 32: breast_cancer 0.961 -> 0.968, iris
    # 0.967 -> 0.987 against Adam without decay; docs/guides/estimators.md)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max_epochs)
    mask_epoch = int(math.floor(warmup * max_epochs)) if n_accum_bits is not None else None
    history = []
    bar = tqdm(range(max_epochs), desc=desc, unit="epoch", disable=not verbose)
    for epoch in bar:
        if epoch == mask_epoch:
            prune_to_accumulator(module, n_accum_bits, example_input=X[:2], inplace=True)
        module.train()
        order = torch.randperm(n, generator=generator)
        losses = []
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2 and start > 0:  # BatchNorm cannot train on one sample
                continue
            opt.zero_grad()
            per_sample = loss_fn(module(Xt[idx]), yt[idx])
            if wt is None:
                loss = per_sample.mean()
            else:  # a weighted mean over the batch (a batch of zero weights teaches nothing)
                w = wt[idx]
                loss = (per_sample * w).sum() / w.sum().clamp_min(1e-12)
            loss.backward()
            opt.step()
            reapply_masks(module)
            losses.append(float(loss.detach()))
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)),
                "lr": opt.param_groups[0]["lr"],
                "masked": mask_epoch is not None and epoch >= mask_epoch,
            }
        )
        sched.step()
        bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
    if mask_epoch is not None and mask_epoch >= max_epochs:  # a warm-up as long as training: mask at the end
        prune_to_accumulator(module, n_accum_bits, example_input=X[:2], inplace=True)
    remove_masks(module)
    module.eval()
    return history
