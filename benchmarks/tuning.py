"""Tuning, measured in one run: untuned, find_best_p_error, auto rounding, both; each against its PBS floor.

The PBS floor of a circuit is measured in the same run: a synthetic circuit of as many parallel
table lookups as the circuit has PBS, at its widest lookup width and its per-lookup p_error. A
configuration's latency is reported as a multiple of that floor.

Models: the digits MLP (64-64-64-10, float, PTQ 6 bits), a Brevitas QAT digits MLP (3 bits) and a
small digits CNN (float, PTQ 6 bits). Validation data for the searches is half of the training
split; accuracies are on the held-out test split, simulated ones the mean of 5 simulations. The
tuned rows use a budget of 1 point: "auto" rounding at tolerance 0.01, then find_best_p_error
against the unrounded model (one budget for both).

    python benchmarks/tuning.py [--models mlp qat cnn] [--n-exec 2] [--max-exec-bits 8]

Writes benchmarks/results/tuning.json and tuning.png (p_error -> accuracy and latency).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from concrete import fhe
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import qfhe  # noqa: E402
from common import RESULTS, load_example, machine, table, write_json  # noqa: E402

digits_mlp = load_example("digits_mlp")
qat_mlp = load_example("qat_mlp")

COLUMNS = [
    ("model", "model"),
    ("config", "configuration"),
    ("acc_clear", "acc clear"),
    ("acc_sim", "acc simulated"),
    ("loss_pts", "loss vs untuned (points)"),
    ("max_bit_width", "max bit-width"),
    ("tlu_bits", "max TLU bits"),
    ("pbs_count", "PBS"),
    ("p_error", "p_error"),
    ("keygen_s", "keygen s"),
    ("fhe_s", "FHE s/sample"),
    ("speedup", "x faster than untuned"),
    ("floor_s", "PBS floor s"),
    ("ratio", "x floor"),
    ("cx_ratio", "x floor (concrete cost)"),
    ("search_compilations", "search compilations"),
    ("search_s", "search s"),
    ("note", "note"),
]


class DigitsCNN(nn.Module):
    """On 8x8 digits: conv 1->4 3x3 (padded), ReLU, 2x2 average pool, conv 4->8 3x3, ReLU, linear 32->10."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 3)
        self.pool, self.fc = nn.AvgPool2d(2), nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(x)).flatten(1))


def train_cnn(X, y, epochs: int = 200) -> nn.Module:
    torch.manual_seed(0)
    return digits_mlp.fit_full_batch(DigitsCNN(), X, y, epochs)


def accuracy(out, y) -> float:
    return float((np.asarray(out).argmax(1) == y).mean())


def floor_circuit(n_pbs: int, bits: int, p_error: float):
    """``n_pbs`` parallel identity lookups reading ``bits`` bits at ``p_error``, compiled."""

    @fhe.compiler({"x": "encrypted"})
    def lookups(x):
        return fhe.univariate(lambda v: v)(x)

    inputset = [np.arange(n_pbs) % (1 << bits), np.full(n_pbs, (1 << bits) - 1)]
    return lookups.compile(inputset, fhe.Configuration(p_error=p_error))


def pbs_floor(n_pbs: int, bits: int, p_error: float, n_exec: int) -> tuple[float, float]:
    """Seconds per run of the floor circuit, and concrete's cost estimate (complexity) of it."""
    circuit = floor_circuit(n_pbs, bits, p_error)
    circuit.keygen()
    x = np.arange(n_pbs) % (1 << bits)
    circuit.encrypt_run_decrypt(x)  # warm-up
    start = time.perf_counter()
    for _ in range(n_exec):
        circuit.encrypt_run_decrypt(x)
    return (time.perf_counter() - start) / n_exec, float(circuit.complexity)


def floor_breakdown(model: nn.Sequential, Xc, plan: dict, p_error: float) -> list[dict]:
    """Where the tuned MLP's cost above its floor comes from (concrete's cost estimate, no run):
    the first layer alone, the two hidden layers, the whole model, each against its own floor."""
    out = []
    for end, label in (
        (2, "layer 0 + ReLU (inputs: fresh encryptions)"),
        (4, "+ layer 2 + ReLU (inputs: lookup outputs x weights)"),
        (len(model), "+ output layer (13-bit outputs decrypted exactly)"),
    ):
        part = nn.Sequential(*list(model)[:end])
        layers = {k: v for k, v in plan.items() if int(k) < end}
        qm = qfhe.compile_torch_model(part, Xc, n_bits=6, rounding_threshold_bits=layers or None, p_error=p_error)
        st = qm.statistics
        bits = max(r["tlu_bits"] for r in qm.bitwidth_report() if r["tlu_bits"] is not None)
        floor_cx = float(floor_circuit(st["pbs_count"], bits, st["p_error"]).complexity)
        out.append(
            {
                "part": label,
                "pbs_count": st["pbs_count"],
                "gops": st["complexity"] / 1e9,
                "floor_gops": floor_cx / 1e9,
                "cx_ratio": st["complexity"] / floor_cx,
            }
        )
        print(out[-1], flush=True)
    return out


def measure(qm, Xte, yte, args) -> dict:
    st = qm.statistics
    tlu = [r["tlu_bits"] for r in qm.bitwidth_report() if r["tlu_bits"] is not None]
    row = {
        "acc_clear": accuracy(qm.forward(Xte), yte),
        # the mean of several simulations: one draw of the lookup errors moves a few samples
        "acc_sim": float(np.mean([accuracy(qm.forward(Xte, fhe="simulate"), yte) for _ in range(5)])),
        "max_bit_width": st["max_bit_width"],
        "tlu_bits": max(tlu) if tlu else None,
        "pbs_count": st["pbs_count"],
        "p_error": st["p_error"],
        "complexity": st["complexity"],
    }
    if (row["tlu_bits"] or 0) > args.max_exec_bits:
        row["note"] = f"execution skipped: {row['tlu_bits']}-bit lookups > {args.max_exec_bits}"
        return row
    start = time.perf_counter()
    qm.fhe_circuit.keygen()
    row["keygen_s"] = time.perf_counter() - start
    qm.forward(Xte[:1], fhe="execute")  # warm-up, as for the floor
    start = time.perf_counter()
    out = qm.forward(Xte[: args.n_exec], fhe="execute")
    row["fhe_s"] = (time.perf_counter() - start) / args.n_exec
    row["execute_label_equals_simulate"] = bool(
        (out.argmax(1) == qm.forward(Xte[: args.n_exec], fhe="simulate").argmax(1)).all()
    )
    row["floor_s"], floor_cx = pbs_floor(st["pbs_count"], row["tlu_bits"] or 2, st["p_error"], args.n_exec)
    row["ratio"], row["cx_ratio"] = row["fhe_s"] / row["floor_s"], st["complexity"] / floor_cx
    return row


def configurations(name, quantize, Xval, yval, Xte, yte, args, options: bool) -> list[dict]:
    def add(config, qm, **extra):
        rows.append({"model": name, "config": config, **extra, **measure(qm, Xte, yte, args)})
        rows[-1]["speedup"] = rows[0].get("fhe_s", np.nan) / rows[-1].get("fhe_s", np.nan)
        rows[-1]["loss_pts"] = 100 * (rows[0]["acc_sim"] - rows[-1]["acc_sim"])
        print({k: v for k, v in rows[-1].items() if k not in ("history", "plan")}, flush=True)

    rows: list[dict] = []
    add("untuned (exact 6, default p_error)", quantize(6).compile())
    start = time.perf_counter()
    tuned = quantize(6)
    best = qfhe.find_best_p_error(tuned, Xval, yval, max_metric_loss=0.01, progress=False)
    add("find_best_p_error", tuned, search_compilations=best.n_compilations, search_s=time.perf_counter() - start)
    start = time.perf_counter()
    auto = quantize("auto", tolerance=0.01).compile()
    add("auto rounding", auto, search_s=time.perf_counter() - start, plan=auto.rounding_plan.as_dict())
    start = time.perf_counter()
    both = quantize("auto", tolerance=0.01)
    best = qfhe.find_best_p_error(
        both, Xval, yval, max_metric_loss=0.01, progress=False, reference=both.rounding_plan.reference_model
    )
    add(
        "auto rounding + find_best_p_error",
        both,
        search_compilations=best.n_compilations,
        search_s=time.perf_counter() - start,
        plan=both.rounding_plan.as_dict(),
        history=[dict(r) for r in best.history],
    )
    if options:
        # the same tuned circuit under concrete options, to show what qfhe's default buys
        # Opt-in, not a default: concrete 2.11's optimizer aborts the process under this strategy on
        # some circuits (a digits CNN with exact rounding). dataflow_parallelize was tried too: no
        # gain measured, and concrete then reports 0 PBS.
        add(
            "(tuned, multi_parameter_strategy='precision_and_norm2')",
            both.compile(
                p_error=best.p_error,
                configuration=fhe.Configuration(
                    multi_parameter_strategy=fhe.MultiParameterStrategy.PRECISION_AND_NORM2
                ),
            ),
        )
    return rows


def curve(qm, Xval, yval, Xte, yte, p_errors, n_exec) -> list[dict]:
    out = []
    for p in p_errors:
        qm.compile(p_error=p)
        qm.fhe_circuit.keygen()
        start = time.perf_counter()
        qm.forward(Xte[:n_exec], fhe="execute")
        out.append(
            {
                "p_error": p,
                "acc_sim": float(np.mean([accuracy(qm.forward(Xte, fhe="simulate"), yte) for _ in range(3)])),
                "fhe_s": (time.perf_counter() - start) / n_exec,
            }
        )
        print(out[-1], flush=True)
    return out


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    p = [r["p_error"] for r in points]
    ax.semilogx(p, [r["acc_sim"] for r in points], "o-", color="tab:blue")
    ax.set_xlabel("p_error (per lookup)")
    ax.set_ylabel("simulated accuracy", color="tab:blue")
    ax2 = ax.twinx()
    ax2.semilogx(p, [r["fhe_s"] for r in points], "s--", color="tab:red")
    ax2.set_ylabel("FHE s/sample", color="tab:red")
    ax.set_title("digits MLP, auto rounding: p_error -> accuracy and latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "qat", "cnn"], choices=["mlp", "qat", "cnn"])
    parser.add_argument("--n-exec", type=int, default=2)
    parser.add_argument("--max-exec-bits", type=int, default=8, help="wider lookups take minutes per sample")
    parser.add_argument(
        "--no-config-options",
        dest="config_options",
        action="store_false",
        help="skip the rows re-running the tuned circuit under other concrete options",
    )
    parser.add_argument("--curve", type=float, nargs="*", default=[1e-6, 1e-3, 1e-2, 0.1, 0.3])
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=qfhe.CalibrationWarning)
    Xtr, Xte, ytr, yte = qat_mlp.load_data()
    # half of the training split validates the searches: with a quarter (359 samples) a tuned
    # circuit lost more than a point on the test split for 1 of 7 splits (benchmarks/tuning_reliability.py)
    Xfit, Xval, yfit, yval = train_test_split(Xtr, ytr, test_size=0.5, random_state=0, stratify=ytr)
    rows, points, breakdown = [], [], []
    img = lambda a: a.reshape(-1, 1, 8, 8)  # noqa: E731
    for name in args.models:
        if name == "mlp":
            model, Xc, Xv, Xt, label = (
                digits_mlp.train_mlp(Xfit, yfit, epochs=150),
                Xtr,
                Xval,
                Xte,
                "digits MLP (PTQ 6)",
            )
        elif name == "qat":
            model, Xc, Xv, Xt, label = qat_mlp.train_qat(Xfit, yfit, bits=3), Xtr, Xval, Xte, "digits MLP (QAT 3)"
        else:
            model, Xc, Xv, Xt, label = train_cnn(img(Xfit), yfit), img(Xtr), img(Xval), img(Xte), "digits CNN (PTQ 6)"

        def quantize(r, tolerance=0.01, model=model, Xc=Xc, Xv=Xv, qat=name == "qat"):
            kw = {"X_val": Xv, "y_val": yval, "rounding_tolerance": tolerance} if r == "auto" else {}
            if qat:
                return qfhe.quantize_brevitas_qat_model(model, Xc, rounding_threshold_bits=r, **kw)
            return qfhe.quantize_torch_model(model, Xc, n_bits=6, rounding_threshold_bits=r, **kw)

        rows += configurations(label, quantize, Xv, yval, Xt, yte, args, options=args.config_options and name == "mlp")
        if name == "mlp":
            tuned = rows[-2 if args.config_options else -1]
            breakdown = floor_breakdown(model, Xc, tuned["plan"], tuned["p_error"])
            if args.curve:
                points = curve(quantize("auto"), Xv, yval, Xt, yte, args.curve, args.n_exec)

    info = machine()
    print(f"\nTuning, measured {info['date']} on {info['machine']}\n")
    print(table(rows, COLUMNS))
    if breakdown:
        print("\nTuned digits MLP: concrete's cost estimate against the floor, part by part\n")
        print(
            table(
                breakdown,
                [
                    ("part", "part"),
                    ("pbs_count", "PBS"),
                    ("gops", "cost (G ops)"),
                    ("floor_gops", "floor cost (G ops)"),
                    ("cx_ratio", "x floor"),
                ],
            )
        )
    print(f"\nwrote {write_json('tuning', {'machine': info, 'rows': rows, 'curve': points, 'breakdown': breakdown})}")
    if points:
        plot(points, RESULTS / "tuning.png")
        print(f"wrote {RESULTS / 'tuning.png'}")
    return {"rows": rows, "curve": points}


if __name__ == "__main__":
    main()
