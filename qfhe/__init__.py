"""qfhe: compile PyTorch models to circuits that run on encrypted data.

Examples
--------
>>> import qfhe
>>> callable(qfhe.compile_torch_model)
True
"""

import warnings as _warnings

with _warnings.catch_warnings():
    # concrete-python 2.11 imports the deprecated pkg_resources; that warning is concrete's, not the user's.
    _warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    import concrete.fhe  # noqa: F401

from qfhe.compile import (compile_brevitas_qat_model, compile_torch_model, quantize_brevitas_qat_model,
                          quantize_torch_model)
from qfhe import errors
from qfhe.errors import *  # noqa: F401,F403  (every error class is public API)
from qfhe.model import QuantizedModule
from qfhe.report import BitwidthReport
from qfhe.tune import PErrorSearchResult, find_best_p_error

__version__ = "0.1.0"

__all__ = [
    "compile_torch_model",
    "quantize_torch_model",
    "compile_brevitas_qat_model",
    "quantize_brevitas_qat_model",
    "QuantizedModule",
    "BitwidthReport",
    "find_best_p_error",
    "PErrorSearchResult",
] + errors.__all__
