"""Quantizers and quantization settings."""

from qfhe.quant.config import NBits, Rounding, parse_n_bits, parse_rounding
from qfhe.quant.quantizer import UniformQuantizer

__all__ = ["UniformQuantizer", "NBits", "Rounding", "parse_n_bits", "parse_rounding"]
