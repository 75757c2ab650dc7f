"""Error and warning classes raised by qfhe.

Every error derives from :class:`QfheError` and also from the builtin exception it refines, so
``except ValueError`` keeps working for callers that do not know qfhe.

Examples
--------
>>> from qfhe.errors import UnsupportedOpError, QfheError
>>> issubclass(UnsupportedOpError, ValueError) and issubclass(UnsupportedOpError, QfheError)
True
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class QfheError(Exception):
    """Base class of every error raised by qfhe.

    Raised itself only by ``BatchResult.raise_for_errors()``, listing the batch items that failed with their own
    errors; every other qfhe error derives from it and from the builtin exception it refines.

    What to do: catch ``qfhe.QfheError`` to handle any qfhe error; catch the builtin (``ValueError``,
    ``RuntimeError``, ...) where qfhe is one library among others.
    """


class UnsupportedOpError(QfheError, ValueError):
    """A graph node uses an operation qfhe cannot compile (the message names the node and op).

    Raised when importing a torch, Brevitas or ONNX model whose graph holds an operation, a parameter value or an
    operator domain outside the supported table (Operations page), a float value read by an integer op in a Brevitas
    model, or pruning a layer qfhe cannot prune.

    What to do: read the node and op the message names and its suggestion (Softmax: apply it on the client after
    decryption; Brevitas: put a ``QuantIdentity`` where it says). Rewrite that part of the model with supported
    operations, or move it to the client.
    """


class ConfigurationError(QfheError, ValueError):
    """A compile parameter (n_bits, rounding_threshold_bits, p_error, ...) is invalid.

    Raised when an argument of a compile, tuning, pruning, deployment or estimator call has the wrong type, is out
    of range, or contradicts another one (``p_error`` with ``global_p_error``, TFHE-only arguments with
    ``scheme="ckks"``, an unknown layer name in a per-layer dict, CKKS parameters that cannot hold the model).

    What to do: the message names the parameter, what it got and what it accepts; change that argument.
    """


class InputValidationError(QfheError, ValueError):
    """Data passed to ``forward`` or ``compile_*`` is malformed (NaN/inf, shape, dtype).

    Raised when an input or label array has NaN or inf, the wrong number of dimensions or features, a non-numeric
    dtype, or labels a classifier never saw.

    What to do: pass finite numeric arrays of the shape the model was compiled for (the message gives both shapes);
    impute missing values before qfhe.
    """


class InputsetError(QfheError, ValueError):
    """The calibration inputset cannot calibrate the model (empty, one sample, wrong shape).

    Raised when the inputset given to ``compile_*`` or ``quantize_*`` is empty, has a single sample, is ragged, or
    the model fails on it.

    What to do: pass a few hundred representative samples (at least 2) with the model's input shape.
    """


class BitWidthError(QfheError, ValueError):
    """A table lookup would need more input bits than TFHE supports (16).

    Raised when compiling a model whose accumulator (or sum over trees) would be read by a lookup wider than 16
    bits.

    What to do: round the lookups (``rounding_threshold_bits=6``), use fewer bits (``n_bits``), prune to at most k
    active inputs per neuron (``qfhe.prune.prune_to_accumulator``), or for trees use fewer estimators or a lower
    ``n_bits``.
    """


class NoParametersError(QfheError, RuntimeError):
    """concrete-python found no cryptographic parameters for a circuit at the requested error probability.

    Raised when concrete's optimizer finds no parameters for the circuit's lookups at the requested ``p_error`` /
    ``global_p_error`` (lookups too wide for so small an error).

    What to do: allow a larger error probability, round the lookups to fewer bits, or let ``find_best_p_error``
    search (it counts this as a failing value).
    """


class CircuitOverflowError(QfheError, OverflowError):
    """An intermediate value leaves the range the circuit was compiled for (``strict=True``).

    Raised when ``forward(..., strict=True)`` meets an input that drives a value beyond its compiled range, where
    FHE would wrap it around; raised before anything is simulated or encrypted.

    What to do: calibrate on data that covers such inputs, add ``calibration_margin``, or compile with
    ``bitwidth_method="interval"``, which no input can overflow.
    """


class SaturationError(QfheError, OverflowError):
    """``strict=True``: a hidden activation left its calibrated range and its requantization clipped it.

    Raised when ``forward(..., strict=True)`` of a post-training-quantized model drives hidden activations beyond
    their calibrated range by more than 10 % of it.

    What to do: calibrate on data that covers such inputs, or add ``calibration_margin``; without ``strict`` it is a
    ``SaturationWarning``.
    """


class KeysNotGeneratedError(QfheError, RuntimeError):
    """``fhe="execute"`` was requested before ``keygen()``.

    Raised when ``fhe="execute"`` (TFHE or CKKS) runs on a circuit whose keys were never generated; concrete would
    otherwise generate them silently inside ``encrypt``.

    What to do: call ``qm.fhe_circuit.keygen()`` (``clf.fhe_circuit.keygen()`` for an estimator, ``cm.keygen()`` for
    CKKS) once, then run.
    """


class NotCompiledError(QfheError, RuntimeError):
    """An operation needs a compiled circuit that does not exist yet.

    Raised when ``fhe="simulate"`` or ``"execute"``, ``fhe_circuit`` or a deployment is asked of a model or
    estimator that was quantized or fitted but not compiled.

    What to do: call ``compile`` first (``qm.compile()``, ``clf.compile(X_train)``).
    """


class NotFittedError(QfheError, _SklearnNotFittedError):
    """An estimator method needs ``fit`` first (also scikit-learn's ``NotFittedError``).

    Raised when ``predict``, ``compile`` or another method of a ``qfhe.sklearn`` estimator is called before ``fit``.

    What to do: call ``fit(X, y)`` first, or import a fitted scikit-learn model with ``from_sklearn_model``.
    """


class PassError(QfheError, RuntimeError):
    """A compiler pass found its requirements unmet or broke an invariant (names the pass).

    Raised when a pass (TFHE or CKKS) runs out of order or on a graph that does not meet what it requires, or an IR
    invariant is broken.

    What to do: for a custom CKKS pipeline, put first the pass the message names; anywhere else it is a bug in qfhe:
    please report it with the model.
    """


class CKKSScheduleError(QfheError, ValueError):
    """A CKKS op graph breaks a level/scale/size rule (names the node, the rule and the remedy).

    Raised when a CKKS graph runs out of levels, a rescale misses the waterline, an input exceeds the slots, or
    SEAL's level or scale departs from the compiled schedule.

    What to do: follow the remedy in the message: add ``BootstrappingInsertionPass`` or primes to ``coeff_modulus``,
    lower the polynomial degree, or use ``CKKSParameters.for_model``.
    """


class PolynomialRangeError(QfheError, ValueError):
    """CKKS, ``strict=True``: an activation input left its polynomial's fitted range.

    Raised when ``forward(..., strict=True)`` or ``compiled(x, strict=True)`` of a CKKS model meets an activation
    input outside the range its polynomial was fitted on.

    What to do: calibrate on data that covers such inputs (the fitted range is the calibrated one plus 10 %), or
    accept the extrapolation without ``strict`` (a ``PolynomialRangeWarning``).
    """


class ArtifactError(QfheError, ValueError):
    """A deployment artifact is tampered, truncated, incomplete or from an incompatible version (names the member).

    Raised when ``client.zip`` or ``server.zip`` has a signature or digest that does not match, missing, unexpected,
    oversized or malformed members, or a circuit that does not rebuild to the recorded client specs.

    What to do: use the artifacts ``FHEModelDev.save`` wrote, unchanged, or save the model again with this qfhe
    version; check ``verify_key`` / ``expected_sha256``.
    """


class CiphertextError(QfheError, ValueError):
    """Encrypted data or evaluation keys sent to a server are malformed, truncated or for another model.

    Raised when a server (or a client decrypting a reply) receives bytes that are not this circuit's ciphertexts or
    keys, or another number of results than samples.

    What to do: send what ``FHEModelClient`` produced for these artifacts; make new keys after the model changes.
    The HTTP server answers 400.
    """


class UnknownKeyError(QfheError, KeyError):
    """A server has no evaluation keys under this ``key_id`` (never uploaded, or evicted).

    Raised when ``server.run`` or ``POST /predict`` names a ``key_id`` the server does not hold.

    What to do: upload the evaluation keys again (``add_keys``, ``POST /keys``) and use the new ``key_id``. The HTTP
    server answers 404.
    """

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class WorkerCrashedError(QfheError, RuntimeError):
    """The worker process running a request stopped (a native crash, out of memory, killed); it was restarted.

    Raised when the worker process that ran a request died; only that request fails, every other request and stored
    key survives.

    What to do: retry the request; if it crashes again, the server's log has the detail. The HTTP server answers
    500.
    """


class RequestTimeoutError(QfheError, TimeoutError):
    """A request did not finish within the server's deadline; its worker was stopped and restarted.

    Raised when a request, queueing included, takes longer than the server's ``--timeout``.

    What to do: send fewer samples per request, or start the server with a longer ``--timeout``. The HTTP server
    answers 504.
    """


class ServerBusyError(QfheError, RuntimeError):
    """The server has as much work queued as it accepts (or as many key uploads); try again later.

    Raised when more requests are queued or running than ``--max-pending``, or more key uploads than
    ``--max-key-uploads``.

    What to do: retry after the ``Retry-After`` delay (HTTP 503), or raise the limits if the machine has room.
    """


class ServerError(QfheError, RuntimeError):
    """An inference server answered with an error (``status`` is the HTTP status code).

    Raised when ``qfhe.deploy.HTTPClient`` receives an answer other than 200; the message is the server's JSON
    ``error`` and ``detail``.

    What to do: read ``status`` and the message: 400 and 404 mean the request or key id is wrong, 503 retry later,
    500 and 504 the server's log has the detail.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class QfheWarning(UserWarning):
    """Base class of qfhe warnings.

    Never issued itself; every qfhe warning derives from it.

    What to do: filter ``qfhe.QfheWarning`` to silence every qfhe warning at once, or make them errors
    (``warnings.simplefilter("error", qfhe.QfheWarning)``).
    """


class InputClippingWarning(QfheWarning):
    """Inputs fell outside the calibrated range and were clipped.

    Issued when inputs lie beyond their calibrated range by more than 10 % of its width (counted per feature) in
    ``forward``, ``predict`` or a tuning run.

    What to do: look: a few in a test set are normal; many mean the calibration data do not represent the inputs, so
    calibrate on data like them.
    """


class OverflowRiskWarning(QfheWarning):
    """An intermediate value left the range the circuit was compiled for; FHE would wrap it.

    Issued when any ``forward`` mode finds, in the clear integers, a value beyond the range the circuit was compiled
    for (the message names the layer and the number of samples).

    What to do: act now: recalibrate on data like these inputs, add ``calibration_margin``, or compile with
    ``bitwidth_method="interval"``; ``strict=True`` makes it a ``CircuitOverflowError``.
    """


class SaturationWarning(QfheWarning):
    """Hidden activations left their calibrated range and were clipped (saturated) by the requantization.

    Issued when a ``forward`` of a post-training-quantized model drives hidden activations beyond their calibrated
    range by more than 10 %: inputs inside the calibrated input box that combine unlike the calibration data. FHE
    clips them silently.

    What to do: act now, the result can be far from the float model's: calibrate on data that covers such inputs.
    ``strict=True`` makes it a ``SaturationError``.
    """


class LatencyWarning(QfheWarning):
    """A setting makes the circuit much slower than it needs to be (e.g. wide table lookups left unrounded).

    Issued when a compiled circuit has unrounded lookups wider than 8 bits, or evaluation keys over 8 GB.

    What to do: when speed matters: ``rounding_threshold_bits=6`` or ``"auto"``, fewer bits, or a larger ``p_error``
    (smaller keys).
    """


class TuningWarning(QfheWarning):
    """A tuning search could not meet its tolerance (it says what it kept), or had nothing to tune.

    Issued when ``find_best_p_error`` finds no value within ``max_metric_loss`` (``result.found`` is False and the
    safest value tried is kept), or the circuit has no lookup to tune.

    What to do: allow a larger tolerance, use more validation data, or round fewer bits; on a circuit without
    lookups ``p_error`` has no effect.
    """


class SmallInputsetWarning(QfheWarning):
    """The calibration inputset is small; ranges may not cover real data.

    Issued when an inputset has fewer than 100 samples.

    What to do: calibrate on a few hundred representative samples.
    """


class CalibrationWarning(QfheWarning):
    """The calibration inputset has a feature that is constant, or whose range a few outliers dominate.

    Issued when a range a quantizer reads (an input feature or a hidden value) is wider than 8 times the range of
    its 0.5-99.5 percentile body, a feature never varies, or, with one input quantizer, features collapse onto a few
    codes.

    What to do: remove the outliers or use ``calibration="percentile"``; standardise the features, or keep
    ``per_feature_inputs=True``.
    """


class InsecureParametersWarning(QfheWarning):
    """The CKKS parameters give less than 128-bit security.

    Issued when CKKS parameters exceed the 128-bit bound on log2(QP) for their ring degree on the fake backend (real
    encryption refuses them unless ``allow_insecure=True``).

    What to do: outside tests, use ``CKKSParameters.for_model``, fewer or smaller primes, or a larger
    ``poly_modulus_degree``.
    """


class NarrowCalibrationWarning(QfheWarning):
    """The CKKS calibration input is a single sample: polynomial ranges will be narrow.

    Issued when a CKKS model is compiled on one calibration sample.

    What to do: calibrate on many representative samples, so each activation's polynomial is fitted on the range
    real inputs reach.
    """


class PolynomialRangeWarning(QfheWarning):
    """CKKS: activation inputs fell outside the range their polynomial was fitted on (it extrapolates).

    Issued when any CKKS ``forward`` mode meets an activation input outside its fitted range (``cm.check_ranges(X)``
    gives the counts).

    What to do: calibrate on data that covers such inputs; ``strict=True`` makes it a ``PolynomialRangeError``.
    """


class CKKSPrecisionWarning(QfheWarning):
    """CKKS on real primes: a scale-aligning constant is encoded so coarsely that results lose precision.

    Issued when ``keygen()`` on SEAL finds that the constant aligning a ciphertext product's scale carries a
    relative error above 1e-4 (30-bit primes).

    What to do: use a larger scale (``CKKSParameters.for_model``'s default, 2^40) or primes closer to the scale.
    """


__all__ = [
    "QfheError",
    "UnsupportedOpError",
    "ConfigurationError",
    "InputValidationError",
    "InputsetError",
    "BitWidthError",
    "NoParametersError",
    "CircuitOverflowError",
    "SaturationError",
    "KeysNotGeneratedError",
    "NotCompiledError",
    "NotFittedError",
    "PassError",
    "CKKSScheduleError",
    "PolynomialRangeError",
    "ArtifactError",
    "CiphertextError",
    "UnknownKeyError",
    "WorkerCrashedError",
    "RequestTimeoutError",
    "ServerBusyError",
    "ServerError",
    "QfheWarning",
    "InputClippingWarning",
    "OverflowRiskWarning",
    "SaturationWarning",
    "TuningWarning",
    "LatencyWarning",
    "SmallInputsetWarning",
    "CalibrationWarning",
    "InsecureParametersWarning",
    "NarrowCalibrationWarning",
    "PolynomialRangeWarning",
    "CKKSPrecisionWarning",
]
