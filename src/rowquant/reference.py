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
* value ``x[i, j] = float32((q[i, j] - 128) * s[i])``, one float32 multiply.

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
    "quantize_rows", "dequantize", "dequantize_codes", "take", "embedding_bag", "bag_bounds",
    "pool_bags",
]

BIAS = ROWWISE_U8.bias
_LEVELS = np.float32(ROWWISE_U8.levels)
_LOWEST, _HIGHEST = ROWWISE_U8.code_range
# Rows per block when quantizing, so the float64 temporaries stay near 8 MB whatever the table.
_BLOCK_ELEMENTS = 1 << 20


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


def dequantize(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float32 table ``(codes - 128) * scales[:, None]``, each value rounded once.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant import reference
    >>> reference.dequantize(np.array([[255, 128, 1]], dtype=np.uint8), np.array([0.5], np.float32))
    array([[ 63.5,   0. , -63.5]], dtype=float32)
    """
    return dequantize_codes(codes, np.asarray(scales, dtype=np.float32)[:, None])


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

    Each bag is a float32 sum in id order of the dequantized rows, each first multiplied by its
    weight; ids equal to ``padding_idx`` are skipped; ``mode="mean"`` divides by the number of ids
    pooled. ``mode="max"`` instead takes each column's largest value, going through the rows in
    id order and keeping a later value only when it is strictly greater (which decides between
    -0.0 and +0.0, the only values that compare equal and differ). Empty bags are zero.

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
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    bounds = np.asarray(bounds, dtype=np.int64)
    n_bags, dim = len(bounds) - 1, codes.shape[1]
    starts, sizes = bounds[:-1], np.diff(bounds)
    sums = np.zeros((n_bags, dim), dtype=np.float32)
    counts = np.zeros(n_bags, dtype=np.int64)
    # Step k adds the k-th id of every bag that has one: float32 additions in id order, the
    # order the kernels use, with one vectorized step per position instead of one per id.
    for k in range(int(sizes.max(initial=0))):
        bags = np.flatnonzero(sizes > k)
        positions = starts[bags] + k
        rows = ids[positions]
        if padding_idx is not None:
            keep = rows != padding_idx
            bags, positions, rows = bags[keep], positions[keep], rows[keep]
        terms = take(codes, scales, rows)
        if mode == "max":
            pooled = sums[bags]
            first = (counts[bags] == 0)[:, None]
            sums[bags] = np.where(first | (terms > pooled), terms, pooled)
            counts[bags] += 1
            continue
        with np.errstate(over="ignore", invalid="ignore"):  # inf and nan as float32 gives them
            if weights is not None:
                terms *= np.asarray(weights, dtype=np.float32).reshape(-1)[positions][:, None]
            sums[bags] += terms
        counts[bags] += 1
    if mode == "mean":
        counted = counts > 0
        sums[counted] /= counts[counted].astype(np.float32)[:, None]
    return sums


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
