""":func:`rowquant.quantize`: one table from a float array, whatever its scheme (the paper's
8-bit rows with float32 or 16-bit scales, or 4-bit and 2-bit rows), here below the package's
front so that layers that quantize blocks of rows (:mod:`rowquant.dask`) call it too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from numpy.typing import ArrayLike

from . import _api, _checks, _nbit, _threads
from ._keys import Keys, check_metadata, keys_for_rows
from .table import QuantizedEmbedding

__all__ = ["quantize"]


def quantize(
    E: ArrayLike,
    *,
    bits: int = 8,
    range_search: bool = False,
    scale_dtype: str = "float32",
    scale_rounding: str = "nearest",
    keys: Iterable[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    threads: int | None = None,
) -> QuantizedEmbedding:
    """Quantize a float table ``(N, D)`` into a :class:`QuantizedEmbedding`: uint8 codes and one
    float32 scale per row, 4x smaller than float32, looked up without rebuilding the table.

    The arithmetic is that of Botha et al. 2017 (section 2.2), evaluated exactly:

    * ``scale[i] = float32(max_j |E[i, j]| / 127)``, one float32 division;
    * ``codes[i, j] = floor(E[i, j] / scale[i] + 128.5)``, exact ties rounding up (toward
      +inf), so codes lie in ``[1, 255]``;
    * an all-zero row (or one whose maximum is so small that ``max / 127`` underflows) gets
      scale 0 and codes 128;
    * lookups give back ``float32((codes - 128) * scale)``, within ``scale / 2`` of ``E``.

    Parameters
    ----------
    E : array_like of float, shape (N, D)
        float16, float32 or float64: a numpy array, anything ``np.asarray`` takes, or a PyTorch
        tensor (detached from autograd and moved to the CPU; bfloat16 is widened to float32,
        exactly). Strided, Fortran-order, byte-swapped and non-float32 tables are converted to
        float32 in C order first (a copy); float32 tables whose rows are contiguous are read
        in place. ``E`` is never modified.
    bits : {8, 4, 2}
        8 (the default) is the scheme described here. 4 and 2 give FBGEMM's N-bit rows
        (scheme ``rowwise-affine-u4-f16`` / ``rowwise-affine-u2-f16``): per row a float16 bias
        (the minimum) and a float16 scale ``(max - min) / (2**bits - 1)``, codes packed two or
        four to a byte; see :func:`rowquant.reference.quantize_nbit`. Rows whose minimum or
        scale is past float16's range (about 65504) are a ``ValueError``.
    range_search : bool
        For ``bits=4`` or ``2``: search each row's clipping range to lower its squared error
        (FBGEMM's greedy search, :func:`rowquant.reference.nbit_search_range`); never a larger
        error than min/max. Not for 8 bits.
    scale_dtype : {"float32", "bfloat16", "float16"}
        How an 8-bit table stores its scales. ``"bfloat16"`` (CLD3's format: the top half of
        a float32) and ``"float16"`` save 2 bytes per row: each row's float32 scale is rounded
        to 16 bits first, then its codes are computed exactly against the rounded scale, so
        values stay within half the stored scale (scheme ``rowwise-symmetric-u8-bf16`` /
        ``-f16``, see :func:`rowquant.reference.quantize_rows_16` for the rule at code 0 and
        256). ``qe.scales`` is then float16, or uint16 holding the bfloat16 bits. Rows of
        magnitude past ``127 * 65504`` are a ``ValueError`` with float16 scales. 16-bit scales
        are quantized in numpy (lookups run in C as for float32 scales).
    scale_rounding : {"nearest", "truncate"}
        For 16-bit scales: to nearest (ties to even), or toward zero as CLD3 writes them.
    keys : sequence of str, optional
        One word (key) per row, unique: the table then answers ``qe["king"]``,
        :meth:`~QuantizedEmbedding.index`, :meth:`~QuantizedEmbedding.lookup` and
        :meth:`~QuantizedEmbedding.bag_words`, and its file keeps the keys.
    metadata : dict of str to str, optional
        Free-form metadata (model name, source, licence) kept with the table and written to
        its file.
    threads : int, optional
        Threads to use, from 1 to 2**31 - 1 (a call uses at most 256); default
        :func:`rowquant.get_num_threads`. Tables under a few megabytes are quantized on one
        thread whatever is asked; the result never depends on the count.

    Returns
    -------
    QuantizedEmbedding
        ``qe.codes`` (uint8 ``(N, D)``) and ``qe.scales`` (float32 ``(N,)``), read-only; look
        rows up with ``qe[ids]``, :meth:`~QuantizedEmbedding.take` and
        :meth:`~QuantizedEmbedding.bag`, save with :meth:`~QuantizedEmbedding.save`.

    Raises
    ------
    TypeError
        ``E`` is not a floating-point array (integer, bool, complex, object).
    ValueError
        ``E`` is not 2-D, or holds NaN or inf, or a float64 value past float32's range (the
        message names the first such row and column); ``threads`` is out of range; ``keys``
        repeats a word or does not have one per row; ``metadata`` uses a name the format
        writes itself (``format``, ``version``, ``scheme``, ``bias``).

    See Also
    --------
    quantize_rows : the same into arrays of your own (``codes_out=``, ``scales_out=``).
    quantize_file : tables in ``.npy`` or safetensors files, streamed with bounded memory.
    error_report : how far the quantized table is from the original.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> qe = rq.quantize(np.array([[20000, 3000, 1000, 1000], [0, 0, 0, 0]], np.float32))
    >>> qe.codes
    array([[255, 147, 134, 134],
           [128, 128, 128, 128]], dtype=uint8)
    >>> qe.scales
    array([157.48032,   0.     ], dtype=float32)
    >>> qe[0]
    array([20000.    ,  2992.126 ,   944.8819,   944.8819], dtype=float32)
    >>> rq.quantize(np.array([[127.0, 2.5, -2.5]])).codes    # exact ties round up
    array([[255, 131, 126]], dtype=uint8)
    >>> words = rq.quantize(np.array([[1, 0], [0, 2]], np.float32), keys=["king", "queen"])
    >>> words["queen"]
    array([0., 2.], dtype=float32)
    """
    # the keys and metadata are checked before the table is quantized, their count after it
    checked_keys = Keys.from_strings(keys) if keys is not None else None
    checked_metadata = check_metadata(metadata)
    if not (isinstance(bits, int) and bits == 8):
        _api.no_scale_options(scale_dtype, scale_rounding)
        return _nbit.quantize_table(E, bits, range_search, checked_keys, checked_metadata)
    if range_search:
        raise ValueError("range_search=True applies to bits=4 or bits=2, not to 8-bit rows")
    scale_dtype, scale_rounding = _api.scale_options(scale_dtype, scale_rounding)
    if scale_dtype == "float32":
        codes, scales = _api.quantize_rows(E, threads=threads)
    else:
        _threads.resolve_threads(threads)  # checked, though numpy quantizes on one thread
        values = _checks.float_matrix(E)
        codes, scales = _api.quantize_scales16(values, scale_dtype, scale_rounding, E)
    return QuantizedEmbedding._from_checked(
        codes, scales, keys_for_rows(checked_keys, codes.shape[0]), checked_metadata
    )
