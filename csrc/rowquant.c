/* Portable kernels. Inner loops run along one row with restrict pointers and no branches, so
 * that -O3 vectorizes them for the baseline instruction set. The build must not use -ffast-math
 * and uses -ffp-contract=off: every operation here is rounded exactly as DESIGN.md states. */
#include "rowquant.h"

#include <limits.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many bytes touched, a call runs on one thread: starting a team costs a few
 * microseconds, more than the work it would share. */
#define RQ_PARALLEL_MIN_BYTES ((int64_t)1 << 18)

#define RQ_ABS_MASK 0x7fffffffu
#define RQ_INF_BITS 0x7f800000u

static int team_size(int n_threads, int64_t bytes)
{
    int64_t most_useful = bytes / RQ_PARALLEL_MIN_BYTES;
    if (n_threads < 1 || most_useful < 2) return 1;
    return most_useful < n_threads ? (int)most_useful : n_threads;
}

static uint32_t float_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/* Quantize one row; returns the column of the first NaN or inf, or -1. */
static int64_t quantize_row(const float *restrict values, int64_t dim,
                            uint8_t *restrict codes, float *restrict scale)
{
    /* The magnitude bits of a float order like its absolute value, and NaN and inf sort above
     * every finite value: one integer max finds the row max and detects non-finite input. */
    uint32_t max_bits = 0;
    for (int64_t j = 0; j < dim; j++) {
        uint32_t bits = float_bits(values[j]) & RQ_ABS_MASK;
        max_bits = bits > max_bits ? bits : max_bits;
    }
    if (max_bits >= RQ_INF_BITS) {
        for (int64_t j = 0; j < dim; j++)
            if ((float_bits(values[j]) & RQ_ABS_MASK) >= RQ_INF_BITS) return j;
    }
    float row_max;
    memcpy(&row_max, &max_bits, sizeof row_max);
    const float s = row_max / 127.0f;
    *scale = s;
    if (s == 0.0f) {
        memset(codes, 128, (size_t)dim);
        return -1;
    }
    /* Both operands are float32, so one float64 division is close enough to decide floor()
     * exactly (DESIGN.md section 1); a reciprocal multiply would not be. The clamp only acts
     * when s is subnormal and too coarse for max/s to stay below 127.5. */
    const double s64 = (double)s;
    for (int64_t j = 0; j < dim; j++) {
        double shifted = (double)values[j] / s64 + 128.5;
        shifted = shifted < 1.0 ? 1.0 : shifted;
        shifted = shifted > 255.0 ? 255.0 : shifted;
        codes[j] = (uint8_t)(int32_t)shifted;  /* truncation is floor: shifted >= 1 */
    }
    return -1;
}

int rq_quantize_rows(const float *values, int64_t n_rows, int64_t dim, int64_t values_stride,
                     uint8_t *codes, int64_t codes_stride, float *scales,
                     int n_threads, int64_t *bad)
{
    int64_t first_bad = INT64_MAX;
    const int team = team_size(n_threads, n_rows * dim * 5);
    (void)team;
#pragma omp parallel for num_threads(team) schedule(static) reduction(min : first_bad) if (team > 1)
    for (int64_t i = 0; i < n_rows; i++) {
        if (first_bad != INT64_MAX) continue; /* this thread already met a bad row */
        int64_t column = quantize_row(values + i * values_stride, dim,
                                      codes + i * codes_stride, scales + i);
        if (column >= 0) first_bad = i * dim + column;
    }
    if (first_bad != INT64_MAX) {
        *bad = first_bad;
        return RQ_NONFINITE;
    }
    return RQ_OK;
}

static void dequantize_row(const uint8_t *restrict codes, float scale, int64_t dim,
                           float *restrict out)
{
    for (int64_t j = 0; j < dim; j++) out[j] = (float)((int32_t)codes[j] - 128) * scale;
}

int rq_dequantize(const uint8_t *codes, const float *scales, int64_t n_rows, int64_t dim,
                  int64_t codes_stride, float *out, int64_t out_stride, int n_threads)
{
    const int team = team_size(n_threads, n_rows * dim * 5);
    (void)team;
#pragma omp parallel for num_threads(team) schedule(static) if (team > 1)
    for (int64_t i = 0; i < n_rows; i++)
        dequantize_row(codes + i * codes_stride, scales[i], dim, out + i * out_stride);
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
    const int team = team_size(n_threads, n_ids * dim * 5);
    (void)team;
#pragma omp parallel for num_threads(team) schedule(static) if (team > 1)
    for (int64_t k = 0; k < n_ids; k++) {
        const int64_t row = ids[k];
        dequantize_row(codes + row * codes_stride, scales[row], dim, out + k * out_stride);
    }
    return RQ_OK;
}

/* Sum one bag into out, in id order; returns how many ids were pooled. */
static int64_t pool_bag(const uint8_t *codes, const float *scales, int64_t dim,
                        int64_t codes_stride, const int64_t *ids, const float *weights,
                        int64_t begin, int64_t end, int64_t padding_idx, float *restrict out)
{
    int64_t count = 0;
    for (int64_t j = 0; j < dim; j++) out[j] = 0.0f;
    for (int64_t k = begin; k < end; k++) {
        const int64_t row = ids[k];
        if (row == padding_idx) continue;
        count++;
        const uint8_t *restrict row_codes = codes + row * codes_stride;
        const float scale = scales[row];
        /* Each term is the dequantized value, rounded as rq_dequantize rounds it, then weighted:
         * the sum is the reference's float32 sum in the same order. */
        if (weights) {
            const float weight = weights[k];
            for (int64_t j = 0; j < dim; j++)
                out[j] += weight * ((float)((int32_t)row_codes[j] - 128) * scale);
        } else {
            for (int64_t j = 0; j < dim; j++)
                out[j] += (float)((int32_t)row_codes[j] - 128) * scale;
        }
    }
    return count;
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
    const int team = team_size(n_threads, (n_ids + n_bags) * dim * 5);
    (void)team;
#pragma omp parallel for num_threads(team) schedule(static) if (team > 1)
    for (int64_t b = 0; b < n_bags; b++) {
        float *restrict bag_out = out + b * out_stride;
        int64_t count = pool_bag(codes, scales, dim, codes_stride, ids, weights,
                                 bounds[b], bounds[b + 1], padding_idx, bag_out);
        if (mode == RQ_BAG_MEAN && count > 0) {
            const float divisor = (float)count;
            for (int64_t j = 0; j < dim; j++) bag_out[j] /= divisor;
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
