"""The one seam between the Python API and the code that computes: the compiled extension
(``rowquant._ext``), or its numpy twin (``rowquant._numpy_backend``), chosen once at import.

Both modules have the same functions with the same signatures and status returns, so the
public functions (:mod:`rowquant._api`, :class:`rowquant.QuantizedEmbedding`) validate their
arguments once and then call ``_backend.kernels.<function>`` without knowing which one runs.
The numpy backend runs when ``ROWQUANT_PUREPYTHON=1`` is set at import, or when the extension
cannot be imported. Tests compare the two in one process with :func:`using`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

from . import _numpy_backend


def _load() -> tuple[ModuleType, str | None]:
    """The compiled kernels, or the numpy backend with the reason it is in use."""
    if os.environ.get("ROWQUANT_PUREPYTHON", "").strip() not in ("", "0"):
        return _numpy_backend, "ROWQUANT_PUREPYTHON is set"
    try:
        from . import _ext
    except ImportError as error:  # not built: the package still works, on numpy
        return _numpy_backend, f"the C extension could not be imported ({error})"
    return _ext, None


kernels, fallback_reason = _load()
_compiled: ModuleType | None = kernels if kernels is not _numpy_backend else None


def name() -> str:
    """``"c"`` or ``"numpy"``: which backend the calls go to now."""
    return "numpy" if kernels is _numpy_backend else "c"


def compiled_available() -> bool:
    """Whether the extension was imported (it may still be switched off by :func:`using`)."""
    return _compiled is not None


@contextlib.contextmanager
def using(backend: str) -> Iterator[None]:
    """Send every call to ``"c"`` or ``"numpy"`` inside the block, for tests that compare the
    two. Tables made inside the block keep the backend they were made with. Not for use while
    other threads call rowquant."""
    global kernels
    if backend not in ("c", "numpy"):
        raise ValueError(f"backend must be 'c' or 'numpy', got {backend!r}")
    if backend == "c" and _compiled is None:
        raise RuntimeError(f"the C backend is not available: {fallback_reason}")
    saved = kernels
    kernels = _numpy_backend if backend == "numpy" or _compiled is None else _compiled
    try:
        yield
    finally:
        kernels = saved


def simd_paths() -> list[str]:
    """The kernel variants this processor runs, slowest first (empty on numpy)."""
    return [path for path in kernels.SIMD_NAMES if kernels.simd_available(path)]


def use_simd(path: str | None) -> str:
    """Run the kernels of one instruction set (``"scalar"``, ``"avx2"``, ``"avx512"``,
    ``"avx512vnni"``), or the best this processor has for None; returns the name in use. For tests and benchmarks: not
    while other threads call rowquant."""
    if kernels is _numpy_backend:
        raise RuntimeError("the numpy backend has no SIMD kernels to choose from")
    if path is not None and path not in kernels.SIMD_NAMES:
        raise ValueError(f"unknown SIMD path {path!r}; choose from {', '.join(kernels.SIMD_NAMES)}")
    if kernels.simd_select(path) != 0:
        raise ValueError(
            f"this processor cannot run the {path} kernels; available: {', '.join(simd_paths())}"
        )
    in_use: str = kernels.simd_name()
    return in_use


def _select_simd_from_environment() -> None:
    """Choose the kernels once, at import, before any thread can call them."""
    if kernels is _numpy_backend:
        return
    requested = os.environ.get("ROWQUANT_SIMD", "").strip().lower()
    if requested not in ("", "auto", "best"):
        try:
            use_simd(requested)
            return
        except ValueError as error:
            warnings.warn(
                f"ignoring ROWQUANT_SIMD={requested!r}: {error}", RuntimeWarning, stacklevel=3
            )
    use_simd(None)


_select_simd_from_environment()
