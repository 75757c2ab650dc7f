"""TFHE digits MLP (64-64-64-10, ReLU): what rounding buys, measured in one run.

Rows: 6-bit PTQ without rounding (the baseline), with exact rounding to 6 bits (ranges sized
from the calibration data, the default, and from interval bounds, the provably safe choice), and
with approximate rounding to 5 bits. For each: compile, keygen and FHE time per sample, PBS count,
max bit-width, accuracy (float, clear integers, simulated), how many test samples the simulation
computes differently from the clear integers, and simulation of the whole test split through the
batch circuit against a per-sample loop on the single-sample circuit.

Rows whose table lookups are wider than ``--max-exec-tlu-bits`` skip keygen and execution (a
16-bit lookup takes many seconds each; the table says so instead of hanging), and rows wider
than ``--max-compile-tlu-bits`` report only the bit-widths the analysis predicts.

    python benchmarks/tfhe_mlp.py [--n-exec 2] [--max-exec-tlu-bits 10]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import qfhe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_json  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "digits_mlp", Path(__file__).resolve().parents[1] / "examples" / "digits_mlp.py"
)
_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_example)

ROWS = [
    ("6 bits, no rounding", 6, None, "calibration"),
    ("6 bits, exact rounding to 6", 6, 6, "calibration"),
    ("6 bits, exact rounding to 6, interval sizing", 6, 6, "interval"),
    ("6 bits, approximate rounding to 5", 6, {"n_bits": 5, "method": "approximate"}, "calibration"),
]

COLUMNS = [
    ("config", "configuration"),
    ("tlu_bits", "max TLU bits"),
    ("max_bit_width", "max bit-width"),
    ("acc_bits", "first accumulator bits"),
    ("pbs_count", "PBS"),
    ("global_p_error", "global p_error"),
    ("compile_s", "compile s"),
    ("keygen_s", "keygen s"),
    ("fhe_s_per_sample", "FHE s/sample"),
    ("acc_float", "acc float"),
    ("acc_clear", "acc clear"),
    ("acc_sim", "acc simulated"),
    ("differ", "samples simulate != clear"),
    ("sim_batch_s", "simulate split, batch s"),
    ("sim_loop_s", "simulate split, loop s"),
    ("note", "note"),
]


def run_row(name, n_bits, rounding, method, model, data, args) -> dict:
    Xtr, Xte, _, yte = data
    row = {"config": name}
    qm = qfhe.quantize_torch_model(model, Xtr, n_bits=n_bits, rounding_threshold_bits=rounding, bitwidth_method=method)
    report = qm.bitwidth_report()
    row["tlu_bits"] = max(r["tlu_bits"] for r in report if r["tlu_bits"] is not None)
    row["acc_bits"] = report[0]["acc_bits"]
    clear = qm.forward(Xte)
    row["acc_clear"] = float((clear.argmax(1) == yte).mean())
    if row["tlu_bits"] > args.max_compile_tlu_bits:
        row["note"] = f"not compiled: {row['tlu_bits']}-bit TLUs > {args.max_compile_tlu_bits}"
        return row
    start = time.perf_counter()
    qm.compile()
    row["compile_s"] = time.perf_counter() - start
    st = qm.statistics
    row.update(pbs_count=st["pbs_count"], max_bit_width=st["max_bit_width"], global_p_error=st["global_p_error"])
    start = time.perf_counter()
    sim = qm.forward(Xte, fhe="simulate")
    row["sim_batch_s"] = time.perf_counter() - start
    row["acc_sim"] = float((sim.argmax(1) == yte).mean())
    row["differ"] = f"{int((sim != clear).any(axis=1).sum())}/{len(Xte)}"
    row["labels_differ"] = int((sim.argmax(1) != clear.argmax(1)).sum())
    codes = qm.quantize_input(Xte)
    start = time.perf_counter()
    loop = np.concatenate([qm.fhe_circuit.simulate(codes[i : i + 1]) for i in range(len(codes))])
    row["sim_loop_s"] = time.perf_counter() - start
    assert np.array_equal(qm.dequantize_output(loop).argmax(1), sim.argmax(1)) or rounding is not None
    if row["tlu_bits"] > args.max_exec_tlu_bits:
        row["note"] = f"keygen/execution skipped: {row['tlu_bits']}-bit TLUs > {args.max_exec_tlu_bits}"
        return row
    start = time.perf_counter()
    qm.fhe_circuit.keygen()
    row["keygen_s"] = time.perf_counter() - start
    start = time.perf_counter()
    out = qm.forward(Xte[: args.n_exec], fhe="execute")
    row["fhe_s_per_sample"] = (time.perf_counter() - start) / args.n_exec
    row["exec_matches_sim"] = bool(np.array_equal(out, sim[: args.n_exec]))
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-exec", type=int, default=2, help="encrypted samples per row")
    parser.add_argument("--max-exec-tlu-bits", type=int, default=10)
    parser.add_argument("--max-compile-tlu-bits", type=int, default=16)
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    data = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    model = _example.train_mlp(data[0], data[2], epochs=150)
    with torch.no_grad():
        acc_float = float((model(torch.tensor(data[1], dtype=torch.float32)).argmax(1).numpy() == data[3]).mean())
    rows = []
    for name, n_bits, rounding, method in ROWS:
        row = run_row(name, n_bits, rounding, method, model, data, args)
        row["acc_float"] = acc_float
        rows.append(row)
        print(f"done: {name}", flush=True)
    info = machine()
    print(f"\nTFHE digits MLP, {len(data[1])} test samples, measured {info['date']} on {info['machine']}\n")
    print(table(rows, COLUMNS))
    path = write_json("tfhe_mlp", {"machine": info, "rows": rows})
    print(f"\nwrote {path}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
