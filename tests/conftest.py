"""Shared fixtures: small models, the digits data set, and a test-only concrete configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from qfhe._concrete import fhe  # qfhe's import: without concrete's exit-status hook


@pytest.fixture(scope="session")
def fhe_config(tmp_path_factory):
    """Insecure key cache: cheap keygen. Tests only, never in the library or examples."""
    return fhe.Configuration(
        enable_unsafe_features=True,
        use_insecure_key_cache=True,
        insecure_key_cache_location=str(tmp_path_factory.mktemp("keycache")),
    )


@pytest.fixture(scope="session")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


def train(model: nn.Module, X, y, epochs: int = 150, lr: float = 1e-2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    return model.eval()


def accuracy(logits, y) -> float:
    return float((np.asarray(logits).argmax(1) == y).mean())


@pytest.fixture(scope="session")
def digits_mlp(digits):
    """The issue's 64-64-64-10 ReLU MLP, trained in the clear."""
    Xtr, _, ytr, _ = digits
    return train_digits_mlp(Xtr, ytr)


def train_digits_mlp(X, y) -> nn.Module:
    """The 64-64-64-10 ReLU MLP, seeded, trained on ``X, y``."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return train(m, X, y)


class ResidualMLP(nn.Module):
    """Two ReLU layers with a residual add: fc3(h + relu(fc2(h))), h = relu(fc1(x))."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.fc3(h + torch.relu(self.fc2(h)))


class SmallCNN(nn.Module):
    """Conv + BatchNorm + residual add + average pooling + flatten + linear, on 1x6x6 images."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(2 * 3 * 3, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv1(x)))
        x = self.pool(x + torch.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


@pytest.fixture(scope="session")
def small_cnn():
    torch.manual_seed(1)
    m = SmallCNN().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.3, 0.3)
        m.bn.running_var.uniform_(0.5, 1.5)
    X = np.random.RandomState(0).randn(64, 1, 6, 6)
    return m, X
