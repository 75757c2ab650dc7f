"""concrete-python, imported in one place, and the one process-wide change qfhe makes.

* concrete-python 2.11 imports the deprecated ``pkg_resources`` (setuptools warns about it), and
  also torch. That warning is concrete's, not the user's, so the first import happens here under a
  filter; ``import qfhe`` alone does not import concrete, so processes that never compile or
  encrypt (the HTTP server's main process) start without it and without torch.
* concrete registers an ``atexit`` hook (``_terminate_df_parallelization``) that, once its runtime
  has run a circuit (a simulation is enough), ends the process with status 0: a script that raises
  or calls ``sys.exit(3)`` after ``fhe="simulate"`` would report success to its shell or CI. qfhe
  removes that hook here. Measured with concrete 2.11 (``tests/test_tfhe.py``): processes then exit
  with their own status, other ``atexit`` handlers still run, and circuits compiled with
  ``dataflow_parallelize=True`` shut down cleanly too.

Examples
--------
>>> fhe.Configuration().p_error is None
True
"""

import atexit
import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message="Deprecated call to `pkg_resources", category=DeprecationWarning)
    import concrete.compiler as _compiler
    from concrete import fhe  # noqa: F401

atexit.unregister(_compiler._terminate_df_parallelization)

__all__ = ["fhe"]
