import numpy as np
import pytest
import torch

from qfhe.errors import PassError
from qfhe.ir import Graph, Node, run
from qfhe.ir.numeric import conv2d, integer_bit_width, round_half_up_lsbs, width_range


def test_round_half_up_matches_formula_not_bankers():
    x = np.arange(-40, 40)
    for k in range(1, 5):
        expected = ((x + (1 << (k - 1))) >> k) << k
        np.testing.assert_array_equal(round_half_up_lsbs(x, k), expected)
    # 2 and 6 are exact halves for k=2: half up gives 4 and 8 (np.round would give 0 and 8)
    np.testing.assert_array_equal(round_half_up_lsbs(np.array([2, 6, -2, -6]), 2), [4, 8, 0, -4])


@pytest.mark.parametrize(
    "lo,hi,bits",
    [(0, 1, 1), (0, 255, 8), (0, 256, 9), (-1, 0, 1), (-128, 127, 8), (-129, 0, 9), (-5, 200, 9), (-300, 5, 10)],
)
def test_integer_bit_width(lo, hi, bits):
    assert integer_bit_width(lo, hi) == bits
    wlo, whi = width_range(bits, lo < 0)
    assert wlo <= lo and hi <= whi


@pytest.mark.parametrize(
    "stride,padding,dilation,groups",
    [
        ((1, 1), (0, 0), (1, 1), 1),
        ((2, 1), (1, 2), (1, 1), 1),
        ((1, 1), (1, 1), (2, 2), 1),
        ((1, 1), (1, 1), (1, 1), 2),
    ],
)
def test_conv2d_matches_torch(stride, padding, dilation, groups):
    rng = np.random.RandomState(0)
    x = rng.randint(-5, 6, size=(2, 4, 7, 6))
    w = rng.randint(-3, 4, size=(6, 4 // groups, 3, 3))
    ref = torch.nn.functional.conv2d(
        torch.tensor(x, dtype=torch.float64),
        torch.tensor(w, dtype=torch.float64),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    ).numpy()
    out = conv2d(x, w, stride, padding, dilation, groups)
    assert out.dtype.kind == "i"
    np.testing.assert_array_equal(out, ref.astype(np.int64))


def test_graph_verify_names_pass_and_node():
    g = Graph([Node("y", "add", ["x", "x"])], ["y"])
    with pytest.raises(PassError, match="mypass: node 'y' reads 'x'"):
        g.verify("mypass")
    with pytest.raises(PassError, match="output 'z'"):
        Graph([Node("x", "input", [])], ["z"]).verify("p")


def test_printer_and_interpreter():
    g = Graph(
        [
            Node("x", "input", [], {"shape": (2,), "dtype": "float"}),
            Node("a", "affine", ["x"], {"scale": np.array(2.0), "shift": np.array(1.0)}),
            Node("r", "activation", ["a"], {"fn": "relu", "params": {}}),
        ],
        ["r"],
    )
    text = g.format()
    assert "%a = affine(%x)" in text and "return %r" in text
    np.testing.assert_allclose(run(g, np.array([[-1.0, 3.0]]))[0], [[0.0, 7.0]])
