"""CKKS defects found by new users: extrapolation flagged, contexts not shared, bootstrapping on long
chains, and errors that say what is wrong and which pass or parameter fixes it."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import qfhe
from qfhe.ckks import CKKSCompiler, CKKSParameters, CompilationContext, FakeBackend, HEScheme
from qfhe.ckks.passes import (
    BootstrappingInsertionPass,
    CostAnalysisPass,
    DeadCodeEliminationPass,
    InputPackingPass,
    LinearLayerBSGSPass,
    NonlinearToPolynomialPass,
    PassPipeline,
    RelinearizationInsertionPass,
    RescalingInsertionPass,
    default_pipeline,
)
from qfhe.errors import CKKSScheduleError, ConfigurationError, PassError, PolynomialRangeError, PolynomialRangeWarning


def small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))


@pytest.fixture(scope="module")
def cm():
    X = np.random.RandomState(0).randn(64, 4)
    # the wide default chain (60-bit q_0): extrapolated values at 10x the range still decrypt
    return qfhe.compile_torch_model(small(), X, scheme="ckks", ckks_params=CKKSParameters()), X


@pytest.mark.parametrize("fhe", ["disable", "simulate"])
def test_extrapolation_is_counted_warned_and_strict_raises(cm, fhe):
    model, X = cm
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolynomialRangeWarning)
        model.forward(X[:8], fhe=fhe)  # calibration data stays inside the fitted ranges
    far = X[:3] * 10
    with pytest.warns(PolynomialRangeWarning, match=r"layer '1': \d+ values outside \[-?\d"):
        model.forward(far, fhe=fhe)
    with pytest.raises(PolynomialRangeError, match=r"layer '1': \d+ values outside .* calibrate on data that covers"):
        model.forward(far, fhe=fhe, strict=True)


def test_check_ranges_counts_values(cm):
    model, X = cm
    lo, hi = model.meta["polynomials"]["1"]["range"]
    with pytest.warns(PolynomialRangeWarning):
        counts = model.check_ranges(X[:5] * 20)
    pre = X[:5] * 20 @ model.he_graph["0"].attrs["matrix"].T + model.he_graph["0"].attrs["bias"]
    assert counts == {"1": int(((pre < lo) | (pre > hi)).sum())}


@pytest.mark.parametrize("fhe", ["disable", "simulate"])
def test_empty_batch(cm, fhe):
    model, _ = cm
    assert model.forward(np.zeros((0, 4)), fhe=fhe).shape == (0, 2)


def test_a_shared_context_is_not_mutated_by_a_compile():
    ctx = CompilationContext(HEScheme.CKKS, CKKSParameters(), FakeBackend())
    X = torch.randn(64, 4)
    first_model = small()
    first = CKKSCompiler(ctx, default_pipeline()).compile(first_model, X)
    before = np.abs(first.reference(X[:8]) - first_model(X[:8]).detach().numpy()).max()
    torch.manual_seed(5)
    other = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    second = CKKSCompiler(ctx, default_pipeline()).compile(other, X * 3)
    assert ctx.meta == {}
    assert first.meta["polynomials"]["1"]["fn"] == "sigmoid" and second.meta["polynomials"]["1"]["fn"] == "tanh"
    after = np.abs(first.reference(X[:8]) - first_model(X[:8]).detach().numpy()).max()
    assert after == before < 1e-2


@pytest.mark.parametrize("strategy", ["greedy", "minimal"])
@pytest.mark.parametrize("n_layers", [2, 4, 7, 12])
def test_bootstrapping_on_chains_with_default_parameters(strategy, n_layers):
    torch.manual_seed(0)
    layers = []
    for _ in range(n_layers):
        layers += [nn.Linear(8, 8), nn.GELU()]
    m = nn.Sequential(*layers, nn.Linear(8, 2))
    X = torch.randn(64, 8)
    p = default_pipeline()
    p.passes[5] = BootstrappingInsertionPass(level_threshold=4.0, strategy=strategy)
    cm = qfhe.compile_torch_model(m, X, scheme="ckks", pipeline=p)
    boots = cm.cost_analysis.total_operations["bootstrap"]
    assert boots == cm.meta["bootstrapping"]["bootstraps"]
    assert (boots == 0) == (n_layers <= 3)
    np.testing.assert_allclose(cm.forward(X[:4], fhe="simulate"), cm.forward(X[:4]), atol=1e-6)


def test_minimal_bootstraps_the_7_layer_chain_twice():
    torch.manual_seed(0)
    layers = []
    for _ in range(7):
        layers += [nn.Linear(8, 8), nn.GELU()]
    cm = qfhe.compile_torch_model(
        nn.Sequential(*layers, nn.Linear(8, 2)), torch.randn(64, 8), scheme="ckks", pipeline=default_pipeline()
    )  # bootstrapping: simulation only
    assert cm.cost_analysis.total_operations["bootstrap"] == 2 and cm.params == CKKSParameters()
    with pytest.raises(
        ConfigurationError,
        match=r"the graph has 2 bootstrap node\(s\) .* but SEAL \(tenseal.sealapi\) has "
        r"no CKKS bootstrapping, and qfhe never fakes a refresh",
    ):
        cm.keygen()


def test_running_out_of_levels_says_so():
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [nn.Linear(8, 8), nn.GELU()]
    with pytest.raises(
        CKKSScheduleError,
        match=r"multiplies at level 0, so its product can never be rescaled: the "
        r"model needs more levels .* add BootstrappingInsertionPass",
    ):
        qfhe.compile_torch_model(
            nn.Sequential(*layers),
            torch.randn(64, 8),
            scheme="ckks",
            ckks_params=CKKSParameters(),
            pipeline=default_pipeline(bootstrapping=False),
        )
    # without parameters, the front door looks for secure ones that fit, and says why none does
    with pytest.raises(
        ConfigurationError,
        match=r"the model consumes 30 levels: with a 40-bit scale \(precision_bits=30\) "
        r"the modulus needs 1300 bits, more than the 881 bits N = 2\^15 allows",
    ):
        qfhe.compile_torch_model(nn.Sequential(*layers), torch.randn(64, 8), scheme="ckks")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            dict(coeff_modulus=[60, 40, 40, 60], scale=2**50),
            r"scale 2\^50 is larger than the smallest rescaling prime \(40 bits.*Use scale <= 2\^40",
        ),
        (dict(coeff_modulus=[40, 40, 40, 60], scale=2**40), r"the first prime \(q_0, 40 bits\) must exceed the scale"),
        (dict(coeff_modulus=[60, 40, 60], scale="2**40"), r"scale must be a number"),
        (dict(coeff_modulus=[60, 70, 60]), r"coeff_modulus bit sizes must be an int from 20 to 60, got 70"),
        (dict(coeff_modulus=[60, 40, 60], bootstrap_depth=0), r"bootstrap_depth must be a positive int"),
    ],
)
def test_parameters_are_validated_at_construction(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        CKKSParameters(poly_modulus_degree=16384, **kwargs)


def test_numpy_integers_in_parameters():
    p = CKKSParameters(np.int64(16384), [np.int64(60), 40, 40, 60], np.float64(2**40))
    assert type(p.poly_modulus_degree) is int and p.max_level == 2


@pytest.mark.parametrize(
    "degree,match",
    [
        (0, "degree must be an int from 1 to 63, got 0"),
        (-1, "degree must be an int from 1 to 63, got -1"),
        (2.5, r"degree must be an int from 1 to 63, got 2.5 \(float\)"),
    ],
)
def test_polynomial_degree_is_validated(degree, match):
    with pytest.raises(ConfigurationError, match=f"NonlinearToPolynomialPass {match}"):
        NonlinearToPolynomialPass(degree=degree)


@pytest.mark.parametrize(
    "passes,match",
    [
        (
            [NonlinearToPolynomialPass()],
            "NonlinearToPolynomialPass needs a packed graph: put InputPackingPass before it",
        ),
        ([LinearLayerBSGSPass()], "LinearLayerBSGSPass needs a packed graph: put InputPackingPass before it"),
        (
            [InputPackingPass(), RescalingInsertionPass()],
            "RescalingInsertionPass found the activation node '1', which NonlinearToPolynomialPass removes",
        ),
        (
            [InputPackingPass(), RelinearizationInsertionPass()],
            "RelinearizationInsertionPass found the activation node '1', which NonlinearToPolynomialPass removes",
        ),
        (
            [InputPackingPass(), NonlinearToPolynomialPass(), BootstrappingInsertionPass()],
            "BootstrappingInsertionPass found the linear node '0', which LinearLayerBSGSPass removes",
        ),
        (
            [InputPackingPass(), NonlinearToPolynomialPass(), LinearLayerBSGSPass(), BootstrappingInsertionPass()],
            "BootstrappingInsertionPass needs a rescaled graph: put RescalingInsertionPass before it",
        ),
        ([InputPackingPass(), CostAnalysisPass()], "CostAnalysisPass found the activation node '1'"),
    ],
)
def test_passes_out_of_order_name_the_missing_pass(passes, match):
    ctx = CompilationContext(HEScheme.CKKS, CKKSParameters(), FakeBackend())
    with pytest.raises(PassError, match=match):
        CKKSCompiler(ctx, PassPipeline(passes + [DeadCodeEliminationPass()])).compile(small(), torch.randn(32, 4))
