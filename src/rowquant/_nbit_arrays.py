"""The arrays of 4-bit and 2-bit tables, checked, and the checked quantization that makes
them: shared by the table (:mod:`rowquant._nbit`), its files (:mod:`rowquant._nbit_format`) and
:func:`rowquant.quantize_file`."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, reference
from ._scheme import NBIT_SCHEMES, SCHEMES, Scheme

__all__ = ["fbgemm_nbit_rows", "fused_views", "nbit_arrays", "quantize_nbit", "scheme_for_bits", "scheme_named"]

_FLOAT16_MAX = np.float32(np.finfo(np.float16).max)


def scheme_for_bits(bits: object) -> Scheme:
    """The affine scheme of ``bits`` (4 or 2)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in NBIT_SCHEMES:
        raise ValueError(f"bits must be 8, 4 or 2, got {bits!r}")
    return NBIT_SCHEMES[int(bits)]


def scheme_named(scheme: object, bits: int | None = None) -> Scheme:
    """The affine scheme ``scheme`` names (a name or a :class:`Scheme`), or that of ``bits``."""
    if scheme is None:
        if bits is None:
            raise ValueError("an N-bit table needs scheme= (or bits=): 'rowwise-affine-u4-f16' "
                             "or 'rowwise-affine-u2-f16'")
        return scheme_for_bits(bits)
    found = SCHEMES.get(scheme) if isinstance(scheme, str) else scheme
    if not isinstance(found, Scheme) or found.kind != "affine":
        names = ", ".join(repr(s.name) for s in NBIT_SCHEMES.values())
        raise ValueError(f"scheme must be one of {names} for a table with biases, got {scheme!r}")
    return found


def nbit_arrays(
    codes: Any, scales: Any, biases: Any, dim: Any, scheme: Scheme, check_values: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Check an N-bit table: uint8 codes ``(N, P)`` with ``P = ceil(dim / (8 // bits))``,
    finite float16 scales and biases ``(N,)``, padding bits 0 (nonzero padding bits are a
    ``ValueError``: FBGEMM writes 0 there, and a row with others was not made by it)."""
    codes = _checks.as_array(codes)
    scales = _checks.as_array(scales)
    biases = _checks.as_array(biases)
    if codes.dtype != np.uint8:
        raise TypeError(f"codes must be a uint8 array, got dtype {codes.dtype}")
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (rows, packed bytes), got shape {codes.shape}")
    for name, array in (("scales", scales), ("biases", biases)):
        if array.dtype != np.float16:
            raise TypeError(f"{name} must be a float16 array for {scheme.name}, got dtype {array.dtype}")
        if array.shape != (codes.shape[0],):
            raise ValueError(
                f"{name} must have shape ({codes.shape[0]},), one per row of codes, "
                f"got shape {array.shape}"
            )
    if dim is None:
        raise ValueError("dim= is needed for an N-bit table: the packed width does not give it")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 0:
        raise ValueError(f"dim must be an integer >= 0, got {dim!r}")
    dim = int(dim)
    width = reference.nbit_width(dim, scheme.bits)
    if codes.shape[1] != width:
        raise ValueError(
            f"codes must have {width} bytes per row for dim={dim} at {scheme.bits} bits, "
            f"got {codes.shape[1]}"
        )
    if not _checks.has_contiguous_rows(codes, np.uint8):
        codes = np.ascontiguousarray(codes)
    scales = _checks.aligned_contiguous(scales, np.float16)
    biases = _checks.aligned_contiguous(biases, np.float16)
    if check_values:
        for name, array in (("scales", scales), ("biases", biases)):
            finite = np.isfinite(array)
            if not finite.all():
                i = int(np.argmin(finite))
                raise ValueError(f"{name}[{i}] = {array[i]!r} is not finite")
        used = dim % scheme.values_per_byte
        if used and codes.shape[0]:
            padding = codes[:, -1] >> np.uint8(used * scheme.bits)
            if padding.any():
                i = int(np.argmax(padding != 0))
                raise ValueError(
                    f"codes[{i}, {width - 1}] = {int(codes[i, -1])} has nonzero padding bits "
                    f"(dim={dim} uses the low {used * scheme.bits} bits of the last byte)"
                )
    return codes, scales, biases, dim


def quantize_nbit(values: np.ndarray, bits: int, range_search: bool, original: Any = None,
                  name: str = "E", first_row: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize checked float32 ``values`` to ``bits``; NaN or inf, or a row whose bias or scale
    is past float16's range, is a ``ValueError`` naming it (rows counted from ``first_row``)."""
    finite = np.isfinite(values)
    if not finite.all():
        raise _checks.nonfinite_error(values if original is None else original, values,
                                      int(np.argmin(finite)), name, first_row)
    codes, scales, biases = reference.quantize_nbit(values, bits, range_search)
    bad = ~(np.isfinite(scales) & np.isfinite(biases))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"{name}'s row {first_row + row} does not fit {bits}-bit rows: its minimum or its range / "
            f"{(1 << bits) - 1} is past float16's largest value ({float(_FLOAT16_MAX)})"
        )
    return codes, scales, biases


def fbgemm_nbit_rows(codes: np.ndarray, scales: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """``codes``, ``scales`` and ``biases`` as FBGEMM's fused N-bit rows (P + 4 bytes each).

    >>> import numpy as np
    >>> fbgemm_nbit_rows(np.array([[0x21]], np.uint8), np.array([1.0], np.float16),
    ...                  np.array([-2.0], np.float16))  # 1.0 is 0x3c00, -2.0 is 0xc000
    array([[ 33,   0,  60,   0, 192]], dtype=uint8)
    """
    rows, width = codes.shape
    packed = np.empty((rows, width + 4), dtype=np.uint8)
    packed[:, :width] = codes
    packed[:, width : width + 2] = np.ascontiguousarray(scales, "<f2").view(np.uint8).reshape(rows, 2)
    packed[:, width + 2 :] = np.ascontiguousarray(biases, "<f2").view(np.uint8).reshape(rows, 2)
    return packed


def fused_views(rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes, scales, biases)`` as views into FBGEMM's fused rows ``[width code bytes |
    float16 scale | float16 bias]`` (uint8 ``(N, width + 4)``, rows contiguous): the codes with
    the rows' stride, the scales and biases one per row at the same stride (not aligned when
    the stride is odd; the kernels read them bytewise).

    >>> import numpy as np
    >>> rows = fbgemm_nbit_rows(np.array([[0x21], [0x43]], np.uint8),
    ...                         np.array([1.0, 0.5], np.float16), np.array([-2.0, 3.0], np.float16))
    >>> codes, scales, biases = fused_views(rows, 1)
    >>> codes.tolist(), scales.tolist(), biases.tolist(), scales.strides
    ([[33], [67]], [1.0, 0.5], [-2.0, 3.0], (5,))
    """
    params = rows[:, width : width + 4]
    return (rows[:, :width], params[:, 0:2].view("<f2")[:, 0].view(np.float16),
            params[:, 2:4].view("<f2")[:, 0].view(np.float16))
