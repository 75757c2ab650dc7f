"""CKKS path: passes, level/scale schedule, fake backend, cost analysis, bootstrapping."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import qfhe
from qfhe.ckks import CKKSCompiler, CKKSParameters, CompilationContext, FakeBackend, HEScheme
from qfhe.ckks.hegraph import annotate
from qfhe.ckks.lower import to_he_graph
from qfhe.ckks.passes import (
    BootstrappingInsertionPass,
    CostAnalysisPass,
    DeadCodeEliminationPass,
    InputPackingPass,
    LinearLayerBSGSPass,
    NonlinearToPolynomialPass,
    PassPipeline,
    PrintGraphPass,
    RelinearizationInsertionPass,
    RescalingInsertionPass,
    comparison_pipelines,
)
from qfhe.ckks.passes.linear import bsgs_rotations, diagonal_rotations
from qfhe.errors import (
    CKKSScheduleError,
    ConfigurationError,
    InsecureParametersWarning,
    KeysNotGeneratedError,
    NarrowCalibrationWarning,
    PassError,
)
from qfhe.frontend import import_torch
from qfhe.passes import canonicalize

SEED_PARAMS = dict(poly_modulus_degree=32768, coeff_modulus=[60] * 38, scale=2**40)


def mlp64():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 8), nn.Sigmoid())


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(1)
    return torch.randn(128, 64), torch.randn(16, 64)


def compile_with(pipeline, X, noise=False, model=None, params=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureParametersWarning)
        ctx = CompilationContext(
            HEScheme.CKKS, params or CKKSParameters(**SEED_PARAMS), FakeBackend(simulate_noise=noise)
        )
        return CKKSCompiler(ctx, pipeline).compile(model or mlp64(), X)


@pytest.fixture(scope="module")
def compiled(data):
    X, _ = data
    return {name: (compile_with(p, X), compile_with(p, X, noise=True)) for name, p in comparison_pipelines().items()}


@pytest.mark.parametrize("name", list(comparison_pipelines()))
def test_each_pipeline_matches_polynomial_and_float_models(compiled, data, name):
    _, Xt = data
    exact, noisy = compiled[name]
    float_out = mlp64()(Xt).detach().numpy()
    assert np.abs(exact(Xt) - exact.reference(Xt)).max() < 1e-6
    assert np.abs(noisy(Xt) - float_out).max() < 1e-2
    report = exact.meta["polynomials"]
    assert set(report) == {"1", "3", "5"}
    for layer in report.values():
        assert layer["max_error"] < 1e-2 and layer["range"][0] < layer["range"][1] and layer["depth"] == 4


def test_bsgs_lowers_rotations_by_the_formula(compiled):
    base = compiled["Baseline (eager)"][0].cost_analysis.total_operations["rotate"]
    bsgs = compiled["BSGS only"][0].cost_analysis.total_operations["rotate"]
    # layers 64->32, 32->16, 16->8: m diagonals each (+1 fold each, as m < n)
    folds = 3
    assert base == sum(diagonal_rotations(d) for d in (32, 16, 8)) + folds
    assert bsgs == sum(bsgs_rotations(d) for d in (32, 16, 8)) + folds
    assert bsgs < base


def test_lazy_lowers_rescales_and_relinearizations(compiled):
    eager = compiled["Baseline (eager)"][0].cost_analysis.total_operations
    lazy = compiled["Lazy only"][0].cost_analysis.total_operations
    assert lazy["rescale"] < eager["rescale"] and lazy["relinearize"] < eager["relinearize"]
    assert set(eager) == {
        "ciphertext_add",
        "plaintext_add",
        "ciphertext_mult",
        "plaintext_mult",
        "rotate",
        "rescale",
        "relinearize",
        "mod_switch",
        "bootstrap",
    }


def test_cost_analysis_fields(compiled):
    a = compiled["Fully optimized"][0].cost_analysis
    assert a.estimated_latency > 0 and a.estimated_memory > 0 and a.depth >= 15 and a.parallelism >= 1
    assert a.critical_path and all(hasattr(n, "name") and hasattr(n, "op") for n in a.critical_path)
    assert a.critical_path[0].op == "encrypt" and a.critical_path[-1].op == "decrypt"
    assert 0 <= a.final_level <= CKKSParameters(**SEED_PARAMS).max_level


def test_issue_example_pipeline_with_greedy_bootstrapping(data):
    X, Xt = data
    pipeline = PassPipeline(
        [
            InputPackingPass(strategy="row_major"),
            NonlinearToPolynomialPass(degree=8),
            LinearLayerBSGSPass(min_size=16),
            RescalingInsertionPass(strategy="lazy"),
            RelinearizationInsertionPass(strategy="lazy"),
            BootstrappingInsertionPass(level_threshold=30.0, strategy="greedy"),
            DeadCodeEliminationPass(),
            CostAnalysisPass(verbose=False, include_critical_path=True),
        ]
    )
    c = compile_with(pipeline, X)
    assert c.meta["cost_analysis"].total_operations["bootstrap"] >= 1
    assert np.abs(c(Xt) - c.reference(Xt)).max() < 1e-6


def deep_net():
    torch.manual_seed(3)
    layers = []
    for _ in range(10):
        layers += [nn.Linear(32, 32), nn.GELU()]
    return nn.Sequential(*layers)


def test_minimal_never_uses_more_bootstraps_than_greedy():
    X = torch.randn(64, 32) * 0.5
    counts = {}
    for strategy, threshold in (("greedy", 30.0), ("greedy", 10.0), ("minimal", 0.0)):
        p = PassPipeline(
            [
                InputPackingPass(),
                NonlinearToPolynomialPass(degree=8),
                LinearLayerBSGSPass(min_size=16),
                RescalingInsertionPass("lazy"),
                RelinearizationInsertionPass("lazy"),
                BootstrappingInsertionPass(level_threshold=threshold, strategy=strategy),
                DeadCodeEliminationPass(),
                CostAnalysisPass(),
            ]
        )
        c = compile_with(p, X, model=deep_net())
        counts[(strategy, threshold)] = c.cost_analysis.total_operations["bootstrap"]
        assert np.abs(c(X[:4]) - c.reference(X[:4])).max() < 1e-6
    assert counts[("minimal", 0.0)] >= 1
    assert counts[("minimal", 0.0)] <= min(counts[("greedy", 30.0)], counts[("greedy", 10.0)])


def test_front_door_and_expert_api_give_the_same_graph(data):
    X, Xt = data
    p1, p2 = comparison_pipelines()["BSGS+Lazy"], comparison_pipelines()["BSGS+Lazy"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureParametersWarning)
        cm = qfhe.compile_torch_model(mlp64(), X, scheme="ckks", ckks_params=CKKSParameters(**SEED_PARAMS), pipeline=p1)
    expert = compile_with(p2, X)
    assert cm.graph.format() == expert.graph.format()
    np.testing.assert_allclose(cm.forward(Xt, fhe="simulate"), expert(Xt))
    np.testing.assert_allclose(cm.forward(Xt), expert.reference(Xt))
    with pytest.raises(KeysNotGeneratedError, match=r"fhe='execute' needs keys: call keygen\(\)"):
        cm.forward(Xt, fhe="execute")
    with pytest.raises(ConfigurationError, match="not 128-bit secure: log2\\(QP\\) = 2280 > 881"):
        cm.keygen()  # real encryption refuses these parameters


def test_default_front_door_is_secure_and_close_to_float():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    X = torch.randn(64, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureParametersWarning)
        cm = qfhe.compile_torch_model(m, X, scheme="ckks")
    assert cm.params.is_secure
    assert np.abs(cm.forward(X[:8], fhe="simulate") - m(X[:8]).detach().numpy()).max() < 1e-2


@pytest.mark.parametrize("strategy", ["row_major", "column_major", "diagonal"])
def test_packing_strategies(data, strategy):
    X, Xt = data
    p = comparison_pipelines()["BSGS+Lazy"]
    p.passes[0] = InputPackingPass(strategy=strategy, batch=8)
    c = compile_with(p, X)
    assert np.abs(c(Xt) - c.reference(Xt)).max() < 1e-6
    if strategy == "diagonal":  # the client's pre-rotated inputs replace the first layer's baby steps
        base = compile_with(comparison_pipelines()["BSGS+Lazy"], X)
        assert c.cost_analysis.total_operations["rotate"] < base.cost_analysis.total_operations["rotate"]


def test_security_check():
    insecure = CKKSParameters(**SEED_PARAMS)
    assert not insecure.is_secure and insecure.log_qp == 2280
    with pytest.warns(InsecureParametersWarning, match="log2\\(QP\\) = 2280 > 881"):
        insecure.check_security(real_encryption=False)
    with pytest.raises(ConfigurationError, match="not 128-bit secure"):
        insecure.check_security(real_encryption=True)
    CKKSParameters(**SEED_PARAMS, allow_insecure=True)  # constructing is fine; real use warns instead
    assert CKKSParameters().is_secure and CKKSParameters().max_level == 19
    assert not CKKSParameters(65536, [60] * 10, 2**40).is_secure  # beyond the HE standard table


def test_out_of_levels_names_node_and_remedies(data):
    X, _ = data
    small = CKKSParameters(32768, [60] + [40] * 6 + [60], 2**40)
    with pytest.raises(
        CKKSScheduleError,
        match=r"node '.*' \(plaintext_mult\): multiplies at level 0.*"
        r"add BootstrappingInsertionPass",
    ):
        compile_with(comparison_pipelines()["BSGS+Lazy"], X, params=small)


def test_wrong_pass_order_is_caught(data):
    X, _ = data
    no_rescale = PassPipeline([InputPackingPass(), NonlinearToPolynomialPass(), RelinearizationInsertionPass()])
    with pytest.raises(CKKSScheduleError, match="scale|magnitude|level"):
        compile_with(no_rescale, X)
    no_relin = PassPipeline([InputPackingPass(), NonlinearToPolynomialPass(), RescalingInsertionPass()])
    with pytest.raises(CKKSScheduleError, match="relinearize before"):
        compile_with(no_relin, X)
    with pytest.raises(PassError, match="needs NonlinearToPolynomialPass"):
        compile_with(PassPipeline([InputPackingPass()]), X)


def test_bad_pass_arguments():
    with pytest.raises(ConfigurationError, match=r"one of \('greedy', 'minimal'\), got 'fastest'"):
        BootstrappingInsertionPass(strategy="fastest")
    with pytest.raises(ConfigurationError, match="strategy must be one of"):
        InputPackingPass(strategy="spiral")


def test_single_sample_calibration_warns(data):
    X, _ = data
    with pytest.warns(NarrowCalibrationWarning, match="single sample"):
        compile_with(comparison_pipelines()["BSGS+Lazy"], X[:1])


def test_print_graph_pass(data, capsys):
    X, _ = data
    p = comparison_pipelines()["BSGS+Lazy"]
    p.passes.insert(5, PrintGraphPass(verbose=True))
    c = compile_with(p, X)
    out = capsys.readouterr().out
    assert "rotate" in out and "# level" in out and c.meta["printed"]


def _high_level(X, model=None):
    g = to_he_graph(canonicalize(import_torch(model or mlp64(), X[:2])), X.numpy())
    return g


def test_each_pass_is_idempotent_and_keeps_values(data):
    X, Xt = data
    params = CKKSParameters(**SEED_PARAMS)
    ctx = CompilationContext(HEScheme.CKKS, params, FakeBackend())
    passes = [
        InputPackingPass(),
        NonlinearToPolynomialPass(degree=8),
        LinearLayerBSGSPass(min_size=16),
        RescalingInsertionPass("lazy"),
        RelinearizationInsertionPass("lazy"),
        BootstrappingInsertionPass(level_threshold=30.0, strategy="greedy"),
        DeadCodeEliminationPass(),
    ]
    g = _high_level(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureParametersWarning)
        for k, p in enumerate(passes):
            before = g
            g = p(g, ctx)
            assert g.ops() != before.ops() or isinstance(p, DeadCodeEliminationPass)  # the expected change
            assert p(g, ctx).ops() == g.ops(), p.name  # idempotent
        annotate(g, params)
        from qfhe.ckks.compiler import CompiledCKKSModel

        model = CompiledCKKSModel(g, _high_level(X), ctx, (64,))
        assert np.abs(model(Xt) - model.reference(Xt)).max() < 1e-6  # numerically the polynomial model


def test_fake_backend_checks_magnitude(data):
    X, _ = data
    tight = CKKSParameters(8192, [30, 30, 30], 2**25)
    big = nn.Sequential(nn.Linear(64, 8))
    with torch.no_grad():
        big[0].weight.mul_(1e6)
    c = compile_with(comparison_pipelines()["BSGS+Lazy"], X, model=big, params=tight)
    with pytest.raises(CKKSScheduleError, match="magnitude .* needs .* bits"):
        c(X[:2] * 1e3)


@pytest.mark.parametrize("degree", [2, 3, 7, 8, 15])
def test_polynomial_depth_is_optimal(degree):
    from qfhe.ckks.passes.polynomial import poly_depth

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.SiLU())
    X = torch.randn(64, 4)
    p = PassPipeline(
        [
            InputPackingPass(),
            NonlinearToPolynomialPass(degree=degree),
            RescalingInsertionPass("lazy"),
            RelinearizationInsertionPass("lazy"),
            CostAnalysisPass(),
        ]
    )
    c = compile_with(p, X, model=m)
    assert c.cost_analysis.depth == 1 + poly_depth(degree)  # one level for the linear layer
    assert np.abs(c(X[:4]) - c.reference(X[:4])).max() < 1e-6


def test_input_larger_than_the_slot_count_is_split():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3000, 16), nn.Tanh(), nn.Linear(16, 4))
    X = torch.randn(32, 3000)
    params = CKKSParameters(2048 * 2, [60] + [40] * 6 + [60], 2**40)  # 2048 slots: the input needs 2 ciphertexts
    c = compile_with(comparison_pipelines()["BSGS+Lazy"], X, model=m, params=params)
    assert sum(n.op == "encrypt" for n in c.graph.nodes) == 2
    assert np.abs(c(X[:4]) - c.reference(X[:4])).max() < 1e-6
    with pytest.raises(ConfigurationError, match="more than the 2048 slots"):
        bad = comparison_pipelines()["BSGS+Lazy"]
        bad.passes[0] = InputPackingPass(strategy="column_major")
        compile_with(bad, X, model=m, params=params)
