"""The CKKS path: parameters, the HE op graph and its passes, the fake and SEAL backends, the compiler.

Examples
--------
>>> from qfhe.ckks import CKKSParameters
>>> CKKSParameters(8192, [60, 40, 40, 60], 2**40).slots
4096
"""

from qfhe._lazy import lazy_attributes
from qfhe.ckks.params import CKKSParameters, HEScheme
from qfhe.errors import InsecureParametersWarning

__all__ = [
    "CKKSParameters",
    "HEScheme",
    "CompilationContext",
    "FakeBackend",
    "CKKSCompiler",
    "CompiledCKKSModel",
    "SEALBackend",
    "SEALKeys",
    "SEALEvaluator",
    "RunReport",
    "InsecureParametersWarning",
]

# The compiler imports torch (through the frontend), and the backends import SEAL: loaded on first
# use, so that a deployed server (qfhe.deploy) imports only what evaluation needs.
_LAZY = {
    "FakeBackend": "qfhe.ckks.backends.fake",
    "SEALBackend": "qfhe.ckks.backends.seal",
    "SEALKeys": "qfhe.ckks.backends.seal",
    "SEALEvaluator": "qfhe.ckks.backends.seal",
    "RunReport": "qfhe.ckks.backends.seal",
    "CKKSCompiler": "qfhe.ckks.compiler",
    "CompilationContext": "qfhe.ckks.compiler",
    "CompiledCKKSModel": "qfhe.ckks.compiler",
}


__getattr__, __dir__ = lazy_attributes("qfhe.ckks", _LAZY, globals())
