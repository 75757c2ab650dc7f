"""End to end through concrete-python: clear integers == simulation == encryption."""

import warnings

import numpy as np
import pytest
import torch

import qfhe
from conftest import accuracy
from qfhe.errors import CircuitOverflowError, OverflowRiskWarning
from qfhe.ir import Graph, Node, run
from qfhe.quant.preprocess import apply_preprocess
from qfhe.tfhe.circuit import compile_circuits, simulate
from qfhe.tfhe.lower import make_circuit_function

LOW_P_ERROR = 1e-9


@pytest.fixture(scope="module")
def mlp6(digits, digits_mlp, fhe_config):
    Xtr = digits[0]
    return qfhe.compile_torch_model(
        digits_mlp, Xtr, n_bits=6, rounding_threshold_bits=6, p_error=LOW_P_ERROR, configuration=fhe_config
    )


@pytest.fixture(scope="module")
def mlp_approx(digits, digits_mlp, fhe_config):
    return qfhe.compile_torch_model(
        digits_mlp,
        digits[0],
        n_bits=6,
        rounding_threshold_bits={"n_bits": 5, "method": "APPROXIMATE"},
        p_error=LOW_P_ERROR,
        configuration=fhe_config,
    )


def _concrete_widths(qm):
    widths = {}
    for node in qm.fhe_circuit.graph.query_nodes(ordered=True):
        if node.tag and node.tag in qm.bitwidths and node.output.is_encrypted:
            widths[node.tag] = node.output.dtype.bit_width  # last node of a tag is the tagged value
    return widths


def test_digits_mlp_rounded_disable_equals_simulate_and_accuracy(mlp6, digits, digits_mlp):
    _, Xte, _, yte = digits
    d = mlp6.forward(Xte, fhe="disable")
    s = mlp6.forward(Xte, fhe="simulate")
    np.testing.assert_array_equal(d, s)
    with torch.no_grad():
        acc_float = accuracy(digits_mlp(torch.tensor(Xte, dtype=torch.float32)), yte)
    assert accuracy(s, yte) >= acc_float - 0.02
    rows = mlp6.bitwidth_report()
    assert [r["layer"] for r in rows] == ["0", "2", "4"]
    assert all(r["tlu_bits"] <= 6 for r in rows if r["tlu_bits"] is not None)
    assert rows[0]["lsbs_removed"] > 0 and rows[-1]["tlu_bits"] is None
    assert "acc_bits" in str(rows).splitlines()[0]


def test_digits_mlp_statistics(mlp6):
    st = mlp6.statistics
    assert st["pbs_count"] == mlp6.fhe_circuit.programmable_bootstrap_count > 0
    assert st["max_bit_width"] == mlp6.fhe_circuit.graph.maximum_integer_bit_width()
    assert st["compile_seconds"] > 0
    assert st["p_error"] <= LOW_P_ERROR * 1.0001


def test_predicted_widths_match_concrete(mlp6, mlp_approx):
    for qm in (mlp6, mlp_approx):
        concrete = _concrete_widths(qm)
        assert concrete, "no tagged nodes found"
        for name, bits in concrete.items():
            assert bits == qm.bitwidths[name].bits, name
        assert max(concrete.values()) == qm.statistics["max_bit_width"]


def test_digits_mlp_unrounded_disable_equals_simulate(digits, digits_mlp, fhe_config):
    Xtr, Xte, _, _ = digits
    qm = qfhe.compile_torch_model(
        digits_mlp, Xtr, n_bits=3, rounding_threshold_bits=None, p_error=LOW_P_ERROR, configuration=fhe_config
    )
    assert all(r["lsbs_removed"] == 0 for r in qm.bitwidth_report())
    np.testing.assert_array_equal(qm.forward(Xte, fhe="disable"), qm.forward(Xte, fhe="simulate"))


def _round_probe(qm, rnode, X, config):
    """Run only ``rnode``'s rounding through concrete, fed with the reference accumulator values.

    Returns (exact half-up rounding of the accumulator, what the circuit's rounding produced).
    """
    acc_name = rnode.inputs[0]
    acc = {}
    X = apply_preprocess(qm.preprocess[0], X)  # the graph reads the client's per-feature-scaled inputs
    run(qm.graph, X, lambda n, v: acc.__setitem__(n.name, v) if n.name == acc_name else None)
    acc = acc[acc_name]
    info = qm.bitwidths[acc_name]
    shape = acc.shape[1:]
    g = Graph(
        [
            Node("a", "input", [], {"shape": shape, "dtype": "float"}),
            Node(
                "a_q",
                "quant",
                ["a"],
                {"scale": 1.0, "zero_point": 0, "qmin": info.lo, "qmax": info.hi, "side": "client"},
            ),
            Node("r", "round", ["a_q"], dict(rnode.attrs)),
            Node("out", "dequant", ["r"], {"scale": 1.0, "offset": 0.0, "side": "client"}),
        ],
        ["out"],
    )
    widths = {"a_q": info, "r": qm.bitwidths[rnode.name]}
    compiled = compile_circuits(
        make_circuit_function(g, widths), acc, config.fork(p_error=LOW_P_ERROR, global_p_error=None), batch_size=len(X)
    )
    return run(g, acc.astype(float))[0].astype(np.int64), simulate(compiled, acc)


def test_approximate_rounding_within_one_step(mlp_approx, mlp6, digits, fhe_config):
    _, Xte, _, yte = digits
    rounds = [n for n in mlp_approx.graph.nodes if n.op == "round"]
    assert rounds and all(n.attrs["method"] == "approximate" for n in rounds)
    for r in rounds:
        exact, approx = _round_probe(mlp_approx, r, Xte, fhe_config)
        step = 1 << r.attrs["lsbs"]
        assert np.all(approx % step == 0)
        assert np.abs(approx - exact).max() <= step, r.name  # at most one step off, never more
    # approximate rounding costs no PBS of its own
    assert mlp_approx.statistics["pbs_count"] < mlp6.statistics["pbs_count"]
    acc_exact = accuracy(mlp6.forward(Xte, fhe="simulate"), yte)
    acc_approx = accuracy(mlp_approx.forward(Xte, fhe="simulate"), yte)
    assert acc_approx >= acc_exact - 0.03


@pytest.fixture(scope="module")
def cnn_exact(small_cnn, fhe_config):
    m, X = small_cnn
    return qfhe.compile_torch_model(
        m, X, n_bits=4, rounding_threshold_bits=4, p_error=LOW_P_ERROR, configuration=fhe_config
    )


def test_cnn_disable_equals_simulate(small_cnn, cnn_exact, fhe_config):
    m, X = small_cnn
    # inside the compiled ranges (at ±3 one sample drives the linear layer past its calibrated
    # range: it would wrap around, and forward warns OverflowRiskWarning, tested in test_ranges)
    Xt = np.clip(np.random.RandomState(5).randn(50, 1, 6, 6), -2.5, 2.5)
    np.testing.assert_array_equal(cnn_exact.forward(Xt), cnn_exact.forward(Xt, fhe="simulate"))
    unrounded = qfhe.compile_torch_model(
        m, X, n_bits=3, rounding_threshold_bits=None, p_error=LOW_P_ERROR, configuration=fhe_config
    )
    # at 3 bits the linear layer's range is tight: two of Xt leave it; the calibration samples cannot
    np.testing.assert_array_equal(unrounded.forward(X), unrounded.forward(X, fhe="simulate"))
    with torch.no_grad():
        ref = m(torch.tensor(Xt, dtype=torch.float32)).numpy()
    assert np.corrcoef(ref.ravel(), cnn_exact.forward(Xt).ravel())[0, 1] > 0.9
    for name, bits in _concrete_widths(cnn_exact).items():
        assert bits == cnn_exact.bitwidths[name].bits, name


@pytest.mark.execute
def test_execute_equals_simulate_mlp(mlp6, digits):
    Xte = digits[1][:1]  # one sample: about 45 s of real FHE on 2 cores (CI time budget)
    mlp6.fhe_circuit.keygen()
    np.testing.assert_array_equal(mlp6.forward(Xte, fhe="execute"), mlp6.forward(Xte, fhe="simulate"))


@pytest.mark.execute
def test_execute_equals_simulate_cnn(cnn_exact):
    Xt = np.clip(np.random.RandomState(7).randn(2, 1, 6, 6), -3, 3)
    cnn_exact.fhe_circuit.keygen()
    np.testing.assert_array_equal(cnn_exact.forward(Xt, fhe="execute"), cnn_exact.forward(Xt, fhe="simulate"))


def test_overflow_check_warns_and_strict_raises(digits, digits_mlp, fhe_config):
    Xtr = digits[0]
    qm = qfhe.compile_torch_model(digits_mlp, Xtr, n_bits=4, rounding_threshold_bits=4, configuration=fhe_config)
    qm.forward(Xtr[:50], strict=True)  # calibration data is inside the compiled ranges
    # The worst case for neuron j of the first layer: maximum input where its weight is positive.
    w = digits_mlp[0].weight.detach().numpy()
    j = int(np.argmax(np.clip(w, 0, None).sum(1)))
    x = np.where(w[j] > 0, Xtr.max(), Xtr.min())[None]
    with pytest.warns(OverflowRiskWarning, match=r"layer '0': 1 of 1 samples leave the compiled range"):
        qm.forward(x)
    with pytest.raises(CircuitOverflowError, match=r"layer '0': 1 of 1 samples .* bitwidth_method='interval'"):
        qm.forward(x, strict=True)


def test_interval_bounds_are_safe_for_any_input(digits, digits_mlp, fhe_config):
    Xtr = digits[0]
    qm = qfhe.compile_torch_model(
        digits_mlp, Xtr, n_bits=3, rounding_threshold_bits=3, bitwidth_method="interval", configuration=fhe_config
    )
    calib = qfhe.compile_torch_model(digits_mlp, Xtr, n_bits=3, rounding_threshold_bits=3, configuration=fhe_config)
    assert qm.bitwidths["0"].bits >= calib.bitwidths["0"].bits
    rng = np.random.RandomState(0)
    extreme = np.where(rng.rand(200, 64) > 0.5, Xtr.max(), Xtr.min())
    with warnings.catch_warnings():
        warnings.simplefilter("error", qfhe.errors.OverflowRiskWarning)  # interval bounds: nothing wraps
        warnings.simplefilter("ignore", qfhe.errors.SaturationWarning)  # corners do saturate hidden quantizers
        np.testing.assert_array_equal(qm.forward(extreme), qm.forward(extreme, fhe="simulate"))


def test_global_p_error_default_and_configuration_passthrough(fhe_config):
    m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    X = np.random.RandomState(0).randn(40, 3)
    qm = qfhe.compile_torch_model(m, X, n_bits=3, configuration=fhe_config)
    assert qm.statistics["global_p_error"] <= 1e-5 * 1.0001
    qm2 = qfhe.compile_torch_model(m, X, n_bits=3, configuration=fhe_config.fork(p_error=0.01))
    assert qm2.statistics["p_error"] <= 0.01 * 1.0001
    assert qm.fhe_circuit.configuration.use_insecure_key_cache


def test_per_channel_weights_use_per_channel_tables(digits, digits_mlp, fhe_config):
    Xtr, Xte, _, yte = digits
    # a margin: the test split reaches a little beyond the calibrated ranges
    qm = qfhe.compile_torch_model(
        digits_mlp,
        Xtr,
        n_bits=5,
        rounding_threshold_bits=5,
        per_channel=True,
        p_error=LOW_P_ERROR,
        configuration=fhe_config,
        calibration_margin=0.1,
    )
    chain = qm.graph[next(n.name for n in qm.graph.nodes if n.op == "tlu")].attrs["chain"]
    assert np.ndim(chain[0]["attrs"]["scale"]) == 2  # one scale per output channel
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverflowRiskWarning)
        np.testing.assert_array_equal(qm.forward(Xte), qm.forward(Xte, fhe="simulate"))
    assert accuracy(qm.forward(Xte), yte) > 0.9


def test_strided_dilated_grouped_conv_simulates_exactly(fhe_config):
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, stride=2, padding=2, dilation=2, groups=2),
        torch.nn.SiLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 3 * 3, 2),
    )
    X = np.random.RandomState(0).randn(64, 2, 6, 6)
    qm = qfhe.compile_torch_model(
        m, X, n_bits=4, rounding_threshold_bits=4, p_error=LOW_P_ERROR, configuration=fhe_config
    )
    np.testing.assert_array_equal(qm.forward(X), qm.forward(X, fhe="simulate"))
    for name, bits in _concrete_widths(qm).items():
        assert bits == qm.bitwidths[name].bits, name


def test_batch_circuit_compile_does_not_abort_concrete():
    """Regression, in a subprocess because the failure aborts the process: compiling the batch
    simulation circuit at the single circuit's exact achieved p_error made concrete 2.11's optimizer
    panic (a feasibility assertion at a float-rounding edge) for this 2-bit MLP."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import numpy as np, torch, qfhe, warnings
        warnings.simplefilter("ignore")
        torch.manual_seed(1)
        m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        qm = qfhe.compile_torch_model(m, np.random.RandomState(0).randn(200, 4), n_bits=2, p_error=1e-5)
        qm.compile(global_p_error=qm.statistics["global_p_error"])
        print("ok", qm.statistics["pbs_count"])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "ok 4" in r.stdout, r.stderr[-1500:]


@pytest.mark.parametrize(
    "ending, status", [("sys.exit(3)", 3), ("raise RuntimeError('after a simulation')", 1), ("pass", 0)]
)
def test_a_failing_script_does_not_exit_0_after_a_simulation(ending, status):
    """concrete-python's atexit hook ended every process that had simulated with status 0; qfhe removes it
    (qfhe._concrete), so a script's own status reaches its shell or CI, and other atexit handlers run."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import atexit, sys, numpy as np, torch, qfhe, warnings
        warnings.simplefilter("ignore")
        m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        qm = qfhe.compile_torch_model(m, np.random.RandomState(0).randn(40, 3), n_bits=3, p_error=0.01)
        qm.forward(np.zeros((2, 3)), fhe="simulate")
        atexit.register(lambda: print("atexit ran", flush=True))
        {ending}
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == status and "atexit ran" in r.stdout, (r.returncode, r.stderr[-800:])
