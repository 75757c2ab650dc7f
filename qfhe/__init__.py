"""qfhe: compile PyTorch models to circuits that run on encrypted data.

Examples
--------
>>> import qfhe
>>> callable(qfhe.compile_torch_model)
True
"""

from qfhe.compile import compile_torch_model
from qfhe.errors import (
    BitWidthError,
    CircuitOverflowError,
    ConfigurationError,
    InputClippingWarning,
    InputsetError,
    InputValidationError,
    KeysNotGeneratedError,
    NotCompiledError,
    OverflowRiskWarning,
    PassError,
    QfheError,
    QfheWarning,
    SmallInputsetWarning,
    UnsupportedOpError,
)
from qfhe.model import QuantizedModule
from qfhe.report import BitwidthReport

__version__ = "0.1.0"

__all__ = [
    "compile_torch_model",
    "QuantizedModule",
    "BitwidthReport",
    "QfheError",
    "UnsupportedOpError",
    "ConfigurationError",
    "InputValidationError",
    "InputsetError",
    "BitWidthError",
    "CircuitOverflowError",
    "KeysNotGeneratedError",
    "NotCompiledError",
    "PassError",
    "QfheWarning",
    "InputClippingWarning",
    "OverflowRiskWarning",
    "SmallInputsetWarning",
]
