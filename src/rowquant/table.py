"""QuantizedEmbedding: a quantized table that serves dequantized rows and bags on demand."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _api, _backend, _checks, _format, _layouts, _threads, reference
from ._api import BagMode
from ._formatting import human_bytes


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class QuantizedEmbedding:
    """A float32 embedding table stored as uint8 codes and one float32 scale per row.

    Make one with :func:`rowquant.quantize`, or from existing arrays with
    ``QuantizedEmbedding(codes, scales)`` (checked: uint8 ``(N, D)`` codes, finite non-negative
    float32 ``(N,)`` scales). Rows come back dequantized, ``(codes - 128) * scale``, only those
    asked for: the float table is never rebuilt unless :meth:`dequantize` asks for it.

    Indexing follows numpy on the dequantized table: ``qe[i]`` and ``qe[-1]`` give one row,
    ``qe[2:9:3]``, ``qe[int_array]`` and ``qe[bool_mask]`` give rows, and ``qe[i, j]`` or
    ``qe[:, :8]`` index rows and columns.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> E = np.array([[20000, 3000, 1000, 1000], [1, -2, 3, -4], [0, 0, 0, 0]], np.float32)
    >>> qe = rq.quantize(E)
    >>> qe
    QuantizedEmbedding(rows=3, dim=4, 24 B, 2.0x smaller than float32)
    >>> qe[0]
    array([20000.    ,  2992.126 ,   944.8819,   944.8819], dtype=float32)
    >>> qe[[1, 2]]
    array([[ 1.007874, -2.015748,  2.992126, -4.      ],
           [ 0.      ,  0.      ,  0.      ,  0.      ]], dtype=float32)
    >>> qe.bag([[1, 2], [1, 1]], mode="mean")
    array([[ 0.503937, -1.007874,  1.496063, -2.      ],
           [ 1.007874, -2.015748,  2.992126, -4.      ]], dtype=float32)
    """

    __slots__ = ("_codes", "_scales", "_dim", "_kernels")

    def __init__(self, codes: ArrayLike, scales: ArrayLike) -> None:
        codes, scales = _checks.codes_and_scales(codes, scales)
        self._set_arrays(codes, scales)

    @classmethod
    def _from_checked(cls, codes: np.ndarray, scales: np.ndarray) -> QuantizedEmbedding:
        table = cls.__new__(cls)
        table._set_arrays(codes, scales)
        return table

    def _set_arrays(self, codes: np.ndarray, scales: np.ndarray) -> None:
        self._codes = _read_only(codes)
        self._scales = _read_only(scales)
        self._dim = codes.shape[1]
        # the backend's handle on the arrays, serving the lookups it can take as they are with
        # the least work per call (the library's default thread count read only when needed)
        self._kernels = _backend.kernels.Table(
            self._codes, self._scales, _threads.get_num_threads
        )

    @property
    def codes(self) -> NDArray[np.uint8]:
        """uint8 codes, shape (N, D), read-only: ``floor(E / scale + 128.5)``."""
        return self._codes

    @property
    def scales(self) -> NDArray[np.float32]:
        """float32 scales, shape (N,), read-only: ``max|row| / 127``."""
        return self._scales

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, dim) of the table."""
        return self._codes.shape

    @property
    def nbytes(self) -> int:
        """Bytes held by codes and scales."""
        return self._codes.nbytes + self._scales.nbytes

    def __len__(self) -> int:
        rows: int = self._codes.shape[0]
        return rows

    def __repr__(self) -> str:
        n_rows, dim = self.shape
        float_bytes = 4 * n_rows * dim
        ratio = f", {float_bytes / self.nbytes:.1f}x smaller than float32" if self.nbytes else ""
        return f"QuantizedEmbedding(rows={n_rows}, dim={dim}, {human_bytes(self.nbytes)}{ratio})"

    def __reduce__(self) -> tuple[type[QuantizedEmbedding], tuple[np.ndarray, np.ndarray]]:
        return (type(self), (np.array(self._codes), np.array(self._scales)))

    def take(
        self,
        ids: ArrayLike,
        out: NDArray[np.float32] | None = None,
        *,
        threads: int | None = None,
    ) -> NDArray[np.float32]:
        """Embedding lookup: dequantized rows ``ids`` (in ``[0, N)``), shape ``ids.shape + (D,)``.

        See :func:`rowquant.take`.

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.array([[1.0, -1.0], [0.5, 2.0]], np.float32))
        >>> qe.take([1, 0])
        array([[ 0.503937,  2.      ],
               [ 1.      , -1.      ]], dtype=float32)
        """
        # the serving path: a call the kernels take as they are goes straight to the backend;
        # any other (other ids, an unfit out= or threads=, a bad id) takes the checked path
        rows: NDArray[np.float32] | None = self._kernels.take(ids, out, threads)
        if rows is None:
            rows = _api.take_checked(self._codes, self._scales, ids, out, threads)
        return rows

    def bag(
        self,
        ids: ArrayLike,
        offsets: ArrayLike | None = None,
        *,
        lengths: ArrayLike | None = None,
        weights: ArrayLike | None = None,
        mode: BagMode = "sum",
        include_last_offset: bool = False,
        padding_idx: int | None = None,
        out: NDArray[np.float32] | None = None,
        threads: int | None = None,
    ) -> NDArray[np.float32]:
        """Pooled lookup with the semantics of ``torch.nn.functional.embedding_bag``.

        See :func:`rowquant.embedding_bag` for the arguments.

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.array([[1.0, -1.0], [0.5, 2.0]], np.float32))
        >>> qe.bag([0, 1, 1], offsets=[0, 1])
        array([[ 1.      , -1.      ],
               [ 1.007874,  4.      ]], dtype=float32)
        """
        pooled: NDArray[np.float32] | None = self._kernels.bag(
            ids, offsets, lengths, weights, mode, include_last_offset, padding_idx, out, threads
        )
        if pooled is None:
            pooled = _api.bag_checked(
                self._codes, self._scales, ids, offsets, lengths, weights, mode,
                include_last_offset, padding_idx, out, threads,
            )
        return pooled

    def dequantize(
        self, out: NDArray[np.float32] | None = None, *, threads: int | None = None
    ) -> NDArray[np.float32]:
        """The whole float32 table, shape (N, D).

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> rq.quantize(np.array([[1.0, -0.5]], np.float32)).dequantize()
        array([[ 1.      , -0.503937]], dtype=float32)
        """
        table: NDArray[np.float32] | None = self._kernels.dequantize(out, threads)
        if table is None:
            table = _api.dequantize_checked(self._codes, self._scales, out, threads)
        return table

    def save(self, path) -> None:
        """Write the table to ``path`` as a safetensors file, atomically; see
        :func:`rowquant.save` and :func:`rowquant.load`.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import rowquant as rq
        >>> path = os.path.join(tempfile.mkdtemp(), "table.safetensors")
        >>> rq.quantize(np.ones((2, 3), np.float32)).save(path)
        >>> rq.load(path).shape
        (2, 3)
        """
        _format.write_table(path, self._codes, self._scales)

    def to_fbgemm(self) -> np.ndarray:
        """The table in FBGEMM's fused 8-bit rowwise layout; see :func:`rowquant.to_fbgemm`."""
        return _layouts.fbgemm_rows(self._codes, self._scales)

    def to_torch_quantized(self):
        """The table as a torch per-channel quantized tensor (quint8, zero point 128); see
        :func:`rowquant.to_torch_quantized`."""
        return _layouts.torch_per_channel(self._codes, self._scales)

    def __getitem__(self, key: Any) -> NDArray[np.float32]:
        n_rows = len(self)
        if isinstance(key, slice):
            return self._slice_rows(key)
        if isinstance(key, bool):  # numpy treats True/False as a mask, not as rows 1/0
            return self._elements(key)
        try:
            row = operator.index(key)
        except TypeError:
            pass
        else:
            if not -n_rows <= row < n_rows:
                raise IndexError(f"index {row} is out of bounds for a table of {n_rows} rows")
            one: NDArray[np.float32] = self.take(np.array([row % n_rows]))[0]
            return one
        if not isinstance(key, tuple):
            rows = np.asarray(key)
            if rows.dtype == np.bool_ and rows.ndim == 1:
                if rows.shape[0] != n_rows:
                    raise IndexError(
                        f"boolean index has {rows.shape[0]} entries, the table has {n_rows} rows"
                    )
                return self.take(np.flatnonzero(rows))
            if rows.dtype.kind in "iu" and rows.size > 0:
                outside = (rows < -n_rows) | (rows >= n_rows)
                if outside.any():
                    value = rows.reshape(-1)[np.argmax(outside)]
                    raise IndexError(
                        f"index {value} is out of bounds for a table of {n_rows} rows"
                    )
                rows = rows.astype(np.int64)  # in [-n_rows, n_rows) now: no overflow below
                return self.take(np.where(rows < 0, rows + n_rows, rows))
        return self._elements(key)

    def _slice_rows(self, rows: slice) -> NDArray[np.float32]:
        """Rows selected by a slice, dequantized straight from a view of the codes."""
        codes = self._codes[rows]
        scales = np.ascontiguousarray(self._scales[rows])
        return _api.dequantize_checked(codes, scales, None, None)

    def _elements(self, key: Any) -> NDArray[np.float32]:
        """Any other numpy index, with exactly numpy's semantics on the dequantized table: find
        which (row, column) each result element comes from, then dequantize just those."""
        grid = np.broadcast_to(np.arange(len(self))[:, None], self.shape)[key]
        columns = np.broadcast_to(np.arange(self.shape[1]), self.shape)[key]
        return reference.dequantize_codes(self._codes[grid, columns], self._scales[grid])
