"""Attributes of a package that are imported on first use (PEP 562).

The compile API pulls in torch, Brevitas and the frontend; the deployed client and server need
none of it. A package lists those names here instead of importing them eagerly.

Examples
--------
>>> getattr_, dir_ = lazy_attributes("demo", {"sqrt": "math"}, {})
>>> getattr_("sqrt")(9.0)
3.0
"""

from __future__ import annotations

import importlib


def lazy_attributes(package: str, table: dict, namespace: dict):
    """``__getattr__`` and ``__dir__`` for ``package``: name → module to import it from.

    A loaded attribute is stored in ``namespace`` (the package's globals), so it loads once.

    Examples
    --------
    >>> ns = {}
    >>> getattr_, _ = lazy_attributes("demo", {"pi": "math"}, ns)
    >>> round(getattr_("pi"), 2), "pi" in ns
    (3.14, True)
    """

    def __getattr__(name):
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
