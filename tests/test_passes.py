"""Each pass: the expected change, idempotence, and numerical equality with the unchanged graph."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import SmallCNN
from qfhe.frontend import import_torch
from qfhe.ir import Graph, Node, collect_ranges, run
from qfhe.ir.ops import chain_arrays
from qfhe.passes import (
    analyze_bitwidths,
    canonicalize,
    dce,
    fold_affine,
    fuse_lut,
    insert_rounding,
    quantize_graph,
    sink_reshapes,
)
from qfhe.passes.bitwidth import bitwidth_rows
from qfhe.quant import Rounding, parse_n_bits


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.GELU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
    ).eval()


@pytest.fixture(scope="module", params=["mlp", "cnn", "prelu"])
def case(request):
    if request.param == "prelu":  # per-channel slopes: one lookup table per channel
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(6, 8), nn.PReLU(8), nn.Linear(8, 3)).eval()
        with torch.no_grad():
            m[1].weight.uniform_(-0.5, 0.5)
        X = np.random.RandomState(0).randn(80, 6)
    elif request.param == "mlp":
        m = _mlp()
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 1.5)
        X = np.random.RandomState(0).randn(80, 6)
    else:
        torch.manual_seed(1)
        m = SmallCNN().eval()
        X = np.random.RandomState(0).randn(80, 1, 6, 6)
    return import_torch(m, torch.tensor(X, dtype=torch.float32)), X


def _same_values(a, b, X, exact=True):
    ya, yb = run(a, X)[0], run(b, X)[0]
    if exact:
        np.testing.assert_array_equal(ya, yb)
    else:
        np.testing.assert_allclose(ya, yb, rtol=1e-9, atol=1e-9)


def test_sink_reshapes():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.ReLU(), nn.Linear(8, 2))
    X = np.random.RandomState(0).randn(10, 1, 4, 4)
    g = import_torch(m, torch.tensor(X, dtype=torch.float32))
    assert g.ops() == ["input", "conv", "reshape", "activation", "gemm"]
    out = sink_reshapes(g)
    assert out.ops() == ["input", "conv", "activation", "reshape", "gemm"]  # change
    assert sink_reshapes(out).ops() == out.ops()  # idempotent
    _same_values(g, out, X)  # equal


def test_sink_reshape_relayouts_per_channel_affine():
    m = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.ReLU())
    m[1].running_mean.uniform_(-1, 1)
    m.eval()
    X = np.random.RandomState(0).randn(10, 2, 6)
    g = import_torch(m, torch.tensor(X, dtype=torch.float32))
    out = fold_affine(sink_reshapes(g))
    assert out.ops() == ["input", "reshape", "conv", "activation", "reshape"]
    _same_values(g, out, X, exact=False)


def test_fold_affine(case):
    g, X = case
    g = sink_reshapes(g)
    out = fold_affine(g)
    n_affine = g.ops().count("affine")
    assert out.ops().count("affine") < n_affine or n_affine == 0
    assert fold_affine(out).ops() == out.ops()
    _same_values(g, out, X, exact=False)


def test_quantize_graph(case):
    g, X = case
    fg = canonicalize(g)
    qg = quantize_graph(fg, collect_ranges(fg, X), parse_n_bits(8))
    ops = qg.ops()
    assert "gemm" not in ops and "conv" not in ops and ops[1] == "quant" and ops[-1] == "dequant"
    assert {"qgemm", "dequant", "quant"} <= set(ops)
    assert quantize_graph(qg, {}, parse_n_bits(8)).ops() == ops
    # quantized ≈ float at 8 bits
    y, yq = run(fg, X)[0], run(qg, X)[0]
    assert np.abs(y - yq).max() < 0.1 * np.abs(y).max()


@pytest.mark.parametrize("pool, lookups", [(2, 1), (4, 2)])
def test_quantize_graph_reads_a_small_average_pool_as_a_sum_without_a_lookup(pool, lookups):
    """A 2x2 average pool of quantized codes is their sum on a grid 4x finer: the next convolution
    reads it directly (one lookup, the ReLU's, instead of two). A 4x4 pool (16 codes) would widen
    that convolution's accumulator by 4 bits, so it is requantized by a lookup as before."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(pool), nn.Conv2d(2, 2, 1)).eval()
    X = np.random.RandomState(0).randn(60, 1, 8, 8)
    fg = canonicalize(import_torch(m, torch.tensor(X)))
    qg = quantize_graph(fg, collect_ranges(fg, X), parse_n_bits(6))
    fused = fuse_lut(qg)
    assert fused.ops().count("tlu") == lookups
    pool_sum = [n for n in fused.nodes if n.op == "qconv"][1]
    assert fused.consumers()[pool_sum.name] == [[n for n in fused.nodes if n.op == "qconv"][2].name] or lookups == 2
    y, yq = run(fg, X)[0], run(fused, X)[0]
    assert np.abs(y - yq).max() < 0.1 * np.abs(y).max()  # the sum's grid is exact: no extra error


def test_fuse_lut(case):
    g, X = case
    fg = canonicalize(g)
    qg = quantize_graph(fg, collect_ranges(fg, X), parse_n_bits(5))
    out = fuse_lut(qg)
    n_requant = sum(1 for n in qg.nodes if n.op == "quant" and n.attrs.get("side") != "client")
    assert out.ops().count("tlu") == n_requant > 0
    server_float = [
        n for n in out.nodes if n.op in ("activation", "affine", "quant", "dequant") and n.attrs.get("side") != "client"
    ]
    assert server_float == []
    assert fuse_lut(out).ops() == out.ops()
    _same_values(qg, out, X)  # bit-identical
    assert "tlu(" in out.format() and "relu" in out.format()


def test_insert_rounding(case):
    g, X = case
    fg = canonicalize(g)
    fused = fuse_lut(quantize_graph(fg, collect_ranges(fg, X), parse_n_bits(6)))
    rounded = insert_rounding(fused, X, Rounding(4))
    assert rounded.ops().count("round") >= 1
    for row in bitwidth_rows(rounded, analyze_bitwidths(rounded, X)):
        if row["tlu"] is not None:
            own = analyze_bitwidths(rounded, X)[row["value"]].own_bits
            assert own - row["lsbs_removed"] <= 4
    assert insert_rounding(rounded, X, Rounding(4)).ops() == rounded.ops()
    # a target wider than every accumulator changes nothing, and the values stay equal
    wide = (
        insert_rounding(fused, X, Rounding(8))
        if max(v.own_bits for v in analyze_bitwidths(fused, X).values()) <= 8
        else fused
    )
    _same_values(fused, wide, X)
    assert insert_rounding(fused, X, None).ops() == fused.ops()


def test_materialize_tables(case):
    """Every lookup becomes an integer table (per channel where the chain is, e.g. BatchNorm) that
    gives the chain's value for every code the input's width holds; idempotent."""
    from qfhe.passes.materialize import materialize_tables
    from qfhe.tfhe.lower import circuit_graph

    g, X = case
    fg = canonicalize(g)
    fused = fuse_lut(quantize_graph(fg, collect_ranges(fg, X), parse_n_bits(5)))
    rounded = insert_rounding(fused, X, Rounding(4))
    info = analyze_bitwidths(rounded, X)
    cg = circuit_graph(rounded)
    out = materialize_tables(cg, info)
    assert "tlu" not in out.ops() and out.ops().count("table") == cg.ops().count("tlu") >= 1
    for n in cg.nodes:  # a chain with per-channel parameters gives one column per channel
        if n.op == "tlu":
            assert (out[n.name].attrs["table"].ndim > 1) == bool(chain_arrays(n.attrs["chain"]))
    assert materialize_tables(out, info).ops() == out.ops()
    seen = {}
    run(rounded, X, lambda node, value: seen.__setitem__(node.name, value))
    codes = [seen[n.name] for n in cg.nodes if n.op == "input"]
    np.testing.assert_array_equal(run(cg, codes)[0], run(out, codes)[0])
    for n in cg.nodes:  # every code of the input's width, not only the calibrated ones
        if n.op == "tlu":
            b = info[n.inputs[0]].bits
            shape = out[n.name].attrs["table"].shape[1:]
            x = np.arange(-(1 << b), 1 << b).reshape((-1,) + (1,) * len(shape))
            x = np.broadcast_to(x, x.shape[:1] + shape)
            np.testing.assert_array_equal(
                run(Graph([Node("x", "input", []), out[n.name].clone(inputs=["x"])], [n.name]), [x])[0],
                run(Graph([Node("x", "input", []), n.clone(inputs=["x"])], [n.name]), [x])[0],
            )


def test_rounding_changes_values_by_at_most_half_a_step_at_the_tlu_input():
    m = nn.Sequential(nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    X = np.random.RandomState(0).randn(100, 16)
    fg = canonicalize(import_torch(m, torch.tensor(X, dtype=torch.float32)))
    fused = fuse_lut(quantize_graph(fg, collect_ranges(fg, X), parse_n_bits(6)))
    rounded = insert_rounding(fused, X, Rounding(3))
    rnode = next(n for n in rounded.nodes if n.op == "round")
    seen = {}
    run(rounded, X, lambda n, v: seen.__setitem__(n.name, v))
    step = 1 << rnode.attrs["lsbs"]
    diff = seen[rnode.name] - seen[rnode.inputs[0]]
    assert np.all(np.abs(diff) <= step // 2) and np.all(seen[rnode.name] % step == 0)


def test_dce():
    from qfhe.ir import Graph, Node

    g = Graph([Node("x", "input", []), Node("dead", "add", ["x", "x"]), Node("y", "add", ["x", "x"])], ["y"])
    out = dce(g)
    assert out.ops() == ["input", "add"] and dce(out).ops() == out.ops()
    _same_values(g, out, np.ones((2, 2)))
