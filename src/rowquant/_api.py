"""The operations over plain arrays: check the arguments, allocate the output, make one kernel
call (or one call into :mod:`rowquant.reference` on the numpy backend), raise what it reported."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _backend, _checks, reference
from ._backend import simd_paths, use_simd  # noqa: F401 (for tests, benchmarks and .ci)
from ._threads import get_num_threads, resolve_threads
from ._version import __version__


BagMode: TypeAlias = Literal["sum", "mean", "max"]
"""How a bag pools its rows: their sum, their mean, or each column's largest value."""

Codes = NDArray[np.uint8]
Scales = NDArray[np.float32]
Floats = NDArray[np.float32]


class BackendInfo(TypedDict, total=False):
    """What :func:`backend_info` returns (``reason`` only on the numpy backend)."""

    backend: Literal["c", "numpy"]
    simd: str | None
    simd_available: list[str]
    threads: int
    parallel: bool
    version: str
    reason: str


def backend_info() -> BackendInfo:
    """Which implementation runs the operations, and with what.

    Returns a dict with ``backend`` (``"c"`` or ``"numpy"``), ``simd`` (the instruction set the
    kernels use: ``"scalar"``, ``"avx2"``, ``"avx512"`` or ``"avx512vnni"``, None on numpy;
    ``ROWQUANT_SIMD`` set at import chooses one), ``simd_available`` (those this processor runs), ``threads`` (the
    default thread count), ``parallel`` (whether large calls can use more than one thread: the
    C kernels' own thread pool; the numpy backend runs on one), ``version`` and, on numpy,
    ``reason``.

    Examples
    --------
    >>> import rowquant as rq
    >>> rq.backend_info()["backend"] in ("c", "numpy")
    True
    """
    on_c = _backend.name() == "c"
    info: BackendInfo = {
        "backend": "c" if on_c else "numpy",
        "simd": _backend.kernels.simd_name(),
        "simd_available": simd_paths(),
        "threads": get_num_threads(),
        "parallel": on_c,
        "version": __version__,
    }
    if not on_c:
        info["reason"] = _backend.fallback_reason or "switched to numpy for a comparison"
    return info


def quantize_rows(
    E: ArrayLike,
    *,
    codes_out: Codes | None = None,
    scales_out: Scales | None = None,
    threads: int | None = None,
) -> tuple[Codes, Scales]:
    """Quantize a float matrix row by row into uint8 codes and float32 scales.

    ``s[i] = float32(max|E[i]| / 127)`` and ``codes[i, j] = floor(E[i, j] / s[i] + 128.5)``,
    evaluated exactly (ties round up); an all-zero row gets scale 0 and codes 128.

    Parameters
    ----------
    E : array_like, shape (N, D)
        Real floating-point values. float16, float64, strided, Fortran-order and byte-swapped
        arrays are first converted to float32 in C order (a copy); float32 arrays whose rows are
        contiguous are read in place. ``E`` is never modified.
    codes_out : ndarray of uint8, shape (N, D), optional
        Where to write the codes (C-contiguous, writable). If the call raises for a NaN or inf,
        what it left in ``codes_out`` and ``scales_out`` is unspecified (the C kernels stop at
        the first bad row; the numpy backend checks first).
    scales_out : ndarray of float32, shape (N,), optional
        Where to write the scales.
    threads : int, optional
        Threads to use; default :func:`rowquant.get_num_threads`.

    Returns
    -------
    codes : ndarray of uint8, shape (N, D)
    scales : ndarray of float32, shape (N,)

    Raises
    ------
    TypeError
        ``E`` is not a floating-point array (integer, bool, complex, object).
    ValueError
        ``E`` is not 2-D, holds NaN or inf (or a float64 value past float32's range; the message
        names the first such row and column), or an output buffer is unfit.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> codes, scales = rq.quantize_rows(np.array([[20000, 3000, 1000, 1000]], np.float32))
    >>> codes
    array([[255, 147, 134, 134]], dtype=uint8)
    >>> scales
    array([157.48032], dtype=float32)
    """
    values = _checks.float_matrix(E)
    n_rows, dim = values.shape
    codes = _checks.output(
        codes_out, (n_rows, dim), np.uint8, "codes_out", (values, E), _checks.cache_aligned_empty
    )
    scales = _checks.output(scales_out, (n_rows,), np.float32, "scales_out", (values, E, codes))
    quantize_checked(values, codes, scales, threads, original=E)
    return codes, scales


def quantize_checked(
    values: NDArray[np.float32],
    codes: Codes,
    scales: Scales,
    threads: int | None,
    original: Any = None,
    name: str = "E",
    first_row: int = 0,
) -> None:
    """Quantize checked float32 ``values`` into checked ``codes`` and ``scales``. A NaN or inf
    raises the ValueError naming it, as found in ``original`` (default ``values``), its row
    counted from ``first_row`` (for chunks of a larger table)."""
    n_threads = resolve_threads(threads)
    bad = _backend.kernels.quantize_rows(values, codes, scales, n_threads)
    if bad >= 0:
        source = values if original is None else original
        raise _checks.nonfinite_error(source, values, bad, name, first_row)


SCALE_ROUNDINGS = ("nearest", "truncate")
"""How a 16-bit scale is rounded from the float32 one: to nearest (ties to even), or toward
zero as CLD3 writes its bfloat16 scales."""


def scale_options(scale_dtype: object, scale_rounding: object) -> tuple[str, str]:
    """Checked ``scale_dtype`` (one of :data:`rowquant.reference.SCALE_DTYPES`) and
    ``scale_rounding`` (:data:`SCALE_ROUNDINGS`; for 16-bit scales only)."""
    if not isinstance(scale_dtype, str) or scale_dtype not in reference.SCALE_DTYPES:
        names = ", ".join(repr(name) for name in reference.SCALE_DTYPES)
        raise ValueError(f"scale_dtype must be one of {names}, got {scale_dtype!r}")
    if not isinstance(scale_rounding, str) or scale_rounding not in SCALE_ROUNDINGS:
        raise ValueError(f"scale_rounding must be 'nearest' or 'truncate', got {scale_rounding!r}")
    if scale_dtype == "float32" and scale_rounding != "nearest":
        raise ValueError("scale_rounding applies to 16-bit scales (scale_dtype='bfloat16' or "
                         "'float16'); float32 scales are max|row| / 127 rounded once")
    return scale_dtype, scale_rounding


def no_scale_options(scale_dtype: object, scale_rounding: object) -> None:
    """4-bit and 2-bit rows have float16 scales of their own: refuse the 8-bit options."""
    if scale_dtype != "float32" or scale_rounding != "nearest":
        raise ValueError("scale_dtype and scale_rounding apply to 8-bit rows; 4-bit and 2-bit "
                         "rows always store float16 scales and biases")


def quantize_scales16(
    values: NDArray[np.float32], scale_dtype: str, scale_rounding: str, original: Any = None,
    name: str = "E", first_row: int = 0,
) -> tuple[Codes, np.ndarray]:
    """Quantize checked float32 ``values`` with 16-bit scales
    (:func:`rowquant.reference.quantize_rows_16`, numpy on both backends): codes and float16
    or bfloat16-bit (uint16) scales. A NaN or inf raises the ValueError naming it, and so does
    a row whose scale is past float16's range."""
    n_rows, dim = values.shape
    codes = np.empty((n_rows, dim), np.uint8)
    scales = np.empty(n_rows, np.uint16 if scale_dtype == "bfloat16" else np.float16)
    step = max(1, (1 << 20) // max(dim, 1))
    for start in range(0, n_rows, step):
        rows = values[start : start + step]
        finite = np.isfinite(rows)
        if not finite.all():
            source = values if original is None else original
            raise _checks.nonfinite_error(source, values, start * dim + int(np.argmin(finite)),
                                          name, first_row)
        codes[start : start + step], scales[start : start + step] = reference.quantize_rows_16(
            rows, scale_dtype, scale_rounding)
    if scale_dtype == "float16":
        finite = np.isfinite(scales)
        if not finite.all():
            row = int(np.argmin(finite))
            largest = float(np.abs(values[row]).max())
            raise ValueError(
                f"{name} row {first_row + row} has a value of magnitude {largest!r}: its scale "
                f"(/ 127) is past float16's range (65504); use scale_dtype='bfloat16' or "
                "'float32'"
            )
    return codes, scales


def dequantize(
    codes: ArrayLike, scales: ArrayLike, *, out: Floats | None = None, threads: int | None = None
) -> Floats:
    """The whole float32 table ``(codes - 128) * scales[:, None]``.

    Parameters
    ----------
    codes : ndarray of uint8, shape (N, D)
    scales : ndarray of float32, shape (N,)
        Finite and non-negative.
    out : ndarray of float32, shape (N, D), optional
        Where to write the result (C-contiguous, writable).
    threads : int, optional

    Returns
    -------
    ndarray of float32, shape (N, D)

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> rq.dequantize(np.array([[255, 128, 1]], np.uint8), np.array([2.0], np.float32))
    array([[ 254.,    0., -254.]], dtype=float32)
    """
    originals = (codes, scales)
    codes, scales = _checks.codes_and_scales(codes, scales)
    return dequantize_checked(codes, scales, out, threads, originals)


def dequantize_checked(
    codes: Codes,
    scales: Scales,
    out: Floats | None,
    threads: int | None,
    originals: tuple[Any, ...] = (),
) -> Floats:
    """:func:`dequantize` for a table already checked; ``originals`` are the caller's arrays
    that ``out`` must not overlap either."""
    n_threads = resolve_threads(threads)
    out = _checks.output(out, codes.shape, np.float32, "out", (codes, scales, *originals))
    _backend.kernels.dequantize(codes, scales, out, n_threads)
    return out


def take(
    codes: ArrayLike,
    scales: ArrayLike,
    ids: ArrayLike,
    *,
    out: Floats | None = None,
    threads: int | None = None,
) -> Floats:
    """Embedding lookup: the dequantized rows ``ids``, shape ``ids.shape + (D,)``.

    Parameters
    ----------
    codes : ndarray of uint8, shape (N, D)
    scales : ndarray of float32, shape (N,)
    ids : array_like of int, any shape
        Row numbers in ``[0, N)`` (negative ids are an error, as in ``torch.nn.Embedding``), of
        any integer dtype.
    out : ndarray of float32, shape ``ids.shape + (D,)``, optional
    threads : int, optional

    Raises
    ------
    TypeError
        ``ids`` does not hold integers.
    IndexError
        An id is outside ``[0, N)``; the message names its position and value, and nothing is
        written to ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> codes, scales = rq.quantize_rows(np.array([[1.0, -1.0], [0.5, 2.0]], np.float32))
    >>> rq.take(codes, scales, [1, 0, 1])
    array([[ 0.503937,  2.      ],
           [ 1.      , -1.      ],
           [ 0.503937,  2.      ]], dtype=float32)
    """
    originals = (codes, scales)
    codes, scales = _checks.codes_and_scales(codes, scales)
    return take_checked(codes, scales, ids, out, threads, originals)


def take_checked(
    codes: Codes,
    scales: Scales,
    ids: ArrayLike,
    out: Floats | None,
    threads: int | None,
    originals: tuple[Any, ...] = (),
) -> Floats:
    """:func:`take` for a table already checked (see :func:`dequantize_checked`)."""
    ids = _checks.integer_array(ids, "ids")
    n_threads = resolve_threads(threads)
    n_rows, dim = codes.shape
    out = _checks.output(
        out, ids.shape + (dim,), np.float32, "out", (codes, scales, ids, *originals)
    )
    ids64 = _checks.as_int64(ids)
    bad = _backend.kernels.take(codes, scales, ids64, out.reshape(ids.size, dim), n_threads)
    if bad >= 0:
        raise _checks.id_range_error(ids, bad, n_rows)
    return out


def embedding_bag(
    codes: ArrayLike,
    scales: ArrayLike,
    ids: ArrayLike,
    offsets: ArrayLike | None = None,
    *,
    lengths: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    mode: BagMode = "sum",
    include_last_offset: bool = False,
    padding_idx: int | None = None,
    out: Floats | None = None,
    threads: int | None = None,
) -> Floats:
    """Pooled lookup: sum, mean or max of the dequantized rows of each bag of ids.

    The semantics of ``torch.nn.functional.embedding_bag`` on the dequantized table, except that
    ``mode`` is honoured (PyTorch's quantized bag ops sum whatever it says, and have no max) and
    that no id is ever silently dropped.

    Parameters
    ----------
    codes : ndarray of uint8, shape (N, D)
    scales : ndarray of float32, shape (N,)
    ids : array_like of int, shape (n,) or (B, L)
        Row numbers in ``[0, N)`` (negative ids are an error, as in
        ``torch.nn.functional.embedding_bag``). 2-D ids are B bags of L ids each.
    offsets : array_like of int, optional
        For 1-D ids: where each bag starts, from 0, non-decreasing, at most ``len(ids)``. With
        ``include_last_offset=True`` the last entry ends the last bag and must equal ``len(ids)``.
    lengths : array_like of int, optional
        For 1-D ids, instead of offsets: how many ids each bag holds (summing to ``len(ids)``).
    weights : array_like of float, shape of ids, optional
        One weight per id, multiplied into its row (``mode="sum"`` only).
    mode : {"sum", "mean", "max"}
        ``"mean"`` divides each bag by the number of its ids that are not ``padding_idx``;
        ``"max"`` takes each column's largest value over the bag's rows.
    include_last_offset : bool
        As in PyTorch: ``offsets`` has one entry more than there are bags.
    padding_idx : int, optional
        Ids equal to this row (negative counts from the end) are skipped and not counted.
    out : ndarray of float32, shape (B, D), optional
    threads : int, optional

    Returns
    -------
    ndarray of float32, shape (B, D)
        Empty bags (and bags of padding only) are zero.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> codes, scales = rq.quantize_rows(np.array([[1.0, 2.0], [3.0, -1.0], [0.0, 0.0]]))
    >>> rq.embedding_bag(codes, scales, [0, 1, 2, 1], offsets=[0, 3])
    array([[ 4.007874,  1.007874],
           [ 3.      , -0.992126]], dtype=float32)
    >>> rq.embedding_bag(codes, scales, [[0, 1], [1, 2]], mode="mean", padding_idx=2)
    array([[ 2.003937,  0.503937],
           [ 3.      , -0.992126]], dtype=float32)
    >>> rq.embedding_bag(codes, scales, [0, 1, 1], lengths=[2, 1, 0], mode="max")
    array([[ 3.      ,  2.      ],
           [ 3.      , -0.992126],
           [ 0.      ,  0.      ]], dtype=float32)
    """
    originals = (codes, scales)
    codes, scales = _checks.codes_and_scales(codes, scales)
    return bag_checked(
        codes, scales, ids, offsets, lengths, weights, mode, include_last_offset, padding_idx,
        out, threads, originals,
    )


def bag_checked(
    codes: Codes,
    scales: Scales,
    ids: ArrayLike,
    offsets: ArrayLike | None,
    lengths: ArrayLike | None,
    weights: ArrayLike | None,
    mode: str,
    include_last_offset: bool,
    padding_idx: int | None,
    out: Floats | None,
    threads: int | None,
    originals: tuple[Any, ...] = (),
) -> Floats:
    """:func:`embedding_bag` for a table already checked (see :func:`dequantize_checked`)."""
    n_rows, dim = codes.shape
    ids = _checks.integer_array(ids, "ids")
    bounds = _bag_bounds(ids, offsets, lengths, include_last_offset)
    mode_number = _mode_number(mode)
    padding_row = _checks.padding_row(padding_idx, n_rows)
    padding = -1 if padding_row is None else padding_row  # the kernels' "none"
    flat_weights = _bag_weights(weights, ids, mode)
    n_threads = resolve_threads(threads)
    n_bags = len(bounds) - 1
    inputs = (codes, scales, ids, flat_weights, offsets, lengths, weights, *originals)
    out = _checks.output(out, (n_bags, dim), np.float32, "out", inputs)
    ids64 = _checks.as_int64(ids)
    bad = _backend.kernels.bag(
        codes, scales, ids64, bounds, flat_weights, mode_number, padding, out, n_threads
    )
    if bad >= 0:
        raise _checks.id_range_error(ids, bad, n_rows)
    return out


def bag_arguments(
    ids: ArrayLike,
    offsets: ArrayLike | None,
    lengths: ArrayLike | None,
    weights: ArrayLike | None,
    mode: str,
    include_last_offset: bool,
    padding_idx: int | None,
    n_rows: int,
) -> tuple[np.ndarray, NDArray[np.int64], int, int, NDArray[np.float32] | None]:
    """A bag's arguments checked as :func:`embedding_bag` checks them, for a table of ``n_rows``
    rows of any scheme: ``(ids, bounds, mode number, padding row or -1, flat weights or None)``."""
    ids = _checks.integer_array(ids, "ids")
    bounds = _bag_bounds(ids, offsets, lengths, include_last_offset)
    mode_number = _mode_number(mode)
    padding_row = _checks.padding_row(padding_idx, n_rows)
    flat_weights = _bag_weights(weights, ids, mode)
    return ids, bounds, mode_number, -1 if padding_row is None else padding_row, flat_weights


def _bag_bounds(
    ids: np.ndarray,
    offsets: ArrayLike | None,
    lengths: ArrayLike | None,
    include_last_offset: bool,
) -> NDArray[np.int64]:
    """Checked int64 bounds (see reference.bag_bounds) from 2-D ids, offsets or lengths."""
    if ids.ndim == 2:
        if offsets is not None or lengths is not None:
            raise ValueError(
                "2-D ids are already bags of equal size; pass offsets= or lengths= only with 1-D ids"
            )
        n_bags, length = ids.shape
        bounds: NDArray[np.int64] = np.arange(n_bags + 1, dtype=np.int64) * length
        return bounds
    if ids.ndim != 1:
        raise ValueError(
            f"ids must be 1-D (with offsets= or lengths=) or 2-D (bags, length), "
            f"got shape {ids.shape}"
        )
    n_ids = ids.shape[0]
    if offsets is not None and lengths is not None:
        raise ValueError("pass offsets= or lengths=, not both")
    if lengths is not None:
        if include_last_offset:
            raise ValueError("include_last_offset=True applies to offsets=, not lengths=")
        return _bounds_from_lengths(lengths, n_ids)
    if offsets is None:
        raise ValueError(
            "1-D ids need offsets= or lengths= to say where each bag starts; "
            "pass 2-D ids (bags, length) for bags of equal size"
        )
    return _bounds_from_offsets(offsets, n_ids, include_last_offset)


def _bounds_from_lengths(lengths: ArrayLike, n_ids: int) -> NDArray[np.int64]:
    """Checked int64 bounds from one count per bag."""
    lengths = _checks.integer_array(lengths, "lengths")
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lengths.shape}")
    negative = lengths < 0
    if negative.any():
        k = int(np.argmax(negative))
        raise ValueError(f"lengths[{k}] = {lengths[k]} is negative")
    too_long = lengths > n_ids
    if too_long.any():
        k = int(np.argmax(too_long))
        raise ValueError(f"lengths[{k}] = {lengths[k]} is more than the {n_ids} ids there are")
    # each length is at most n_ids now, so an int64 sum cannot wrap unless it is astronomically
    # long; then Python's integers add it up
    if lengths.size * max(n_ids, 1) < 2**62:
        total = int(lengths.sum(dtype=np.int64))
    else:
        total = sum(int(length) for length in lengths)
    if total != n_ids:
        raise ValueError(f"lengths sum to {total}, but ids holds {n_ids} ids")
    return reference.bag_bounds(n_ids, lengths=lengths)


def _bounds_from_offsets(
    offsets: ArrayLike, n_ids: int, include_last_offset: bool
) -> NDArray[np.int64]:
    offsets = _checks.integer_array(offsets, "offsets")
    if offsets.ndim != 1:
        raise ValueError(f"offsets must be 1-D, got shape {offsets.shape}")
    if offsets.size == 0:
        if include_last_offset:
            raise ValueError("offsets must hold at least one entry with include_last_offset=True")
        if n_ids:
            raise ValueError(f"offsets is empty, so the {n_ids} ids would belong to no bag")
        return np.zeros(1, dtype=np.int64)
    if offsets[0] != 0:
        raise ValueError(f"offsets[0] = {offsets[0]}, but the first bag must start at 0")
    past_end = offsets > n_ids
    if past_end.any():
        k = int(np.argmax(past_end))
        raise ValueError(f"offsets[{k}] = {offsets[k]} is past the end of ids (len(ids) = {n_ids})")
    decreasing = offsets[1:] < offsets[:-1]
    if decreasing.any():
        k = int(np.argmax(decreasing)) + 1
        raise ValueError(
            f"offsets must be non-decreasing, but offsets[{k}] = {offsets[k]} "
            f"< offsets[{k - 1}] = {offsets[k - 1]}"
        )
    if include_last_offset and offsets[-1] != n_ids:
        raise ValueError(
            f"with include_last_offset=True the last offset ends the last bag and must equal "
            f"len(ids) = {n_ids}, got offsets[-1] = {offsets[-1]}"
        )
    return reference.bag_bounds(n_ids, offsets=offsets, include_last_offset=include_last_offset)


def _mode_number(mode: object) -> int:
    """The number of a bag mode in the backend's table (csrc/rowquant.h's enum)."""
    modes: dict[str, int] = _backend.kernels.BAG_MODES
    if not isinstance(mode, str) or mode not in modes:
        names = ", ".join(repr(name) for name in modes)
        raise ValueError(f"mode must be one of {names}, got {mode!r}")
    return modes[mode]


def _bag_weights(
    weights: ArrayLike | None, ids: np.ndarray, mode: str
) -> NDArray[np.float32] | None:
    """One float32 weight per id, flat, or None."""
    if weights is None:
        return None
    if mode != "sum":
        raise ValueError(f"weights are only supported with mode='sum', got mode={mode!r}")
    weights = _checks.as_array(weights)
    if weights.dtype.kind not in "fiu":
        raise TypeError(f"weights must be real numbers, got dtype {weights.dtype}")
    if weights.shape != ids.shape:
        raise ValueError(f"weights must have the shape of ids {ids.shape}, got {weights.shape}")
    return _checks.aligned_contiguous(weights.reshape(-1), np.float32)
