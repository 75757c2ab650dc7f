"""Choose CKKS parameters for a model: the smallest 128-bit-secure ring that fits it without bootstrapping.

The model is compiled once on a long probe chain to learn how many levels it consumes and how
large its values get (FakeBackend on the calibration data). Then:

* scale Δ = 2^(precision_bits + 10): SEAL's fresh noise is about 2^10 in units of the scale
  at these ring sizes, so ``precision_bits`` is what remains for the values;
* one rescaling prime of log2 Δ bits per level consumed;
* q_0 = log2 Δ + the integer bits of the largest value + 4 bits of margin (the decryption level);
* the special prime as large as the largest data prime (key switching adds its noise divided by P);
* the smallest N of 2^13, 2^14, 2^15 whose 128-bit bound (``MAX_LOG_QP_128``) holds this
  chain and whose slots hold the packed layers. N = 2^16 has no 128-bit bound in SEAL and is
  never offered.

Examples
--------
>>> import numpy as np, torch
>>> _ = torch.manual_seed(0)
>>> m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
>>> p = select_parameters(m, np.random.RandomState(0).randn(64, 4), precision_bits=30, degree=3)
>>> p.poly_modulus_degree, p.coeff_modulus, p.is_secure
(16384, (47, 40, 40, 40, 40, 47), True)
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from qfhe.ckks.params import MAX_LOG_QP_128, CKKSParameters
from qfhe.errors import CKKSScheduleError, ConfigurationError, InsecureParametersWarning
from qfhe.validation import as_int

#: Bits of SEAL noise, in units of the scale, that the scale must carry on top of the precision.
NOISE_BITS = 10
#: Ring degrees offered: those with a 128-bit bound in SEAL's table.
RING_DEGREES = (8192, 16384, 32768)
_PROBE_LEVELS = 60


def _compile(model, X, params, pipeline):
    from qfhe.ckks.backends.fake import FakeBackend
    from qfhe.ckks.compiler import CKKSCompiler, CompilationContext
    from qfhe.ckks.params import HEScheme

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureParametersWarning)
        return CKKSCompiler(CompilationContext(HEScheme.CKKS, params, FakeBackend()), pipeline).compile(model, X)


def _peak(compiled, X) -> float:
    """Largest |value| any ciphertext holds on the calibration data (FakeBackend)."""
    from qfhe.ckks.backends.fake import FakeBackend

    peak = [0.0]

    class _Watch(FakeBackend):
        def _check_magnitude(self, node, v, state, params):
            peak[0] = max(peak[0], float(np.abs(v).max()) if v.size else 0.0)

    batch = compiled.samples_per_ciphertext
    for i in range(0, min(len(X), 256), batch):
        _Watch().run(compiled.graph, compiled.params, compiled._flat(X[i : i + batch]))
    return peak[0]


def select_parameters(
    model, X_calib, precision_bits: int = 30, pipeline=None, degree: int = 8, strategy: str = "row_major"
) -> CKKSParameters:
    """The implementation of :meth:`CKKSParameters.for_model` (see the module docstring).

    Raises
    ------
    ConfigurationError
        When no 128-bit-secure ring up to N = 2^15 holds the model without bootstrapping; the
        message gives the levels and bits needed and what to change.

    Examples
    --------
    >>> import numpy as np, torch
    >>> select_parameters(torch.nn.Linear(2, 2), np.zeros((4, 2)), precision_bits=100)
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: precision_bits must be an int from 10 to 40, got 100 (int)
    """
    from qfhe.ckks.passes import default_pipeline
    from qfhe.ckks.passes.bootstrapping import BootstrappingInsertionPass
    from qfhe.validation import to_numpy

    precision_bits = as_int("precision_bits", precision_bits, 10, 40)
    if pipeline is None:
        pipeline = default_pipeline(degree=degree, bootstrapping=False, strategy=strategy)
    if any(isinstance(p, BootstrappingInsertionPass) for p in pipeline.passes):
        raise ConfigurationError(
            "for_model picks parameters that fit without bootstrapping; pass a pipeline without "
            "BootstrappingInsertionPass"
        )
    X = to_numpy(X_calib, "X_calib")
    s = min(60, precision_bits + NOISE_BITS)
    probe = _compile(
        model, X, CKKSParameters(32768, (60,) + (s,) * _PROBE_LEVELS + (60,), 2.0**s, allow_insecure=True), pipeline
    )
    levels = probe.params.max_level - probe.cost_analysis.final_level
    int_bits = max(1, math.ceil(math.log2(max(_peak(probe, X), 1.0))) + 1)
    q0 = s + int_bits + 4
    if q0 > 60:
        raise ConfigurationError(
            f"values reach 2^{int_bits - 1} on the calibration data; with a scale of 2^{s} the last prime would need "
            f"{q0} bits, more than SEAL's 60. Lower precision_bits (now {precision_bits}) or scale the model's inputs"
        )
    chain = (q0,) + (s,) * levels + (max(q0, s),)
    total = sum(chain)
    for n in RING_DEGREES:
        if total > MAX_LOG_QP_128[n]:
            continue
        params = CKKSParameters(n, chain, 2.0**s)
        try:
            compiled = _compile(model, X, params, pipeline)
        except (ConfigurationError, CKKSScheduleError):
            continue  # too few slots for the packed layers at this N
        try:
            _peak(compiled, X)  # the magnitude check of every op, on the calibration data
        except CKKSScheduleError as exc:
            raise ConfigurationError(
                f"the selected parameters {params.describe()} overflow on the calibration data "
                f"({exc}); lower precision_bits"
            ) from None
        return params
    raise ConfigurationError(
        f"the model consumes {levels} levels: with a {s}-bit scale (precision_bits={precision_bits}) the modulus needs "
        f"{total} bits, more than the {MAX_LOG_QP_128[32768]} bits N = 2^15 allows at 128-bit security (SEAL offers "
        f"no secure N = 2^16). Use a lower polynomial degree (degree={degree}; each activation costs "
        "ceil(log2(degree + 1)) levels), fewer layers, lower precision_bits, or bootstrapping on the FakeBackend only"
    )
