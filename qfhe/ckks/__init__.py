"""The CKKS path: parameters, the HE op graph and its passes, the fake and SEAL backends, the compiler.

Examples
--------
>>> from qfhe.ckks import CKKSParameters
>>> CKKSParameters(8192, [60, 40, 40, 60], 2**40).slots
4096
"""

from qfhe.ckks.backends.fake import FakeBackend
from qfhe.ckks.backends.seal import RunReport, SEALBackend, SEALEvaluator, SEALKeys
from qfhe.ckks.compiler import CKKSCompiler, CompilationContext, CompiledCKKSModel
from qfhe.ckks.params import CKKSParameters, HEScheme
from qfhe.errors import InsecureParametersWarning

__all__ = ["CKKSParameters", "HEScheme", "CompilationContext", "FakeBackend", "CKKSCompiler", "CompiledCKKSModel",
           "SEALBackend", "SEALKeys", "SEALEvaluator", "RunReport",
           "InsecureParametersWarning"]
