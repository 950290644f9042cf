"""Similarity on the codes: scores of queries against the rows of a table (dot products or
cosine), and each query's k best rows, computed from the codes without dequantizing the table.

The arithmetic is :mod:`rowquant.reference`'s (its similarity section), in two precisions:

* ``"exact"``: each score is the float64 sum of the products of the row's dequantized values
  with the query's, in a fixed order of 8 lanes, rounded once to float32. It differs from the
  correctly rounded float64 dot product by at most ``D * 2**-52`` times ``sum_j |v_j x_j|``
  before that rounding (far below a float32 step unless the terms cancel);
* ``"fast"``: the query is quantized as a table row is (its own scale ``t = max|x| / 127``),
  and the score is the exact integer dot product of the centered codes times ``s_i * t``:
  about 4x fewer bytes moved per query than float32 and integer multiplies (``vpdpbusd``).

Cosine divides by the norms of the dequantized rows (:meth:`QuantizedEmbedding.norms`) and of
the float query; a zero row or query has cosine 0.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _backend, _checks, reference
from ._threads import resolve_threads

Metric: TypeAlias = Literal["dot", "cosine"]
Precision: TypeAlias = Literal["exact", "fast"]

METRICS = ("dot", "cosine")
PRECISIONS = ("exact", "fast")
# Above this many heap entries per call (threads x queries x k), or for k beyond an eighth of
# the rows, the k best come from whole blocks of scores sorted instead of per-thread heaps.
_HEAP_ENTRIES = 1 << 22
# Scores per block of the sorted path: sorting a block (reference.top_k's lexsort on float32
# scores, negated, with int64 names and order) needs about 17 bytes per score, so blocks of
# 2**22 scores keep the call's temporaries near 70 MB (measured by tracemalloc in
# tests/test_similarity.py).
_DENSE_BLOCK_SCORES = 1 << 22


def check_metric(metric: object) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be 'dot' or 'cosine', got {metric!r}")
    return str(metric)


def check_precision(precision: object) -> int:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'exact' or 'fast', got {precision!r}")
    number: int = _backend.kernels.DOT_PRECISIONS[precision]
    return number


def query_matrix(queries: Any, dim: int) -> tuple[NDArray[np.float32], bool]:
    """The queries as float32 ``(B, D)`` with contiguous rows, and whether one 1-D query was
    given. Refused: non-numeric data, a width other than the table's, NaN or inf (after the
    conversion to float32: values beyond its range are inf)."""
    array = _checks.as_array(queries)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise TypeError(f"queries must hold real numbers, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(
            f"queries must be one vector (D,) or a batch (B, D), got shape {array.shape}"
        )
    single = array.ndim == 1
    matrix = array.reshape(1, -1) if single else array
    if matrix.shape[1] != dim:
        raise ValueError(
            f"queries have {matrix.shape[1]} values each but the table's rows have {dim}"
        )
    with np.errstate(over="ignore"):
        matrix = _checks.aligned_contiguous(matrix, np.float32)
    finite = np.isfinite(matrix)
    if not finite.all():
        at = int(np.argmin(finite.reshape(-1)))
        where = _checks.position(array.shape, at)
        raise ValueError(
            f"queries[{where}] is {array.reshape(-1)[at]}: queries must be finite "
            "(in float32's range)"
        )
    return matrix, single


def kernel_queries(
    matrix: NDArray[np.float32], precision: int, cosine: bool
) -> tuple[np.ndarray, NDArray[np.float64]]:
    """What the kernels take for these queries: the float32 queries (exact) or their int8
    codes minus 128 (fast), and each query's factor of its scores."""
    inverse = None
    if cosine:
        query_norms = reference.norms(matrix)
        infinite = np.isinf(query_norms)
        if infinite.any():  # else 1 / inf = 0 would score every row 0, silently
            query = int(np.argmax(infinite))
            raise ValueError(
                f"query {query}'s norm is beyond float32's range, so its cosine is not "
                "defined; scale it down or use metric='dot'"
            )
        inverse = reference.inverse_norms(query_norms)
    n_queries, dim = matrix.shape
    if precision == _backend.kernels.DOT_PRECISIONS["exact"]:
        return matrix, reference.query_factors(None, inverse, n_queries)
    codes = np.empty((n_queries, dim), np.uint8)
    query_scales = np.empty(n_queries, np.float32)
    # as reference.query_codes: scaled by a power of two (exact), so that tiny queries keep
    # their 8 bits, then quantized as rows are
    shift = reference.query_shift(matrix)
    scaled = _checks.aligned_contiguous(np.ldexp(matrix, shift[:, None].astype(np.int32)),
                                        np.float32)
    _backend.kernels.quantize_rows(scaled, codes, query_scales, 1)  # finite: checked
    np.bitwise_xor(codes, np.uint8(reference.BIAS), out=codes)  # code - 128, as int8
    scales = np.ldexp(query_scales.astype(np.float64), -shift)  # exact: undoes the shift
    return codes.view(np.int8), reference.query_factors(scales, inverse, n_queries)


def inverse_norms_of(norms: NDArray[np.float32]) -> NDArray[np.float64]:
    """The rows' inverse norms for cosine; refused when a norm overflowed float32."""
    infinite = np.isinf(norms)
    if infinite.any():
        row = int(np.argmax(infinite))
        raise ValueError(
            f"row {row}'s norm is beyond float32's range, so its cosine is not defined; "
            "use metric='dot'"
        )
    return reference.inverse_norms(norms)


def candidate_rows(ids: ArrayLike, n_rows: int, name: str) -> NDArray[np.int64]:
    """Row numbers given as ``ids=``/``exclude=``: 1-D integers in ``[0, N)``."""
    rows = _checks.integer_array(ids, name)
    if rows.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {rows.shape}")
    bad = (rows < 0) | (rows >= n_rows)
    if bad.any():
        raise _checks.id_range_error(rows, int(np.argmax(bad)), n_rows, name)
    return _checks.as_int64(rows)


def top_count(k: Any) -> int:
    return _checks.count(k, "k", 0)


def scores(
    codes: NDArray[np.uint8], scales: NDArray[np.float32], inverse: NDArray[np.float64] | None,
    queries: np.ndarray, query_factors: NDArray[np.float64], precision: int,
    out: NDArray[np.float32], n_threads: int,
) -> None:
    """Scores of prepared queries against every row of a checked table, into out (B, N)."""
    _backend.kernels.scores(codes, scales, queries, precision, inverse, query_factors, out,
                            n_threads)


def best(
    codes: NDArray[np.uint8], scales: NDArray[np.float32], inverse: NDArray[np.float64] | None,
    queries: np.ndarray, query_factors: NDArray[np.float64], precision: int, k: int,
    n_threads: int,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Each query's ``min(k, N)`` best rows, sorted: best score first, the smaller row first
    among equal scores."""
    n_rows = codes.shape[0]
    n_queries = len(query_factors)
    width = min(k, n_rows)
    if width == 0 or n_queries == 0:
        return np.empty((n_queries, width), np.float32), np.empty((n_queries, width), np.int64)
    if n_threads * n_queries * width > _HEAP_ENTRIES or width > n_rows // 8:
        return _best_sorted(codes, scales, inverse, queries, query_factors, precision, width,
                            n_threads)
    top_scores = np.full((n_threads, n_queries, width), -np.inf, np.float32)
    top_ids = np.full((n_threads, n_queries, width), -1, np.int64)
    _backend.kernels.top_k(codes, scales, queries, precision, inverse, query_factors,
                           top_scores, top_ids, n_threads)
    # merge the threads' heaps: empty entries (-1) last, then best score, then smaller row
    merged_scores = top_scores.transpose(1, 0, 2).reshape(n_queries, -1)
    merged_ids = top_ids.transpose(1, 0, 2).reshape(n_queries, -1)
    order = np.lexsort((merged_ids, -merged_scores, merged_ids < 0), axis=-1)[:, :width]
    return (np.take_along_axis(merged_scores, order, axis=1),
            np.take_along_axis(merged_ids, order, axis=1))


def _best_sorted(
    codes: NDArray[np.uint8], scales: NDArray[np.float32], inverse: NDArray[np.float64] | None,
    queries: np.ndarray, query_factors: NDArray[np.float64], precision: int, width: int,
    n_threads: int,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """:func:`best` from whole rows of scores, a block of queries at a time (for large k)."""
    n_rows = codes.shape[0]
    n_queries = len(query_factors)
    out_scores = np.empty((n_queries, width), np.float32)
    out_ids = np.empty((n_queries, width), np.int64)
    block = max(1, _DENSE_BLOCK_SCORES // max(1, n_rows))
    for start in range(0, n_queries, block):
        part = slice(start, start + block)
        block_scores = np.empty((len(query_factors[part]), n_rows), np.float32)
        scores(codes, scales, inverse, queries[part], query_factors[part], precision,
               block_scores, n_threads)
        out_scores[part], out_ids[part] = reference.top_k(block_scores, width)
    return out_scores, out_ids


def search(
    codes: NDArray[np.uint8], scales: NDArray[np.float32],
    inverse: NDArray[np.float64] | None, queries: Any, k: Any, metric: str, precision: Any,
    ids: ArrayLike | None, exclude: ArrayLike | None, threads: int | None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The k best rows of each query (see :meth:`QuantizedEmbedding.search`)."""
    count = top_count(k)
    number = check_precision(precision)
    n_threads = resolve_threads(threads)
    matrix, single = query_matrix(queries, codes.shape[1])
    prepared, factors = kernel_queries(matrix, number, metric == "cosine")
    n_rows = codes.shape[0]
    rows: NDArray[np.int64] | None = None
    excluded = None if exclude is None else np.unique(candidate_rows(exclude, n_rows, "exclude"))
    if ids is not None:
        rows = np.unique(candidate_rows(ids, n_rows, "ids"))
        if excluded is not None:
            rows = np.setdiff1d(rows, excluded, assume_unique=True)
            excluded = None
        codes, scales = codes[rows], scales[rows]
        inverse = None if inverse is None else inverse[rows]
    n_candidates = codes.shape[0] - (0 if excluded is None else len(excluded))
    width = min(count, n_candidates)
    extra = 0 if excluded is None else len(excluded)
    found_scores, found = best(codes, scales, inverse, prepared, factors, number,
                               width + extra if width else 0, n_threads)
    if rows is not None:
        found = rows[found]
    if excluded is not None and extra:
        keep = np.argsort(np.isin(found, excluded), axis=1, kind="stable")[:, :width]
        found_scores = np.take_along_axis(found_scores, keep, axis=1)
        found = np.take_along_axis(found, keep, axis=1)
    if single:
        return found_scores[0], found[0]
    return found_scores, found
