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
    """Base class of every error raised by qfhe."""


class UnsupportedOpError(QfheError, ValueError):
    """A graph node uses an operation qfhe cannot compile (the message names the node and op)."""


class ConfigurationError(QfheError, ValueError):
    """A compile parameter (n_bits, rounding_threshold_bits, p_error, ...) is invalid."""


class InputValidationError(QfheError, ValueError):
    """Data passed to ``forward`` or ``compile_*`` is malformed (NaN/inf, shape, dtype)."""


class InputsetError(QfheError, ValueError):
    """The calibration inputset cannot calibrate the model (empty, one sample, wrong shape)."""


class BitWidthError(QfheError, ValueError):
    """A table lookup would need more input bits than TFHE supports (16)."""


class NoParametersError(QfheError, RuntimeError):
    """concrete-python found no cryptographic parameters for a circuit at the requested error
    probability (its lookups are too wide for it): allow a larger ``p_error`` or round the lookups."""


class CircuitOverflowError(QfheError, OverflowError):
    """An intermediate value leaves the range the circuit was compiled for (``strict=True``)."""


class SaturationError(QfheError, OverflowError):
    """``strict=True``: a hidden activation left its calibrated range and its requantization clipped it."""


class KeysNotGeneratedError(QfheError, RuntimeError):
    """``fhe="execute"`` was requested before ``keygen()``."""


class NotCompiledError(QfheError, RuntimeError):
    """An operation needs a compiled circuit that does not exist yet."""


class NotFittedError(QfheError, _SklearnNotFittedError):
    """An estimator method needs ``fit`` first (also scikit-learn's ``NotFittedError``)."""


class PassError(QfheError, RuntimeError):
    """A compiler pass found its requirements unmet or broke an invariant (names the pass)."""


class CKKSScheduleError(QfheError, ValueError):
    """A CKKS op graph breaks a level/scale/size rule (names the node, the rule and the remedy)."""


class PolynomialRangeError(QfheError, ValueError):
    """CKKS, ``strict=True``: an activation input left its polynomial's fitted range."""


class ArtifactError(QfheError, ValueError):
    """A deployment artifact is tampered, truncated, incomplete or from an incompatible version (names the member)."""


class CiphertextError(QfheError, ValueError):
    """Encrypted data or evaluation keys sent to a server are malformed, truncated or for another model."""


class UnknownKeyError(QfheError, KeyError):
    """A server has no evaluation keys under this ``key_id`` (never uploaded, or evicted)."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class WorkerCrashedError(QfheError, RuntimeError):
    """The worker process running a request stopped (a native crash, out of memory, killed); it was restarted."""


class RequestTimeoutError(QfheError, TimeoutError):
    """A request did not finish within the server's deadline; its worker was stopped and restarted."""


class ServerBusyError(QfheError, RuntimeError):
    """The server has as much work queued as it accepts (or as many key uploads); try again later."""


class ServerError(QfheError, RuntimeError):
    """An inference server answered with an error (``status`` is the HTTP status code)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class QfheWarning(UserWarning):
    """Base class of qfhe warnings."""


class InputClippingWarning(QfheWarning):
    """Inputs fell outside the calibrated range and were clipped."""


class OverflowRiskWarning(QfheWarning):
    """An intermediate value left the range the circuit was compiled for; FHE would wrap it."""


class SaturationWarning(QfheWarning):
    """Hidden activations left their calibrated range and were clipped (saturated) by the requantization,
    silently in FHE: inputs inside the calibrated input box that combine unlike the calibration data."""


class LatencyWarning(QfheWarning):
    """A setting makes the circuit much slower than it needs to be (e.g. wide table lookups left unrounded)."""


class TuningWarning(QfheWarning):
    """A tuning search could not meet its tolerance (it says what it kept), or had nothing to tune."""


class SmallInputsetWarning(QfheWarning):
    """The calibration inputset is small; ranges may not cover real data."""


class CalibrationWarning(QfheWarning):
    """The calibration inputset has a feature that is constant, or whose range a few outliers dominate."""


class InsecureParametersWarning(QfheWarning):
    """The CKKS parameters give less than 128-bit security."""


class NarrowCalibrationWarning(QfheWarning):
    """The CKKS calibration input is a single sample: polynomial ranges will be narrow."""


class PolynomialRangeWarning(QfheWarning):
    """CKKS: activation inputs fell outside the range their polynomial was fitted on (it extrapolates)."""


class CKKSPrecisionWarning(QfheWarning):
    """CKKS on real primes: a scale-aligning constant is encoded so coarsely that results lose precision."""


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
