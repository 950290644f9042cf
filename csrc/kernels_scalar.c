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
    float scale;
    for (int64_t j = 0; j < dim; j++) out[j] = 0.0f;
    for (int64_t k = begin; k < end; k++) {
        const uint8_t *restrict row_codes = rq_bag_row(rows, k, &scale, &bad);
        if (!row_codes) continue;
        if (weights) {
            const float weight = weights[k];
            for (int64_t j = 0; j < dim; j++)
                out[j] += weight * rq_dequantized(row_codes[j], scale);
        } else {
            /* not +=, with which GCC 12 sets the loop up in two more instructions per row */
            for (int64_t j = 0; j < dim; j++)
                out[j] = out[j] + rq_dequantized(row_codes[j], scale);
        }
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

/* Baseline C: every processor the build targets runs it. */
static int supported(void) { return 1; }

const rq_kernels rq_kernels_scalar = {
    .name = "scalar",
    .supported = supported,
    .max_abs_bits = max_abs_bits,
    .encode_row = rq_codes_exact,
    .dequantize_row = dequantize_row,
    .dequantize_rows_stream = dequantize_rows,
    .pool_bag = pool_bag,
    .max_bag = max_bag,
};
