"""``fine_tune``: a plain training loop that keeps pruning masks applied.

Examples
--------
>>> import torch
>>> X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
>>> loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
>>> hist = fine_tune(torch.nn.Linear(4, 2), loader, epochs=2, progress=False)
>>> len(hist), sorted(hist[0])
(2, ['epoch', 'loss', 'lr'])
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from qfhe.errors import ConfigurationError
from qfhe.prune.unstructured import reapply_masks
from qfhe.validation import as_float, as_int


def _accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float((outputs.argmax(1) == targets).float().mean())


def _neg_mse(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return -float(nn.functional.mse_loss(outputs.reshape(targets.shape).float(), targets.float()))


def _regression_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(outputs.reshape(targets.shape), targets.to(outputs.dtype))


def _is_regression(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """One output column, or float targets: a regression; class indices against several outputs: not."""
    return outputs.ndim < 2 or outputs.shape[1] == 1 or targets.is_floating_point()


def _check_loader(train_loader) -> None:
    if (
        isinstance(train_loader, tuple)
        and len(train_loader) == 2
        and all(isinstance(a, (np.ndarray, torch.Tensor)) for a in train_loader)
    ):
        raise ConfigurationError(
            "train_loader must be an iterable of (inputs, targets) batches, e.g. a torch DataLoader; got one "
            "(X, y) tuple, which would be read as two batches: pass [(X, y)] for one batch, or a DataLoader"
        )


def fine_tune(
    model: nn.Module,
    train_loader,
    epochs: int = 5,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: Callable | None = None,
    schedule: str = "cosine",
    val_data: tuple | None = None,
    metric: Callable | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train ``model`` for a few epochs; pruning masks stay applied after every optimizer step.

    Parameters
    ----------
    model : torch.nn.Module
        Pruned (or not) float or Brevitas model; trained in place and left in eval mode.
    train_loader : iterable of (inputs, targets)
        E.g. a ``torch.utils.data.DataLoader``.
    epochs : int
    lr, weight_decay : float
        Adam's settings (ignored when ``optimizer`` is given).
    optimizer : torch.optim.Optimizer, optional
        Default: Adam over the model's parameters.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets)``. Default, from the first batch: cross-entropy for class
        indices against several outputs, mean squared error for one output column or float
        targets (cross-entropy over one output is always 0 and would train nothing, so it is
        refused).
    schedule : {"cosine", "constant"}
        Learning-rate schedule over the epochs.
    val_data : (X, y), optional
        Evaluated after each epoch with ``metric``.
    metric : callable, optional
        ``metric(outputs, targets) -> float``; default accuracy, or minus the mean squared error
        for a regression.
    progress : bool
        Show a tqdm bar over epochs.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss`` (mean training loss), ``lr``, and ``metric`` with ``val_data``.

    Examples
    --------
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> h = fine_tune(torch.nn.Linear(3, 2), [(X, y)], epochs=1, val_data=(X, y), progress=False)
    >>> 0 <= h[0]["metric"] <= 1
    True
    """
    epochs = as_int("epochs", epochs, 1)
    _check_loader(train_loader)
    if schedule not in ("cosine", "constant"):
        raise ConfigurationError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    opt = optimizer or torch.optim.Adam(
        model.parameters(),
        lr=as_float("lr", lr, 0.0, 10.0),
        weight_decay=as_float("weight_decay", weight_decay, 0.0, 10.0, closed=True),
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs) if schedule == "cosine" else None
    chosen_loss, chosen_metric = loss_fn, metric
    metric = metric or _accuracy  # replaced at the first batch
    history: list[dict] = []
    bar = tqdm(range(epochs), desc="fine-tuning", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        losses = []
        for xb, yb in train_loader:
            opt.zero_grad()
            out, yb = model(torch.as_tensor(xb, dtype=torch.float32)), torch.as_tensor(yb)
            if not history and not losses:  # the first batch tells a regression from a classification
                loss_fn, metric = _defaults(out, yb, chosen_loss, chosen_metric)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            reapply_masks(model)
            losses.append(float(loss.detach()))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": opt.param_groups[0]["lr"]}
        if sched is not None:
            sched.step()
        if val_data is not None:
            model.eval()
            with torch.no_grad():
                Xv, yv = val_data
                row["metric"] = float(
                    metric(model(torch.as_tensor(np.asarray(Xv), dtype=torch.float32)), torch.as_tensor(np.asarray(yv)))
                )
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", **({"metric": f"{row['metric']:.4f}"} if "metric" in row else {}))
    model.eval()
    return history


def _defaults(out: torch.Tensor, yb: torch.Tensor, loss_fn, metric):
    regression = _is_regression(out, yb)
    if loss_fn is nn.functional.cross_entropy and (out.ndim < 2 or out.shape[1] == 1):
        raise ConfigurationError(
            "loss_fn=cross_entropy over a model with one output is always 0 and trains nothing: "
            "use a regression loss (the default picks mean squared error)"
        )
    return (
        loss_fn or (_regression_mse if regression else nn.functional.cross_entropy),
        metric or (_neg_mse if regression else _accuracy),
    )
