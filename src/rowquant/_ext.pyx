# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, autotestdict=False
"""Thin glue between typed memoryviews and the C kernels in csrc/.

The Python layer (_api.py) has already checked dtypes, shapes and strides: every 2-D array here
has contiguous rows (unit stride along a row) and every output has the right shape. Each function
makes one kernel call with the GIL released and returns what the kernel reported; exceptions are
raised by the caller. Pointers are taken with ``&a[0, 0]`` under boundscheck=False, which is the
data pointer even for empty arrays; kernels never dereference it then.
"""
cimport cython
from libc.stdint cimport int64_t, uint8_t, uintptr_t


cdef extern from "rowquant.h" nogil:
    int RQ_OK
    int rq_quantize_rows(const float *values, int64_t n_rows, int64_t dim, int64_t values_stride,
                         uint8_t *codes, int64_t codes_stride, float *scales,
                         int n_threads, int64_t *bad)
    int rq_dequantize(const uint8_t *codes, const float *scales, int64_t n_rows, int64_t dim,
                      int64_t codes_stride, float *out, int64_t out_stride, int n_threads)
    int rq_take(const uint8_t *codes, const float *scales, int64_t n_rows, int64_t dim,
                int64_t codes_stride, const int64_t *ids, int64_t n_ids,
                float *out, int64_t out_stride, int n_threads, int64_t *bad)
    int rq_bag(const uint8_t *codes, const float *scales, int64_t n_rows, int64_t dim,
               int64_t codes_stride, const int64_t *ids, int64_t n_ids,
               const int64_t *bounds, int64_t n_bags, const float *weights,
               int mode, int64_t padding_idx,
               float *out, int64_t out_stride, int n_threads, int64_t *bad)
    int rq_simd_select(const char *name)
    const char *rq_simd_name()
    int rq_simd_available(const char *name)
    int RQ_SIMD_UNKNOWN


SIMD_NAMES = ("scalar", "avx2", "avx512")


def simd_select(name):
    """Use the named kernels ("scalar", "avx2", "avx512"), or the best available for None.
    Returns 0 on success, else a nonzero status (unknown name, or not runnable here)."""
    if name is None:
        return rq_simd_select(NULL)
    cdef bytes encoded = name.encode("ascii")
    return rq_simd_select(encoded)


def simd_name():
    """The name of the kernels in use."""
    return rq_simd_name().decode("ascii")


def simd_available(name):
    """Whether this processor runs the named kernels (and they pass the self-check)."""
    return bool(rq_simd_available(name.encode("ascii")))


def quantize_rows(const float[:, :] values, uint8_t[:, :] codes, float[::1] scales,
                  int n_threads):
    """Quantize into codes and scales; -1, or the flat index of the first NaN or inf."""
    cdef int64_t bad = -1
    cdef int status
    with nogil:
        status = rq_quantize_rows(&values[0, 0], values.shape[0], values.shape[1],
                                  values.strides[0] // sizeof(float),
                                  &codes[0, 0], codes.strides[0], &scales[0], n_threads, &bad)
    return -1 if status == RQ_OK else bad


def dequantize(const uint8_t[:, :] codes, const float[::1] scales, float[:, ::1] out,
               int n_threads):
    """Dequantize every row of codes into out."""
    with nogil:
        rq_dequantize(&codes[0, 0], &scales[0], codes.shape[0], codes.shape[1], codes.strides[0],
                      &out[0, 0], out.shape[1], n_threads)


def take(const uint8_t[:, :] codes, const float[::1] scales, const int64_t[::1] ids,
         float[:, ::1] out, int n_threads):
    """Dequantize rows ids into out; -1, or the position of the first id out of range."""
    cdef int64_t bad = -1
    cdef int status
    with nogil:
        status = rq_take(&codes[0, 0], &scales[0], codes.shape[0], codes.shape[1],
                         codes.strides[0], &ids[0], ids.shape[0], &out[0, 0], out.shape[1],
                         n_threads, &bad)
    return -1 if status == RQ_OK else bad


def bag(const uint8_t[:, :] codes, const float[::1] scales, const int64_t[::1] ids,
        const int64_t[::1] bounds, const float[::1] weights, int mode, int64_t padding_idx,
        float[:, ::1] out, int n_threads):
    """Pool ids into bags; -1, or the position of the first id out of range."""
    cdef int64_t bad = -1
    cdef int status
    cdef const float *weights_ptr = NULL
    if weights is not None:
        weights_ptr = &weights[0]
    with nogil:
        status = rq_bag(&codes[0, 0], &scales[0], codes.shape[0], codes.shape[1],
                        codes.strides[0], &ids[0], ids.shape[0], &bounds[0],
                        bounds.shape[0] - 1, weights_ptr, mode, padding_idx,
                        &out[0, 0], out.shape[1], n_threads, &bad)
    return -1 if status == RQ_OK else bad


import numpy as _np

_FLOAT32 = _np.dtype(_np.float32)
_INT64 = _np.dtype(_np.int64)  # native byte order


@cython.auto_pickle(False)
cdef class Table:
    """A quantized table's arrays held as typed memoryviews, so that a lookup from Python pays
    for acquiring only its ids and output: the serving fast path of QuantizedEmbedding."""

    cdef const uint8_t[:, :] codes
    cdef const float[::1] scales

    def __init__(self, const uint8_t[:, :] codes, const float[::1] scales):
        self.codes = codes
        self.scales = scales

    def take(self, ids, int n_threads):
        """Rows ids (a C-contiguous 1-D int64 ndarray) into a new (len(ids), D) float32 array.
        Returns (out, -1), (None, position of the first id out of range), or None when ids is
        not such an array, or not aligned (the caller then takes the general path, which
        checks and converts everything else: None, lists, other buffers, record dtypes)."""
        if type(ids) is not _np.ndarray or (<object>ids).dtype != _INT64:
            return None
        cdef const int64_t[::1] id_view
        try:
            id_view = ids
        except (ValueError, TypeError, BufferError):
            return None
        cdef int64_t n_ids = id_view.shape[0], dim = self.codes.shape[1], bad = -1
        if n_ids and <uintptr_t>&id_view[0] % sizeof(int64_t):
            return None  # misaligned ids: the general path makes an aligned copy
        out = _np.empty((n_ids, dim), dtype=_FLOAT32)
        cdef float[:, ::1] out_view = out
        cdef int status
        with nogil:
            status = rq_take(&self.codes[0, 0], &self.scales[0], self.codes.shape[0], dim,
                             self.codes.strides[0], &id_view[0], n_ids, &out_view[0, 0], dim,
                             n_threads, &bad)
        return (out, -1) if status == RQ_OK else (None, bad)
