"""CKKS on real encryption (SEAL through tenseal.sealapi): execute against simulate and float, op counts,
keys, batching, serialization, and the refusals."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import qfhe
from qfhe.ckks import CKKSCompiler, CKKSParameters, CompilationContext, HEScheme, SEALBackend, SEALEvaluator, SEALKeys
from qfhe.ckks.backends.seal import load_bytes, rotation_steps, to_bytes
from qfhe.ckks.passes import default_pipeline
from qfhe.errors import (
    CKKSPrecisionWarning,
    CKKSScheduleError,
    ConfigurationError,
    InputValidationError,
    InsecureParametersWarning,
    KeysNotGeneratedError,
    PolynomialRangeWarning,
)


def small_mlp():
    """16 -> 8 -> 4 with GELU and sigmoid: the issue's MLP, scaled down so that it fits N = 2^14."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 8), nn.GELU(), nn.Linear(8, 4), nn.Sigmoid())


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(1)
    return torch.randn(256, 16).numpy(), torch.randn(6, 16).numpy().clip(-2, 2)


@pytest.fixture(scope="module")
def executed(data):
    """Compiled with the front door's defaults (for_model parameters), keys made, six samples run."""
    X, Xt = data
    cm = qfhe.compile_torch_model(
        small_mlp(), X, scheme="ckks", pipeline=default_pipeline(degree=4, bootstrapping=False)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", CKKSPrecisionWarning)  # 40-bit primes: the aligning constants are precise
        cm.keygen()
    return cm, cm.forward(Xt, fhe="execute")


def test_execute_matches_simulate_and_float(executed, data):
    cm, y = executed
    _, Xt = data
    assert cm.params.is_secure and cm.params.poly_modulus_degree <= 16384
    simulated, float_out = cm.forward(Xt, fhe="simulate"), small_mlp()(torch.tensor(Xt)).detach().numpy()
    assert y.shape == (6, 4)
    assert np.abs(y - simulated).max() < 1e-4  # SEAL's noise only
    assert np.abs(y - float_out).max() < 1e-2  # plus the polynomial fits


def test_op_counts_equal_cost_analysis(executed):
    cm, _ = executed
    run = cm.last_run
    assert run.op_counts == cm.cost_analysis.total_operations
    assert set(run.op_seconds) <= {k for k, v in run.op_counts.items() if v}
    assert run.evaluations == run.samples == 6 and run.samples_per_ciphertext == 1
    assert (
        run.seconds > 0
        and run.predicted_seconds > 0
        and run.latency_per_sample == pytest.approx(run.latency_per_ciphertext)
    )
    assert 0 < run.peak_live_ciphertexts < len(cm.graph.nodes)  # freed after their last use


def test_galois_keys_only_for_the_steps_used(executed):
    cm, _ = executed
    steps = sorted({n.attrs["k"] for n in cm.graph.nodes if n.op == "rotate"})
    assert cm.keys.steps == steps == rotation_steps(cm.graph)
    sizes = cm.keys.sizes()
    assert sizes["galois_keys"] == len(steps) * sizes["relin_keys"] > 0


def test_column_major_batches_samples_in_one_ciphertext(data):
    X, Xt = data
    pipeline = default_pipeline(degree=4, bootstrapping=False, strategy="column_major")
    cm = qfhe.compile_torch_model(small_mlp(), X, scheme="ckks", pipeline=pipeline)
    cm.keygen()
    y = cm.forward(Xt, fhe="execute")
    run = cm.last_run
    # as many samples as the slots allow: 8192 slots / 16 features
    assert run.samples_per_ciphertext == cm.samples_per_ciphertext == cm.params.slots // 16 == 512
    assert run.evaluations == 1 and run.samples == 6
    assert run.latency_per_sample == pytest.approx(run.latency_per_ciphertext / 6)
    assert run.op_counts == cm.cost_analysis.total_operations
    assert np.abs(y - cm.forward(Xt, fhe="simulate")).max() < 1e-4


def test_expert_api_runs_on_seal_and_refuses_bootstrapping(data):
    X, Xt = data
    params = CKKSParameters.for_model(small_mlp(), X, degree=4)
    ctx = CompilationContext(HEScheme.CKKS, params, SEALBackend())
    compiled = CKKSCompiler(ctx, default_pipeline(degree=4, bootstrapping=False)).compile(small_mlp(), X)
    with pytest.raises(KeysNotGeneratedError, match=r"call keygen\(\)"):
        compiled(Xt[:1])
    compiled.keygen()
    np.testing.assert_allclose(compiled(Xt[:2]), compiled.forward(Xt[:2], fhe="simulate"), atol=1e-4)
    deep = CKKSParameters(16384, [60] + [40] * 6 + [60], 2**40, bootstrap_depth=2)
    with pytest.raises(
        ConfigurationError,
        match=r"bootstrap node\(s\) .* has no CKKS bootstrapping, and qfhe never "
        r"fakes a refresh. Compile without BootstrappingInsertionPass",
    ):
        CKKSCompiler(CompilationContext(HEScheme.CKKS, deep, SEALBackend()), default_pipeline(degree=4)).compile(
            small_mlp(), X
        )


def test_insecure_parameters_need_allow_insecure(data):
    X, Xt = data
    insecure = CKKSParameters(8192, [60] + [40] * 8 + [60], 2**40)
    with pytest.raises(ConfigurationError, match=r"not 128-bit secure: log2\(QP\) = 440 > 218 allowed at N = 8192"):
        CKKSCompiler(
            CompilationContext(HEScheme.CKKS, insecure, SEALBackend()), default_pipeline(degree=4, bootstrapping=False)
        ).compile(small_mlp(), X)
    allowed = CKKSParameters(8192, [60] + [40] * 8 + [60], 2**40, allow_insecure=True)
    with pytest.warns(InsecureParametersWarning):
        cm = qfhe.compile_torch_model(
            small_mlp(), X, scheme="ckks", ckks_params=allowed, pipeline=default_pipeline(degree=4, bootstrapping=False)
        )
        cm.keygen()
    assert np.abs(cm.forward(Xt[:1], fhe="execute") - cm.forward(Xt[:1])).max() < 1e-3


def test_serialized_client_server_round_trip(executed, data):
    """The server gets parameters and evaluation keys as bytes and never the secret key."""
    cm, y = executed
    _, Xt = data
    keys = cm.keys
    wire = keys.evaluation_keys()
    assert "secret_key" not in wire and all(
        isinstance(wire[k], bytes) for k in ("parameters", "public_key", "relin_keys")
    )
    server = SEALEvaluator(cm.graph, cm.params, wire)
    sent = {k: to_bytes(v) for k, v in keys.encrypt(cm.graph, Xt[:1]).items()}
    received = {k: load_bytes("ciphertext", v, server.context) for k, v in sent.items()}
    replies = {k: to_bytes(v) for k, v in server.evaluate(received).items()}
    out = keys.decrypt(cm.graph, {k: load_bytes("ciphertext", v, keys.context) for k, v in replies.items()}, 1)
    np.testing.assert_allclose(out, y[:1], atol=1e-5)
    with pytest.raises(InputValidationError, match="these bytes are not a valid SEAL ciphertext for this context"):
        load_bytes("ciphertext", b"not a ciphertext", server.context)
    # what the keys hold is checked, not what the client says they hold
    needed = rotation_steps(cm.graph)
    partial = SEALKeys.generate(cm.params, needed[1:]).evaluation_keys()
    with pytest.raises(ConfigurationError, match=rf"no Galois keys for rotation steps \[{needed[0]}\]"):
        SEALEvaluator(cm.graph, cm.params, {**partial, "steps": needed})


def test_a_scale_mismatch_names_the_node(executed, data):
    cm, _ = executed
    _, Xt = data
    cts = cm.keys.encrypt(cm.graph, Xt[:1])
    name = next(iter(cts))
    cts[name].scale = 2.0**30
    with pytest.raises(
        CKKSScheduleError,
        match=rf"node '{name}' \(encrypt\): SEAL's scale 2\^30.0000 differs from the "
        r"schedule's 2\^40.0000",
    ):
        cm._evaluator.evaluate(cts)


def test_inputs_outside_the_fitted_range_warn_on_execute(executed, data):
    cm, _ = executed
    _, Xt = data
    with pytest.warns(PolynomialRangeWarning, match=r"layer '1': \d+ values outside"):
        cm.forward(Xt[:1] * 6, fhe="execute")


def test_for_model_errors(data):
    X, _ = data
    with pytest.raises(ConfigurationError, match="precision_bits must be an int from 10 to 40"):
        CKKSParameters.for_model(small_mlp(), X, precision_bits=64)
    with pytest.raises(ConfigurationError, match="pass a pipeline without BootstrappingInsertionPass"):
        CKKSParameters.for_model(small_mlp(), X, pipeline=default_pipeline())
    with pytest.raises(
        ConfigurationError,
        match=r"values reach 2\^\d+ on the calibration data; with a scale of 2\^40 "
        r"the last prime would need \d+ bits, more than SEAL's 60",
    ):
        CKKSParameters.for_model(nn.Linear(16, 4), X * 1e6)


def test_keys_serialize_and_reload():
    keys = SEALKeys.generate(CKKSParameters(8192, [60, 40, 60], 2**40), steps=[1, 3])
    wire = keys.evaluation_keys()
    gk = load_bytes("galois_keys", wire["galois_keys"], keys.context)
    assert gk.size() == 2 and wire["steps"] == [1, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_bytes("relin_keys", to_bytes(keys.relin_keys), keys.context).size() == 1


def test_coarse_primes_warn_about_precision(data):
    """30-bit primes sit up to 1e-3 away from a 2^30 scale: the ct×ct aligning constant rounds badly."""
    X, Xt = data
    params = CKKSParameters(16384, [50] + [30] * 8 + [50], 2**30)
    cm = qfhe.compile_torch_model(
        small_mlp(), X, scheme="ckks", ckks_params=params, pipeline=default_pipeline(degree=4, bootstrapping=False)
    )
    with pytest.warns(
        CKKSPrecisionWarning,
        match=r"node '.*_adj': the constant that aligns a ct×ct product's scale is "
        r"encoded at scale 0\.99\d+, which SEAL rounds to 1",
    ):
        cm.keygen()
