/* The public entry points: check ids, split rows, ids or bags across threads, prefetch the rows
 * a gather will need, and call the row kernels of the active instruction set (dispatch.c). */
#include "rowquant.h"

#include <limits.h>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

extern const rq_kernels *rq_active;

/* Below this many bytes touched per thread, a call keeps to fewer threads: starting a team costs
 * microseconds, and a team member that the system has descheduled costs a whole time slice
 * (milliseconds) at the closing barrier, so only work of a millisecond or more is shared. */
#define RQ_PARALLEL_MIN_BYTES ((int64_t)4 << 20)
/* Whole-table outputs larger than this bypass the caches (non-temporal stores): they would only
 * evict the table's rows, and streaming skips reading each output line before overwriting it. */
#define RQ_STREAM_MIN_BYTES ((int64_t)16 << 20)

static const rq_kernels *kernels(void)
{
    if (!rq_active) rq_simd_select(NULL);
    return rq_active;
}

static int team_size(int n_threads, int64_t bytes)
{
    int64_t most_useful = bytes / RQ_PARALLEL_MIN_BYTES;
    if (n_threads < 1 || most_useful < 2) return 1;
    return most_useful < n_threads ? (int)most_useful : n_threads;
}

/* The contiguous share [begin, end) of n rows that this member of the thread team works on. */
static void member_rows(int64_t n, int64_t *begin, int64_t *end)
{
    *begin = 0;
    *end = n;
#ifdef _OPENMP
    const int64_t members = omp_get_num_threads(), me = omp_get_thread_num();
    *begin = n * me / members;
    *end = n * (me + 1) / members;
#endif
}

/* Dequantize rows (or 0..n_rows when rows is NULL) into out, row i at out + i * out_stride,
 * split across the team in contiguous ranges; each range streams its output when it is large. */
static void dequantize_rows(const rq_kernels *k, const uint8_t *codes, int64_t codes_stride,
                            const float *scales, const int64_t *rows, int64_t n_rows,
                            int64_t dim, float *out, int64_t out_stride, int n_threads)
{
    const int64_t out_bytes = n_rows * dim * (int64_t)sizeof(float);
    /* Gathers (rows given) never stream: with their reads scattered, non-temporal stores made
     * a 65536-id take from 400000x300 slower (12.5 ms against 7-8 ms), while they speed up the
     * sequential whole-table dequantize (25 ms against 35 ms). */
    const int stream = out_bytes >= RQ_STREAM_MIN_BYTES && out_stride == dim && !rows;
    const int team = team_size(n_threads, out_bytes + n_rows * dim);
    (void)team;
#pragma omp parallel num_threads(team) if (team > 1)
    {
        int64_t begin, end;
        member_rows(n_rows, &begin, &end);
        if (stream) {
            k->dequantize_rows_stream(codes + begin * codes_stride, codes_stride,
                                      scales + begin, end - begin, dim, out + begin * out_stride);
        } else {
            for (int64_t i = begin; i < end; i++) {
                int64_t row = i;
                if (rows) {
                    row = rows[i];
                    if (i + RQ_PREFETCH_IDS < end) {
                        const int64_t ahead = rows[i + RQ_PREFETCH_IDS];
                        rq_prefetch_row(codes + ahead * codes_stride, scales + ahead, dim);
                    }
                }
                k->dequantize_row(codes + row * codes_stride, scales[row], dim, out + i * out_stride);
            }
        }
    }
}

/* Quantize rows [begin, end); the flat index of the first NaN/inf, or -1. Rows go in groups:
 * first the maxima and scales of the whole group, then their codes, so the latency of one row's
 * max-then-divide chain overlaps the work on the others. */
#define RQ_ROW_GROUP 8

static int64_t quantize_range(const rq_kernels *k, const float *values, int64_t begin,
                              int64_t end, int64_t dim, int64_t values_stride, uint8_t *codes,
                              int64_t codes_stride, float *scales)
{
    for (int64_t first = begin; first < end; first += RQ_ROW_GROUP) {
        const int64_t last = first + RQ_ROW_GROUP < end ? first + RQ_ROW_GROUP : end;
        uint32_t max_bits[RQ_ROW_GROUP];
        for (int64_t i = first; i < last; i++)
            max_bits[i - first] = k->max_abs_bits(values + i * values_stride, dim);
        for (int64_t i = first; i < last; i++) {
            if (max_bits[i - first] >= RQ_INF_BITS)
                return i * dim + rq_first_nonfinite(values + i * values_stride, dim);
            scales[i] = rq_scale_from_max_bits(max_bits[i - first]);
        }
        for (int64_t i = first; i < last; i++) {
            if (scales[i] > 0.0f)
                k->encode_row(values + i * values_stride, dim, scales[i], codes + i * codes_stride);
            else
                memset(codes + i * codes_stride, RQ_BIAS, (size_t)dim);
        }
    }
    return -1;
}

int rq_quantize_rows(const float *values, int64_t n_rows, int64_t dim, int64_t values_stride,
                     uint8_t *codes, int64_t codes_stride, float *scales,
                     int n_threads, int64_t *bad)
{
    const rq_kernels *k = kernels();
    int64_t first_bad = INT64_MAX;
    const int team = team_size(n_threads, n_rows * dim * 5);
    (void)team;
#pragma omp parallel num_threads(team) reduction(min : first_bad) if (team > 1)
    {
        int64_t begin, end;
        member_rows(n_rows, &begin, &end);
        /* each member stops at its first bad row; the smallest over members is the first */
        int64_t found = quantize_range(k, values, begin, end, dim, values_stride, codes,
                                       codes_stride, scales);
        if (found >= 0) first_bad = found;
    }
    if (first_bad != INT64_MAX) {
        *bad = first_bad;
        return RQ_NONFINITE;
    }
    return RQ_OK;
}

int rq_dequantize(const uint8_t *codes, const float *scales, int64_t n_rows, int64_t dim,
                  int64_t codes_stride, float *out, int64_t out_stride, int n_threads)
{
    dequantize_rows(kernels(), codes, codes_stride, scales, NULL, n_rows, dim, out, out_stride,
                    n_threads);
    return RQ_OK;
}

/* Position of the first id outside [0, n_rows), or -1. */
static int64_t first_bad_id(const int64_t *ids, int64_t n_ids, int64_t n_rows)
{
    for (int64_t k = 0; k < n_ids; k++)
        if ((uint64_t)ids[k] >= (uint64_t)n_rows) return k; /* negative ids wrap to huge */
    return -1;
}

int rq_take(const uint8_t *codes, const float *scales, int64_t n_rows, int64_t dim,
            int64_t codes_stride, const int64_t *ids, int64_t n_ids,
            float *out, int64_t out_stride, int n_threads, int64_t *bad)
{
    int64_t position = first_bad_id(ids, n_ids, n_rows);
    if (position >= 0) {
        *bad = position;
        return RQ_ID_RANGE;
    }
    dequantize_rows(kernels(), codes, codes_stride, scales, ids, n_ids, dim, out, out_stride,
                    n_threads);
    return RQ_OK;
}

int rq_bag(const uint8_t *codes, const float *scales, int64_t n_rows, int64_t dim,
           int64_t codes_stride, const int64_t *ids, int64_t n_ids,
           const int64_t *bounds, int64_t n_bags, const float *weights,
           int mode, int64_t padding_idx,
           float *out, int64_t out_stride, int n_threads, int64_t *bad)
{
    int64_t position = first_bad_id(ids, n_ids, n_rows);
    if (position >= 0) {
        *bad = position;
        return RQ_ID_RANGE;
    }
    const rq_kernels *k = kernels();
    const int team = team_size(n_threads, (n_ids + n_bags) * dim * 5);
    (void)team;
#pragma omp parallel for num_threads(team) schedule(static) if (team > 1)
    for (int64_t b = 0; b < n_bags; b++) {
        float *bag_out = out + b * out_stride;
        k->pool_bag(codes, scales, codes_stride, dim, ids, weights, bounds[b], bounds[b + 1],
                    padding_idx, n_ids, bag_out);
        if (mode == RQ_BAG_MEAN) {
            int64_t count = 0;
            for (int64_t i = bounds[b]; i < bounds[b + 1]; i++) count += ids[i] != padding_idx;
            if (count > 0) {
                const float divisor = (float)count;
                for (int64_t j = 0; j < dim; j++) bag_out[j] /= divisor;
            }
        }
    }
    return RQ_OK;
}

int rq_have_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
