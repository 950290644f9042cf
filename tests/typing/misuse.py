"""Calls that are wrong, each of which ``mypy --strict`` must reject with the error named in its
comment (tests/test_typing.py checks the exact lines). Importing this module runs nothing."""

from __future__ import annotations

import numpy as np

import rowquant as rq


def wrong_calls(qe: rq.QuantizedEmbedding) -> None:
    qe.bag([[1, 2]], mode="median")  # error: arg-type
    rq.embedding_bag(qe.codes, qe.scales, [[1]], mode="MAX")  # error: arg-type
    qe.take([1], threads="2")  # error: arg-type
    rq.quantize(np.ones((2, 2)), threads=1.5)  # error: arg-type
    info = rq.backend_info()
    info["backnd"]  # error: typeddict-item
    rows: np.ndarray[tuple[int], np.dtype[np.uint8]] = qe.take([1])  # error: assignment
