"""4-bit and 2-bit tables (the schemes ``rowwise-affine-u4-f16`` and ``rowwise-affine-u2-f16``):
FBGEMM's N-bit rows behind the API of :class:`~rowquant.QuantizedEmbedding`.

A table of ``N`` rows of ``D`` values keeps ``codes`` (uint8 ``(N, P)``, ``P = ceil(D / (8 //
bits))``, codes packed low bits first, padding bits 0), ``scales`` and ``biases`` (float16
``(N,)``), and ``D``; a value is ``float32(s) * q + float32(c)``. The arithmetic is
:mod:`rowquant.reference`'s (:func:`~rowquant.reference.quantize_nbit` and the functions after
it); the lookups call the backend's ``nbit_dequantize``, ``nbit_take`` and ``nbit_bag``.

Examples
--------
>>> import numpy as np
>>> import rowquant as rq
>>> qe = rq.quantize(np.array([[-1.0, 0.0, 0.625, 2.75], [1, 1, 1, 1]], np.float32), bits=4)
>>> qe
QuantizedEmbedding(rows=2, dim=4, 4-bit, 12 B, 2.7x smaller than float32)
>>> qe.scales, qe.biases  # row 0: scale 3.75 / 15, bias its minimum
(array([0.25, 1.  ], dtype=float16), array([-1.,  1.], dtype=float16))
>>> qe.codes  # codes 0, 4, 6 (6.5 rounds to even), 15, two to a byte, low bits first
array([[ 64, 246],
       [  0,   0]], dtype=uint8)
>>> qe[0]
array([-1.  ,  0.  ,  0.5 ,  2.75], dtype=float32)
>>> qe.bag([[0, 1]], mode="mean")
array([[0.   , 0.5  , 0.75 , 1.875]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _api, _backend, _checks, _nbit_format, _threads
from ._formatting import human_bytes
from ._keys import Keys, check_metadata, keys_for_rows
from ._nbit_arrays import (fbgemm_nbit_rows, fused_views, nbit_arrays, quantize_nbit,
                           scheme_for_bits, scheme_named)
from ._scheme import Scheme
from .table import QuantizedEmbedding

__all__ = ["NBitEmbedding", "from_fbgemm_nbit", "quantize_table"]


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view



def quantize_table(E: Any, bits: object, range_search: object, keys: Keys | None,
                   metadata: dict[str, str]) -> NBitEmbedding:
    """:func:`rowquant.quantize` with ``bits=4`` or ``2``: keys and metadata already checked."""
    scheme = scheme_for_bits(bits)
    if not isinstance(range_search, (bool, np.bool_)):
        raise TypeError(f"range_search must be True or False, got {range_search!r}")
    values = _checks.float_matrix(E)
    codes, scales, biases = quantize_nbit(values, scheme.bits, bool(range_search), E)
    return NBitEmbedding._fused(codes, scales, biases, values.shape[1], scheme,
                                keys_for_rows(keys, codes.shape[0]), metadata)


class NBitEmbedding(QuantizedEmbedding, scheme_kind="affine"):
    """A :class:`~rowquant.QuantizedEmbedding` of 4-bit or 2-bit rows (see the module's notes):
    ``rq.quantize(E, bits=4)`` makes one, and so does ``QuantizedEmbedding(codes, scales,
    biases=biases, dim=D, scheme="rowwise-affine-u4-f16")``. Lookups, bags, files, pickling and
    keys work as for 8-bit tables; similarity (``dot``, ``search``, ``norms``,
    ``most_similar``) and torch's per-channel tensors are 8-bit only (``NotImplementedError``).

    The table is held as FBGEMM's fused rows, each row's codes, scale and bias side by side
    (one memory read per row in a bag, where three arrays would cost three), and ``codes``,
    ``scales`` and ``biases`` are read-only views into them; a file in the older layout of
    three tensors is served as it is, mapped.
    """

    __slots__ = ("_biases", "_scheme", "_rows")

    def __init__(
        self,
        codes: ArrayLike,
        scales: ArrayLike,
        *,
        biases: ArrayLike | None = None,
        dim: int | None = None,
        scheme: str | Scheme | None = None,
        keys: Iterable[str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if biases is None:
            raise ValueError("an N-bit table needs biases=")
        found = scheme_named(scheme, None)
        checked_codes, checked_scales, checked_biases, checked_dim = nbit_arrays(
            codes, scales, biases, dim, found)
        rows = fbgemm_nbit_rows(checked_codes, checked_scales, checked_biases)
        self._set_nbit(*fused_views(rows, checked_codes.shape[1]), checked_dim, found,
                       keys_for_rows(keys, checked_codes.shape[0]), check_metadata(metadata),
                       rows)

    @classmethod
    def _fused(cls, codes: np.ndarray, scales: np.ndarray, biases: np.ndarray, dim: int,
               scheme: Scheme, keys: Keys | None = None,
               metadata: dict[str, str] | None = None) -> NBitEmbedding:
        """A table of checked arrays, copied once into fused rows."""
        rows = fbgemm_nbit_rows(codes, scales, biases)
        return cls._from_nbit(*fused_views(rows, codes.shape[1]), dim, scheme, keys, metadata,
                              rows)

    @classmethod
    def _from_nbit(cls, codes: np.ndarray, scales: np.ndarray, biases: np.ndarray, dim: int,
                   scheme: Scheme, keys: Keys | None = None,
                   metadata: dict[str, str] | None = None,
                   rows: np.ndarray | None = None) -> NBitEmbedding:
        table = cast(NBitEmbedding, cls.__new__(cls))
        table._set_nbit(codes, scales, biases, dim, scheme, keys, metadata or {}, rows)
        return table

    @classmethod
    def from_stored(cls, stored: Any) -> NBitEmbedding:
        """The table of a file read by :func:`rowquant._nbit_format.read_nbit_table` (checked)."""
        return cls._from_nbit(stored.codes, stored.scales, stored.biases, stored.dim,
                              stored.scheme, stored.keys, stored.metadata, stored.rows)

    def _set_nbit(self, codes: np.ndarray, scales: np.ndarray, biases: np.ndarray, dim: int,
                  scheme: Scheme, keys: Keys | None, metadata: dict[str, str],
                  rows: np.ndarray | None = None) -> None:
        self._rows = None if rows is None else _read_only(rows)  # fused rows, when they are
        self._codes = _read_only(codes)
        self._scales = _read_only(scales)
        self._biases = _read_only(biases)
        self._dim = dim
        self._scheme = scheme
        self._keys = keys
        self._metadata = MappingProxyType(dict(metadata))
        self._norms = None
        self._inverse_norms = None
        self._kernels = None

    # ------------------------------------------------------------------ description

    @property
    def scheme(self) -> Scheme:
        """The quantization scheme (:mod:`rowquant._scheme`)."""
        return self._scheme

    @property
    def bits(self) -> int:
        """Bits per code (4 or 2)."""
        return self._scheme.bits

    @property
    def codes(self) -> NDArray[np.uint8]:
        """Packed uint8 codes, shape (N, P), ``P = ceil(D / (8 // bits))``, read-only."""
        return self._codes

    @property
    def scales(self) -> NDArray[np.float16]:  # type: ignore[override]
        """float16 scales, shape (N,), read-only: ``(max - min) / (2**bits - 1)``."""
        return self._scales

    @property
    def biases(self) -> NDArray[np.float16]:  # type: ignore[override]
        """float16 biases (each row's minimum), shape (N,), read-only."""
        return self._biases

    @property
    def shape(self) -> tuple[int, int]:
        return self._codes.shape[0], self._dim

    @property
    def nbytes(self) -> int:
        """Bytes held by codes, scales and biases."""
        return self._codes.size + 2 * self._scales.size + 2 * self._biases.size

    def __repr__(self) -> str:
        n_rows, dim = self.shape
        float_bytes = 4 * n_rows * dim
        ratio = f", {float_bytes / self.nbytes:.1f}x smaller than float32" if self.nbytes else ""
        return (f"QuantizedEmbedding(rows={n_rows}, dim={dim}, {self.bits}-bit, "
                f"{human_bytes(self.nbytes)}{ratio})")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (
            _restore_nbit,
            (np.array(self._codes), np.array(self._scales), np.array(self._biases), self._dim,
             self._scheme.name, self._keys, dict(self._metadata)),
        )

    # ------------------------------------------------------------------ lookups

    def _args(self) -> tuple[Any, ...]:
        return self._codes, self._scales, self._biases, self.bits, self._dim

    def take(self, ids: ArrayLike, out: NDArray[np.float32] | None = None, *,
             threads: int | None = None) -> NDArray[np.float32]:
        """Dequantized rows ``ids`` (in ``[0, N)``), shape ``ids.shape + (D,)``; see
        :meth:`QuantizedEmbedding.take`."""
        ids = _checks.integer_array(ids, "ids")
        n_threads = _threads.resolve_threads(threads)
        out = _checks.output(out, ids.shape + (self._dim,), np.float32, "out",
                             (self._codes, self._scales, self._biases, ids))
        bad = _backend.kernels.nbit_take(*self._args(), _checks.as_int64(ids),
                                   out.reshape(ids.size, self._dim), n_threads)
        if bad >= 0:
            raise _checks.id_range_error(ids, bad, len(self))
        return out

    def bag(self, ids: ArrayLike, offsets: ArrayLike | None = None, *,
            lengths: ArrayLike | None = None, weights: ArrayLike | None = None,
            mode: str = "sum", include_last_offset: bool = False,
            padding_idx: int | None = None, out: NDArray[np.float32] | None = None,
            threads: int | None = None) -> NDArray[np.float32]:
        """Pooled rows, as :meth:`QuantizedEmbedding.bag`, in the order of
        :func:`rowquant.reference.pool_bags_nbit`."""
        ids, bounds, mode_number, padding, flat_weights = _api.bag_arguments(
            ids, offsets, lengths, weights, mode, include_last_offset, padding_idx, len(self))
        n_threads = _threads.resolve_threads(threads)
        inputs = (self._codes, self._scales, self._biases, ids, flat_weights, offsets, lengths,
                  weights)
        out = _checks.output(out, (len(bounds) - 1, self._dim), np.float32, "out", inputs)
        bad = _backend.kernels.nbit_bag(
            *self._args(), _checks.as_int64(ids), bounds, flat_weights, mode_number, padding,
            out, n_threads,
        )
        if bad >= 0:
            raise _checks.id_range_error(ids, bad, len(self))
        return out

    def dequantize(self, out: NDArray[np.float32] | None = None, *,
                   threads: int | None = None) -> NDArray[np.float32]:
        """The whole float32 table, shape (N, D)."""
        n_threads = _threads.resolve_threads(threads)
        out = _checks.output(out, self.shape, np.float32, "out",
                             (self._codes, self._scales, self._biases))
        _backend.kernels.nbit_dequantize(*self._args(), out, n_threads)
        return out

    def _slice_rows(self, rows: slice) -> NDArray[np.float32]:
        return self.take(np.arange(len(self))[rows])

    def _elements(self, key: Any) -> NDArray[np.float32]:
        grid = np.broadcast_to(np.arange(len(self))[:, None], self.shape)[key]
        columns = np.broadcast_to(np.arange(self._dim), self.shape)[key]
        rows = np.unique(grid)
        values = self.take(rows)
        elements: NDArray[np.float32] = values[np.searchsorted(rows, grid), columns]
        return elements

    # ------------------------------------------------------------------ not for N-bit rows

    def _not_here(self, what: str) -> NotImplementedError:
        return NotImplementedError(
            f"{what} works on 8-bit tables (rowwise-symmetric-u8) only, not on this "
            f"{self._scheme.name} table; use qe.dequantize() and numpy, or quantize with bits=8"
        )

    def norms(self, *, threads: int | None = None) -> NDArray[np.float32]:
        raise self._not_here("norms")

    def dot(self, queries: ArrayLike, **kwargs: Any) -> NDArray[np.float32]:  # type: ignore[override]
        raise self._not_here("dot")

    def search(self, queries: ArrayLike, k: int = 10, **kwargs: Any) -> Any:  # type: ignore[override]
        raise self._not_here("search")

    def most_similar(self, key_or_vector: Any, k: int = 10, **kwargs: Any) -> Any:  # type: ignore[override]
        raise self._not_here("most_similar")

    def to_torch_quantized(self) -> Any:
        raise self._not_here("to_torch_quantized (a quint8 per-channel tensor)")

    # ------------------------------------------------------------------ files and FBGEMM

    def save(self, path, *, metadata: Mapping[str, str] | None = None,
             norms: bool | None = None) -> None:
        """Write the table to ``path`` (see :meth:`QuantizedEmbedding.save`); ``norms=True`` is
        an error (N-bit tables have no norms)."""
        if norms:
            raise self._not_here("norms")
        rows = self._rows if self._rows is not None else fbgemm_nbit_rows(
            self._codes, self._scales, self._biases)
        _nbit_format.write_nbit_table(path, rows, self._dim, self._scheme, self._keys,
                                      self._file_metadata(metadata))

    def to_fbgemm(self) -> np.ndarray:
        """FBGEMM's fused N-bit rows: uint8 ``(N, P + 4)``, each row its P code bytes, then the
        scale and the bias as little-endian float16. See :func:`rowquant.to_fbgemm`."""
        if self._rows is not None:
            return np.array(self._rows)  # a writable copy, as from separate arrays
        return fbgemm_nbit_rows(self._codes, self._scales, self._biases)


def from_fbgemm_nbit(packed: Any, bits: int, dim: int | None = None) -> NBitEmbedding:
    """A table from FBGEMM's fused N-bit rows (uint8 ``(N, P + 4)``); ``dim`` defaults to
    ``P * (8 // bits)`` (FBGEMM's rows do not record a narrower one)."""
    scheme = scheme_for_bits(bits)
    array = _checks.as_array(packed)
    if array.dtype != np.uint8 or array.ndim != 2:
        raise TypeError(f"packed must be a uint8 2-D array, got {array.dtype} {array.shape}")
    if array.shape[1] < 4:
        raise ValueError(
            f"packed rows must hold the codes then a float16 scale and bias (4 bytes), "
            f"got {array.shape[1]} bytes"
        )
    width = array.shape[1] - 4
    if dim is None:
        dim = width * scheme.values_per_byte
    codes, scales, biases = fused_views(np.ascontiguousarray(array), width)
    # checked (and copied into rows of the table's own) as any arrays given
    return NBitEmbedding(codes, scales, biases=biases, dim=dim, scheme=scheme)


def _restore_nbit(codes: np.ndarray, scales: np.ndarray, biases: np.ndarray, dim: int,
                  scheme: str, keys: Keys | None, metadata: dict[str, str]) -> NBitEmbedding:
    """Unpickle an N-bit table (checked again: a pickle is only bytes)."""
    found = scheme_named(scheme, None)
    return NBitEmbedding._fused(*nbit_arrays(codes, scales, biases, dim, found), found,
                                keys, metadata)
