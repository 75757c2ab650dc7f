"""Frontends: turn user models into float qfhe graphs."""

from qfhe.frontend.torch_fx import import_torch

__all__ = ["import_torch"]
