"""Run by `make wheel-check` in a fresh virtual environment holding only the built wheel and its dependencies.

It must not see the source tree: it checks that the installed package imports, that its data files were
packaged, that the console script is installed, and that a small model compiles and simulates.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import qfhe

here = Path(qfhe.__file__).resolve().parent
assert "site-packages" in str(here), f"qfhe imported from {here}, not from the installed wheel"
assert (here / "deploy" / "concrete_wire.capnp").is_file(), "package data missing: concrete_wire.capnp"
assert json.loads((here / "ckks" / "cost_model.json").read_text()), "package data missing: cost_model.json"
cli = shutil.which("qfhe", path=str(Path(sys.executable).parent))
assert cli, "the qfhe console script is not installed"
subprocess.run([cli, "--help"], check=True, capture_output=True)

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
X = np.random.RandomState(0).randn(100, 4).astype(np.float32)
qm = qfhe.compile_torch_model(model, X, n_bits=4, rounding_threshold_bits=5)
assert np.array_equal(qm.forward(X[:10]), qm.forward(X[:10], fhe="simulate"))
print(f"wheel ok: qfhe {qfhe.__version__} from {here}, {qm.statistics['pbs_count']} PBS")
