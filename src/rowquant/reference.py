"""The specification of rowquant in plain numpy.

Every operation of the library is written here as directly as numpy allows. This module is the
test oracle (the C kernels must agree with it bit for bit) and the fallback backend when the
extension is not built or ``ROWQUANT_PUREPYTHON=1`` is set.

The functions assume valid input: float32 tables without NaN or inf, uint8 codes, float32 scales,
integer ids inside the table. The top-level functions of :mod:`rowquant` check their arguments and
then call these (or the kernels).

The arithmetic, for a float32 table ``E`` of shape ``(N, D)``:

* scale ``s[i] = float32(max_j |E[i, j]| / 127)``, one float32 division;
* code ``q[i, j] = floor(E[i, j] / s[i] + 128.5)``, evaluated exactly. ``E / s`` in float64 is a
  single correctly rounded division of two float32 values, close enough that the floor is exact;
  a reciprocal multiply would not be. Rows whose scale is 0 get code 128. Codes are clamped to
  ``[1, 255]``, which only acts on rows whose scale is a subnormal float32 too coarse to keep
  ``max / s`` below 127.5 (row maxima under about 5e-41);
* value ``x[i, j] = float32((q[i, j] - 128) * s[i])``, one float32 multiply;
* bag: as FBGEMM sums, one fused multiply-add (C's ``fmaf``: the exact product and sum rounded
  once to float32) per value: each id in order adds ``q[i, j] * f`` to a sum from +0.0, ``f`` the
  scale (times the id's weight in float32, if weighted), and the bag is
  ``fmaf(-128, total of the f, sum)`` (see :func:`pool_bags`).

Examples
--------
>>> import numpy as np
>>> from rowquant import reference
>>> codes, scales = reference.quantize_rows(np.array([[127.0, -2.5, 0.5]], dtype=np.float32))
>>> codes
array([[255, 126, 129]], dtype=uint8)
>>> scales
array([1.], dtype=float32)
>>> reference.dequantize(codes, scales)
array([[127.,  -2.,   1.]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from ._scheme import ROWWISE_U8

__all__ = [
    "quantize_rows", "SCALE_DTYPES", "round_scales", "widen_scales", "quantize_rows_16",
    "dequantize", "dequantize_codes", "take", "embedding_bag", "bag_bounds",
    "pool_bags", "DOT_LANES", "lane_sums", "norms", "inverse_norms", "query_shift", "query_codes",
    "integer_dots", "row_factors", "query_factors", "scores", "top_k",
    "nbit_width", "pack_nbit", "unpack_nbit", "nbit_search_range", "quantize_nbit",
    "dequantize_nbit", "take_nbit", "pool_bags_nbit", "pool_bags_cld3",
]

BIAS = ROWWISE_U8.bias
_LEVELS = np.float32(ROWWISE_U8.levels)
_LOWEST, _HIGHEST = ROWWISE_U8.code_range
# Rows per block when quantizing, so the float64 temporaries stay near 8 MB whatever the table.
_BLOCK_ELEMENTS = 1 << 20
# Values per block of bags when pooling, so that a step's float64 temporaries stay near 256 kB.
_BAG_BLOCK_ELEMENTS = 1 << 15


def quantize_rows(E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantize a finite float32 matrix row by row: ``(codes uint8 (N, D), scales float32 (N,))``.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> E = np.array([[20000, 3000, 1000, 1000], [0, 0, 0, 0]], dtype=np.float32)
    >>> codes, scales = reference.quantize_rows(E)
    >>> codes
    array([[255, 147, 134, 134],
           [128, 128, 128, 128]], dtype=uint8)
    >>> scales
    array([157.48032,   0.     ], dtype=float32)
    """
    E = np.asarray(E, dtype=np.float32)
    n_rows, dim = E.shape
    codes = np.empty((n_rows, dim), dtype=np.uint8)
    scales = np.zeros(n_rows, dtype=np.float32)
    if dim == 0:
        return codes, scales
    block = max(1, _BLOCK_ELEMENTS // dim)
    for start in range(0, n_rows, block):
        rows = E[start : start + block]
        block_scales = np.abs(rows).max(axis=1) / _LEVELS  # float32 / float32: one rounding
        zero = block_scales == 0
        divisors = np.where(zero, 1.0, block_scales.astype(np.float64))[:, None]
        block_codes = np.floor(rows.astype(np.float64) / divisors + (BIAS + 0.5))
        np.clip(block_codes, _LOWEST, _HIGHEST, out=block_codes)
        block_codes[zero] = BIAS
        codes[start : start + block] = block_codes
        scales[start : start + block] = block_scales
    return codes, scales


SCALE_DTYPES = ("float32", "bfloat16", "float16")
"""How an 8-bit table's scales may be stored: float32 (the paper's), or 16 bits: bfloat16 (the
top half of a float32, as CLD3 stores them; numpy has no bfloat16, so they are held as uint16
bits) or IEEE float16."""


def widen_scales(scales: np.ndarray) -> np.ndarray:
    """The float32 values of scales stored as float32, float16, or bfloat16 bits (uint16):
    exactly, every bfloat16 and float16 being a float32.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.widen_scales(np.array([0x3F80, 0x3EAB], np.uint16))  # bfloat16 bits
    array([1.        , 0.33398438], dtype=float32)
    >>> reference.widen_scales(np.array([0.333], np.float16))
    array([0.3330078], dtype=float32)
    """
    scales = np.asarray(scales)
    if scales.dtype == np.uint16:
        return (scales.astype(np.uint32) << 16).view(np.float32)
    return scales.astype(np.float32)


def _step_up(scales: np.ndarray) -> np.ndarray:
    """The next 16-bit scale above each (positive or +0) one."""
    if scales.dtype == np.uint16:
        return scales + np.uint16(1)  # non-negative bfloat16 values order as their bits
    return np.nextafter(scales, np.float16(np.inf))


def round_scales(scales: np.ndarray, scale_dtype: str, rounding: str = "nearest") -> np.ndarray:
    """float32 scales (finite, >= 0) rounded to 16 bits: ``"bfloat16"`` (returned as uint16
    bits) or ``"float16"``; ``rounding="nearest"`` (ties to even) or ``"truncate"`` (toward
    zero: CLD3 keeps the top 16 bits of a float32 scale). float16 scales past 65504 round to
    inf (the caller rejects them).

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> s = np.array([1 / 3], np.float32)  # bits 0x3EAAAAAB
    >>> hex(reference.round_scales(s, "bfloat16")[0]), hex(reference.round_scales(s, "bfloat16", "truncate")[0])
    ('0x3eab', '0x3eaa')
    >>> reference.round_scales(s, "float16"), reference.round_scales(s, "float16", "truncate")
    (array([0.3333], dtype=float16), array([0.3333], dtype=float16))
    """
    scales = np.asarray(scales, dtype=np.float32)
    if scale_dtype == "bfloat16":
        bits = scales.view(np.uint32)
        if rounding == "truncate":
            return (bits >> 16).astype(np.uint16)
        # to nearest, ties to even: add half an ulp of bfloat16 (less one, plus the kept lowest bit)
        rounded = (bits.astype(np.uint64) + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return rounded.astype(np.uint16)
    if scale_dtype != "float16":
        raise ValueError(f"scale_dtype must be 'bfloat16' or 'float16' here, got {scale_dtype!r}")
    with np.errstate(over="ignore"):
        nearest = scales.astype(np.float16)
    if rounding == "truncate":
        above = nearest.astype(np.float32) > scales
        nearest[above] = np.nextafter(nearest[above], np.float16(0))
    return nearest


def quantize_rows_16(E: np.ndarray, scale_dtype: str, rounding: str = "nearest"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Quantize a finite float32 matrix with 16-bit scales: ``(codes uint8 (N, D), scales)``,
    the scales float16, or uint16 holding bfloat16 bits.

    Each row's float32 scale ``max|row| / 127`` (as :func:`quantize_rows`) is rounded to 16
    bits first (:func:`round_scales`), and the codes are ``floor(E / s + 128.5)`` exactly
    against the rounded scale ``s``, so every value is within ``s / 2`` of its code's. The
    rule where that needs a code outside ``[0, 255]``: code 0, a value 128 steps below zero,
    is kept (CLD3's tables use it: a row whose largest magnitude is negative and whose scale
    was rounded down lands there); a row that would need code 256 (its largest value
    positive, the scale rounded down), or a nonzero row whose scale rounded to 0, takes the
    next 16-bit scale up instead, which is above the float32 scale, so its codes fit. float16
    scales past 65504 are not finite: :func:`rowquant.quantize` rejects such rows.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> E = np.array([[-1.00390625, 0.5, 0.25], [1.00390625, -0.5, 0.0]], np.float32)
    >>> codes, scales = reference.quantize_rows_16(E, "bfloat16", "truncate")
    >>> [hex(s) for s in scales], codes  # row 0: -E / s is 127.504 steps, code 0; row 1 steps up
    (['0x3c01', '0x3c02'], array([[  0, 192, 160],
           [255,  65, 128]], dtype=uint8))
    >>> reference.dequantize(codes, scales)
    array([[-1.0078125 ,  0.50390625,  0.25195312],
           [ 1.0076904 , -0.49987793,  0.        ]], dtype=float32)
    """
    E = np.asarray(E, dtype=np.float32)
    n_rows, dim = E.shape
    codes = np.empty((n_rows, dim), dtype=np.uint8)
    scales = np.zeros(n_rows, dtype=np.uint16 if scale_dtype == "bfloat16" else np.float16)
    if dim == 0:
        return codes, scales
    block = max(1, _BLOCK_ELEMENTS // dim)
    for start in range(0, n_rows, block):
        rows = E[start : start + block]
        exact = np.abs(rows).max(axis=1) / _LEVELS  # the float32 scale, as quantize_rows
        narrow = round_scales(exact, scale_dtype, rounding)
        wide = rows.astype(np.float64)
        highest, lowest = wide.max(axis=1), wide.min(axis=1)

        def codes_fit(divisors: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                top = np.floor(highest / divisors + (BIAS + 0.5))
                bottom = np.floor(lowest / divisors + (BIAS + 0.5))
            return (exact == 0) | ((divisors > 0) & (top <= 255) & (bottom >= 0))

        fits = codes_fit(widen_scales(narrow).astype(np.float64))
        narrow[~fits] = _step_up(narrow[~fits])
        divisors = widen_scales(narrow).astype(np.float64)
        zero = exact == 0
        divisors[zero] = 1.0
        with np.errstate(invalid="ignore", over="ignore"):
            block_codes = np.floor(wide / divisors[:, None] + (BIAS + 0.5))
        np.clip(block_codes, 0, 255, out=block_codes)  # only for float16 scales past 65504
        block_codes[zero] = BIAS
        codes[start : start + block] = block_codes
        scales[start : start + block] = narrow
    return codes, scales


def dequantize(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float32 table ``(codes - 128) * scales[:, None]``, each value rounded once.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.dequantize(np.array([[255, 128, 1]], dtype=np.uint8), np.array([0.5], np.float32))
    array([[ 63.5,   0. , -63.5]], dtype=float32)
    """
    return dequantize_codes(codes, widen_scales(scales)[:, None])


def dequantize_codes(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``float32((codes - 128) * scales)`` element by element, codes and float32 scales of any
    shapes that broadcast together: the one place the arithmetic of a value is written.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.dequantize_codes(np.array([255, 1], np.uint8), np.array([0.5, 2.0], np.float32))
    array([  63.5, -254. ], dtype=float32)
    """
    # codes - 128 is an exact small integer in float32, so the product is rounded exactly once.
    centered = codes.astype(np.float32) - np.float32(BIAS)
    with np.errstate(over="ignore"):  # huge scales overflow to inf, as the kernels do
        values: np.ndarray = centered * scales
    return values


def take(codes: np.ndarray, scales: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Dequantized rows ``ids`` (any shape, values in ``[0, N)``): shape ``ids.shape + (D,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> codes = np.array([[129, 127], [255, 1]], dtype=np.uint8)
    >>> reference.take(codes, np.array([1.0, 2.0], np.float32), np.array([1, 1, 0]))
    array([[ 254., -254.],
           [ 254., -254.],
           [   1.,   -1.]], dtype=float32)
    """
    ids = np.asarray(ids)
    rows = dequantize(codes[ids.reshape(-1)], scales[ids.reshape(-1)])
    return rows.reshape(ids.shape + (codes.shape[1],))


def bag_bounds(
    n_ids: int,
    offsets: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    include_last_offset: bool = False,
) -> np.ndarray:
    """Where each bag starts, plus the end of the last: ``ids[bounds[b]:bounds[b + 1]]`` is bag b.

    Exactly one of ``offsets`` (PyTorch's convention) and ``lengths`` (one count per bag) is given.

    Examples
    --------
    >>> from rowquant import reference
    >>> reference.bag_bounds(5, offsets=[0, 2])
    array([0, 2, 5])
    >>> reference.bag_bounds(5, offsets=[0, 2, 5], include_last_offset=True)
    array([0, 2, 5])
    >>> reference.bag_bounds(5, lengths=[2, 0, 3])
    array([0, 2, 2, 5])
    """
    if lengths is not None:
        return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    if include_last_offset:
        return offsets.copy()
    return np.append(offsets, np.int64(n_ids))


# A float64 whose low 29 fraction bits are these is halfway between two neighbouring float32
# values of float32's normal range: it has 25 significant bits, the last one set.
_LOW_29_BITS = np.int64((1 << 29) - 1)
_FLOAT32_MIDPOINT_BITS = np.int64(1 << 28)


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """C's ``fmaf(a, b, c)`` element by element, on float32 arrays that broadcast together:
    ``a * b + c`` computed exactly and rounded once to float32, to nearest even.

    The product of two float32 values is exact in float64: 24 + 24 significant bits fit in 53,
    and its exponent (-298 to 256) in float64's range. The sum is then rounded to odd in float64
    (see :func:`_sum_rounded_to_odd`) and that to float32, which rounds the exact sum correctly:
    the odd-rounded sum lies strictly between the same two neighbouring float64 values as the
    exact one, so on the same side of every float64 whose last significand bit is 0, and every
    float32 and every midpoint between two float32 values is one of those (25 significant bits
    or fewer; below 2**-126, multiples of 2**-150 where the float64 steps are 2**-179 or finer,
    so subnormal results round correctly too). The float64 sum cannot overflow (it stays under
    2**257) nor lose bits to underflow (every operand is a multiple of 2**-298). NaN and inf come
    out as IEEE gives them (``0 * inf`` and ``inf - inf`` are NaN, a finite result past the
    float32 range is inf); an exact zero sum is -0.0 only when the product and ``c`` are both
    -0.0, in float64 as in ``fmaf``.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> x, tiny = np.float32(1 + 2.0**-12), np.float32(2.0**-60)
    >>> # x * x + tiny = 1 + 2**-11 + 2**-24 + 2**-60, just above halfway between two float32
    >>> reference._fma32(x, x, tiny) - np.float32(1 + 2.0**-11)
    np.float32(1.1920929e-07)
    >>> # the float64 sum drops 2**-60 and lands on the tie, which then rounds to even, down
    >>> np.float32(np.float64(x) * np.float64(x) + np.float64(tiny)) - np.float32(1 + 2.0**-11)
    np.float32(0.0)
    """
    a, b, c = np.broadcast_arrays(*(np.asarray(x, dtype=np.float32) for x in (a, b, c)))
    shape = a.shape
    # 1-D, because numpy turns 0-d results into scalars, which _sum_rounded_to_odd cannot edit
    a, b, c = (x.reshape(-1).astype(np.float64) for x in (a, b, c))
    with np.errstate(over="ignore", invalid="ignore"):  # as in C: inf, and NaN from 0 * inf
        result = _sum_rounded_to_odd(c, a * b).astype(np.float32).reshape(shape)
    return result[()] if result.ndim == 0 else result


def _sum_rounded_once(
    addends: np.ndarray,
    products: np.ndarray,
    factors: np.ndarray,
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`_fma32` for a step of bags: ``float32(addends + products)`` rounded once, to
    nearest even, for float32 ``addends`` of shape ``(n, d)`` and float64 ``products`` of that
    shape that hold ``k * factors[i]`` exactly in row i, for integers ``|k| <= 255`` and float32
    ``factors`` of shape ``(n,)``. ``scratch``, if given, is a float64 array of shape ``(n, d)``
    to work in.

    Rounding the float64 sum to float32 rounds the exact sum correctly wherever the float64 sum
    is exact, which :func:`_rows_sum_exactly` proves for nearly every row. Elsewhere, it still
    does except where the float64 sum landed exactly on a midpoint between two float32 values:
    it cannot jump over one (a midpoint is a float64 value, nearer to the exact sum than anything
    beyond it), and a sum that lands on one may have come from either side. Only those sums are
    redone, rounded to odd as :func:`_fma32` does. Midpoints below 2**-126, which the bit test
    below does not see, never occur: with both operands multiples of 2**-149, a sum that small
    is itself a float32, exact in float64 and in float32.
    """
    totals = np.empty(products.shape) if scratch is None else scratch
    np.copyto(totals, products)
    totals += addends
    rounded: np.ndarray = totals.astype(np.float32)
    rows = np.flatnonzero(~_rows_sum_exactly(addends, factors))
    if rows.size == 0:
        return rounded
    low_bits = totals[rows].view(np.int64) & _LOW_29_BITS
    row, column = np.nonzero(low_bits == _FLOAT32_MIDPOINT_BITS)
    if row.size:
        row = rows[row]
        tie_addends = addends[row, column].astype(np.float64)
        tie_products = products[row, column]
        ties = tie_products + tie_addends
        errors = _two_sum_errors(tie_addends, tie_products, ties)
        # Rounded to odd, as _sum_rounded_to_odd does: a midpoint's last bit is 0, so where the
        # sum was inexact it steps one float64 toward the exact sum (np.sign(0) leaves it).
        towards = ties + np.sign(errors) * np.abs(ties)
        rounded[row, column] = np.nextafter(ties, towards).astype(np.float32)
    return rounded


def _rows_sum_exactly(addends: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Rows i in which every float32 ``addends[i, j]`` plus ``k * factors[i]``, for any integer
    ``|k| <= 255``, is exact in float64: those whose nonzero addends all lie between
    ``2**-21 * |factors[i]|`` and ``2**28 * |factors[i]|`` (False where a factor or an addend is
    NaN).

    The exact sum of x and k * w is a multiple of g, the smaller of their float32 steps (the
    spacing of float32 values where each lies, a power of two), and is a float64 when it is at
    most 2**53 * g. The step of a float32 v exceeds 2**-24 * |v|. If |x| >= |w|: g > 2**-24 * |w|
    and |x + k * w| <= (2**28 + 255) * |w| < 2**29 * |w|. If |x| < |w|: g > 2**-24 * |x| and
    |x + k * w| <= |x| + 255 * 2**21 * |x| < 2**29 * |x| (255 * 2**21 + 1 < 2**29). Either way
    the sum is under 2**53 * g.
    """
    # The magnitude bits of a float32 order like its absolute value; minus 1, a zero wraps to the
    # largest unsigned value, which keeps it out of the minimum.
    magnitudes = addends.view(np.int32) & np.int32(0x7FFFFFFF)
    largest = magnitudes.max(axis=1, initial=0).view(np.float32)
    magnitudes -= 1
    smallest = magnitudes.view(np.uint32).min(axis=1, initial=np.uint32(0xFFFFFFFF))
    smallest = (smallest + np.uint32(1)).view(np.float32)  # 0.0 for a row of zeros
    scale = np.abs(factors.astype(np.float64))
    exact: np.ndarray = (largest <= 2.0**28 * scale) & (
        (smallest >= 2.0**-21 * scale) | (largest == 0)
    )
    return exact


def _sum_rounded_to_odd(addends: np.ndarray, products: np.ndarray) -> np.ndarray:
    """``addends + products`` (float64, 1-D) rounded to odd: the exact sum when it is a float64,
    else the one of the two float64 values around it whose last significand bit is 1."""
    # the product first: of two NaNs x86 keeps the first, so the product's, as glibc's fmaf does
    totals: np.ndarray = products + addends
    errors = _two_sum_errors(addends, products, totals)
    bits = totals.view(np.int64)
    # A NaN error (from an inf or NaN operand) compares false both ways: that total stays. A
    # nonzero error never comes with a zero total, which only an exact sum gives.
    step = np.flatnonzero(((errors > 0) | (errors < 0)) & ((bits & 1) == 0))
    # One float64 step toward the exact sum: away from zero when the error has the total's sign.
    bits[step] += np.where(np.signbit(errors[step]) == np.signbit(totals[step]), 1, -1)
    return totals


def _two_sum_errors(addends: np.ndarray, products: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """TwoSum (Knuth): the exact ``addends + products - totals`` where ``totals`` is the float64
    sum ``addends + products``, whatever the magnitudes; NaN where an operand is inf or NaN."""
    addend_parts = totals - products
    product_parts = totals - addend_parts
    errors: np.ndarray = (addends - addend_parts) + (products - product_parts)
    return errors


def pool_bags(
    codes: np.ndarray,
    scales: np.ndarray,
    ids: np.ndarray,
    bounds: np.ndarray,
    weights: np.ndarray | None = None,
    mode: str = "sum",
    padding_idx: int | None = None,
) -> np.ndarray:
    """Pool the flat ``ids`` into ``len(bounds) - 1`` bags (see :func:`bag_bounds`).

    Sums and means are computed as FBGEMM computes them, one fused multiply-add per value (C's
    ``fmaf``: the exact product and sum, rounded once to float32). Each bag takes its ids in
    order, skipping those equal to ``padding_idx``; id ``k`` naming row ``i`` has the factor
    ``f = scales[i]``, or with weights the float32 product ``scales[i] * weights[k]``. From
    ``sum[j] = +0.0`` and ``total = +0.0``, each id adds ``codes[i, j] * f`` to ``sum[j]`` with
    one fused multiply-add (the codes unshifted) and ``f`` to ``total`` (a float32 addition);
    the bag is then ``fmaf(-128, total, sum[j])``. A bag for which that gives a value that is
    not finite (the unshifted sums reach twice the magnitude of the result, and may overflow
    first) is summed again in the centered form, ``sum[j] = fmaf(codes[i, j] - 128, f,
    sum[j])`` from +0.0. ``mode="mean"`` then divides each bag by the number of ids it pooled.
    ``mode="max"`` instead takes each column's largest dequantized value, going through the rows
    in id order and keeping a later value only when it is strictly greater (which decides
    between -0.0 and +0.0, the only values that compare equal and differ). Empty bags are zero.

    The error of a sum is bounded by the rows' scales rather than by its terms (see the
    README's arithmetic section): a bag of one id is within a few units of ``2**-24 * 255 * s``
    of :func:`take`'s row, not equal to it.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> codes = np.array([[129, 127], [130, 132], [126, 128]], dtype=np.uint8)
    >>> scales = np.ones(3, dtype=np.float32)
    >>> bounds = np.array([0, 3, 3])
    >>> reference.pool_bags(codes, scales, np.array([0, 1, 2]), bounds, mode="max")
    array([[2., 4.],
           [0., 0.]], dtype=float32)

    The bias is taken once per bag: row 1 below is ``(131 - 128) * float32(1/3)``, just above
    1.0, but beside row 0's scale of 2**24 the unshifted sum ``129 * 2**24 + 131 / 3`` rounds to
    ``129 * 2**24`` (a step of 256 there), and so does ``2**24 + 1/3`` in the total of the
    factors, leaving ``2**24``: one float32 step (2) below the exact ``2**24 + 1.00000003``, well
    inside the bound the scales give.

    >>> codes = np.array([[129], [131]], dtype=np.uint8)
    >>> scales = np.array([2.0**24, 1 / 3], dtype=np.float32)
    >>> reference.pool_bags(codes, scales, np.array([0, 1]), np.array([0, 2])) - 2**24
    array([[0.]], dtype=float32)
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    bounds = np.asarray(bounds, dtype=np.int64)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32).reshape(-1)
    n_bags, dim = len(bounds) - 1, codes.shape[1]
    sums = np.zeros((n_bags, dim), dtype=np.float32)
    # Bags a block at a time, so that the float64 temporaries of a step stay in the cache.
    block = max(1, _BAG_BLOCK_ELEMENTS // max(dim, 1))
    counts = np.zeros(n_bags, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN, as C's float32 gives
        for first in range(0, n_bags, block):
            _pool_block(codes, scales, ids, bounds[first : first + block + 1], weights, mode,
                        padding_idx, sums[first : first + block], counts[first : first + block])
        if mode != "max":
            # the bags whose fast form is not finite, again in the centered form
            for bag in np.flatnonzero(~np.isfinite(sums).all(axis=1)):
                sums[bag] = 0
                _pool_block(codes, scales, ids, bounds[bag : bag + 2], weights, mode,
                            padding_idx, sums[bag : bag + 1], counts[bag : bag + 1],
                            centered=True)
    if mode == "mean":
        counted = counts > 0
        sums[counted] /= counts[counted].astype(np.float32)[:, None]
    return sums


def _pool_block(
    codes: np.ndarray,
    scales: np.ndarray,
    ids: np.ndarray,
    bounds: np.ndarray,
    weights: np.ndarray | None,
    mode: str,
    padding_idx: int | None,
    sums: np.ndarray,
    counts: np.ndarray,
    centered: bool = False,
) -> None:
    """:func:`pool_bags` for the bags of ``bounds``, into ``sums`` (zeros), before the division
    of means, in the fast form or the ``centered`` one; ``counts`` gets the ids pooled."""
    starts, sizes = bounds[:-1], np.diff(bounds)
    counts[:] = 0
    totals = np.zeros(len(sums), dtype=np.float32)
    # Two float64 arrays reused by every step: new ones each step cost more than the arithmetic,
    # as the allocator hands their pages back to the system and gets them again.
    products_space, totals_space = np.empty((2,) + sums.shape)
    # Step k adds the k-th id of every bag that has one: fused multiply-adds in id order, the
    # order the kernels use, with one vectorized step per position instead of one per id.
    for k in range(int(sizes.max(initial=0))):
        bags = np.flatnonzero(sizes > k)
        positions = starts[bags] + k
        rows = ids[positions]
        if padding_idx is not None:
            keep = rows != padding_idx
            bags, positions, rows = bags[keep], positions[keep], rows[keep]
        # every bag of the block: a slice, so a view and not a copy in and out
        into: np.ndarray | slice = slice(None) if len(bags) == len(sums) else bags
        if mode == "max":
            terms = take(codes, scales, rows)
            pooled = sums[into]
            first = (counts[into] == 0)[:, None]
            sums[into] = np.where(first | (terms > pooled), terms, pooled)
            counts[into] += 1
            continue
        factors = widen_scales(scales[rows])
        if weights is not None:
            factors = factors * weights[positions]  # one float32 multiply, as in C
        # code * factor (or (code - 128) * factor), exact in float64 (8 bits times 24) and a
        # multiple of 2**-149
        products = products_space[: len(rows)]
        np.copyto(products, codes[rows])
        if centered:
            products -= BIAS
        products *= factors.astype(np.float64)[:, None]
        sums[into] = _sum_rounded_once(sums[into], products, factors,
                                       totals_space[: len(rows)])
        totals[into] += factors  # float32 additions, in id order
        counts[into] += 1
    if mode != "max" and not centered:
        sums[:] = _fma32(np.full((1, 1), -BIAS, dtype=np.float32), totals[:, None], sums)


def embedding_bag(
    codes: np.ndarray,
    scales: np.ndarray,
    ids: np.ndarray,
    offsets: np.ndarray | None = None,
    *,
    lengths: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    mode: str = "sum",
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> np.ndarray:
    """Pooled lookup with the semantics of ``torch.nn.functional.embedding_bag``.

    1-D ``ids`` are split by ``offsets`` or ``lengths``; 2-D ``ids`` of shape ``(B, L)`` are B bags
    of L ids. A negative ``padding_idx`` counts from the end, as in PyTorch.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> codes = np.array([[129, 127], [130, 132], [128, 128]], dtype=np.uint8)
    >>> scales = np.ones(3, dtype=np.float32)
    >>> reference.embedding_bag(codes, scales, np.array([0, 1, 2, 1]), offsets=np.array([0, 3]))
    array([[3., 3.],
           [2., 4.]], dtype=float32)
    >>> reference.embedding_bag(codes, scales, np.array([[0, 1]]), mode="mean")
    array([[1.5, 1.5]], dtype=float32)
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim == 2:
        n_bags, length = ids.shape
        bounds = np.arange(n_bags + 1, dtype=np.int64) * length
    else:
        bounds = bag_bounds(ids.size, offsets, lengths, include_last_offset)
    if padding_idx is not None and padding_idx < 0:
        padding_idx += codes.shape[0]
    return pool_bags(codes, scales, ids, bounds, weights, mode, padding_idx)


# ----------------------------------------------------------------------------- similarity
#
# Scores of float32 queries x (B, D) against the rows of a table, without dequantizing it:
#
# * exact precision: the float64 sum of v[i, j] * x[j] over the row's dequantized values
#   v = float32((q - 128) * s), in a fixed order (:func:`lane_sums`), then rounded once;
# * fast precision: the query quantized like a table row (scale t = max|x| / 127, codes
#   floor(x / t + 128.5), so x is about (c - 128) * t with c - 128 in [-127, 127]), and the
#   integer dot of the centered codes, sum_j (q[i, j] - 128) * (c[j] - 128), computed exactly
#   (:func:`integer_dots`), times s[i] * t.
#
# Every score is ``float32((sum * row_factor[i]) * query_factor[b])`` in float64, the factors
# set by the metric and precision (:func:`row_factors`, :func:`query_factors`): cosine divides
# by float32 norms (:func:`norms`), through their float64 inverses, 0 for a norm of 0.

DOT_LANES = 8
"""Exact sums run in this many float64 lanes: column j adds to lane j % 8, in column order."""

# Queries times rows per block of lane_sums, so that its float64 lanes stay near 8 MB.
_SIMILARITY_BLOCK = 1 << 17


def _fold_lanes(lanes: np.ndarray) -> np.ndarray:
    """The lanes' total in the one order every kernel uses: ((0+4) + (2+6)) + ((1+5) + (3+7)),
    which is how a vector of 8 float64 lanes folds in halves."""
    halves = lanes[..., :4] + lanes[..., 4:]
    quarters = halves[..., :2] + halves[..., 2:]
    total: np.ndarray = quarters[..., 0] + quarters[..., 1]
    return total


def lane_sums(values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``(B, N)`` float64 sums of ``values[i, j] * queries[b, j]`` (both float32), each in
    float64 lanes: lane ``j % 8`` adds the exact product of column j, from +0 in column order,
    and the lanes fold as :func:`_fold_lanes`. Products of two float32 values are exact in
    float64, so a fused multiply-add and a multiply then add give the same lanes.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> v = np.array([[1, 2, 3], [0.5, 0, -1]], np.float32)
    >>> reference.lane_sums(v, np.array([[1, 1, 1]], np.float32))
    array([[ 6. , -0.5]])
    """
    n_rows, dim = values.shape
    n_queries = queries.shape[0]
    out = np.zeros((n_queries, n_rows))
    block = max(1, _SIMILARITY_BLOCK // max(1, n_queries * DOT_LANES))
    queries64 = queries.astype(np.float64)
    # values that overflowed float32 (inf) give NaN sums (inf * 0, inf - inf), as the kernels
    # do, without a warning from numpy on every call
    with np.errstate(invalid="ignore"):
        for start in range(0, n_rows, block):
            rows = values[start : start + block].astype(np.float64)
            lanes = np.zeros((n_queries, rows.shape[0], DOT_LANES))
            for column in range(0, dim, DOT_LANES):
                width = min(DOT_LANES, dim - column)
                lanes[:, :, :width] += (
                    queries64[:, None, column : column + width]
                    * rows[None, :, column : column + width]
                )
            out[:, start : start + block] = _fold_lanes(lanes)
    return out


def norms(values: np.ndarray) -> np.ndarray:
    """Float32 norms of the rows of a float32 matrix: ``float32(sqrt(s))``, ``s`` the lane sum
    of the row with itself (:func:`lane_sums`). For a table, the norms of its dequantized rows.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.norms(np.array([[3, 4], [0, 0]], np.float32))
    array([5., 0.], dtype=float32)
    """
    n_rows, dim = values.shape
    lanes = np.zeros((n_rows, DOT_LANES))
    for column in range(0, dim, DOT_LANES):
        part = values[:, column : column + DOT_LANES].astype(np.float64)
        lanes[:, : part.shape[1]] += part * part
    with np.errstate(over="ignore"):  # a norm above float32's range is inf
        return np.sqrt(_fold_lanes(lanes)).astype(np.float32)


def inverse_norms(row_norms: np.ndarray) -> np.ndarray:
    """``1 / float64(norm)``, and 0 where the norm is 0 (so that cosine with a zero vector is 0).

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.inverse_norms(np.array([4, 0], np.float32))
    array([0.25, 0.  ])
    """
    wide = row_norms.astype(np.float64)
    inverse: np.ndarray = np.divide(1.0, wide, out=np.zeros_like(wide), where=wide != 0)
    return inverse


def query_shift(queries: np.ndarray) -> np.ndarray:
    """The power of two ``2**shift`` per query that brings its largest magnitude into
    ``[1, 2)`` (0 for a zero query): the fast precision quantizes ``x * 2**shift``, exact in
    float32, so that a query as small as a subnormal keeps its 8 bits (its own scale
    ``max / 127`` would underflow) and the codes of any other query are unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.query_shift(np.array([[127, -2.5], [0, 0], [1e-44, 0]], np.float32))
    array([ -6,   0, 147])
    """
    maxima = np.abs(queries).max(axis=1, initial=0).astype(np.float64)
    exponents = np.frexp(maxima)[1]  # maxima = m * 2**e with m in [0.5, 1)
    shift: np.ndarray = np.where(maxima > 0, 1 - exponents, 0).astype(np.int64)
    return shift


def query_codes(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fast precision's queries: each finite float32 query, scaled by ``2**shift``
    (:func:`query_shift`), quantized as a table row is (:func:`quantize_rows`), returned as
    ``(codes - 128)`` in int8 ``(B, D)``, within ``[-127, 127]``, and the query scales
    ``t = float64(scale) * 2**-shift`` (exact) ``(B,)``: the query is about ``(codes - 128) * t``.
    For queries whose scale is a normal float32, ``t`` is the float32 ``max / 127``.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.query_codes(np.array([[127, -2.5, 0.5]], np.float32))
    (array([[127,  -2,   1]], dtype=int8), array([1.]))
    """
    shift = query_shift(queries)
    codes, scales = quantize_rows(np.ldexp(queries, shift[:, None].astype(np.int32)))
    centered = (codes.astype(np.int16) - BIAS).astype(np.int8)
    return centered, np.ldexp(scales.astype(np.float64), -shift)


def integer_dots(codes: np.ndarray, centered_queries: np.ndarray) -> np.ndarray:
    """``(B, N)`` exact integers ``sum_j (codes[i, j] - 128) * centered_queries[b, j]`` (as
    float64: each product is below 2**14 in magnitude, so every partial sum of a row below
    2**53 columns is an integer float64 holds exactly, in any order).

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.integer_dots(np.array([[255, 1, 128]], np.uint8), np.array([[127, 127, 5]], np.int8))
    array([[0.]])
    """
    centered = codes.astype(np.float64) - BIAS
    dots: np.ndarray = centered_queries.astype(np.float64) @ centered.T
    return dots


def row_factors(scales: np.ndarray, inverse: np.ndarray | None, precision: str) -> np.ndarray:
    """Each row's factor of its scores: the row scale (fast precision; the exact sums already
    hold it), times the inverse norm for cosine (None for dot products).

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.row_factors(np.array([0.5], np.float32), np.array([0.25]), "fast")
    array([0.125])
    """
    factors = widen_scales(scales).astype(np.float64) if precision == "fast" else np.ones(len(scales))
    if inverse is not None:
        factors = factors * inverse
    return factors


def query_factors(query_scales: np.ndarray | None, inverse: np.ndarray | None,
                  n_queries: int) -> np.ndarray:
    """Each query's factor of its scores: its scale ``t`` (fast precision; None for exact),
    times the inverse of its norm for cosine (None for dot products).

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.query_factors(None, np.array([0.5]), 1)
    array([0.5])
    """
    factors = np.ones(n_queries) if query_scales is None else query_scales.astype(np.float64)
    if inverse is not None:
        factors = factors * inverse
    return factors


def scores(sums: np.ndarray, row_factor: np.ndarray, query_factor: np.ndarray) -> np.ndarray:
    """``float32((sums[b, i] * row_factor[i]) * query_factor[b])``, in float64 (the last step of
    every score, exact or fast).

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.scores(np.array([[3.0, -1.0]]), np.array([0.5, 1.0]), np.array([2.0]))
    array([[ 3., -2.]], dtype=float32)
    """
    with np.errstate(over="ignore"):
        product: np.ndarray = ((sums * row_factor[None, :]) * query_factor[:, None]).astype(
            np.float32
        )
    return product


def top_k(scores: np.ndarray, k: int, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``min(k, N)`` best of each row of ``(B, N)`` scores: ``(scores, ids)``, highest score
    first and the smaller id first among equal scores. ``ids`` names the columns (default
    ``0..N-1``).

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.top_k(np.array([[1.0, 3.0, 3.0, 2.0]], np.float32), 3)
    (array([[3., 3., 2.]], dtype=float32), array([[1, 2, 3]]))
    """
    n_queries, n_columns = scores.shape
    names = np.arange(n_columns, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    width = min(k, n_columns)
    order = np.lexsort((np.broadcast_to(names, scores.shape), -scores), axis=-1)[:, :width]
    return np.take_along_axis(scores, order, axis=1), names[order]


# ---------------------------------------------------------------------------------------------
# 4-bit and 2-bit rows (the schemes rowwise-affine-u4-f16 and rowwise-affine-u2-f16): FBGEMM's
# N-bit layout, codes packed low bits first, one float16 scale and one float16 bias per row.

NBIT_SEARCH_BINS = 200
"""The greedy range search's steps across a row's [min, max] (as FBGEMM/PyTorch's
``choose_qparams_optimized``)."""
NBIT_SEARCH_RATIO = np.float32(0.16)
"""The part of a row's range the greedy search may clip away."""


def nbit_width(dim: int, bits: int) -> int:
    """Bytes a row of ``dim`` values packs into at ``bits`` per value: ``ceil(dim / (8 // bits))``.

    >>> from rowquant import reference
    >>> reference.nbit_width(5, 4), reference.nbit_width(5, 2), reference.nbit_width(0, 4)
    (3, 2, 0)
    """
    per = 8 // bits
    return -(-dim // per)


def pack_nbit(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack ``(N, D)`` integer codes in ``[0, 2**bits)`` into uint8 ``(N, ceil(D / (8 // bits)))``:
    value j of a row in byte ``j // per``, bits ``(j % per) * bits`` upward (low bits first); the
    padding bits of the last byte are 0.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.pack_nbit(np.array([[1, 2, 15]]), 4)  # 0x21, then 0x0f
    array([[33, 15]], dtype=uint8)
    >>> reference.pack_nbit(np.array([[1, 2, 3, 0, 3]]), 2)  # 0b00111001, 0b00000011
    array([[57,  3]], dtype=uint8)
    """
    values = np.asarray(values)
    per = 8 // bits
    n_rows, dim = values.shape
    width = nbit_width(dim, bits)
    padded = np.zeros((n_rows, width * per), dtype=np.uint8)
    padded[:, :dim] = values
    shifts = (np.arange(per) * bits).astype(np.uint8)
    grouped = padded.reshape(n_rows, width, per) << shifts
    packed: np.ndarray = np.bitwise_or.reduce(grouped, axis=2).astype(np.uint8)
    return packed


def unpack_nbit(codes: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """The ``(N, dim)`` uint8 codes packed in ``codes`` (see :func:`pack_nbit`); padding is dropped.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.unpack_nbit(np.array([[33, 15]], np.uint8), 4, 3)
    array([[ 1,  2, 15]], dtype=uint8)
    """
    codes = np.asarray(codes, dtype=np.uint8)
    per = 8 // bits
    shifts = (np.arange(per) * bits).astype(np.uint8)
    parts = (codes[:, :, None] >> shifts) & np.uint8((1 << bits) - 1)
    unpacked: np.ndarray = parts.reshape(codes.shape[0], codes.shape[1] * per)[:, :dim]
    return unpacked


def _nbit_params(xmin: np.ndarray, xmax: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """float16 (scales, biases) for rows clipped to float32 [xmin, xmax], as FBGEMM sets them."""
    with np.errstate(over="ignore"):  # rows past float16's range: the caller checks for inf
        biases = np.asarray(xmin, np.float32).astype(np.float16)
        low = biases.astype(np.float32)
        spans = np.asarray(xmax, np.float32) - low
        scales32 = np.where(spans == 0, np.float32(1), spans / np.float32((1 << bits) - 1))
        scales = scales32.astype(np.float32).astype(np.float16)
        widened = scales.astype(np.float32)
        with np.errstate(divide="ignore"):
            degenerate = (widened == 0) | np.isinf(np.float32(1) / widened)
    scales[degenerate] = np.float16(1)
    return scales, biases


def _nbit_levels(E: np.ndarray, scales: np.ndarray, biases: np.ndarray, bits: int) -> np.ndarray:
    """The unpacked codes ``clamp(rint((x - xmin) * (1 / scale)), 0, 2**bits - 1)``, float32
    arithmetic, ties to even."""
    inverse = (np.float32(1) / scales.astype(np.float32))[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        steps = np.rint((E - biases.astype(np.float32)[:, None]) * inverse)
    steps[np.isnan(steps)] = 0  # only in rows past float16's range, which callers reject
    levels: np.ndarray = np.clip(steps, 0, (1 << bits) - 1).astype(np.uint8)
    return levels


def _nbit_values(levels: np.ndarray, scales: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """``float32(s) * q + float32(c)`` in float32 (the product is exact: one rounding)."""
    values: np.ndarray = (levels.astype(np.float32) * scales.astype(np.float32)[:, None]
                          + biases.astype(np.float32)[:, None])
    return values


def _nbit_losses(E: np.ndarray, xmin: np.ndarray, xmax: np.ndarray, bits: int) -> np.ndarray:
    """The float64 sum of squared errors of each row quantized with the range [xmin, xmax]."""
    scales, biases = _nbit_params(xmin, xmax, bits)
    errors = _nbit_values(_nbit_levels(E, scales, biases, bits), scales, biases) - E
    errors64 = errors.astype(np.float64)
    losses: np.ndarray = np.einsum("ij,ij->i", errors64, errors64)
    return losses


def nbit_search_range(E: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the clipping range ``(xmin, xmax)`` (float32) that the greedy search finds.

    The search of FBGEMM/PyTorch's ``choose_qparams_optimized`` (200 bins, ratio 0.16), with
    rowquant's own loss: from ``[min, max]``, ``step = (max - min) / 200`` (float32), and while
    ``lo + 168 * step < hi`` (all float32), compare the loss of ``[lo + step, hi]`` and of
    ``[lo, hi - step]``, move to the lower (the second on a tie), and keep the current range as the
    best when its loss is below both moves' and below the best so far. The loss of a range is
    the float64 sum of squared errors of the row quantized with it exactly as
    :func:`quantize_nbit` quantizes (float16 bias and scale), so the range returned never gives
    a larger error than ``[min, max]``. PyTorch's loss is a float32 norm with its own scale
    rules, so its choice may differ on near-ties.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> row = np.array([[-1.0, -0.1, 0.0, 0.1, 0.2, 1.0]], np.float32)
    >>> reference.nbit_search_range(row, 2)  # clips both ends, 4 and 17 steps of 0.01
    (array([-0.96000004], dtype=float32), array([0.83000016], dtype=float32))
    """
    E = np.asarray(E, dtype=np.float32)
    n_rows = E.shape[0]
    if E.shape[1] == 0:
        zeros = np.zeros(n_rows, np.float32)
        return zeros, zeros.copy()
    xmin, xmax = E.min(axis=1), E.max(axis=1)
    with np.errstate(over="ignore"):
        steps = (xmax - xmin) / np.float32(NBIT_SEARCH_BINS)
        min_bins = np.float32(int(NBIT_SEARCH_BINS * (1.0 - float(NBIT_SEARCH_RATIO))))
        threshold = min_bins * steps
    best_min, best_max = xmin.copy(), xmax.copy()
    best_loss = _nbit_losses(E, xmin, xmax, bits)
    low, high, loss = xmin.copy(), xmax.copy(), best_loss.copy()
    active = np.flatnonzero(low + threshold < high)
    while active.size:
        rows = E[active]
        step = steps[active]
        loss_low = _nbit_losses(rows, low[active] + step, high[active], bits)
        loss_high = _nbit_losses(rows, low[active], high[active] - step, bits)
        here = loss[active]
        better = (here < loss_low) & (here < loss_high) & (here < best_loss[active])
        chosen = active[better]
        best_loss[chosen] = here[better]
        best_min[chosen], best_max[chosen] = low[chosen], high[chosen]
        move_low = loss_low < loss_high
        low[active[move_low]] += step[move_low]
        loss[active[move_low]] = loss_low[move_low]
        high[active[~move_low]] -= step[~move_low]
        loss[active[~move_low]] = loss_high[~move_low]
        active = active[low[active] + threshold[active] < high[active]]
    return best_min, best_max


def quantize_nbit(
    E: np.ndarray, bits: int, range_search: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize a finite float32 ``(N, D)`` matrix to ``bits`` (4 or 2) per value, as FBGEMM's
    ``FloatToFusedNBitRowwiseQuantizedSBHalf`` does: ``(codes uint8 (N, P), scales float16 (N,),
    biases float16 (N,))``, ``P = ceil(D / (8 // bits))``.

    Per row: ``c = float16(min)`` (to nearest), ``xmin = float32(c)``; ``range = max - xmin``;
    ``scale = 1 if range == 0 else range / (2**bits - 1)``; ``s = float16(scale)``, and
    ``s = 1`` if that is 0 or its float32 reciprocal is inf; then ``q = clamp(rint((x - xmin) *
    (1 / s)), 0, 2**bits - 1)`` in float32, ties to even. With ``range_search=True`` the row's
    (min, max) are those of :func:`nbit_search_range` instead (values outside are clipped). An
    empty row (D = 0) has scale 1 and bias 0. Rows whose bias or scale is past float16's range
    come out with inf in them: the public functions reject such rows first.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> codes, scales, biases = reference.quantize_nbit(np.array([[-1.0, 0.0, 0.5, 2.0]]), 4)
    >>> scales, biases  # 3 / 15
    (array([0.2], dtype=float16), array([-1.], dtype=float16))
    >>> reference.unpack_nbit(codes, 4, 4)  # (x + 1) / 0.2: 0, 5, 7.5 (to even: 8), 15
    array([[ 0,  5,  8, 15]], dtype=uint8)
    """
    E = np.asarray(E, dtype=np.float32)
    n_rows, dim = E.shape
    if dim == 0:
        return (np.zeros((n_rows, 0), np.uint8), np.ones(n_rows, np.float16),
                np.zeros(n_rows, np.float16))
    if range_search:
        xmin, xmax = nbit_search_range(E, bits)
    else:
        xmin, xmax = E.min(axis=1), E.max(axis=1)
    scales, biases = _nbit_params(xmin, xmax, bits)
    return pack_nbit(_nbit_levels(E, scales, biases, bits), bits), scales, biases


def dequantize_nbit(
    codes: np.ndarray, scales: np.ndarray, biases: np.ndarray, bits: int, dim: int
) -> np.ndarray:
    """The float32 ``(N, dim)`` table ``float32(s) * q + float32(c)`` (one rounding per value).

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.dequantize_nbit(np.array([[0x50, 0x0f]], np.uint8), np.array([0.25], np.float16),
    ...                           np.array([-1.0], np.float16), 4, 3)  # codes 0, 5, 15
    array([[-1.  ,  0.25,  2.75]], dtype=float32)
    """
    return _nbit_values(unpack_nbit(codes, bits, dim), np.asarray(scales, np.float16),
                        np.asarray(biases, np.float16))


def take_nbit(codes: np.ndarray, scales: np.ndarray, biases: np.ndarray, bits: int, dim: int,
              ids: np.ndarray) -> np.ndarray:
    """Dequantized rows ``ids`` (any shape, in ``[0, N)``): shape ``ids.shape + (dim,)``.

    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.take_nbit(np.array([[0x21]], np.uint8), np.array([1.0], np.float16),
    ...                     np.array([0.5], np.float16), 4, 2, np.array([0, 0]))
    array([[1.5, 2.5],
           [1.5, 2.5]], dtype=float32)
    """
    ids = np.asarray(ids)
    flat = ids.reshape(-1)
    rows = dequantize_nbit(codes[flat], np.asarray(scales)[flat], np.asarray(biases)[flat],
                           bits, dim)
    return rows.reshape(ids.shape + (dim,))


def pool_bags_nbit(
    codes: np.ndarray,
    scales: np.ndarray,
    biases: np.ndarray,
    bits: int,
    dim: int,
    ids: np.ndarray,
    bounds: np.ndarray,
    weights: np.ndarray | None = None,
    mode: str = "sum",
    padding_idx: int | None = None,
) -> np.ndarray:
    """Pool the flat ``ids`` of N-bit rows into ``len(bounds) - 1`` bags, in the order of FBGEMM's
    ``EmbeddingSpMDMNBit``.

    Sum: from ``acc[j] = +0.0``, each id in order (skipping ``padding_idx``) with row scale and
    bias ``f = float32(s)``, ``g = float32(c)`` (or ``f = float32(s * w)``, ``g = float32(c * w)``
    with its weight ``w``) does ``acc[j] = fmaf(f, q[j], acc[j] + g)``, ``acc[j] + g`` rounded to
    float32 first. ``mode="mean"`` then divides by the number of ids pooled (a float32 division;
    FBGEMM multiplies by ``1 / count`` instead). ``mode="max"`` takes each column's largest
    dequantized value, a later value kept only when strictly greater. Empty bags are zero.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> codes = np.array([[0x21], [0xf0]], np.uint8)  # rows (1, 2) and (0, 15)
    >>> scales, biases = np.array([1.0, 0.5], np.float16), np.array([0.0, -1.0], np.float16)
    >>> reference.pool_bags_nbit(codes, scales, biases, 4, 2, np.array([0, 1]), np.array([0, 2]))
    array([[0. , 8.5]], dtype=float32)
    >>> reference.pool_bags_nbit(codes, scales, biases, 4, 2, np.array([0, 1]), np.array([0, 2]),
    ...                          mode="max")
    array([[1. , 6.5]], dtype=float32)
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    bounds = np.asarray(bounds, dtype=np.int64)
    scales32 = np.asarray(scales, np.float16).astype(np.float32)
    biases32 = np.asarray(biases, np.float16).astype(np.float32)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32).reshape(-1)
    n_bags = len(bounds) - 1
    sums = np.zeros((n_bags, dim), dtype=np.float32)
    counts = np.zeros(n_bags, dtype=np.int64)
    starts, sizes = bounds[:-1], np.diff(bounds)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(int(sizes.max(initial=0))):
            bags = np.flatnonzero(sizes > k)
            positions = starts[bags] + k
            rows = ids[positions]
            if padding_idx is not None:
                keep = rows != padding_idx
                bags, positions, rows = bags[keep], positions[keep], rows[keep]
            levels = unpack_nbit(codes[rows], bits, dim).astype(np.float32)
            if mode == "max":
                terms = _nbit_values(levels, scales32[rows], biases32[rows])
                pooled = sums[bags]
                first = (counts[bags] == 0)[:, None]
                sums[bags] = np.where(first | (terms > pooled), terms, pooled)
            else:
                factors, offsets = scales32[rows], biases32[rows]
                if weights is not None:
                    factors = factors * weights[positions]  # float32 multiplies, as in C
                    offsets = offsets * weights[positions]
                shifted = sums[bags] + offsets[:, None]  # rounded to float32 first
                sums[bags] = _fma32(factors[:, None], levels, shifted)
            counts[bags] += 1
        if mode == "mean":
            counted = counts > 0
            sums[counted] /= counts[counted].astype(np.float32)[:, None]
    return sums


def pool_bags_cld3(
    codes: np.ndarray,
    scales: np.ndarray,
    ids: np.ndarray,
    bounds: np.ndarray,
    weights: np.ndarray | None = None,
    mode: str = "sum",
    padding_idx: int | None = None,
) -> np.ndarray:
    """Bags summed in CLD3's order (``EmbeddingNetwork``'s feature sums, see
    :mod:`rowquant.cld3`): for each id in order, the factor ``f = float32(s * w)`` (``w`` the
    id's weight, 1 without weights), each term ``float32((q - 128) * f)``, and the bag's
    ``float32`` sum from +0 adding the terms one by one (no fused multiply-add). ``mode="mean"``
    divides the sum by the count of ids (float32), padding ids skipped and not counted.

    rowquant's own bags (:func:`pool_bags`) round differently, by up to an ulp or so per term.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> codes = np.array([[129, 0], [255, 128]], np.uint8)
    >>> scales = np.array([0x3F80, 0x3F00], np.uint16)  # bfloat16 1.0 and 0.5
    >>> reference.pool_bags_cld3(codes, scales, np.array([0, 1]), np.array([0, 2]),
    ...                          weights=np.array([2.0, 0.5], np.float32))
    array([[  33.75, -256.  ]], dtype=float32)
    """
    n_bags, dim = len(bounds) - 1, codes.shape[1]
    out = np.zeros((n_bags, dim), np.float32)
    counts = np.zeros(n_bags, np.int64)
    lengths = np.diff(bounds)
    values = widen_scales(scales)
    for step in range(int(lengths.max()) if n_bags else 0):
        bags = np.nonzero(lengths > step)[0]
        positions = bounds[bags] + step
        rows = ids[positions]
        if padding_idx is not None:
            keep = rows != padding_idx
            bags, positions, rows = bags[keep], positions[keep], rows[keep]
        factors = values[rows]
        if weights is not None:
            factors = factors * weights[positions].astype(np.float32)  # one float32 multiply
        terms = (codes[rows].astype(np.float32) - np.float32(BIAS)) * factors[:, None]
        out[bags] += terms  # bags are distinct at one step: one float32 add each
        counts[bags] += 1
    if mode == "mean":
        divide = counts > 0
        out[divide] /= counts[divide, None].astype(np.float32)
    return out
