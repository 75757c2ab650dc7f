"""concrete-python, imported in one place.

concrete-python 2.11 imports the deprecated ``pkg_resources`` (setuptools warns about it), and
also torch. That warning is concrete's, not the user's, so the first import happens here under a
filter; and ``import qfhe`` alone does not import concrete, so that processes which never compile
or encrypt (the HTTP server's main process) start without it and without torch.

Examples
--------
>>> fhe.Configuration().p_error is None
True
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message="Deprecated call to `pkg_resources", category=DeprecationWarning)
    from concrete import fhe  # noqa: F401

__all__ = ["fhe"]
