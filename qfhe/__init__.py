"""qfhe: compile PyTorch models to circuits that run on encrypted data.

Examples
--------
>>> import qfhe
>>> callable(qfhe.compile_torch_model)
True
"""

from qfhe import errors
from qfhe._lazy import lazy_attributes
from qfhe.errors import *  # noqa: F401,F403  (every error class is public API)

__version__ = "0.1.0"

__all__ = [
    "compile_torch_model",
    "compile_onnx_model",
    "quantize_torch_model",
    "compile_brevitas_qat_model",
    "quantize_brevitas_qat_model",
    "QuantizedModule",
    "BitwidthReport",
    "find_best_p_error",
    "PErrorSearchResult",
    "tune_circuit",
] + errors.__all__

# The compile API imports torch and concrete-python (qfhe._concrete); it is loaded on first use so
# that processes which never compile (the HTTP server's main process) start without either.
_LAZY = {
    "compile_torch_model": "qfhe.compile",
    "compile_onnx_model": "qfhe.compile",
    "quantize_torch_model": "qfhe.compile",
    "compile_brevitas_qat_model": "qfhe.compile",
    "quantize_brevitas_qat_model": "qfhe.compile",
    "QuantizedModule": "qfhe.model",
    "BitwidthReport": "qfhe.report",
    "find_best_p_error": "qfhe.tune",
    "PErrorSearchResult": "qfhe.tune",
    "tune_circuit": "qfhe.tune",
}


__getattr__, __dir__ = lazy_attributes("qfhe", _LAZY, globals())
