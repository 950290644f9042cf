"""Type stub for the compiled glue (src/rowquant/_ext.pyx), the C backend behind
rowquant._backend; rowquant._numpy_backend has the same functions. Callers pass arrays checked
by rowquant._api; the glue still refuses (ValueError) arrays the kernels cannot read."""

from collections.abc import Callable

import numpy as np
from typing_extensions import disjoint_base
from numpy.typing import NDArray

# scales: float32, float16, or uint16 holding bfloat16 bits
_Scales = NDArray[np.float32] | NDArray[np.float16] | NDArray[np.uint16]

BAG_MODES: dict[str, int]
BIAS: int
SIMD_NAMES: tuple[str, ...]
DOT_PRECISIONS: dict[str, int]

def simd_select(name: str | None) -> int: ...
def simd_name() -> str: ...
def simd_available(name: str) -> bool: ...
def nbit_kernel_name() -> str: ...
def nbit_dequantize(
    codes: NDArray[np.uint8],
    scales: NDArray[np.float16],
    biases: NDArray[np.float16],
    bits: int,
    dim: int,
    out: NDArray[np.float32],
    n_threads: int,
) -> None: ...
def nbit_take(
    codes: NDArray[np.uint8],
    scales: NDArray[np.float16],
    biases: NDArray[np.float16],
    bits: int,
    dim: int,
    ids: NDArray[np.int64],
    out: NDArray[np.float32],
    n_threads: int,
) -> int: ...
def nbit_bag(
    codes: NDArray[np.uint8],
    scales: NDArray[np.float16],
    biases: NDArray[np.float16],
    bits: int,
    dim: int,
    ids: NDArray[np.int64],
    bounds: NDArray[np.int64],
    weights: NDArray[np.float32] | None,
    mode: int,
    padding_idx: int,
    out: NDArray[np.float32],
    n_threads: int,
) -> int: ...
def quantize_rows(
    values: NDArray[np.float32],
    codes: NDArray[np.uint8],
    scales: _Scales,
    n_threads: int,
) -> int: ...
def dequantize(
    codes: NDArray[np.uint8],
    scales: _Scales,
    out: NDArray[np.float32],
    n_threads: int,
) -> None: ...
def take(
    codes: NDArray[np.uint8],
    scales: _Scales,
    ids: NDArray[np.int64],
    out: NDArray[np.float32],
    n_threads: int,
) -> int: ...
def bag(
    codes: NDArray[np.uint8],
    scales: _Scales,
    ids: NDArray[np.int64],
    bounds: NDArray[np.int64],
    weights: NDArray[np.float32] | None,
    mode: int,
    padding_idx: int,
    out: NDArray[np.float32],
    n_threads: int,
) -> int: ...
def scores(
    codes: NDArray[np.uint8],
    scales: _Scales,
    queries: NDArray[np.float32] | NDArray[np.int8],
    precision: int,
    inverse_norms: NDArray[np.float64] | None,
    query_factors: NDArray[np.float64],
    out: NDArray[np.float32],
    n_threads: int,
) -> None: ...
def top_k(
    codes: NDArray[np.uint8],
    scales: _Scales,
    queries: NDArray[np.float32] | NDArray[np.int8],
    precision: int,
    inverse_norms: NDArray[np.float64] | None,
    query_factors: NDArray[np.float64],
    top_scores: NDArray[np.float32],
    top_ids: NDArray[np.int64],
    n_threads: int,
) -> None: ...
def norms(
    codes: NDArray[np.uint8],
    scales: _Scales,
    out: NDArray[np.float32],
    n_threads: int,
) -> None: ...

@disjoint_base
class Table:
    def __init__(
        self,
        codes: NDArray[np.uint8],
        scales: _Scales,
        default_threads: Callable[[], int],
    ) -> None: ...
    def take(self, ids: object, out: object, threads: object) -> NDArray[np.float32] | None: ...
    def dequantize(self, out: object, threads: object) -> NDArray[np.float32] | None: ...
    def bag(
        self,
        ids: object,
        offsets: object,
        lengths: object,
        weights: object,
        mode: object,
        include_last_offset: object,
        padding_idx: object,
        out: object,
        threads: object,
    ) -> NDArray[np.float32] | None: ...
