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

Table, at the end, is QuantizedEmbedding's serving path: it serves the calls the kernels can
take as they are, reading arrays through numpy's C API, and declines (returns None) every other,
which then takes the checked path above.
"""
cimport cython
cimport numpy as cnp
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.limits cimport INT_MAX
from libc.stdint cimport int8_t, int64_t, uint8_t, uint16_t, uintptr_t
from libc.stdlib cimport free, malloc

import numpy as np

cnp.import_array()


cdef extern from "rowquant.h" nogil:
    int RQ_OK
    int RQ_BAG_SUM
    int RQ_BAG_MEAN
    int RQ_BAG_MAX
    int RQ_BIAS
    int RQ_SCALE_F32
    int RQ_SCALE_BF16
    int RQ_SCALE_F16
    int rq_quantize_rows(const float *values, int64_t n_rows, int64_t dim, int64_t values_stride,
                         uint8_t *codes, int64_t codes_stride, float *scales,
                         int n_threads, int64_t *bad)
    int rq_dequantize(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows, int64_t dim,
                      int64_t codes_stride, float *out, int64_t out_stride, int n_threads)
    int rq_take(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows, int64_t dim,
                int64_t codes_stride, const int64_t *ids, int64_t n_ids,
                float *out, int64_t out_stride, int n_threads, int64_t *bad)
    int rq_bag(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows, int64_t dim,
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
    int RQ_DOT_EXACT
    int RQ_DOT_FAST
    int rq_scores(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows, int64_t dim,
                  int64_t codes_stride, const void *queries, int64_t n_queries, int precision,
                  const double *inverse_norms, const double *query_factors, float *out,
                  int64_t out_stride, int64_t k, float *top_scores, int64_t *top_ids,
                  int n_threads)
    int rq_norms(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows, int64_t dim,
                 int64_t codes_stride, float *out, int n_threads)

cdef extern from "nbit.h" nogil:
    int rq_nbit_dequantize(const uint8_t *codes, int64_t codes_stride, const uint8_t *scales,
                           const uint8_t *biases, int64_t param_stride, int64_t n_rows,
                           int bits, int64_t dim, float *out, int64_t out_stride, int n_threads)
    int rq_nbit_take(const uint8_t *codes, int64_t codes_stride, const uint8_t *scales,
                     const uint8_t *biases, int64_t param_stride, int64_t n_rows, int bits,
                     int64_t dim, const int64_t *ids, int64_t n_ids, float *out,
                     int64_t out_stride, int n_threads, int64_t *bad)
    int rq_nbit_bag(const uint8_t *codes, int64_t codes_stride, const uint8_t *scales,
                    const uint8_t *biases, int64_t param_stride, int64_t n_rows, int bits,
                    int64_t dim,
                    const int64_t *ids, int64_t n_ids, const int64_t *bounds, int64_t n_bags,
                    const float *weights, int mode, int64_t padding_idx, float *out,
                    int64_t out_stride, int n_threads, int64_t *bad)
    const char *rq_nbit_kernel_name()

# The code of 0 the kernels use (rowquant._scheme describes it for Python; a test compares).
BIAS = RQ_BIAS
# The bag modes by number, from the C enum: the Python layer maps names to these.
BAG_MODES = {"sum": RQ_BAG_SUM, "mean": RQ_BAG_MEAN, "max": RQ_BAG_MAX}
# The precisions of similarity scores by number, from the C enum.
DOT_PRECISIONS = {"exact": RQ_DOT_EXACT, "fast": RQ_DOT_FAST}
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


cdef struct Scales:
    # a table's scales as the kernels read them: the data and its rq_scale_format
    const void *data
    int format
    Py_ssize_t size
    Py_ssize_t itemsize


cdef Scales scale_data(object scales) except *:
    """The data of contiguous scales: float32, float16, or uint16 holding bfloat16 bits (the
    top halves of float32 values, as CLD3 stores them). The caller keeps scales alive."""
    cdef const float[::1] wide
    cdef const uint16_t[::1] narrow
    cdef Scales found
    if isinstance(scales, np.ndarray) and scales.dtype == np.float16:
        narrow = scales.view(np.uint16)
        found.format = RQ_SCALE_F16
    elif isinstance(scales, np.ndarray) and scales.dtype == np.uint16:
        narrow = scales
        found.format = RQ_SCALE_BF16
    else:
        wide = scales
        found.data, found.format, found.size, found.itemsize = &wide[0], RQ_SCALE_F32, wide.shape[0], 4
        check_aligned("scales", found.data, found.size, 4)
        return found
    found.data, found.size, found.itemsize = &narrow[0], narrow.shape[0], 2
    check_aligned("scales", found.data, found.size, 2)
    return found


cdef int64_t check_table(const uint8_t[:, :] codes, object scales, Scales *found) except? -1:
    """The row stride of checked codes, and (into found) scales that match them."""
    if scales is None:
        raise TypeError("scales must be an array, not None")
    found[0] = scale_data(scales)
    if found.size != codes.shape[0]:
        raise ValueError("scales must have one entry per row of codes")
    return check_rows("codes", &codes[0, 0], codes.shape[0], codes.shape[1], codes.strides[0],
                      codes.strides[1], 1)


cdef int check_out(float[:, ::1] out, Py_ssize_t n_rows, Py_ssize_t dim) except -1:
    if out.shape[0] != n_rows or out.shape[1] != dim:
        raise ValueError(f"out must have shape ({n_rows}, {dim})")
    return check_aligned("out", &out[0, 0], out.shape[0] * out.shape[1], sizeof(float))


def dequantize(const uint8_t[:, :] codes not None, scales,
               float[:, ::1] out not None, int n_threads):
    """Dequantize every row of codes into out."""
    cdef Scales sc
    cdef int64_t codes_stride = check_table(codes, scales, &sc)
    check_out(out, codes.shape[0], codes.shape[1])
    with nogil:
        rq_dequantize(&codes[0, 0], sc.data, sc.format, codes.shape[0], codes.shape[1],
                      codes_stride, &out[0, 0], out.shape[1], n_threads)


def take(const uint8_t[:, :] codes not None, scales,
         const int64_t[::1] ids not None, float[:, ::1] out not None, int n_threads):
    """Dequantize rows ids into out; -1, or the position of the first id out of range."""
    cdef Scales sc
    cdef int64_t codes_stride = check_table(codes, scales, &sc)
    check_aligned("ids", &ids[0], ids.shape[0], sizeof(int64_t))
    check_out(out, ids.shape[0], codes.shape[1])
    cdef int64_t bad = -1
    cdef int status
    with nogil:
        status = rq_take(&codes[0, 0], sc.data, sc.format, codes.shape[0], codes.shape[1],
                         codes_stride, &ids[0], ids.shape[0], &out[0, 0], out.shape[1],
                         n_threads, &bad)
    return -1 if status == RQ_OK else bad


def bag(const uint8_t[:, :] codes not None, scales,
        const int64_t[::1] ids not None, const int64_t[::1] bounds not None,
        const float[::1] weights, int mode, int64_t padding_idx, float[:, ::1] out not None,
        int n_threads):
    """Pool ids into bags; -1, or the position of the first id out of range."""
    cdef Scales sc
    cdef int64_t codes_stride = check_table(codes, scales, &sc)
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
        status = rq_bag(&codes[0, 0], sc.data, sc.format, codes.shape[0], codes.shape[1],
                        codes_stride, &ids[0], ids.shape[0], &bounds[0],
                        bounds.shape[0] - 1, weights_ptr, mode, padding_idx,
                        &out[0, 0], out.shape[1], n_threads, &bad)
    return -1 if status == RQ_OK else bad



cdef const void *query_pointer(object queries, int precision, Py_ssize_t n_queries,
                               Py_ssize_t dim) except NULL:
    """The queries' data: float32 (exact) or int8 (fast) rows of dim values, back to back."""
    cdef const float[:, ::1] floats
    cdef const int8_t[:, ::1] small
    cdef Py_ssize_t rows, width
    cdef const void *pointer
    if precision == RQ_DOT_EXACT:
        floats = queries
        rows, width = floats.shape[0], floats.shape[1]
        pointer = <const void *>&floats[0, 0]
    elif precision == RQ_DOT_FAST:
        small = queries
        rows, width = small.shape[0], small.shape[1]
        pointer = <const void *>&small[0, 0]
    else:
        raise ValueError(f"unknown precision {precision}")
    if rows != n_queries or width != dim:
        raise ValueError(f"queries must have shape ({n_queries}, {dim})")
    return pointer


cdef const double *row_values(const double[::1] values, Py_ssize_t n_rows) except? NULL:
    """The data of one float64 per row (the rows' inverse norms), or NULL for None."""
    if values is None:
        return NULL
    if values.shape[0] != n_rows:
        raise ValueError("inverse_norms must have one entry per row")
    return &values[0]


def scores(const uint8_t[:, :] codes not None, scales, queries,
           int precision, const double[::1] inverse_norms,
           const double[::1] query_factors not None, float[:, ::1] out not None, int n_threads):
    """Scores of the queries (float32 for exact, int8 for fast) against every row, into out
    (B, N)."""
    cdef Scales sc
    cdef int64_t codes_stride = check_table(codes, scales, &sc)
    cdef Py_ssize_t n_queries = query_factors.shape[0]
    cdef const void *data = query_pointer(queries, precision, n_queries, codes.shape[1])
    check_out(out, n_queries, codes.shape[0])
    cdef const double *inverse = row_values(inverse_norms, codes.shape[0])
    with nogil:
        rq_scores(&codes[0, 0], sc.data, sc.format, codes.shape[0], codes.shape[1], codes_stride, data,
                  n_queries, precision, inverse, &query_factors[0], &out[0, 0], out.shape[1], 0,
                  NULL, NULL, n_threads)


def top_k(const uint8_t[:, :] codes not None, scales, queries,
          int precision, const double[::1] inverse_norms,
          const double[::1] query_factors not None, float[:, :, ::1] top_scores not None,
          int64_t[:, :, ::1] top_ids not None, int n_threads):
    """Each thread's k best rows per query (unsorted; (-inf, -1) where it has none) into
    top_scores and top_ids (threads, B, k), for the caller to merge."""
    cdef Scales sc
    cdef int64_t codes_stride = check_table(codes, scales, &sc)
    cdef Py_ssize_t n_queries = query_factors.shape[0]
    cdef const void *data = query_pointer(queries, precision, n_queries, codes.shape[1])
    cdef Py_ssize_t members = top_scores.shape[0], k = top_scores.shape[2]
    if (top_scores.shape[1] != n_queries or top_ids.shape[0] != members
            or top_ids.shape[1] != n_queries or top_ids.shape[2] != k or members < 1):
        raise ValueError("top_scores and top_ids must have shape (threads, queries, k)")
    if n_threads > members:
        raise ValueError(f"room for {members} threads, {n_threads} asked")
    cdef const double *inverse = row_values(inverse_norms, codes.shape[0])
    with nogil:
        rq_scores(&codes[0, 0], sc.data, sc.format, codes.shape[0], codes.shape[1], codes_stride, data,
                  n_queries, precision, inverse, &query_factors[0], NULL, 0, k,
                  &top_scores[0, 0, 0], &top_ids[0, 0, 0], n_threads)


def norms(const uint8_t[:, :] codes not None, scales,
          float[::1] out not None, int n_threads):
    """The norm of every dequantized row, into out (N,)."""
    cdef Scales sc
    cdef int64_t codes_stride = check_table(codes, scales, &sc)
    if out.shape[0] != codes.shape[0]:
        raise ValueError("out must have one entry per row")
    with nogil:
        rq_norms(&codes[0, 0], sc.data, sc.format, codes.shape[0], codes.shape[1], codes_stride,
                 &out[0], n_threads)

# ----------------------------------------------------------------------------- the serving path
#
# QuantizedEmbedding's lookups, called once per request, cost more in Python than in the
# kernels when they pass through the checked path above: typed memoryviews (a buffer request
# per array), np.empty, flags objects, np.may_share_memory. A Table holds its arrays' pointers
# and byte extents, and serves the calls that the kernels can take as they are straight from
# the numpy C API, deciding each condition with a type number, a flag or a pointer compare.
# Any other call it declines, having written nothing, and the caller takes the checked path,
# which converts what it may and raises what it must: so every error, message and conversion
# stays the checked path's, and this path only has to be right in what it accepts.

# ids, offsets, weights: read as they are; out: written as it is
cdef int READABLE = cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED
cdef int WRITABLE = READABLE | cnp.NPY_ARRAY_WRITEABLE


cdef struct Extent:
    # the bytes [begin, end) that an array spans, from its lowest item to its highest
    uintptr_t begin
    uintptr_t end


cdef Extent NOTHING = Extent(0, 0)


cdef inline bint disjoint(Extent a, Extent b) noexcept nogil:
    """Whether two arrays share no byte, by the test np.may_share_memory makes (their extents;
    an empty array shares nothing)."""
    return a.begin >= a.end or b.begin >= b.end or a.end <= b.begin or b.end <= a.begin


cdef Extent view_extent(const void *data, Py_ssize_t ndim, Py_ssize_t *shape,
                        Py_ssize_t *strides, Py_ssize_t itemsize) noexcept:
    """The extent of any strided array, rows in reverse order included."""
    cdef Extent extent = Extent(<uintptr_t>data, <uintptr_t>data)
    cdef Py_ssize_t axis, span
    for axis in range(ndim):
        if shape[axis] == 0:
            return extent
    for axis in range(ndim):
        span = (shape[axis] - 1) * strides[axis]
        if span < 0:
            extent.begin -= <uintptr_t>(-span)
        else:
            extent.end += <uintptr_t>span
    extent.end += <uintptr_t>itemsize
    return extent


cdef inline Extent contiguous_extent(cnp.ndarray array) noexcept:
    cdef uintptr_t begin = <uintptr_t>cnp.PyArray_DATA(array)
    return Extent(begin, begin + <uintptr_t>cnp.PyArray_NBYTES(array))


cdef inline bint is_int64(object value, int ndim) noexcept:
    """An ndarray (not a subclass) of native int64, C-contiguous and aligned, of ndim axes."""
    if not cnp.PyArray_CheckExact(value):
        return False
    cdef cnp.ndarray array = <cnp.ndarray>value
    return (cnp.PyArray_NDIM(array) == ndim
            and cnp.PyArray_FLAGS(array) & READABLE == READABLE
            and cnp.PyArray_ISSIGNED(array) and cnp.PyArray_ITEMSIZE(array) == 8
            and cnp.PyArray_ISNOTSWAPPED(array))


cdef inline bint is_float32(object value, int flags) noexcept:
    """An ndarray (not a subclass) of native float32 with the flags."""
    if not cnp.PyArray_CheckExact(value):
        return False
    cdef cnp.ndarray array = <cnp.ndarray>value
    return (cnp.PyArray_TYPE(array) == cnp.NPY_FLOAT
            and cnp.PyArray_FLAGS(array) & flags == flags
            and cnp.PyArray_ISNOTSWAPPED(array))


cdef int call_threads(object threads, object default_threads) except -1:
    """The thread count of one call: the library default for None, the count for an int in
    [1, 2**31 - 1]; 0 for anything else, which the checked path refuses with its message."""
    cdef int overflow = 0
    cdef long long count
    if threads is None:
        return default_threads()
    if type(threads) is not int:
        return 0
    count = PyLong_AsLongLongAndOverflow(threads, &overflow)
    if overflow or count < 1 or count > INT_MAX:
        return 0
    return <int>count


cdef int64_t row_or_none(object padding_idx, int64_t n_rows) except? -3:
    """padding_idx as a row in [0, n_rows), -1 for None (the kernels' "none"); -2 for anything
    else, which the checked path refuses (or, for numpy integers, converts)."""
    cdef int overflow = 0
    cdef long long row
    if padding_idx is None:
        return -1
    if type(padding_idx) is not int:
        return -2
    row = PyLong_AsLongLongAndOverflow(padding_idx, &overflow)
    if overflow or not -n_rows <= row < n_rows:
        return -2
    return row + n_rows if row < 0 else row


@cython.auto_pickle(False)
cdef class Table:
    """A quantized table's arrays, checked once, serving QuantizedEmbedding's lookups at the
    least cost per call (see above). Each method returns its float32 result (``out`` when
    given), or None when the call is not one it serves; then nothing has been written."""

    cdef const uint8_t[:, :] codes_view  # hold the buffers the pointers below point into
    cdef object scales_array
    cdef const uint8_t *codes
    cdef const void *scales
    cdef int scale_format
    cdef int64_t n_rows, dim, codes_stride
    cdef Extent codes_extent, scales_extent
    cdef object default_threads

    def __init__(self, const uint8_t[:, :] codes not None, scales not None,
                 default_threads not None):
        cdef Scales sc
        self.codes_stride = check_table(codes, scales, &sc)
        self.codes_view = codes
        self.scales_array = scales
        self.codes = &codes[0, 0]
        self.scales = sc.data
        self.scale_format = sc.format
        self.n_rows = codes.shape[0]
        self.dim = codes.shape[1]
        self.codes_extent = view_extent(self.codes, 2, codes.shape, codes.strides, 1)
        cdef Py_ssize_t scale_shape[1]
        cdef Py_ssize_t scale_strides[1]
        scale_shape[0] = sc.size
        scale_strides[0] = sc.itemsize
        self.scales_extent = view_extent(self.scales, 1, scale_shape, scale_strides, sc.itemsize)
        self.default_threads = default_threads

    cdef object output(self, object out, cnp.npy_intp n_rows, Extent first, Extent second,
                       Extent third):
        """out if it is a float32 (n_rows, dim) array the kernels can write as it is, sharing
        no byte with the table or the three inputs; a new array for None; else None."""
        cdef cnp.npy_intp shape[2]
        if out is None:
            shape[0] = n_rows
            shape[1] = self.dim
            return cnp.PyArray_SimpleNew(2, shape, cnp.NPY_FLOAT)
        if not is_float32(out, WRITABLE):
            return None
        cdef cnp.ndarray array = <cnp.ndarray>out
        if (cnp.PyArray_NDIM(array) != 2 or cnp.PyArray_DIM(array, 0) != n_rows
                or cnp.PyArray_DIM(array, 1) != self.dim):
            return None
        cdef Extent written = contiguous_extent(array)
        if not (disjoint(written, self.codes_extent) and disjoint(written, self.scales_extent)
                and disjoint(written, first) and disjoint(written, second)
                and disjoint(written, third)):
            return None
        return out

    def take(self, ids, out, threads):
        """rows ids (a C-contiguous, aligned 1-D int64 ndarray), into out: the result, or None
        (also for an id out of range, the checked path then naming it)."""
        if not is_int64(ids, 1):
            return None
        cdef int n_threads = call_threads(threads, self.default_threads)
        if n_threads == 0:
            return None
        cdef cnp.ndarray id_array = <cnp.ndarray>ids
        cdef int64_t n_ids = cnp.PyArray_DIM(id_array, 0)
        out = self.output(out, n_ids, contiguous_extent(id_array), NOTHING, NOTHING)
        if out is None:
            return None
        cdef const int64_t *id_data = <const int64_t *>cnp.PyArray_DATA(id_array)
        cdef float *out_data = <float *>cnp.PyArray_DATA(<cnp.ndarray>out)
        cdef int64_t bad = -1
        cdef int status
        with nogil:
            status = rq_take(self.codes, self.scales, self.scale_format, self.n_rows, self.dim,
                             self.codes_stride, id_data, n_ids, out_data, self.dim, n_threads,
                             &bad)
        return out if status == RQ_OK else None

    def dequantize(self, out, threads):
        """the whole table, into out: the result, or None."""
        cdef int n_threads = call_threads(threads, self.default_threads)
        if n_threads == 0:
            return None
        out = self.output(out, self.n_rows, NOTHING, NOTHING, NOTHING)
        if out is None:
            return None
        cdef float *out_data = <float *>cnp.PyArray_DATA(<cnp.ndarray>out)
        with nogil:
            rq_dequantize(self.codes, self.scales, self.scale_format, self.n_rows, self.dim,
                          self.codes_stride, out_data, self.dim, n_threads)
        return out

    def bag(self, ids, offsets, lengths, weights, mode, include_last_offset, padding_idx, out,
            threads):
        """bags of ids, 2-D (bags, length) or 1-D with int64 offsets (C-contiguous, aligned,
        1-D, valid), optional float32 weights of the shape of ids (mode "sum"), into out: the
        result, or None (also for an id out of range)."""
        cdef int mode_number
        if type(mode) is not str:
            return None
        if mode == "sum":
            mode_number = RQ_BAG_SUM
        elif mode == "mean":
            mode_number = RQ_BAG_MEAN
        elif mode == "max":
            mode_number = RQ_BAG_MAX
        else:
            return None
        if lengths is not None or (include_last_offset is not False
                                   and include_last_offset is not True):
            return None
        cdef int ids_ndim = 2 if offsets is None else 1
        if not is_int64(ids, ids_ndim):
            return None
        cdef cnp.ndarray id_array = <cnp.ndarray>ids
        cdef int64_t n_ids = cnp.PyArray_SIZE(id_array)
        cdef Extent weights_extent = NOTHING
        cdef const float *weights_data = NULL
        if weights is not None:
            if mode_number != RQ_BAG_SUM or not is_float32(weights, READABLE):
                return None
            if cnp.PyArray_NDIM(<cnp.ndarray>weights) != ids_ndim or (
                    cnp.PyArray_DIM(<cnp.ndarray>weights, 0) != cnp.PyArray_DIM(id_array, 0)) or (
                    ids_ndim == 2 and cnp.PyArray_DIM(<cnp.ndarray>weights, 1)
                    != cnp.PyArray_DIM(id_array, 1)):
                return None
            weights_extent = contiguous_extent(<cnp.ndarray>weights)
            weights_data = <const float *>cnp.PyArray_DATA(<cnp.ndarray>weights)
        cdef int64_t padding = row_or_none(padding_idx, self.n_rows)
        if padding == -2:
            return None
        cdef int n_threads = call_threads(threads, self.default_threads)
        if n_threads == 0:
            return None
        cdef Extent offsets_extent = NOTHING
        cdef const int64_t *offsets_data = NULL
        cdef int64_t n_offsets = 0, n_bags, length
        if ids_ndim == 2:
            n_bags = cnp.PyArray_DIM(id_array, 0)
            length = cnp.PyArray_DIM(id_array, 1)
        else:
            if not is_int64(offsets, 1):
                return None
            n_offsets = cnp.PyArray_DIM(<cnp.ndarray>offsets, 0)
            if n_offsets == 0:
                return None
            n_bags = n_offsets - 1 if include_last_offset else n_offsets
            offsets_extent = contiguous_extent(<cnp.ndarray>offsets)
            offsets_data = <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>offsets)
        out = self.output(out, n_bags, contiguous_extent(id_array), weights_extent,
                          offsets_extent)
        if out is None:
            return None
        # bounds: the kernels' own copy, so that offsets changed by another thread during the
        # call cannot send them past the ids; on the stack for a few bags
        cdef int64_t few_bounds[64]
        cdef int64_t *bounds = few_bounds
        if n_bags + 1 > 64:
            bounds = <int64_t *>malloc((n_bags + 1) * sizeof(int64_t))
            if bounds == NULL:
                raise MemoryError()
        cdef int64_t k, previous = 0, bad = -1
        cdef int status = RQ_OK
        cdef bint valid = True
        try:
            if ids_ndim == 2:
                for k in range(n_bags + 1):
                    bounds[k] = k * length
            else:
                # PyTorch's rules, which the checked path enforces: from 0, non-decreasing, at
                # most len(ids), and with include_last_offset ending at len(ids)
                for k in range(n_offsets):
                    bounds[k] = offsets_data[k]
                    if bounds[k] < previous or bounds[k] > n_ids or (k == 0 and bounds[k] != 0):
                        valid = False
                        break
                    previous = bounds[k]
                if include_last_offset:
                    valid = valid and previous == n_ids
                else:
                    bounds[n_offsets] = n_ids
            if not valid:
                return None
            with nogil:
                status = rq_bag(self.codes, self.scales, self.scale_format, self.n_rows, self.dim,
                                self.codes_stride, <const int64_t *>cnp.PyArray_DATA(id_array),
                                n_ids, bounds, n_bags, weights_data, mode_number, padding,
                                <float *>cnp.PyArray_DATA(<cnp.ndarray>out), self.dim,
                                n_threads, &bad)
        finally:
            if bounds != few_bounds:
                free(bounds)
        return out if status == RQ_OK else None


# ------------------------------------------------------------------ 4-bit and 2-bit rows


cdef struct Params:
    # the float16 scales and biases of an N-bit table: row i's at scales + i * stride (bytes)
    const uint8_t *scales
    const uint8_t *biases
    int64_t stride


cdef Params nbit_params(object scales, object biases, Py_ssize_t n_rows) except *:
    """Scales and biases as the kernels read them: 1-D native float16 arrays of n_rows entries
    with one positive byte stride between rows, the same for both (arrays of their own: 2;
    views into FBGEMM's fused rows: the row stride). The caller keeps them alive."""
    cdef Params found
    cdef cnp.ndarray array
    for name, value in (("scales", scales), ("biases", biases)):
        if not isinstance(value, np.ndarray) or value.dtype != np.float16 or value.ndim != 1:
            raise ValueError(f"{name} must be a 1-D native float16 array")
        if value.shape[0] != n_rows:
            raise ValueError("scales and biases must have one entry per row of codes")
    found.stride = 2
    if n_rows > 1:
        found.stride = scales.strides[0]
        if found.stride != biases.strides[0] or found.stride < 2:
            raise ValueError("scales and biases must have the same positive stride, at least "
                             "2 bytes")
    array = <cnp.ndarray>scales
    found.scales = <const uint8_t *>cnp.PyArray_DATA(array)
    array = <cnp.ndarray>biases
    found.biases = <const uint8_t *>cnp.PyArray_DATA(array)
    return found


cdef int64_t check_nbit_table(const uint8_t[:, :] codes, int bits, int64_t dim) except? -1:
    """The row stride of checked packed codes."""
    if bits != 4 and bits != 2:
        raise ValueError(f"bits must be 4 or 2, got {bits}")
    if dim < 0 or codes.shape[1] != (dim * bits + 7) // 8:
        raise ValueError(f"codes must have {(dim * bits + 7) // 8} bytes per row for dim {dim}")
    return check_rows("codes", &codes[0, 0], codes.shape[0], codes.shape[1], codes.strides[0],
                      codes.strides[1], 1)


def nbit_kernel_name():
    """The variant the 4-bit and 2-bit kernels run: "scalar", "avx2" or "avx512"."""
    return rq_nbit_kernel_name().decode("ascii")


def nbit_dequantize(const uint8_t[:, :] codes not None, scales, biases, int bits, int64_t dim,
                    float[:, ::1] out not None, int n_threads):
    """Dequantize every packed row into out (N, dim); scales and biases are float16 arrays."""
    cdef int64_t codes_stride = check_nbit_table(codes, bits, dim)
    cdef Params p = nbit_params(scales, biases, codes.shape[0])
    check_out(out, codes.shape[0], dim)
    with nogil:
        rq_nbit_dequantize(&codes[0, 0], codes_stride, p.scales, p.biases, p.stride,
                           codes.shape[0], bits, dim, &out[0, 0], out.shape[1], n_threads)


def nbit_take(const uint8_t[:, :] codes not None, scales, biases, int bits, int64_t dim,
              const int64_t[::1] ids not None, float[:, ::1] out not None, int n_threads):
    """Dequantize packed rows ids into out; -1, or the position of the first id out of range."""
    cdef int64_t codes_stride = check_nbit_table(codes, bits, dim)
    cdef Params p = nbit_params(scales, biases, codes.shape[0])
    check_aligned("ids", &ids[0], ids.shape[0], sizeof(int64_t))
    check_out(out, ids.shape[0], dim)
    cdef int64_t bad = -1
    cdef int status
    with nogil:
        status = rq_nbit_take(&codes[0, 0], codes_stride, p.scales, p.biases, p.stride,
                              codes.shape[0], bits, dim, &ids[0], ids.shape[0], &out[0, 0], out.shape[1], n_threads,
                              &bad)
    return -1 if status == RQ_OK else bad


def nbit_bag(const uint8_t[:, :] codes not None, scales, biases, int bits, int64_t dim,
             const int64_t[::1] ids not None, const int64_t[::1] bounds not None,
             const float[::1] weights, int mode, int64_t padding_idx, float[:, ::1] out not None,
             int n_threads):
    """Pool packed rows into bags; -1, or the position of the first id out of range."""
    cdef int64_t codes_stride = check_nbit_table(codes, bits, dim)
    cdef Params p = nbit_params(scales, biases, codes.shape[0])
    check_aligned("ids", &ids[0], ids.shape[0], sizeof(int64_t))
    check_aligned("bounds", &bounds[0], bounds.shape[0], sizeof(int64_t))
    if bounds.shape[0] < 1:
        raise ValueError("bounds must hold at least one entry")
    check_out(out, bounds.shape[0] - 1, dim)
    if mode != RQ_BAG_SUM and mode != RQ_BAG_MEAN and mode != RQ_BAG_MAX:
        raise ValueError(f"unknown bag mode {mode}")
    cdef const float *weights_ptr = NULL
    if weights is not None:
        if weights.shape[0] != ids.shape[0]:
            raise ValueError("weights must have one entry per id")
        check_aligned("weights", &weights[0], weights.shape[0], sizeof(float))
        weights_ptr = &weights[0]
    cdef int64_t bad = -1
    cdef int status
    with nogil:
        status = rq_nbit_bag(&codes[0, 0], codes_stride, p.scales, p.biases, p.stride,
                             codes.shape[0], bits, dim, &ids[0], ids.shape[0], &bounds[0], bounds.shape[0] - 1,
                             weights_ptr, mode, padding_idx, &out[0, 0], out.shape[1],
                             n_threads, &bad)
    return -1 if status == RQ_OK else bad
