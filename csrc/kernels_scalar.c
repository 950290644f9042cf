/* The portable kernels: plain loops along one row, restrict pointers, no branches inside, so
 * that -O3 vectorizes them for the baseline instruction set. Every other variant must give the
 * same bits as these. */
#include "kernels.h"

/* The magnitude bits of a float order like its absolute value, and NaN and inf sort above every
 * finite value: one integer max finds the row max and detects non-finite input. */
static uint32_t max_abs_bits(const float *restrict values, int64_t dim)
{
    uint32_t max_bits = 0;
    for (int64_t j = 0; j < dim; j++) {
        uint32_t bits = rq_float_bits(values[j]) & RQ_ABS_MASK;
        max_bits = bits > max_bits ? bits : max_bits;
    }
    return max_bits;
}

static void dequantize_row(const uint8_t *restrict codes, float scale, int64_t dim,
                           float *restrict out)
{
    for (int64_t j = 0; j < dim; j++) out[j] = rq_dequantized(codes[j], scale);
}

static void dequantize_rows(const uint8_t *codes, int64_t codes_stride, const float *scales,
                            int64_t n_rows, int64_t dim, float *out)
{
    for (int64_t i = 0; i < n_rows; i++)
        dequantize_row(codes + i * codes_stride, scales[i], dim, out + i * dim);
}

static int64_t pool_bag(const rq_bag_rows *rows, const float *weights, int64_t begin,
                        int64_t end, float *restrict out)
{
    const int64_t dim = rows->dim;
    int64_t bad = -1;
    float scale, total = 0.0f;
    for (int64_t j = 0; j < dim; j++) out[j] = 0.0f;
    for (int64_t k = begin; k < end; k++) {
        const uint8_t *restrict row_codes = rq_bag_row(rows, k, &scale, &bad);
        if (!row_codes) continue;
        const float factor = rq_bag_factor(scale, weights, k);
        total += factor;
        for (int64_t j = 0; j < dim; j++) out[j] = rq_bag_fold(row_codes[j], factor, out[j]);
    }
    for (int64_t j = 0; j < dim; j++) out[j] = rq_bag_finish(out[j], total);
    if (!rq_all_finite(out, dim)) return rq_pool_bag_centered(rows, weights, begin, end, out);
    return bad;
}

static int64_t pool_bags(const rq_bag_rows *rows, const float *weights, const int64_t *bounds,
                         int64_t first_bag, int64_t last_bag, float *out, int64_t out_stride)
{
    int64_t bad = -1;
    for (int64_t b = first_bag; b < last_bag; b++) {
        const int64_t found = pool_bag(rows, weights, bounds[b], bounds[b + 1], out + b * out_stride);
        if (bad < 0) bad = found; /* bags in order: the first found is the least */
    }
    return bad;
}

static int64_t max_bag(const rq_bag_rows *rows, int64_t begin, int64_t end, float *restrict out)
{
    const int64_t dim = rows->dim;
    int64_t bad = -1;
    int pooled = 0;
    float scale;
    for (int64_t k = begin; k < end; k++) {
        const uint8_t *restrict row_codes = rq_bag_row(rows, k, &scale, &bad);
        if (!row_codes) continue;
        if (!pooled) {
            dequantize_row(row_codes, scale, dim, out);
            pooled = 1;
            continue;
        }
        for (int64_t j = 0; j < dim; j++) {
            const float value = rq_dequantized(row_codes[j], scale);
            out[j] = value > out[j] ? value : out[j];
        }
    }
    if (!pooled)
        for (int64_t j = 0; j < dim; j++) out[j] = 0.0f;
    return bad;
}

static int64_t first_bad_id(const int64_t *ids, int64_t n_ids, int64_t n_rows)
{
    return rq_first_bad_id_from(ids, 0, n_ids, n_rows);
}

/* Baseline C: every processor the build targets runs it. */
static int supported(void) { return 1; }

void rq_scalar_scores_exact(const uint8_t *codes, int64_t codes_stride, const float *scales,
                         int64_t n_rows, int64_t dim, const float *queries, int64_t n_queries,
                         const double *row_factors, const double *query_factors, float *scores,
                         int64_t score_stride)
{
    for (int64_t i = 0; i < n_rows; i++) {
        const uint8_t *row = codes + i * codes_stride;
        const float scale = scales[i];
        for (int64_t b = 0; b < n_queries; b++) {
            const float *query = queries + b * dim;
            double lanes[RQ_DOT_LANES] = {0.0};
            for (int64_t j = 0; j < dim; j++)
                lanes[j % RQ_DOT_LANES] += (double)rq_dequantized(row[j], scale) * (double)query[j];
            scores[b * score_stride + i] =
                rq_score(rq_fold_lanes(lanes), row_factors[i], query_factors[b]);
        }
    }
}

void rq_scalar_scores_fast(const uint8_t *codes, int64_t codes_stride, int64_t n_rows, int64_t dim,
                        const int8_t *queries, int64_t n_queries, const double *row_factors,
                        const double *query_factors, float *scores, int64_t score_stride)
{
    for (int64_t i = 0; i < n_rows; i++) {
        const uint8_t *row = codes + i * codes_stride;
        for (int64_t b = 0; b < n_queries; b++) {
            const int8_t *query = queries + b * dim;
            int64_t total = 0;
            for (int64_t chunk = 0; chunk < dim; chunk += RQ_FAST_CHUNK) {
                const int64_t end = dim - chunk > RQ_FAST_CHUNK ? chunk + RQ_FAST_CHUNK : dim;
                int32_t sum = 0;
                for (int64_t j = chunk; j < end; j++)
                    sum += ((int32_t)row[j] - RQ_BIAS) * (int32_t)query[j];
                total += sum;
            }
            scores[b * score_stride + i] =
                rq_score((double)total, row_factors[i], query_factors[b]);
        }
    }
}

const rq_kernels rq_kernels_scalar = {
    .name = "scalar",
    .supported = supported,
    .max_abs_bits = max_abs_bits,
    .encode_row = rq_codes_exact,
    .dequantize_row = dequantize_row,
    .dequantize_rows_stream = dequantize_rows,
    .pool_bags = pool_bags,
    .max_bag = max_bag,
    .first_bad_id = first_bad_id,
    .scores_exact = rq_scalar_scores_exact,
    .scores_fast = rq_scalar_scores_fast,
};
