"""The quantization scheme, described once: every layer that needs the bias, the code range,
the dtypes or the names a file records reads them here (the reference, the table, the file
format, PyTorch/FBGEMM interop and ONNX export; the C kernels export their own bias, which a test
checks against this one). A second scheme (16-bit scales, 4-bit codes) is then one more
:class:`Scheme` in :data:`SCHEMES`, and the code that reads it, rather than an edit of every
hand-typed 128.

Examples
--------
>>> from rowquant._scheme import ROWWISE_U8
>>> ROWWISE_U8.bias, ROWWISE_U8.levels, ROWWISE_U8.code_range, ROWWISE_U8.bits
(128, 127, (1, 255), 8)
>>> ROWWISE_U8.metadata()
{'scheme': 'rowwise-symmetric-u8', 'bias': '128'}
>>> from rowquant._scheme import NBIT_SCHEMES
>>> NBIT_SCHEMES[4].name, NBIT_SCHEMES[4].kind, NBIT_SCHEMES[4].values_per_byte
('rowwise-affine-u4-f16', 'affine', 2)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["Scheme", "ROWWISE_U8", "ROWWISE_U8_BF16", "ROWWISE_U8_F16", "SYMMETRIC_SCHEMES",
           "symmetric_scheme_for", "ROWWISE_AFFINE_U4", "ROWWISE_AFFINE_U2", "SCHEMES",
           "NBIT_SCHEMES", "DEFAULT"]


@dataclass(frozen=True)
class Scheme:
    """A per-row quantization. ``kind="symmetric"``: ``scale = max|row| / levels``,
    ``code = floor(value / scale + bias + 0.5)``, ``value = (code - bias) * scale``.
    ``kind="affine"`` (4-bit and 2-bit rows in FBGEMM's N-bit layout, see
    :func:`rowquant.reference.quantize_nbit`): ``value = scale * code + bias`` with a float16
    scale and a float16 bias per row, codes packed ``8 // bits`` to a byte; there ``bias`` is 0
    (no fixed zero point: each row stores its own) and ``levels`` is ``2**bits - 1``, the codes'
    largest value."""

    name: str
    """The name files record in their metadata (``scheme``)."""
    bits: int
    """Bits per code."""
    bias: int
    """The code of 0 (the zero point): codes are stored unsigned, ``bias`` above the value."""
    levels: int
    """Steps from 0 to the row's largest magnitude: ``scale = max|row| / levels``."""
    code_dtype: np.dtype
    scale_dtype: np.dtype
    kind: str = "symmetric"
    """``"symmetric"`` (one scale, a fixed zero point ``bias``) or ``"affine"`` (a scale and a
    bias, i.e. the row's minimum, per row)."""
    scale_format: str = "float32"
    """How a scale is stored: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (numpy has no
    bfloat16: its bits are held in a uint16 array, ``scale_dtype``)."""

    @property
    def values_per_byte(self) -> int:
        """Codes packed into one byte (1 for 8-bit codes)."""
        return 8 // self.bits

    @property
    def code_range(self) -> tuple[int, int]:
        """The codes quantize writes, ``bias - levels`` to ``bias + levels`` (lookups read any
        code the dtype holds: other producers use more)."""
        return self.bias - self.levels, self.bias + self.levels

    def metadata(self) -> dict[str, str]:
        """What a file records of the scheme, beside rowquant's format and version (an affine
        scheme's biases are a tensor of the file, and its dimension is recorded beside)."""
        if self.kind == "affine":
            return {"scheme": self.name}
        return {"scheme": self.name, "bias": str(self.bias)}


ROWWISE_U8 = Scheme(
    name="rowwise-symmetric-u8",
    bits=8,
    bias=128,
    levels=127,
    code_dtype=np.dtype(np.uint8),
    scale_dtype=np.dtype(np.float32),
)
"""Botha et al. 2017, section 2.2: uint8 codes, one float32 scale per row, bias 128."""

# the paper's scheme with its scales stored in 16 bits: only the scales' storage differs
ROWWISE_U8_BF16 = replace(ROWWISE_U8, name="rowwise-symmetric-u8-bf16",
                          scale_dtype=np.dtype(np.uint16), scale_format="bfloat16")
"""The paper's codes with a bfloat16 scale per row (the top half of a float32), as CLD3 stores
its tables: the scale rounded first, the codes computed against it (see
:func:`rowquant.reference.quantize_rows_16`); codes 0 to 255."""

ROWWISE_U8_F16 = replace(ROWWISE_U8, name="rowwise-symmetric-u8-f16",
                         scale_dtype=np.dtype(np.float16), scale_format="float16")
"""The paper's codes with an IEEE float16 scale per row (rows up to 127 * 65504 in
magnitude)."""

SYMMETRIC_SCHEMES = {scheme.scale_format: scheme
                     for scheme in (ROWWISE_U8, ROWWISE_U8_BF16, ROWWISE_U8_F16)}
"""The 8-bit schemes by how their scales are stored: ``"float32"``, ``"bfloat16"``,
``"float16"``."""


def symmetric_scheme_for(scales: np.ndarray) -> Scheme:
    """The 8-bit scheme of checked scales, by their dtype (uint16 holds bfloat16 bits)."""
    if scales.dtype == np.uint16:
        return ROWWISE_U8_BF16
    if scales.dtype == np.float16:
        return ROWWISE_U8_F16
    return ROWWISE_U8

ROWWISE_AFFINE_U4 = Scheme(
    name="rowwise-affine-u4-f16",
    bits=4,
    bias=0,
    levels=15,
    code_dtype=np.dtype(np.uint8),
    scale_dtype=np.dtype(np.float16),
    kind="affine",
    scale_format="float16",
)
"""FBGEMM's 4-bit rows: two codes a byte (low bits first), float16 scale and bias per row."""

ROWWISE_AFFINE_U2 = Scheme(
    name="rowwise-affine-u2-f16",
    bits=2,
    bias=0,
    levels=3,
    code_dtype=np.dtype(np.uint8),
    scale_dtype=np.dtype(np.float16),
    kind="affine",
    scale_format="float16",
)
"""FBGEMM's 2-bit rows: four codes a byte (low bits first), float16 scale and bias per row."""

SCHEMES = {scheme.name: scheme for scheme in (ROWWISE_U8, ROWWISE_U8_BF16, ROWWISE_U8_F16,
                                              ROWWISE_AFFINE_U4, ROWWISE_AFFINE_U2)}
NBIT_SCHEMES = {scheme.bits: scheme for scheme in (ROWWISE_AFFINE_U4, ROWWISE_AFFINE_U2)}
"""The affine schemes by their bits per code."""
DEFAULT = ROWWISE_U8
