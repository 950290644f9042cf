/* The public entry points: check ids, split rows, ids or bags across threads (team.c), prefetch
 * the rows a gather will need, and call the row kernels of the active instruction set
 * (dispatch.c).
 *
 * Ids are read from the caller's memory without the GIL, so a caller's thread may change them
 * while a kernel runs. Every id is checked where it is read, and only that checked value is
 * used to address the table: a changed id gives an error or a stale row, never a read outside
 * the table. The check of all ids before any work keeps the promise that nothing is written
 * for an id out of range in the ordinary case. */
#include "rowquant.h"

#include <limits.h>

#include "kernels.h"
#include "team.h"

extern const rq_kernels *rq_active;

/* Below this many bytes touched (read and written) per thread, a call keeps to fewer threads:
 * handing work to a team member that is still watching for it (team.c) costs a microsecond or
 * two, about a twentieth of the work below which a call stays on the caller's thread. */
#define RQ_PARALLEL_MIN_BYTES ((int64_t)256 << 10)
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
    return rq_team_members(n_threads, bytes, RQ_PARALLEL_MIN_BYTES);
}

/* ------------------------------------------------------------------ dequantize and take */

struct dequantize_job {
    const rq_kernels *k;
    const uint8_t *codes;
    int64_t codes_stride;
    rq_scales scales;
    int64_t n_rows;    /* rows of the table */
    const int64_t *rows; /* the rows to gather, or NULL for rows 0..n_out */
    int64_t n_out;
    int64_t dim;
    float *out;
    int64_t out_stride;
    int stream;
    int64_t first_bad; /* position in rows of the first id out of range, INT64_MAX if none */
};

/* One member's contiguous share of the output rows; a large whole-table share streams. The
 * job's fields are copied to locals first: the row kernel is called through a pointer, so the
 * compiler would otherwise reload every field after each call. */
static void dequantize_part(void *context, int member, int members)
{
    struct dequantize_job *job = context;
    const rq_kernels *k = job->k;
    const uint8_t *codes = job->codes;
    const rq_scales scales = job->scales;
    const int64_t codes_stride = job->codes_stride, n_rows = job->n_rows, dim = job->dim;
    const int64_t *rows = job->rows;
    float *out = job->out;
    const int64_t out_stride = job->out_stride;
    int64_t begin, end;
    rq_team_share(job->n_out, member, members, &begin, &end);
    if (!rows) {
        if (job->stream) {
            /* 16-bit scales widen RQ_SCALE_BLOCK rows at a time on the stack */
            float block[RQ_SCALE_BLOCK];
            for (int64_t first = begin; first < end; first += RQ_SCALE_BLOCK) {
                const int64_t n = end - first < RQ_SCALE_BLOCK ? end - first : RQ_SCALE_BLOCK;
                k->dequantize_rows_stream(codes + first * codes_stride, codes_stride,
                                          rq_scales_block(scales, first, n, block), n, dim,
                                          out + first * out_stride);
            }
        } else {
            for (int64_t i = begin; i < end; i++)
                k->dequantize_row(codes + i * codes_stride, rq_scale_at(scales, i), dim,
                                  out + i * out_stride);
        }
        return;
    }
    int64_t first_bad = -1;
    for (int64_t i = begin; i < end; i++) {
        const int64_t row = rows[i];
        if (!rq_valid_row(row, n_rows)) { /* changed since the first check */
            if (first_bad < 0) first_bad = i;
            continue;
        }
        if (i + RQ_PREFETCH_IDS < end) {
            const int64_t ahead = rows[i + RQ_PREFETCH_IDS];
            if (rq_valid_row(ahead, n_rows))
                rq_prefetch_row(codes + ahead * codes_stride, rq_scale_address(scales, ahead),
                                dim);
        }
        k->dequantize_row(codes + row * codes_stride, rq_scale_at(scales, row), dim,
                          out + i * out_stride);
    }
    if (first_bad >= 0) rq_team_store_min(&job->first_bad, first_bad);
}

/* Dequantize rows (or 0..n_out when rows is NULL) into out, row i at out + i * out_stride;
 * the position in rows of the first id found out of range, or -1. */
static int64_t dequantize_rows(const uint8_t *codes, int64_t codes_stride, rq_scales scales,
                               int64_t n_rows, const int64_t *rows, int64_t n_out, int64_t dim,
                               float *out, int64_t out_stride, int n_threads)
{
    const int64_t out_bytes = n_out * dim * (int64_t)sizeof(float);
    /* Gathers (rows given) never stream: with their reads scattered, non-temporal stores made
     * a 65536-id take from 400000x300 slower (12.5 ms against 7-8 ms), while they speed up the
     * sequential whole-table dequantize (25 ms against 35 ms). */
    struct dequantize_job job = {
        .k = kernels(), .codes = codes, .codes_stride = codes_stride, .scales = scales,
        .n_rows = n_rows, .rows = rows, .n_out = n_out, .dim = dim, .out = out,
        .out_stride = out_stride,
        .stream = out_bytes >= RQ_STREAM_MIN_BYTES && out_stride == dim && !rows,
        .first_bad = INT64_MAX,
    };
    rq_team_run(team_size(n_threads, out_bytes + n_out * dim), dequantize_part, &job);
    return job.first_bad == INT64_MAX ? -1 : job.first_bad;
}

int rq_dequantize(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows,
                  int64_t dim, int64_t codes_stride, float *out, int64_t out_stride, int n_threads)
{
    const rq_scales table_scales = {scales, scale_format};
    dequantize_rows(codes, codes_stride, table_scales, n_rows, NULL, n_rows, dim, out,
                    out_stride, n_threads);
    return RQ_OK;
}

int rq_take(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows,
            int64_t dim, int64_t codes_stride, const int64_t *ids, int64_t n_ids,
            float *out, int64_t out_stride, int n_threads, int64_t *bad)
{
    const rq_scales table_scales = {scales, scale_format};
    int64_t position = kernels()->first_bad_id(ids, n_ids, n_rows);
    if (position < 0)
        position = dequantize_rows(codes, codes_stride, table_scales, n_rows, ids, n_ids, dim,
                                   out, out_stride, n_threads);
    if (position >= 0) {
        *bad = position;
        return RQ_ID_RANGE;
    }
    return RQ_OK;
}

/* ------------------------------------------------------------------ quantize */

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

struct quantize_job {
    const rq_kernels *k;
    const float *values;
    int64_t n_rows, dim, values_stride;
    uint8_t *codes;
    int64_t codes_stride;
    float *scales;
    int64_t first_bad; /* flat index of the first NaN/inf, INT64_MAX if none */
};

static void quantize_part(void *context, int member, int members)
{
    struct quantize_job *job = context;
    int64_t begin, end;
    rq_team_share(job->n_rows, member, members, &begin, &end);
    /* each member stops at its first bad row; the smallest over members is the first */
    const int64_t found = quantize_range(job->k, job->values, begin, end, job->dim,
                                         job->values_stride, job->codes, job->codes_stride,
                                         job->scales);
    if (found >= 0) rq_team_store_min(&job->first_bad, found);
}

int rq_quantize_rows(const float *values, int64_t n_rows, int64_t dim, int64_t values_stride,
                     uint8_t *codes, int64_t codes_stride, float *scales,
                     int n_threads, int64_t *bad)
{
    struct quantize_job job = {
        .k = kernels(), .values = values, .n_rows = n_rows, .dim = dim,
        .values_stride = values_stride, .codes = codes, .codes_stride = codes_stride,
        .scales = scales, .first_bad = INT64_MAX,
    };
    rq_team_run(team_size(n_threads, n_rows * dim * 5), quantize_part, &job);
    if (job.first_bad != INT64_MAX) {
        *bad = job.first_bad;
        return RQ_NONFINITE;
    }
    return RQ_OK;
}

/* ------------------------------------------------------------------ bags */

struct bag_job {
    const rq_kernels *k;
    const uint8_t *codes;
    rq_scales scales;
    int64_t n_rows, dim, codes_stride;
    const int64_t *ids;
    int64_t n_ids;
    const int64_t *bounds;
    int64_t n_bags;
    const float *weights;
    int mode;
    int64_t padding_idx;
    float *out;
    int64_t out_stride;
    int64_t first_bad; /* position in ids of the first id out of range, INT64_MAX if none */
};

/* Where member's share of the bags starts: bags are shared by the ids they pool (plus one for
 * each bag's output row), not by their count, so that a few long bags do not load one thread.
 * The first bag b whose work before it, bounds[b] - bounds[0] + b, reaches member / members of
 * the whole; increasing in member, so the shares cover every bag once. */
static int64_t bag_split(const int64_t *bounds, int64_t n_bags, int member, int members)
{
    if (member <= 0) return 0;
    if (member >= members) return n_bags;
    const int64_t total = bounds[n_bags] - bounds[0] + n_bags;
    const int64_t target = (int64_t)((double)total * member / members);
    int64_t low = 0, high = n_bags; /* the answer is in [low, high] */
    while (low < high) {
        const int64_t mid = low + (high - low) / 2;
        if (bounds[mid] - bounds[0] + mid >= target)
            high = mid;
        else
            low = mid + 1;
    }
    return low;
}

#define RQ_MEAN_CHUNK 32

/* One member's contiguous share of the bags, each pooled whole by this member in id order. */
static void bag_part(void *context, int member, int members)
{
    struct bag_job *job = context;
    const rq_kernels *k = job->k;
    const rq_bag_rows rows = {
        .codes = job->codes, .scales = job->scales, .codes_stride = job->codes_stride,
        .n_rows = job->n_rows, .dim = job->dim, .ids = job->ids, .n_ids = job->n_ids,
        .padding_idx = job->padding_idx,
    };
    const int64_t *bounds = job->bounds, *ids = job->ids, padding_idx = job->padding_idx;
    const int64_t dim = job->dim, out_stride = job->out_stride;
    const float *weights = job->weights;
    float *out = job->out;
    const int mode = job->mode;
    int64_t first, last, first_bad = -1;
    first = bag_split(bounds, job->n_bags, member, members);
    last = bag_split(bounds, job->n_bags, member + 1, members);
    if (mode == RQ_BAG_MAX) {
        for (int64_t b = first; b < last; b++) {
            const int64_t bad = k->max_bag(&rows, bounds[b], bounds[b + 1], out + b * out_stride);
            if (bad >= 0 && first_bad < 0) first_bad = bad; /* bags in order: the first is least */
        }
    }
    /* Sums and means, RQ_MEAN_CHUNK bags per kernel call, so that a mean divides bags that
     * are still in the cache (dividing the whole output afterwards made means of 8192 bags of
     * 400000x300 take a fifth longer than sums). */
    for (int64_t chunk = first; mode != RQ_BAG_MAX && chunk < last; chunk += RQ_MEAN_CHUNK) {
        const int64_t chunk_end = last - chunk > RQ_MEAN_CHUNK ? chunk + RQ_MEAN_CHUNK : last;
        const int64_t bad = k->pool_bags(&rows, weights, bounds, chunk, chunk_end, out, out_stride);
        if (bad >= 0 && first_bad < 0) first_bad = bad;
        for (int64_t b = chunk; mode == RQ_BAG_MEAN && b < chunk_end; b++) {
            int64_t count = 0;
            for (int64_t i = bounds[b]; i < bounds[b + 1]; i++) count += ids[i] != padding_idx;
            if (count > 0) {
                float *bag_out = out + b * out_stride;
                const float divisor = (float)count;
                for (int64_t j = 0; j < dim; j++) bag_out[j] /= divisor;
            }
        }
    }
    if (first_bad >= 0) rq_team_store_min(&job->first_bad, first_bad);
}

int rq_bag(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows,
           int64_t dim, int64_t codes_stride, const int64_t *ids, int64_t n_ids,
           const int64_t *bounds, int64_t n_bags, const float *weights,
           int mode, int64_t padding_idx,
           float *out, int64_t out_stride, int n_threads, int64_t *bad)
{
    int64_t position = kernels()->first_bad_id(ids, n_ids, n_rows);
    if (position >= 0) {
        *bad = position;
        return RQ_ID_RANGE;
    }
    struct bag_job job = {
        .k = kernels(), .codes = codes, .scales = {scales, scale_format}, .n_rows = n_rows,
        .dim = dim, .codes_stride = codes_stride, .ids = ids, .n_ids = n_ids, .bounds = bounds,
        .n_bags = n_bags, .weights = mode == RQ_BAG_MAX ? NULL : weights, .mode = mode,
        .padding_idx = padding_idx, .out = out, .out_stride = out_stride,
        .first_bad = INT64_MAX,
    };
    const int64_t touched = n_ids * (dim + (int64_t)sizeof(float)) + n_bags * dim * (int64_t)sizeof(float);
    rq_team_run(team_size(n_threads, touched), bag_part, &job);
    if (job.first_bad != INT64_MAX) {
        *bad = job.first_bad;
        return RQ_ID_RANGE;
    }
    return RQ_OK;
}
