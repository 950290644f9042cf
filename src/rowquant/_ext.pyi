"""Type stub for the compiled glue (src/rowquant/_ext.pyx). Callers pass arrays already checked
by rowquant._api: contiguous rows, right dtypes and shapes."""

import numpy as np
from numpy.typing import NDArray

def have_openmp() -> bool: ...
def quantize_rows(
    values: NDArray[np.float32],
    codes: NDArray[np.uint8],
    scales: NDArray[np.float32],
    n_threads: int,
) -> int: ...
def dequantize(
    codes: NDArray[np.uint8],
    scales: NDArray[np.float32],
    out: NDArray[np.float32],
    n_threads: int,
) -> None: ...
def take(
    codes: NDArray[np.uint8],
    scales: NDArray[np.float32],
    ids: NDArray[np.int64],
    out: NDArray[np.float32],
    n_threads: int,
) -> int: ...
def bag(
    codes: NDArray[np.uint8],
    scales: NDArray[np.float32],
    ids: NDArray[np.int64],
    bounds: NDArray[np.int64],
    weights: NDArray[np.float32] | None,
    mode: int,
    padding_idx: int,
    out: NDArray[np.float32],
    n_threads: int,
) -> int: ...
