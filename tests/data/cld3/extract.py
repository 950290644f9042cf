"""Extract CLD3's quantized embedding tables from its parameter source into cld3_embeddings.npz.

CLD3 (https://github.com/google/cld3, Apache-2.0) keeps the parameters of its language
identifier as C arrays in src/lang_id_nn_params.cc: for each of its six embedding tables,
kEmbeddingsWeights<i> (uint8, row-major, kEmbeddingsNumRows[i] x kEmbeddingsNumCols[i]) and
kEmbeddingsQuantScales<i> (its "float16": the top 16 bits of a float32, one per row).

    git clone https://github.com/google/cld3 && \\
        python tests/data/cld3/extract.py cld3/src/lang_id_nn_params.cc

writes, for i in 0..5, table<i>_weights (uint8 [rows, cols]) and table<i>_scales (uint16
[rows]), exactly as in the source. Numpy only: it does not use rowquant, whose own reader
(rowquant.cld3.read_cld3_params) the tests check against these arrays.
"""

import re
import sys
from pathlib import Path

import numpy as np

ARRAY = re.compile(r"const\s+(\w+)\s+\w+::(\w+)\[\]\s*=\s*\{([^}]*)\}\s*;")


def main(source: str) -> None:
    arrays = {m.group(2): [int(v.strip().rstrip("u")) for v in m.group(3).split(",") if v.strip()]
              for m in ARRAY.finditer(Path(source).read_text(encoding="utf-8"))
              if m.group(1) in ("int", "uint8", "float16")}
    rows, cols = arrays["kEmbeddingsNumRows"], arrays["kEmbeddingsNumCols"]
    out = {}
    for i, (n_rows, n_cols) in enumerate(zip(rows, cols)):
        weights = np.array(arrays[f"kEmbeddingsWeights{i}"], np.int64)
        scales = np.array(arrays[f"kEmbeddingsQuantScales{i}"], np.int64)
        assert weights.min() >= 0 and weights.max() <= 255 and scales.max() <= 0xFFFF
        out[f"table{i}_weights"] = weights.astype(np.uint8).reshape(n_rows, n_cols)
        out[f"table{i}_scales"] = scales.astype(np.uint16)
        steps = np.abs(out[f"table{i}_weights"].astype(np.int64) - 128).max(axis=1)
        print(f"table {i}: {n_rows} x {n_cols}, rows with code 0: "
              f"{int((out[f'table{i}_weights'] == 0).any(axis=1).sum())}, with code 255: "
              f"{int((out[f'table{i}_weights'] == 255).any(axis=1).sum())}, largest |q - 128| "
              f"per row: 127 in {int((steps == 127).sum())} rows, 128 in "
              f"{int((steps == 128).sum())}")
    target = Path(__file__).resolve().parent / "cld3_embeddings.npz"
    np.savez_compressed(target, **out)
    print(f"wrote {target} ({target.stat().st_size} bytes, "
          f"{sum(a.size for k, a in out.items() if k.endswith('weights'))} values)")


if __name__ == "__main__":
    main(sys.argv[1])
