"""The numpy backend: the compiled extension's functions, with the same signatures and the same
status returns, computed by :mod:`rowquant.reference`.

:mod:`rowquant._backend` uses this module in place of ``rowquant._ext`` when the extension is
not built or ``ROWQUANT_PUREPYTHON=1`` is set. Callers have checked every argument (as for the
extension): 2-D float32 values and uint8 codes with contiguous rows, float32 or 16-bit scales,
int64 ids and bounds, float32 weights or None, outputs of the right shape. Single-threaded:
``n_threads`` is accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import NDArray

from . import reference

# The bag modes by number, as the extension exports them from csrc/rowquant.h (a test checks
# that both backends agree).
BAG_MODES = {"sum": 0, "mean": 1, "max": 2}
_MODE_NAMES = {number: name for name, number in BAG_MODES.items()}
SIMD_NAMES: tuple[str, ...] = ()  # no SIMD kernels here
# The precisions of similarity scores by number, as csrc/rowquant.h numbers them.
DOT_PRECISIONS = {"exact": 0, "fast": 1}
_PRECISION_NAMES = {number: name for name, number in DOT_PRECISIONS.items()}
# Rows per block of similarity scores, so that a block's float64 work stays near 64 MB.
# scales: float32, float16, or uint16 holding bfloat16 bits (reference.widen_scales reads them)
_Scales = NDArray[np.float32] | NDArray[np.float16] | NDArray[np.uint16]

_SCORE_BLOCK_VALUES = 1 << 23


def _first_out_of_range(ids: np.ndarray, n_rows: int) -> int:
    bad = (ids < 0) | (ids >= n_rows)
    return int(np.argmax(bad)) if bad.any() else -1


def quantize_rows(
    values: NDArray[np.float32], codes: NDArray[np.uint8], scales: _Scales,
    n_threads: int,
) -> int:
    """Quantize into codes and scales; -1, or the flat index of the first NaN or inf (then
    codes and scales are left as they were)."""
    finite = np.isfinite(values)
    if not finite.all():
        return int(np.argmin(finite))
    codes[...], scales[...] = reference.quantize_rows(values)
    return -1


def dequantize(
    codes: NDArray[np.uint8], scales: _Scales, out: NDArray[np.float32],
    n_threads: int,
) -> None:
    """Dequantize every row of codes into out."""
    out[...] = reference.dequantize(codes, scales)


def take(
    codes: NDArray[np.uint8], scales: _Scales, ids: NDArray[np.int64],
    out: NDArray[np.float32], n_threads: int,
) -> int:
    """Dequantize rows ids (1-D) into out (len(ids), D); -1, or the position of the first id
    out of range (then out is left as it was)."""
    bad = _first_out_of_range(ids, codes.shape[0])
    if bad < 0:
        out[...] = reference.take(codes, scales, ids)
    return bad


def bag(
    codes: NDArray[np.uint8],
    scales: _Scales,
    ids: NDArray[np.int64],
    bounds: NDArray[np.int64],
    weights: NDArray[np.float32] | None,
    mode: int,
    padding_idx: int,
    out: NDArray[np.float32],
    n_threads: int,
) -> int:
    """Pool ids into the bags ids[bounds[b]:bounds[b + 1]] (padding_idx -1 for none); -1, or
    the position of the first id out of range (then out is left as it was)."""
    bad = _first_out_of_range(ids, codes.shape[0])
    if bad < 0:
        padding_row = None if padding_idx < 0 else padding_idx
        out[...] = reference.pool_bags(
            codes, scales, ids, bounds, weights, _MODE_NAMES[mode], padding_row
        )
    return bad


def _score_blocks(
    codes: NDArray[np.uint8], scales: _Scales, queries: np.ndarray, precision: int,
    inverse_norms: NDArray[np.float64] | None, query_factors: NDArray[np.float64],
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 scores (B, rows)) of the queries against blocks of the table."""
    n_rows, dim = codes.shape
    block = max(1, _SCORE_BLOCK_VALUES // max(1, len(query_factors) * max(dim, 1)))
    for start in range(0, n_rows, block):
        rows = slice(start, start + block)
        if precision == DOT_PRECISIONS["exact"]:
            sums = reference.lane_sums(reference.dequantize(codes[rows], scales[rows]), queries)
        else:
            sums = reference.integer_dots(codes[rows], queries)
        inverse = None if inverse_norms is None else inverse_norms[rows]
        factors = reference.row_factors(scales[rows], inverse, _PRECISION_NAMES[precision])
        yield start, reference.scores(sums, factors, query_factors)


def scores(
    codes: NDArray[np.uint8], scales: _Scales, queries: np.ndarray, precision: int,
    inverse_norms: NDArray[np.float64] | None, query_factors: NDArray[np.float64],
    out: NDArray[np.float32], n_threads: int,
) -> None:
    """Scores of the queries (float32 for exact, int8 for fast) against every row, into out
    (B, N)."""
    for start, block in _score_blocks(codes, scales, queries, precision, inverse_norms,
                                      query_factors):
        out[:, start : start + block.shape[1]] = block


def top_k(
    codes: NDArray[np.uint8], scales: _Scales, queries: np.ndarray, precision: int,
    inverse_norms: NDArray[np.float64] | None, query_factors: NDArray[np.float64],
    top_scores: NDArray[np.float32], top_ids: NDArray[np.int64], n_threads: int,
) -> None:
    """The k best rows per query into top_scores[0] and top_ids[0] ((-inf, -1) where there
    are fewer than k rows); the other threads' entries are left as they are."""
    k = top_scores.shape[2]
    best_scores = np.empty((len(query_factors), 0), np.float32)
    best_ids = np.empty((len(query_factors), 0), np.int64)
    for start, block in _score_blocks(codes, scales, queries, precision, inverse_norms,
                                      query_factors):
        names = np.arange(start, start + block.shape[1], dtype=np.int64)
        candidates = np.concatenate([best_scores, block], axis=1)
        candidate_ids = np.concatenate([best_ids, np.broadcast_to(names, block.shape)], axis=1)
        order = np.lexsort((candidate_ids, -candidates), axis=-1)[:, :k]
        best_scores = np.take_along_axis(candidates, order, axis=1)
        best_ids = np.take_along_axis(candidate_ids, order, axis=1)
    top_scores[0] = -np.inf
    top_ids[0] = -1
    top_scores[0, :, : best_scores.shape[1]] = best_scores
    top_ids[0, :, : best_ids.shape[1]] = best_ids


def norms(
    codes: NDArray[np.uint8], scales: _Scales, out: NDArray[np.float32],
    n_threads: int,
) -> None:
    """The norm of every dequantized row, into out (N,)."""
    block = max(1, _SCORE_BLOCK_VALUES // max(1, codes.shape[1]))
    for start in range(0, codes.shape[0], block):
        rows = slice(start, start + block)
        out[rows] = reference.norms(reference.dequantize(codes[rows], scales[rows]))


def nbit_dequantize(
    codes: NDArray[np.uint8], scales: NDArray[np.float16], biases: NDArray[np.float16], bits: int,
    dim: int, out: NDArray[np.float32], n_threads: int,
) -> None:
    """Dequantize every packed N-bit row into out (N, dim)."""
    out[...] = reference.dequantize_nbit(codes, scales, biases, bits, dim)


def nbit_take(
    codes: NDArray[np.uint8], scales: NDArray[np.float16], biases: NDArray[np.float16], bits: int,
    dim: int, ids: NDArray[np.int64], out: NDArray[np.float32], n_threads: int,
) -> int:
    """Dequantize N-bit rows ids (1-D) into out (len(ids), dim); -1, or the position of the
    first id out of range (then out is left as it was)."""
    bad = _first_out_of_range(ids, codes.shape[0])
    if bad < 0:
        out[...] = reference.take_nbit(codes, scales, biases, bits, dim, ids)
    return bad


def nbit_bag(
    codes: NDArray[np.uint8], scales: NDArray[np.float16], biases: NDArray[np.float16], bits: int,
    dim: int, ids: NDArray[np.int64], bounds: NDArray[np.int64],
    weights: NDArray[np.float32] | None, mode: int, padding_idx: int, out: NDArray[np.float32],
    n_threads: int,
) -> int:
    """Pool N-bit rows into the bags ids[bounds[b]:bounds[b + 1]] (padding_idx -1 for none);
    -1, or the position of the first id out of range (then out is left as it was)."""
    bad = _first_out_of_range(ids, codes.shape[0])
    if bad < 0:
        padding_row = None if padding_idx < 0 else padding_idx
        out[...] = reference.pool_bags_nbit(
            codes, scales, biases, bits, dim, ids, bounds, weights, _MODE_NAMES[mode], padding_row
        )
    return bad


class Table:
    """The extension's Table without its serving path: it holds nothing, and each method
    declines (returns None), so every call on this backend takes the checked path to the
    functions above."""

    def __init__(
        self,
        codes: NDArray[np.uint8],
        scales: _Scales,
        default_threads: Callable[[], int],
    ) -> None:
        pass

    def take(self, ids: object, out: object, threads: object) -> None:
        return None

    def dequantize(self, out: object, threads: object) -> None:
        return None

    def bag(
        self,
        ids: object,
        offsets: object,
        lengths: object,
        weights: object,
        mode: object,
        include_last_offset: object,
        padding_idx: object,
        out: object,
        threads: object,
    ) -> None:
        return None


def nbit_kernel_name() -> None:
    """No SIMD kernels here (the C backend names the variant its 4-bit and 2-bit kernels run)."""
    return None


def simd_name() -> None:
    return None


def simd_available(name: str) -> bool:
    return False


def simd_select(name: str | None) -> int:
    return 3  # RQ_SIMD_UNKNOWN: there is no SIMD path to select
