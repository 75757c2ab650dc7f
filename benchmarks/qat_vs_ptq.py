"""QAT (Brevitas, 2/3/4 bits) against PTQ (6 bits) on the same digits MLP, measured in one run.

Same architecture (64-64-64-10, ReLU) and data for every row. Each row is compiled with
``rounding_threshold_bits=6`` (rows whose accumulators are narrower are not rounded) and reports
accuracy (float model, Brevitas fake-quant, simulated circuit), accumulator and max bit-width, PBS
count, keygen time and FHE seconds per sample (``--n-exec`` encrypted samples).

    python benchmarks/qat_vs_ptq.py [--n-exec 2] [--epochs 300]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

import qfhe

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, table, write_json  # noqa: E402


def _load_example(name):
    spec = importlib.util.spec_from_file_location(name, HERE.parent / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


qat_mlp = _load_example("qat_mlp")
digits_mlp = _load_example("digits_mlp")

COLUMNS = [
    ("config", "configuration"),
    ("acc_float", "acc float model"),
    ("acc_brevitas", "acc Brevitas"),
    ("acc_sim", "acc simulated"),
    ("acc_bits", "accumulator bits"),
    ("tlu_bits", "max TLU bits"),
    ("max_bit_width", "max bit-width"),
    ("pbs_count", "PBS"),
    ("keygen_s", "keygen s"),
    ("fhe_s_per_sample", "FHE s/sample"),
]


def measure(qm, Xte, yte, n_exec: int) -> dict:
    rows = qm.bitwidth_report()
    st = qm.statistics
    row = {
        "acc_sim": qat_mlp.accuracy(qm.forward(Xte, fhe="simulate"), yte),
        "acc_bits": max(r["acc_bits"] for r in rows),
        "tlu_bits": max(r["tlu_bits"] for r in rows if r["tlu_bits"] is not None),
        "max_bit_width": st["max_bit_width"],
        "pbs_count": st["pbs_count"],
    }
    start = time.perf_counter()
    qm.fhe_circuit.keygen()
    row["keygen_s"] = time.perf_counter() - start
    start = time.perf_counter()
    qm.forward(Xte[:n_exec], fhe="execute")
    row["fhe_s_per_sample"] = (time.perf_counter() - start) / n_exec
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-exec", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args(argv)
    Xtr, Xte, ytr, yte = qat_mlp.load_data()

    float_model = digits_mlp.train_mlp(Xtr, ytr, epochs=args.epochs)
    with torch.no_grad():
        acc_float = qat_mlp.accuracy(float_model(torch.tensor(Xte, dtype=torch.float32)), yte)

    results = []
    ptq = qfhe.compile_torch_model(float_model, Xtr, n_bits=6, rounding_threshold_bits=6)
    results.append({"config": "PTQ 6 bits (baseline)", "acc_float": acc_float, **measure(ptq, Xte, yte, args.n_exec)})
    print("done: PTQ", flush=True)
    for bits in (2, 3, 4):
        model = qat_mlp.train_qat(Xtr, ytr, bits=bits, epochs=args.epochs)
        with torch.no_grad():
            acc_b = qat_mlp.accuracy(model(torch.tensor(Xte, dtype=torch.float32)), yte)
        qm = qfhe.compile_brevitas_qat_model(model, Xtr, rounding_threshold_bits=6)
        results.append(
            {
                "config": f"QAT {bits} bits",
                "acc_float": acc_float,
                "acc_brevitas": acc_b,
                **measure(qm, Xte, yte, args.n_exec),
            }
        )
        print(f"done: QAT {bits} bits", flush=True)

    info = machine()
    print(f"\nQAT vs PTQ, digits MLP 64-64-64-10, rounding to 6 bits, measured {info['date']} on {info['machine']}\n")
    print(table(results, COLUMNS))
    print(f"\nwrote {write_json('qat_vs_ptq', {'machine': info, 'rows': results})}")
    return {"rows": results}


if __name__ == "__main__":
    main()
