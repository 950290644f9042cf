"""Opening one rowquant file as a table, of any scheme (:func:`rowquant.io.load` of a file,
and of each shard of a sharded table)."""

from __future__ import annotations

from . import _format, _nbit_format
from ._nbit import NBitEmbedding
from .table import QuantizedEmbedding

__all__ = ["load_table"]


def load_table(path, *, mmap: bool = True, validate: bool = True) -> QuantizedEmbedding:
    """:func:`rowquant.load` of one file (not a sharded table)."""
    if _nbit_format.is_nbit_file(path):  # 4-bit and 2-bit rows
        stored = _nbit_format.read_nbit_table(path, mmap=mmap, validate=validate)
        return NBitEmbedding.from_stored(stored)
    stored = _format.read_table(path, mmap=mmap, validate=validate)
    return QuantizedEmbedding._from_checked(
        stored.codes, stored.scales, stored.keys, stored.metadata, stored.norms
    )
