"""A user's typed code against rowquant's public API. ``mypy --strict`` must accept it with no
error (tests/test_typing.py runs it): every public name it calls is annotated, and the types it
gets back are the precise ones written below. Importing this module runs nothing."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

import rowquant as rq


def quantize_and_serve(E: NDArray[np.float32], ids: NDArray[np.int64]) -> NDArray[np.float32]:
    qe: rq.QuantizedEmbedding = rq.quantize(E, threads=2)
    codes: NDArray[np.uint8] = qe.codes
    scales: NDArray[np.float32] = qe.scales
    rows: NDArray[np.float32] = qe.take(ids)
    one: NDArray[np.float32] = qe[3]
    into = np.empty((len(ids), qe.shape[1]), np.float32)
    rows = qe.take(ids, into)
    bags: NDArray[np.float32] = qe.bag(ids.reshape(-1, 2), mode="max", padding_idx=0)
    bags = qe.bag(ids, [0, 2], weights=np.ones(len(ids), np.float32), mode="sum")
    table: NDArray[np.float32] = qe.dequantize()
    n: int = len(qe) + qe.nbytes + qe.shape[0]
    del codes, scales, one, bags, table, n
    return rows


def plain_arrays(E: NDArray[np.float64]) -> NDArray[np.float32]:
    codes, scales = rq.quantize_rows(E)
    typed_codes: NDArray[np.uint8] = codes
    typed_scales: NDArray[np.float32] = scales
    rq.dequantize(typed_codes, typed_scales, out=np.empty(E.shape, np.float32))
    rows: NDArray[np.float32] = rq.take(codes, scales, [1, 2])
    return rq.embedding_bag(codes, scales, [1, 2, 3], lengths=[1, 2], mode="mean") + rows[:1]


def settings() -> str:
    rq.set_num_threads(rq.get_num_threads())
    info: rq.BackendInfo = rq.backend_info()
    backend: str = info["backend"]
    return backend


def files(path: str, E: NDArray[np.float32]) -> rq.QuantizedEmbedding:
    rq.quantize(E).save(path)
    rq.save(path, rq.quantize(E))
    table = rq.load(path, mmap=True)  # a file: one table; a folder: a ShardedTable
    assert isinstance(table, rq.QuantizedEmbedding)
    return table


def shards(folder: str, ids: NDArray[np.int64]) -> NDArray[np.float32]:
    table = rq.load(folder)
    rows: NDArray[np.float32] = table.take(ids)  # both kinds serve lookups
    return table.bag(ids.reshape(-1, 4)) + rows[:1]


def words(E: NDArray[np.float32], vocabulary: list[str]) -> NDArray[np.float32]:
    qe = rq.quantize(E, keys=vocabulary, metadata={"source": "typing"})
    row: int = qe.index("king")
    rows: NDArray[np.int64] = qe.index(["king", "queen"])
    one: NDArray[np.float32] = qe["king"] + qe.lookup("queen") + qe.pool(["king", "queen"])
    mapping: Mapping[str, int] = qe.key_to_index
    first: str | None = qe.keys[0] if qe.keys is not None else None
    licence: str | None = qe.metadata.get("licence")
    qe.save("table.safetensors", metadata={"licence": "MIT"})
    del row, rows, mapping, first, licence
    return qe.bag_words([["king", "queen"], []], mode="mean") + one
