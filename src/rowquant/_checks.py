"""Argument checks shared by the public functions. Each returns the array the kernels can use
(converted only where the contract allows) or raises an error that names the argument and, where
there is one, the offending position and value."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

_FLOAT32_MAX = np.finfo(np.float32).max


def position(shape: tuple[int, ...], flat_index: int) -> str:
    """``"17"`` or ``"1, 2"``: the index of a flat position in an array of ``shape``."""
    return ", ".join(str(int(i)) for i in np.unravel_index(flat_index, shape))


def as_array(value: Any) -> np.ndarray:
    """``value`` as an ndarray, without a copy where possible. PyTorch tensors are taken as
    their data: detached from autograd, moved to the CPU, bfloat16 widened to float32 (exactly;
    numpy has no bfloat16). torch is never imported here: a tensor's presence means it is."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        import torch

        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().resolve_conj().resolve_neg()
            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            return tensor.numpy()
    return np.asarray(value)


def float_matrix(E: Any, name: str = "E") -> np.ndarray:
    """``E`` as float32 with contiguous rows; float16/float64, strided, F-order and byte-swapped
    input is converted (a copy), float32 with contiguous rows is used as it is."""
    array = as_array(E)
    if array.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a real floating-point array (float16, float32 or float64), "
            f"got dtype {array.dtype}"
        )
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {array.shape}")
    if has_contiguous_rows(array, np.float32):
        return array
    with np.errstate(over="ignore"):  # values past float32's range are reported by the caller
        return aligned_contiguous(array, np.float32)


def aligned_contiguous(array: Any, dtype: Any) -> np.ndarray:
    """``array`` as C-contiguous ``dtype`` whose items sit on their natural alignment, as the C
    kernels read them (np.ascontiguousarray keeps a misaligned view as it is); a copy only when
    needed."""
    return np.require(array, dtype=dtype, requirements=["C", "A"])


def nonfinite_error(
    original: Any, converted: np.ndarray, flat_index: int, name: str = "E", first_row: int = 0
) -> ValueError:
    """The ValueError for the first NaN or inf (found at ``flat_index`` of ``converted``); rows
    are numbered from ``first_row``."""
    row, column = divmod(int(flat_index), converted.shape[1])
    value = np.asarray(original)[row, column]
    if np.isfinite(value):
        found = f"{float(value)!r}, which overflows float32,"
    else:
        found = str(float(value))
    return ValueError(
        f"{name} has {found} at row {first_row + row}, column {column}: "
        "rowquant quantizes finite values only"
    )


def has_contiguous_rows(array: np.ndarray, dtype: Any) -> bool:
    """Native ``dtype``, 2-D, unit stride along each row: what the kernels read directly."""
    return (
        array.dtype == dtype
        and array.dtype.isnative
        and array.ndim == 2
        and (array.strides[1] == array.itemsize or array.shape[1] <= 1)
        and array.strides[0] >= 0
        and array.flags.aligned  # C reads float32 and int64 through typed pointers
    )


def scale_array(value: Any) -> np.ndarray:
    """Scales as an ndarray of float32, float16, or uint16 holding bfloat16 bits: a bfloat16
    tensor (PyTorch) or array (``ml_dtypes``) gives its bits, not a widened copy."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        import torch

        if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
            return value.detach().cpu().view(torch.int16).numpy().view(np.uint16)
    array = as_array(value)
    if array.dtype.name == "bfloat16" and array.dtype.itemsize == 2:
        return array.view(np.uint16)
    return array


def scale_values(scales: np.ndarray) -> np.ndarray:
    """float32 values of checked scales (16-bit ones widened exactly; float32 as they are)."""
    if scales.dtype == np.float32:
        return scales
    from .reference import widen_scales

    return widen_scales(scales)


def codes_and_scales(
    codes: Any, scales: Any, check_values: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Check a quantized table: uint8 codes ``(N, D)`` and finite non-negative scales ``(N,)``,
    float32, float16, or bfloat16 (a uint16 array of its bits, a bfloat16 tensor, or an
    ``ml_dtypes.bfloat16`` array). Codes whose rows are not contiguous are copied."""
    codes = as_array(codes)
    scales = scale_array(scales)
    if codes.dtype != np.uint8:
        raise TypeError(f"codes must be a uint8 array, got dtype {codes.dtype}")
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (rows, dim), got shape {codes.shape}")
    if scales.dtype.kind == "u" and scales.dtype.itemsize == 2:
        scale_dtype: Any = np.uint16  # bfloat16 bits
    elif scales.dtype.kind == "f" and scales.dtype.itemsize in (2, 4):
        scale_dtype = np.float16 if scales.dtype.itemsize == 2 else np.float32
    else:
        raise TypeError(
            "scales must be float32, float16, or bfloat16 (as uint16 bits, a bfloat16 tensor "
            f"or ml_dtypes array), got dtype {scales.dtype}"
        )
    if scales.shape != (codes.shape[0],):
        raise ValueError(
            f"scales must have shape ({codes.shape[0]},), one per row of codes, "
            f"got shape {scales.shape}"
        )
    if not has_contiguous_rows(codes, np.uint8):
        codes = np.ascontiguousarray(codes)
    scales = aligned_contiguous(scales, scale_dtype)
    if check_values:
        if scale_dtype is np.uint16:  # bfloat16 bits: not inf or NaN, sign clear (or -0)
            usable = (scales < 0x7F80) | (scales == 0x8000)
        else:
            usable = (scales >= 0) & (scales <= _FLOAT32_MAX)  # false for NaN too
        if not usable.all():
            i = int(np.argmin(usable))
            value = scales[i] if scale_dtype is np.float32 else float(scale_values(scales[i : i + 1])[0])
            raise ValueError(
                f"scales[{i}] = {value!r} is not a valid scale: scales must be finite and >= 0"
            )
    return codes, scales


def integer_array(values: Any, name: str) -> np.ndarray:
    """``values`` as an integer ndarray (any integer dtype, any shape), else TypeError (or
    ValueError for nested sequences of different lengths)."""
    if values is None:
        raise TypeError(f"{name} must hold integers, got None")
    try:
        array = as_array(values)
    except ValueError as error:  # numpy: "setting an array element with a sequence ..."
        raise ValueError(
            f"{name} must be a rectangular array of integers, got nested sequences of different "
            f"lengths ({error}); for bags of different sizes pass 1-D ids with offsets= or "
            "lengths="
        ) from None
    if array.size == 0 and not isinstance(values, np.ndarray):
        array = array.astype(np.int64)  # np.asarray([]) is float64
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    return array


def as_int64(array: np.ndarray) -> np.ndarray:
    """A flat C-contiguous int64 copy or view; uint64 values past int64 wrap to negative, which
    every range check rejects, and the error quotes the original value."""
    return aligned_contiguous(array.reshape(-1).astype(np.int64, copy=False), np.int64)


def id_range_error(
    ids: np.ndarray, flat_index: int, n_rows: int, name: str = "ids"
) -> IndexError:
    """The IndexError for ``ids`` at ``flat_index`` outside ``[0, n_rows)``."""
    where = position(ids.shape, flat_index)
    value = ids.reshape(-1)[flat_index]
    return IndexError(
        f"{name}[{where}] = {value} is out of range for a table of {n_rows} rows "
        f"(ids must be in [0, {n_rows}))"
    )


def padding_row(padding_idx: Any, n_rows: int) -> int | None:
    """``padding_idx`` as a row in ``[0, n_rows)`` (negative counts from the end, as in
    PyTorch), or None for none; the one check of every layer that takes it (bags, the torch
    modules, their ONNX export)."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, (bool, np.bool_)) or not isinstance(
        padding_idx, (int, np.integer)
    ):
        raise TypeError(f"padding_idx must be an integer or None, got {padding_idx!r}")
    if not -n_rows <= padding_idx < n_rows:
        raise ValueError(
            f"padding_idx = {padding_idx} is out of range for a table of {n_rows} rows "
            f"(it must be in [-{n_rows}, {n_rows}))"
        )
    return int(padding_idx) % n_rows


def cache_aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """np.empty whose data starts on a 64-byte cache line (numpy gives 16): rows of a table
    whose byte width is a multiple of 64 then sit in whole cache lines, one miss per row."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # np.prod costs ~5 us per call
    if nbytes < 1 << 20:  # cache-resident anyway; not worth the extra calls
        return np.empty(shape, dtype=dtype)
    buffer = np.empty(nbytes + 64, dtype=np.uint8)
    start = -buffer.__array_interface__["data"][0] % 64
    aligned: np.ndarray = buffer[start : start + nbytes].view(dtype).reshape(shape)
    return aligned


def output(
    out: Any,
    shape: tuple[int, ...],
    dtype: Any,
    name: str = "out",
    inputs: tuple[Any, ...] = (),
    allocate: Callable[[tuple[int, ...], Any], np.ndarray] = np.empty,
) -> np.ndarray:
    """``out`` checked (exact shape and dtype, C-contiguous, writable, not overlapping an input),
    or a new array from ``allocate`` when ``out`` is None."""
    if out is None:
        return allocate(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(out).__name__}")
    if out.dtype != dtype or not out.dtype.isnative:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writable")
    if not out.flags.aligned:
        raise ValueError(
            f"{name} must be aligned to its {out.dtype.itemsize}-byte items (a view of a byte "
            "buffer at an odd offset is not)"
        )
    # the arrays the kernels read, and the caller's own arrays as given: when an input needed
    # a conversion, the kernels read a copy, but an out= over the original would still destroy
    # the caller's data
    for array in inputs:
        if isinstance(array, np.ndarray) and np.may_share_memory(out, array):
            raise ValueError(f"{name} overlaps an input array; pass a separate buffer")
    return out


def count(value: Any, name: str, minimum: int, maximum: int | None = None) -> int:
    """An integer count (``operator.index``: no bools, no floats) in ``[minimum, maximum]``.

    >>> count(3, "k", 0)
    3
    >>> count(True, "k", 0)
    Traceback (most recent call last):
    TypeError: k must be an integer, got bool
    >>> count(0, "threads", 1)
    Traceback (most recent call last):
    ValueError: threads must be >= 1, got 0
    """
    if isinstance(value, (bool, float)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {number}")
    return number
