"""Every Python snippet of the README and the docs runs, page by page, in the context its text describes.

The blocks of one page run in order in one namespace, as a reader would run them. Where a page says what the
reader already has ("`model` is a trained torch model, `X_calib` ..."), ``CONTEXT`` builds exactly that, small:
the snippets themselves run as written. Snippets are real: keys are generated and samples encrypted.
"""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _snippets(page):
    return BLOCK.findall((ROOT / page).read_text())


def _trained_mlp(n_in, n_out, X, y, hidden=16, act=nn.ReLU, steps=150):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(n_in, hidden), act(), nn.Linear(hidden, n_out))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    return model.eval()


def _blobs(n=300, n_features=8, n_classes=3, seed=0):
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n, n_features, n_informative=5, n_classes=n_classes, n_clusters_per_class=1, random_state=seed
    )
    return X.astype(np.float32), y


def _torch_context():
    import qfhe

    X, y = _blobs()
    return {"qfhe": qfhe, "model": _trained_mlp(8, 3, X, y), "X_calib": X[:200], "X": X[200:]}


def _qat_context():
    from qat_models import QMLP, calibrate

    X, y = _blobs(n_features=10, n_classes=4)
    torch.manual_seed(0)
    qat = calibrate(QMLP(n_in=10, hidden=16, n_out=4, bits=3), torch.tensor(X[:200]))
    import qfhe

    return {"qfhe": qfhe, "qat_model": qat, "X_calib": X[:200], "X": X[200:]}


def _pruning_context():
    ctx = _qat_context()
    X, y = _blobs(n_features=10, n_classes=4)
    data = torch.utils.data.TensorDataset(torch.tensor(X[:64]), torch.tensor(y[:64]))
    ctx["train_loader"] = torch.utils.data.DataLoader(data, batch_size=32)
    ctx["model"] = _trained_mlp(10, 4, X, y)
    return ctx


def _estimators_context():
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    import qfhe

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    X_train, X_val, y_train, y_val = train_test_split(X_train, y_train, test_size=0.25, random_state=0)
    return {
        "qfhe": qfhe,
        "X_train": X_train,
        "y_train": y_train,
        "X_test": X_test[:40],
        "y_test": y_test[:40],
        "X_val": X_val,
        "y_val": y_val,
        "fitted_sklearn_model": LogisticRegression(max_iter=5000).fit(X_train, y_train),
        "fitted_sklearn_forest": RandomForestClassifier(5, max_depth=3, random_state=0).fit(X_train, y_train),
    }


def _tuning_context():
    import qfhe

    X, y = _blobs(n=500, n_features=8, n_classes=3, seed=1)
    return {"qfhe": qfhe, "model": _trained_mlp(8, 3, X, y), "X_calib": X[:250], "X_val": X[250:], "y_val": y[250:]}


def _ckks_context():
    import qfhe

    X, y = _blobs(n_features=8, n_classes=2)
    model = _trained_mlp(8, 2, X, y, hidden=8, act=nn.GELU)
    return {"qfhe": qfhe, "model": model, "X_calib": X[:200], "X": X[200:], "example_input": torch.tensor(X[:64])}


def _onnx_context():
    ctx = _torch_context()
    import qfhe

    return {**ctx, "qfhe": qfhe, "torch": torch, "example_batch": torch.zeros(1, 8)}


def _deployment_context():
    import qfhe

    ctx = _torch_context()
    ctx["qm"] = qfhe.compile_torch_model(ctx["model"], ctx["X_calib"], n_bits=4, rounding_threshold_bits=5)
    return ctx


def _compile_context():
    return _torch_context()


CONTEXT = {
    "docs/guides/compile.md": _compile_context,
    "docs/guides/qat.md": _qat_context,
    "docs/guides/pruning.md": _pruning_context,
    "docs/guides/estimators.md": _estimators_context,
    "docs/guides/tuning.md": _tuning_context,
    "docs/guides/ckks.md": _ckks_context,
    "docs/guides/onnx.md": _onnx_context,
    "docs/guides/deployment.md": _deployment_context,
}


def test_every_page_with_snippets_is_run():
    with_snippets = {p for p in PAGES if _snippets(p)}
    assert with_snippets >= {"README.md", "docs/getting-started.md"}
    assert set(CONTEXT) <= with_snippets, "a CONTEXT entry for a page without snippets"


@pytest.mark.parametrize("page", [p for p in PAGES if _snippets(p)])
def test_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # artifacts/, keys/ and model.onnx land in a temporary directory
    namespace = CONTEXT.get(page, dict)()
    namespace["__name__"] = "__docs__"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pages' own data may warn (small calibration sets); the code must run
        for i, code in enumerate(_snippets(page)):
            exec(compile(code, f"{page} (snippet {i + 1})", "exec"), namespace)  # noqa: S102 - the docs' own code
