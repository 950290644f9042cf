"""The body of :func:`rowquant.quantize`: one table from a float array, whatever its scheme
(the paper's 8-bit rows with float32 or 16-bit scales, or 4-bit and 2-bit rows), for the
package's front (``rowquant.quantize``) and for layers below it that quantize blocks of rows
(:mod:`rowquant.dask`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from numpy.typing import ArrayLike

from . import _api, _checks, _nbit, _threads
from ._keys import Keys, check_metadata, keys_for_rows
from .table import QuantizedEmbedding

__all__ = ["quantize_table"]


def quantize_table(
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
    """:func:`rowquant.quantize` (see there)."""
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
