"""Sharded tables: one rowquant file per block of rows and an index JSON naming them, served as
one table (:class:`ShardedTable`, what :func:`rowquant.load` gives for a folder or an index).

The index is the layout Hugging Face uses for sharded checkpoints (``*.safetensors.index.json``
beside ``*-00001-of-00004.safetensors`` files), with rows in place of tensor names:

.. code-block:: json

    {"format": "rowquant-shards", "version": 1,
     "metadata": {"rows": 1000000, "dim": 64, "scheme": "rowwise-symmetric-u8",
                  "total_size": 68000512},
     "shards": [{"file": "table-00001-of-00004.safetensors", "first_row": 0,
                 "rows": 250000, "bytes": 17000128}, ...]}

Each shard is a complete rowquant file (it opens alone with :func:`rowquant.load`), written
atomically; the index is written last, once every shard is on disk, so a folder whose writer
failed has no index and does not load. Opening checks every shard against the index (present,
of the recorded size, a valid table of the recorded rows, width and scheme) before anything is
served: a missing or truncated shard is named in the error.

Lookups route ids to shards once (sorted, :func:`numpy.unique`), copy the rows they need out of
the mapped shards into one small table and run the ordinary kernels on it, so that results are
bit for bit those of one table holding every row: bags pool the same rows in the same order.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> import rowquant as rq
>>> from rowquant import _shards
>>> E = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
>>> folder = tempfile.mkdtemp()
>>> parts = [rq.quantize(E[:6]), rq.quantize(E[6:])]
>>> _shards.write_shards(folder, parts)
'...table.safetensors.index.json'
>>> table = rq.load(folder)
>>> table
ShardedTable(rows=10, dim=4, 2 shards, rowwise-symmetric-u8)
>>> np.array_equal(table.take([9, 0, 6]), rq.quantize(E).take([9, 0, 6]))
True
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _atomic, _checks
from ._open import load_table
from ._nbit import NBitEmbedding
from ._nbit_arrays import fused_views
from .table import QuantizedEmbedding

__all__ = ["ShardedTable", "index_name", "is_sharded", "load_sharded", "remove_index",
           "remove_stale_shards", "shard_name", "write_index", "write_shards"]

FORMAT = "rowquant-shards"
VERSION = 1
INDEX_SUFFIX = ".safetensors.index.json"


def shard_name(prefix: str, number: int, count: int) -> str:
    """The file of shard ``number`` (from 0) of ``count``: ``table-00001-of-00004.safetensors``."""
    return f"{prefix}-{number + 1:05d}-of-{count:05d}.safetensors"


def index_name(prefix: str) -> str:
    """The index file of shards named ``prefix``: ``table.safetensors.index.json``."""
    return prefix + INDEX_SUFFIX


def is_sharded(path: Any) -> bool:
    """Whether ``path`` names a sharded table: a folder, or an index file."""
    text = os.fspath(path)
    return os.path.isdir(text) or str(text).endswith(".index.json")


def write_index(folder: Any, prefix: str, shards: Sequence[Mapping[str, Any]], dim: int,
                scheme: str) -> str:
    """Write the index of ``shards`` (dicts with ``file``, ``rows`` and ``bytes``, in row
    order) atomically; returns its path."""
    first = 0
    entries: list[dict[str, Any]] = []
    for shard in shards:
        entries.append({"file": str(shard["file"]), "first_row": first,
                        "rows": int(shard["rows"]), "bytes": int(shard["bytes"])})
        first += int(shard["rows"])
    index = {
        "format": FORMAT,
        "version": VERSION,
        "metadata": {"rows": first, "dim": int(dim), "scheme": scheme,
                     "total_size": sum(entry["bytes"] for entry in entries)},
        "shards": entries,
    }
    path = os.path.join(os.fspath(folder), index_name(prefix))
    with _atomic.atomic_output(path) as fd:
        _atomic.write_all(fd, np.frombuffer(json.dumps(index, indent=1).encode(), np.uint8), 0)
    return path


def remove_index(folder: Any, prefix: str) -> None:
    """Delete the index of the table ``prefix`` in ``folder``, if there is one."""
    try:
        os.remove(os.path.join(os.fspath(folder), index_name(prefix)))
    except FileNotFoundError:
        pass


def remove_stale_shards(folder: Any, prefix: str, keep: Sequence[str]) -> list[str]:
    """Delete the shard files of ``prefix`` in ``folder`` (``{prefix}-NNNNN-of-NNNNN``) other
    than ``keep``, the current index's: what a run with another shard count left. Returns
    their names."""
    pattern = re.compile(re.escape(prefix) + r"-\d{5,}-of-\d{5,}\.safetensors")
    stale = sorted(name for name in os.listdir(os.fspath(folder))
                   if pattern.fullmatch(name) and name not in set(keep))
    for name in stale:
        os.remove(os.path.join(os.fspath(folder), name))
    return stale


def write_shards(folder: Any, tables: Sequence[QuantizedEmbedding], *, prefix: str = "table",
                 metadata: Mapping[str, str] | None = None) -> str:
    """Write ``tables`` (blocks of rows, in order, of one scheme and width) as the shards of
    one table in ``folder`` (which must exist), then its index; returns the index's path.
    :func:`rowquant.dask.quantize`'s ``to_safetensors_shards`` writes the same files from a
    cluster's workers."""
    if not tables:
        raise ValueError("a sharded table needs at least one shard")
    remove_index(folder, prefix)
    entries: list[dict[str, Any]] = []
    names = []
    for number, table in enumerate(tables):
        name = shard_name(prefix, number, len(tables))
        names.append(name)
        path = os.path.join(os.fspath(folder), name)
        table.save(path, metadata=metadata)
        entries.append({"file": name, "rows": len(table), "bytes": os.path.getsize(path)})
    index = write_index(folder, prefix, entries, tables[0].shape[1], tables[0].scheme.name)
    remove_stale_shards(folder, prefix, names)
    return index


def _index_path(path: str) -> str:
    if not os.path.isdir(path):
        return path
    found = sorted(name for name in os.listdir(path) if name.endswith(INDEX_SUFFIX))
    if not found:
        raise ValueError(f"{path} is a folder without a sharded table's index "
                         f"(*{INDEX_SUFFIX}); a writer that failed leaves none")
    if len(found) > 1:
        raise ValueError(f"{path} holds several indexes ({', '.join(found)}); "
                         "load one of them by its path")
    return os.path.join(path, found[0])


def _read_index(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as stream:
            index = json.loads(stream.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a sharded table's index: {error}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"{path} is not a rowquant sharded table's index "
                         f"(format {FORMAT!r} expected)")
    if index.get("version") != VERSION:
        raise ValueError(f"{path}: index version {index.get('version')!r}; this rowquant "
                         f"reads version {VERSION}")
    try:
        metadata = index["metadata"]
        rows, dim, scheme = int(metadata["rows"]), int(metadata["dim"]), str(metadata["scheme"])
        shards = [(str(s["file"]), int(s["first_row"]), int(s["rows"]), int(s["bytes"]))
                  for s in index["shards"]]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: a malformed index ({type(error).__name__}: {error})") from None
    first = 0
    for file, first_row, count, _ in shards:
        if os.path.basename(file) != file or file in ("", ".", ".."):
            raise ValueError(f"{path}: shard file {file!r} is not a name in the index's folder")
        if first_row != first or count < 0:
            raise ValueError(f"{path}: shard {file} starts at row {first_row}, expected {first}")
        first += count
    if first != rows or not shards:
        raise ValueError(f"{path}: the shards hold {first} rows, the index says {rows}")
    return {"rows": rows, "dim": dim, "scheme": scheme, "shards": shards}


def load_sharded(path: Any, *, mmap: bool = True, validate: bool = True) -> ShardedTable:
    """Open the sharded table of a folder or index (see :func:`rowquant.load`)."""
    index_path = _index_path(os.fspath(path))
    index = _read_index(index_path)
    folder = os.path.dirname(index_path)
    tables = []
    for file, _, count, size in index["shards"]:
        where = os.path.join(folder, file)
        if not os.path.isfile(where):
            raise ValueError(f"shard {file} of {index_path} is missing")
        actual = os.path.getsize(where)
        if actual != size:
            raise ValueError(f"shard {file} of {index_path} has {actual} bytes, the index "
                             f"says {size} (truncated or replaced)")
        try:
            table = load_table(where, mmap=mmap, validate=validate)
        except ValueError as error:
            raise ValueError(f"shard {file} of {index_path}: {error}") from None
        if table.shape != (count, index["dim"]) or table.scheme.name != index["scheme"]:
            raise ValueError(
                f"shard {file} of {index_path} holds {table.shape[0]}x{table.shape[1]} "
                f"{table.scheme.name} rows, the index says {count}x{index['dim']} "
                f"{index['scheme']}")
        tables.append(table)
    return ShardedTable(tables)


def row_arrays(table: QuantizedEmbedding) -> list[np.ndarray]:
    """The arrays whose lines are ``table``'s rows: an 8-bit table's codes and scales, or an
    N-bit table's fused rows (codes, scale and bias side by side)."""
    if isinstance(table, NBitEmbedding):
        return [np.asarray(table._rows) if table._rows is not None else table.to_fbgemm()]
    return [np.asarray(table.codes), np.asarray(table.scales)]


def table_of(arrays: list[np.ndarray], like: QuantizedEmbedding) -> QuantizedEmbedding:
    """The table of ``like``'s scheme and width whose rows are ``arrays`` (as
    :func:`_row_arrays` gives them)."""
    if isinstance(like, NBitEmbedding):
        (rows,) = arrays
        return NBitEmbedding._from_nbit(*fused_views(rows, like.codes.shape[1]), like.shape[1],
                                        like.scheme, rows=rows)
    codes, scales = arrays
    return QuantizedEmbedding._from_checked(codes, scales)


class ShardedTable:
    """A table stored as shards (see the module's notes), served as one: :meth:`take`,
    :meth:`bag`, indexing, :meth:`dequantize`, and :meth:`dot` and :meth:`search` on 8-bit
    tables, each equal bit for bit to the same call on one table of all the rows.

    ``shards`` are the shards' tables (memory-mapped when loaded with ``mmap=True``) and
    ``starts`` their first rows.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> E = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> table = rq.ShardedTable([rq.quantize(E[:4]), rq.quantize(E[4:])])
    >>> table.take([5, 0])   # rows of two shards, as one table of all the rows gives them
    array([[ 9.96063, 11.     ],
           [ 0.     ,  1.     ]], dtype=float32)
    >>> np.array_equal(table.take([5, 0]), rq.quantize(E).take([5, 0]))
    True
    >>> bags = table.bag([[0, 5], [1, 4]], mode="mean")
    >>> np.array_equal(bags, rq.quantize(E).bag([[0, 5], [1, 4]], mode="mean"))
    True
    """

    def __init__(self, shards: Sequence[QuantizedEmbedding]):
        if not shards:
            raise ValueError("a sharded table needs at least one shard")
        self.shards = tuple(shards)
        first = self.shards[0]
        for shard in self.shards[1:]:
            if shard.shape[1] != first.shape[1] or shard.scheme != first.scheme:
                raise ValueError("the shards of a table must share their width and scheme")
        sizes = np.array([len(shard) for shard in self.shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._rows = int(self.starts[-1])
        self._dim = first.shape[1]
        # the shards' common size if all but the last have it (and the last no more), else 0
        self._even = int(sizes[0]) if sizes[0] > 0 and (sizes[:-1] == sizes[0]).all() \
            and sizes[-1] <= sizes[0] else 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self._rows, self._dim)

    @property
    def scheme(self) -> Any:
        return self.shards[0].scheme

    @property
    def nbytes(self) -> int:
        return sum(shard.nbytes for shard in self.shards)

    def __len__(self) -> int:
        return self._rows

    def __repr__(self) -> str:
        return (f"ShardedTable(rows={self._rows}, dim={self._dim}, {len(self.shards)} shards, "
                f"{self.scheme.name})")

    # ------------------------------------------------------------------ routing

    def _checked_ids(self, ids: ArrayLike, name: str = "ids") -> np.ndarray:
        array = _checks.integer_array(ids, name)
        flat = array.reshape(-1)
        bad = np.flatnonzero((flat < 0) | (flat >= self._rows))
        if bad.size:
            raise _checks.id_range_error(array, int(bad[0]), self._rows, name)
        return array

    def _shard_of(self, flat: np.ndarray) -> np.ndarray:
        """The shard of each id: a division when the shards but the last are of one size (as
        writers make them), else a binary search of the first rows."""
        if self._even:
            return flat // self._even
        return np.searchsorted(self.starts, flat, side="right") - 1

    def _compact(self, ids: ArrayLike) -> tuple[QuantizedEmbedding, np.ndarray, np.ndarray]:
        """The table of the rows ``ids`` name, copied out of the shards (only those rows are
        read), the ids renumbered into it, and the table's rows' numbers in the whole table.
        The ids are grouped by shard once (a stable radix sort of their shard numbers); a row
        named twice is copied twice. The kernels then run on the copy with the caller's
        threads."""
        array = self._checked_ids(ids)
        flat = array.reshape(-1).astype(np.int64, copy=False)
        shard_of = self._shard_of(flat).astype(np.int16 if len(self.shards) < 2**15 else np.int64)
        order = np.argsort(shard_of, kind="stable")
        wanted = flat[order]
        bounds = np.searchsorted(shard_of[order], np.arange(len(self.shards) + 1))
        parts = [(s, int(bounds[s]), int(bounds[s + 1])) for s in range(len(self.shards))
                 if bounds[s + 1] > bounds[s]]
        outputs = [np.empty((len(wanted),) + source.shape[1:], source.dtype)
                   for source in row_arrays(self.shards[0])]

        for shard, begin, end in parts:  # one thread: numpy's take holds the GIL
            local = wanted[begin:end] - self.starts[shard]
            for source, output in zip(row_arrays(self.shards[shard]), outputs):
                np.take(source, local, axis=0, out=output[begin:end], mode="clip")  # checked
        renumbered = np.empty(len(order), np.int64)
        renumbered[order] = np.arange(len(order))
        return table_of(outputs, self.shards[0]), renumbered.reshape(array.shape), wanted

    def _single_shard(self, ids: ArrayLike) -> tuple[QuantizedEmbedding, Any] | None:
        """(the shard, the ids in its numbering) when every id is in one shard, else None."""
        if len(self.shards) == 1:
            return self.shards[0], ids
        return None

    # ------------------------------------------------------------------ lookups

    def take(self, ids: ArrayLike, out: NDArray[np.float32] | None = None, *,
             threads: int | None = None) -> NDArray[np.float32]:
        """Dequantized rows ``ids``, shape ``ids.shape + (D,)``, as
        :meth:`QuantizedEmbedding.take` gives them (example: the class's)."""
        single = self._single_shard(ids)
        if single is not None:
            return single[0].take(single[1], out, threads=threads)
        compact, renumbered, _ = self._compact(ids)
        return compact.take(renumbered, out, threads=threads)

    def bag(self, ids: ArrayLike, offsets: ArrayLike | None = None, *,
            padding_idx: int | None = None, threads: int | None = None,
            **kwargs: Any) -> NDArray[np.float32]:
        """Pooled rows of bags, as :meth:`QuantizedEmbedding.bag` (same arguments), bit for bit
        the bags of one table of all the rows (example: the class's)."""
        single = self._single_shard(ids)
        if single is not None:
            return single[0].bag(single[1], offsets, padding_idx=padding_idx, threads=threads,
                                 **kwargs)
        padding = _checks.padding_row(padding_idx, self._rows)
        compact, renumbered, rows = self._compact(ids)
        if padding is not None:  # a row of the compact table that holds it, if an id names it
            found = np.flatnonzero(rows == padding)
            if len(found):  # every other copy of the padding row becomes this one
                renumbered = np.where(rows[renumbered] == padding, found[0], renumbered)
            padding = int(found[0]) if len(found) else None
        return compact.bag(renumbered, offsets, padding_idx=padding, threads=threads, **kwargs)

    def __getitem__(self, key: Any) -> NDArray[np.float32]:
        """numpy indexing on the dequantized table, as for a table: ``table[i]`` (negative from
        the end), ``table[[i, j]]``, ``table[a:b]``, ``table[mask]``, ``table[rows, columns]``;
        only the rows named are read."""
        if isinstance(key, tuple):
            if not key:
                return self[:]
            rows = self[key[0]]
            single = np.ndim(rows) == 1
            return rows[key[1:]] if single else rows[(slice(None),) + key[1:]]
        if isinstance(key, slice):
            return self.take(np.arange(self._rows)[key])
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            row = int(key) + self._rows if key < 0 else int(key)
            if not 0 <= row < self._rows:
                raise IndexError(f"row {key} is out of range for a table of {self._rows} rows")
            return self.take(np.array([row]))[0]
        array = np.asarray(key)
        if array.dtype == np.bool_:
            if array.shape != (self._rows,):
                raise IndexError(f"a boolean index must have shape ({self._rows},), got "
                                 f"{array.shape}")
            return self.take(np.flatnonzero(array))
        if array.dtype.kind in "iu":  # negative rows count from the end, as numpy's
            array = np.where(array < 0, array + self._rows, array)
        return self.take(array)

    def dequantize(self, out: NDArray[np.float32] | None = None, *,
                   threads: int | None = None) -> NDArray[np.float32]:
        """The whole table as float32 ``(N, D)``."""
        result = _checks.output(out, (self._rows, self._dim), np.float32) if out is not None else \
            np.empty((self._rows, self._dim), np.float32)
        for shard, start in zip(self.shards, self.starts.tolist()):
            shard.dequantize(out=result[start : start + len(shard)], threads=threads)
        return result

    def dot(self, queries: ArrayLike, **kwargs: Any) -> NDArray[np.float32]:
        """Scores of queries against every row, as :meth:`QuantizedEmbedding.dot` (8-bit
        tables): each shard's scores, side by side."""
        return np.concatenate([shard.dot(queries, **kwargs) for shard in self.shards], axis=-1)

    def search(self, queries: ArrayLike, k: int = 10,
               **kwargs: Any) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The k best rows per query, as :meth:`QuantizedEmbedding.search` (8-bit tables): each
        shard's k best, merged (best first, the smaller row first among equal scores)."""
        if kwargs.get("ids") is not None or kwargs.get("exclude") is not None:
            raise NotImplementedError("search with ids= or exclude= on a sharded table")
        found = [shard.search(queries, k, **kwargs) for shard in self.shards]
        scores = np.concatenate([s for s, _ in found], axis=-1)
        rows = np.concatenate([r + start for (_, r), start in zip(found, self.starts)], axis=-1)
        single = scores.ndim == 1
        scores2, rows2 = np.atleast_2d(scores), np.atleast_2d(rows)
        order = np.lexsort((rows2, -scores2.astype(np.float64)), axis=-1)[:, :k]
        best = np.take_along_axis(scores2, order, -1), np.take_along_axis(rows2, order, -1)
        return (best[0][0], best[1][0]) if single else best
