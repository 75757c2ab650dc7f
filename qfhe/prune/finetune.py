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


def fine_tune(model: nn.Module, train_loader, epochs: int = 5, lr: float = 1e-3, weight_decay: float = 0.0,
              optimizer: torch.optim.Optimizer | None = None, loss_fn: Callable | None = None,
              schedule: str = "cosine", val_data: tuple | None = None, metric: Callable | None = None,
              progress: bool = True) -> list[dict]:
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
        ``loss_fn(outputs, targets)``; default cross-entropy.
    schedule : {"cosine", "constant"}
        Learning-rate schedule over the epochs.
    val_data : (X, y), optional
        Evaluated after each epoch with ``metric``.
    metric : callable, optional
        ``metric(outputs, targets) -> float``; default accuracy.
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
    if schedule not in ("cosine", "constant"):
        raise ConfigurationError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=as_float("lr", lr, 0.0, 10.0),
                                        weight_decay=as_float("weight_decay", weight_decay, 0.0, 10.0, closed=True))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs) if schedule == "cosine" else None
    loss_fn = loss_fn or nn.functional.cross_entropy
    metric = metric or _accuracy
    history = []
    bar = tqdm(range(epochs), desc="fine-tuning", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        losses = []
        for xb, yb in train_loader:
            opt.zero_grad()
            loss = loss_fn(model(torch.as_tensor(xb, dtype=torch.float32)), torch.as_tensor(yb))
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
                row["metric"] = float(metric(model(torch.as_tensor(np.asarray(Xv), dtype=torch.float32)),
                                             torch.as_tensor(np.asarray(yv))))
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", **({"metric": f"{row['metric']:.4f}"} if "metric" in row else {}))
    model.eval()
    return history
