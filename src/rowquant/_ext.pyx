# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, autotestdict=False
"""Thin glue between typed memoryviews and the C kernels in csrc/: the compiled backend behind
rowquant._backend, with the same functions as its numpy twin, rowquant._numpy_backend.

The Python layer (_api.py) checks dtypes, shapes and values and converts what needs converting.
The glue still refuses, with ValueError, any array the kernels cannot read as it is (rows that
are not contiguous, a row stride that is not a whole number of items, data off its items'
alignment), rather than trusting its callers. Each function makes one kernel call with the GIL
released and returns what the kernel reported (-1, or the position of the first bad element);
the caller raises the errors. Pointers are taken with ``&a[0, 0]`` under boundscheck=False,
which is the data pointer even for empty arrays; kernels never dereference it then.
"""
cimport cython
from libc.stdint cimport int64_t, uint8_t, uintptr_t


cdef extern from "rowquant.h" nogil:
    int RQ_OK
    int RQ_BAG_SUM
    int RQ_BAG_MEAN
    int RQ_BAG_MAX
    int RQ_BIAS
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
    int rq_simd_count()
    const char *rq_simd_variant(int index)
    int RQ_SIMD_UNKNOWN


# The code of 0 the kernels use (rowquant._scheme describes it for Python; a test compares).
BIAS = RQ_BIAS
# The bag modes by number, from the C enum: the Python layer maps names to these.
BAG_MODES = {"sum": RQ_BAG_SUM, "mean": RQ_BAG_MEAN, "max": RQ_BAG_MAX}
# The kernel variants compiled in, slowest first, as csrc/dispatch.c lists them.
SIMD_NAMES = tuple(rq_simd_variant(i).decode("ascii") for i in range(rq_simd_count()))


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


cdef int64_t check_rows(str name, const void *data, Py_ssize_t n_rows, Py_ssize_t dim,
                        Py_ssize_t row_stride, Py_ssize_t item_stride,
                        Py_ssize_t itemsize) except? -1:
    """The row stride of a 2-D array in items, after checking that the kernels can read it:
    unit stride along rows, a row stride of whole items (negative for rows in reverse order,
    which the kernels follow as they are), aligned data."""
    if n_rows == 0 or dim == 0:
        return dim
    if dim > 1 and item_stride != itemsize:
        raise ValueError(f"{name} must have contiguous rows (stride {item_stride} along a row)")
    if n_rows > 1 and row_stride % itemsize:
        raise ValueError(f"{name} has a row stride of {row_stride} bytes, not whole items")
    if <uintptr_t>data % itemsize:
        raise ValueError(f"{name} is not aligned to its {itemsize}-byte items")
    return row_stride // itemsize if n_rows > 1 else dim


cdef int check_aligned(str name, const void *data, Py_ssize_t size, Py_ssize_t itemsize) except -1:
    if size and <uintptr_t>data % itemsize:
        raise ValueError(f"{name} is not aligned to its {itemsize}-byte items")
    return 0


def quantize_rows(const float[:, :] values not None, uint8_t[:, :] codes not None,
                  float[::1] scales not None, int n_threads):
    """Quantize into codes and scales; -1, or the flat index of the first NaN or inf."""
    cdef int64_t values_stride = check_rows(
        "values", &values[0, 0], values.shape[0], values.shape[1], values.strides[0],
        values.strides[1], sizeof(float))
    cdef int64_t codes_stride = check_rows(
        "codes", &codes[0, 0], codes.shape[0], codes.shape[1], codes.strides[0],
        codes.strides[1], 1)
    check_aligned("scales", &scales[0], scales.shape[0], sizeof(float))
    if codes.shape[0] != values.shape[0] or codes.shape[1] != values.shape[1] or (
            scales.shape[0] != values.shape[0]):
        raise ValueError("codes and scales must match the shape of values")
    cdef int64_t bad = -1
    cdef int status
    with nogil:
        status = rq_quantize_rows(&values[0, 0], values.shape[0], values.shape[1], values_stride,
                                  &codes[0, 0], codes_stride, &scales[0], n_threads, &bad)
    return -1 if status == RQ_OK else bad


cdef int64_t check_table(const uint8_t[:, :] codes, const float[::1] scales) except? -1:
    """The row stride of checked codes, and scales that match them."""
    if scales.shape[0] != codes.shape[0]:
        raise ValueError("scales must have one entry per row of codes")
    check_aligned("scales", &scales[0], scales.shape[0], sizeof(float))
    return check_rows("codes", &codes[0, 0], codes.shape[0], codes.shape[1], codes.strides[0],
                      codes.strides[1], 1)


cdef int check_out(float[:, ::1] out, Py_ssize_t n_rows, Py_ssize_t dim) except -1:
    if out.shape[0] != n_rows or out.shape[1] != dim:
        raise ValueError(f"out must have shape ({n_rows}, {dim})")
    return check_aligned("out", &out[0, 0], out.shape[0] * out.shape[1], sizeof(float))


def dequantize(const uint8_t[:, :] codes not None, const float[::1] scales not None,
               float[:, ::1] out not None, int n_threads):
    """Dequantize every row of codes into out."""
    cdef int64_t codes_stride = check_table(codes, scales)
    check_out(out, codes.shape[0], codes.shape[1])
    with nogil:
        rq_dequantize(&codes[0, 0], &scales[0], codes.shape[0], codes.shape[1], codes_stride,
                      &out[0, 0], out.shape[1], n_threads)


def take(const uint8_t[:, :] codes not None, const float[::1] scales not None,
         const int64_t[::1] ids not None, float[:, ::1] out not None, int n_threads):
    """Dequantize rows ids into out; -1, or the position of the first id out of range."""
    cdef int64_t codes_stride = check_table(codes, scales)
    check_aligned("ids", &ids[0], ids.shape[0], sizeof(int64_t))
    check_out(out, ids.shape[0], codes.shape[1])
    cdef int64_t bad = -1
    cdef int status
    with nogil:
        status = rq_take(&codes[0, 0], &scales[0], codes.shape[0], codes.shape[1],
                         codes_stride, &ids[0], ids.shape[0], &out[0, 0], out.shape[1],
                         n_threads, &bad)
    return -1 if status == RQ_OK else bad


def bag(const uint8_t[:, :] codes not None, const float[::1] scales not None,
        const int64_t[::1] ids not None, const int64_t[::1] bounds not None,
        const float[::1] weights, int mode, int64_t padding_idx, float[:, ::1] out not None,
        int n_threads):
    """Pool ids into bags; -1, or the position of the first id out of range."""
    cdef int64_t codes_stride = check_table(codes, scales)
    check_aligned("ids", &ids[0], ids.shape[0], sizeof(int64_t))
    check_aligned("bounds", &bounds[0], bounds.shape[0], sizeof(int64_t))
    if bounds.shape[0] < 1:
        raise ValueError("bounds must hold at least one entry")
    check_out(out, bounds.shape[0] - 1, codes.shape[1])
    if mode != RQ_BAG_SUM and mode != RQ_BAG_MEAN and mode != RQ_BAG_MAX:
        raise ValueError(f"unknown bag mode {mode}")
    cdef int64_t bad = -1
    cdef int status
    cdef const float *weights_ptr = NULL
    if weights is not None:
        if weights.shape[0] != ids.shape[0]:
            raise ValueError("weights must have one entry per id")
        check_aligned("weights", &weights[0], weights.shape[0], sizeof(float))
        weights_ptr = &weights[0]
    with nogil:
        status = rq_bag(&codes[0, 0], &scales[0], codes.shape[0], codes.shape[1],
                        codes_stride, &ids[0], ids.shape[0], &bounds[0],
                        bounds.shape[0] - 1, weights_ptr, mode, padding_idx,
                        &out[0, 0], out.shape[1], n_threads, &bad)
    return -1 if status == RQ_OK else bad


@cython.auto_pickle(False)
cdef class Table:
    """A quantized table's arrays held as checked typed memoryviews, so that a lookup from
    Python pays for acquiring only its ids and output: the serving fast path of
    QuantizedEmbedding."""

    cdef const uint8_t[:, :] codes
    cdef const float[::1] scales
    cdef int64_t codes_stride

    def __init__(self, const uint8_t[:, :] codes not None, const float[::1] scales not None):
        self.codes_stride = check_table(codes, scales)
        self.codes = codes
        self.scales = scales

    def take(self, const int64_t[::1] ids not None, float[:, ::1] out not None, int n_threads):
        """take() on the held arrays: rows ids into out; -1, or the position of the first id
        out of range."""
        check_aligned("ids", &ids[0], ids.shape[0], sizeof(int64_t))
        check_out(out, ids.shape[0], self.codes.shape[1])
        cdef int64_t bad = -1
        cdef int status
        with nogil:
            status = rq_take(&self.codes[0, 0], &self.scales[0], self.codes.shape[0],
                             self.codes.shape[1], self.codes_stride, &ids[0], ids.shape[0],
                             &out[0, 0], out.shape[1], n_threads, &bad)
        return -1 if status == RQ_OK else bad
