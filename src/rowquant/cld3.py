"""CLD3's quantized embeddings (Botha et al. 2017's own model, github.com/google/cld3).

CLD3 stores each embedding matrix as uint8 weights, row-major, and one 16-bit scale per row:
the top half of a float32 (bfloat16 bits; its ``Float16To32(f)`` is ``f << 16``), which its
writer truncates. A value is ``(int(q) - 128) * Float16To32(s)``: rowquant's arithmetic with
bfloat16 scales (scheme ``rowwise-symmetric-u8-bf16``), so a CLD3 table becomes a
:class:`~rowquant.QuantizedEmbedding` without a copy and dequantizes bit for bit as CLD3 does.

* :func:`from_cld3_arrays` / :func:`to_cld3_arrays`: CLD3's arrays to a table and back.
* :func:`read_cld3_params`: the embedding tables of CLD3's own parameter source,
  ``src/lang_id_nn_params.cc`` (the six tables of its language identifier).
* :func:`embedding_bag`: bags summed in CLD3's order, ``(q - 128) * (s * w)`` added term by
  term (:func:`rowquant.reference.pool_bags_cld3`); the table's own :meth:`bag` rounds as
  FBGEMM does, which can differ by an ulp or so per term.
* ``rq.quantize(E, scale_dtype="bfloat16", scale_rounding="truncate")`` quantizes a new table
  the way CLD3's scales are written (see :func:`rowquant.reference.quantize_rows_16` for the
  rule where a row needs code 0 or 256).

Examples
--------
>>> import numpy as np
>>> import rowquant as rq
>>> weights = np.array([[129, 0, 255], [128, 130, 126]], np.uint8)
>>> scales = np.array([0x3C01, 0x3F80], np.uint16)  # bfloat16 0.0078735..., 1.0
>>> table = rq.from_cld3_arrays(weights, scales)
>>> table
QuantizedEmbedding(rows=2, dim=3, bfloat16 scales, 10 B, 2.4x smaller than float32)
>>> table[1]
array([ 0.,  2., -2.], dtype=float32)
>>> from rowquant import cld3
>>> cld3.embedding_bag(table, [0, 1], [0], weights=np.array([1.0, 0.5], np.float32))
array([[ 7.8735352e-03, -7.8125000e-03, -6.1035156e-05]], dtype=float32)
>>> w, s = rq.to_cld3_arrays(table)
>>> np.array_equal(w, weights) and np.array_equal(s, scales)
True
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _api, _checks, reference
from ._scheme import ROWWISE_U8_BF16
from .table import QuantizedEmbedding

__all__ = ["from_cld3_arrays", "to_cld3_arrays", "embedding_bag", "read_cld3_params"]

# "const <type> LangIdNNParams::<name>[] = { v, v, ... };" in CLD3's generated source
_ARRAY = re.compile(r"const\s+(\w+)\s+\w+::(\w+)\[\]\s*=\s*\{([^}]*)\}\s*;")


def from_cld3_arrays(
    weights: ArrayLike,
    scales: ArrayLike,
    *,
    dim: int | None = None,
    keys: Iterable[str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> QuantizedEmbedding:
    """A table from one of CLD3's quantized embedding matrices.

    Parameters
    ----------
    weights : array_like of uint8, shape (rows, dim), or flat (rows * dim,) with ``dim=``
        The codes, row-major, as CLD3's ``embeddings_weights`` holds them.
    scales : array_like of uint16, shape (rows,)
        CLD3's ``float16`` scales: the top 16 bits of a float32 (bfloat16), one per row. Kept
        as they are (``table.scales``), read natively by every lookup.
    dim : int, optional
        The width of a row, for flat weights (CLD3's ``embeddings_num_cols``).
    keys, metadata
        As :func:`rowquant.quantize` takes them.

    Raises
    ------
    TypeError
        ``weights`` is not uint8, or ``scales`` not uint16.
    ValueError
        Shapes that do not match, or a scale that is not finite and >= 0 (named).
    """
    codes = _checks.as_array(weights)
    bits = _checks.as_array(scales)
    if bits.dtype != np.uint16:
        raise TypeError(f"scales must be CLD3's uint16 (bfloat16 bits), got dtype {bits.dtype}")
    if codes.ndim == 1:
        if dim is None:
            raise ValueError("flat weights need dim= (CLD3's embeddings_num_cols)")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        if codes.shape[0] != bits.shape[0] * dim:
            raise ValueError(
                f"weights has {codes.shape[0]} values, not rows * dim = {bits.shape[0]} * {dim}"
            )
        codes = codes.reshape(bits.shape[0], dim)
    return QuantizedEmbedding(codes, bits, dim=dim, keys=keys, metadata=metadata)


def to_cld3_arrays(table: QuantizedEmbedding) -> tuple[NDArray[np.uint8], NDArray[np.uint16]]:
    """``(weights, scales)`` of a table with bfloat16 scales, as CLD3 stores them: uint8
    ``(rows, dim)`` and uint16 ``(rows,)``, copies. Other tables are a ``ValueError``:
    quantize the float table with ``scale_dtype="bfloat16"`` (``scale_rounding="truncate"``
    to write scales as CLD3's own tools do)."""
    if not isinstance(table, QuantizedEmbedding):
        raise TypeError(f"to_cld3_arrays takes a QuantizedEmbedding, got {type(table).__name__}")
    if table.scheme != ROWWISE_U8_BF16:
        raise ValueError(
            f"CLD3 stores bfloat16 scales; this table is {table.scheme.name}: quantize it with "
            "rq.quantize(E, scale_dtype='bfloat16', scale_rounding='truncate')"
        )
    return np.array(table.codes), np.array(table.scales)


def embedding_bag(
    table: QuantizedEmbedding,
    ids: ArrayLike,
    offsets: ArrayLike | None = None,
    *,
    lengths: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    mode: str = "sum",
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> NDArray[np.float32]:
    """Bags of an 8-bit table (any scale dtype) summed in CLD3's rounding order,
    :func:`rowquant.reference.pool_bags_cld3`: ``float32((q - 128) * float32(s * w))`` per
    value, added one by one. The arguments are :meth:`QuantizedEmbedding.bag`'s (``mode`` is
    ``"sum"`` or ``"mean"``), and so are the errors. Computed in numpy: CLD3's bags are a few
    dozen features; use :meth:`QuantizedEmbedding.bag` where its order does not matter."""
    if not isinstance(table, QuantizedEmbedding) or table.scheme.kind != "symmetric":
        raise TypeError("embedding_bag takes an 8-bit QuantizedEmbedding")
    if mode not in ("sum", "mean"):
        raise ValueError(f"mode must be 'sum' or 'mean' for CLD3's order, got {mode!r}")
    ids, bounds, _, padding, flat_weights = _api.bag_arguments(
        ids, offsets, lengths, weights, mode, include_last_offset, padding_idx, len(table)
    )
    ids64 = _checks.as_int64(ids).reshape(-1)
    bad = np.nonzero((ids64 < 0) | (ids64 >= len(table)))[0]
    if len(bad):
        raise _checks.id_range_error(ids, int(bad[0]), len(table))
    return reference.pool_bags_cld3(table.codes, table.scales, ids64, bounds, flat_weights, mode,
                                    None if padding < 0 else padding)


def read_cld3_params(path: str | os.PathLike[str]) -> list[QuantizedEmbedding]:
    """The quantized embedding tables of CLD3's parameter source (``lang_id_nn_params.cc``
    of github.com/google/cld3, or a file generated in its format): for each ``i``, the table
    of ``kEmbeddingsWeights<i>`` (uint8) and ``kEmbeddingsQuantScales<i>`` (CLD3's float16,
    bfloat16 bits), ``kEmbeddingsNumRows[i]`` by ``kEmbeddingsNumCols[i]``, in order.

    Raises
    ------
    ValueError
        The file has no embedding tables, a table whose arrays are missing or do not match
        its shape, or a value out of its type's range (the message names the array).
    """
    with open(path, encoding="utf-8") as file:
        text = file.read()
    arrays: dict[str, tuple[str, list[str]]] = {}
    for match in _ARRAY.finditer(text):
        values = [v.strip() for v in match.group(3).split(",") if v.strip()]
        arrays[match.group(2)] = (match.group(1), values)

    def integers(name: str, dtype: Any) -> np.ndarray:
        if name not in arrays:
            raise ValueError(f"{os.fspath(path)}: no array {name}")
        try:
            numbers = [int(v.rstrip("uUlL")) for v in arrays[name][1]]
        except ValueError:
            raise ValueError(
                f"{os.fspath(path)}: {name} holds a value that is not an integer") from None
        info = np.iinfo(dtype)
        if numbers and (min(numbers) < info.min or max(numbers) > info.max):
            raise ValueError(f"{os.fspath(path)}: {name} holds a value outside {np.dtype(dtype)}")
        return np.array(numbers, dtype)

    rows, cols = integers("kEmbeddingsNumRows", np.int64), integers("kEmbeddingsNumCols", np.int64)
    if len(rows) == 0 or len(rows) != len(cols):
        raise ValueError(f"{os.fspath(path)}: kEmbeddingsNumRows and kEmbeddingsNumCols must "
                         "name the same, nonzero number of tables")
    tables = []
    for i, (n_rows, n_cols) in enumerate(zip(rows.tolist(), cols.tolist())):
        weights = integers(f"kEmbeddingsWeights{i}", np.uint8)
        scales = integers(f"kEmbeddingsQuantScales{i}", np.uint16)
        if scales.shape != (n_rows,) or weights.shape != (n_rows * n_cols,):
            raise ValueError(
                f"{os.fspath(path)}: table {i} is {n_rows} x {n_cols} but has {len(weights)} "
                f"weights and {len(scales)} scales"
            )
        tables.append(from_cld3_arrays(weights, scales, dim=n_cols,
                                       metadata={"source": f"CLD3 embedding table {i}"}))
    return tables
