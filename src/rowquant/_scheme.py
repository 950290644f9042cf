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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Scheme", "ROWWISE_U8", "SCHEMES", "DEFAULT"]


@dataclass(frozen=True)
class Scheme:
    """A per-row symmetric quantization: ``scale = max|row| / levels``,
    ``code = floor(value / scale + bias + 0.5)``, ``value = (code - bias) * scale``."""

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

    @property
    def code_range(self) -> tuple[int, int]:
        """The codes quantize writes, ``bias - levels`` to ``bias + levels`` (lookups read any
        code the dtype holds: other producers use more)."""
        return self.bias - self.levels, self.bias + self.levels

    def metadata(self) -> dict[str, str]:
        """What a file records of the scheme, beside rowquant's format and version."""
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

SCHEMES = {ROWWISE_U8.name: ROWWISE_U8}
DEFAULT = ROWWISE_U8
