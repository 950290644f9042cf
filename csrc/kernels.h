/* Internal: the per-instruction-set kernel table and the scalar pieces every variant shares.
 * Not part of the public header; only csrc/ includes it. */
#ifndef ROWQUANT_KERNELS_H
#define ROWQUANT_KERNELS_H

#include <stdint.h>
#include <string.h>

#include "rowquant.h" /* RQ_BIAS */

#define RQ_ABS_MASK 0x7fffffffu
#define RQ_INF_BITS 0x7f800000u

/* The rows of one bag call: the table, and the flat ids that every bag of the call indexes.
 * Kernels check each id as they read it (another thread may change ids during the call) and
 * address the table with that checked value only. */
typedef struct rq_bag_rows {
    const uint8_t *codes;
    const float *scales;
    int64_t codes_stride;
    int64_t n_rows;
    int64_t dim;
    const int64_t *ids;
    int64_t n_ids;       /* all ids of the call, so that rows of later bags can be prefetched */
    int64_t padding_idx; /* skipped and not counted; -1 for none */
} rq_bag_rows;

/* Row kernels for one instruction set. Every variant gives the same bits as the scalar one. */
typedef struct rq_kernels {
    const char *name;
    /* Whether this processor and its operating system run these kernels. It is called before
     * any other entry, on any processor, so it must not itself need the instruction set. */
    int (*supported)(void);
    /* The largest magnitude bits of a row (NaN and inf sort above every finite value). */
    uint32_t (*max_abs_bits)(const float *values, int64_t dim);
    /* Codes of a row whose scale is > 0 (see rq_codes_exact). */
    void (*encode_row)(const float *values, int64_t dim, float scale, uint8_t *codes);
    /* out[j] = rq_dequantized(codes[j], scale). */
    void (*dequantize_row)(const uint8_t *codes, float scale, int64_t dim, float *out);
    /* Rows 0..n_rows dequantized back to back into out, bypassing the caches where the
     * instruction set allows (for whole tables far larger than them); the stores are complete
     * when it returns. */
    void (*dequantize_rows_stream)(const uint8_t *codes, int64_t codes_stride,
                                   const float *scales, int64_t n_rows, int64_t dim, float *out);
    /* Sum rows ids[begin..end) (weighted when weights != NULL, skipping padding_idx) into out,
     * in id order: out[j] = ((0 + t_0) + t_1) + ..., t_k = weight_k * ((q - 128) * scale), each
     * product rounded to float32. Returns the position of the first id found outside
     * [0, n_rows) (that row is left out), or -1. */
    int64_t (*pool_bag)(const rq_bag_rows *rows, const float *weights, int64_t begin,
                        int64_t end, float *out);
    /* out[j] = the largest (q - 128) * scale of column j over rows ids[begin..end), skipping
     * padding_idx, in id order with a later value kept only when strictly greater (which
     * decides between -0 and +0); zeros when no row is pooled. Returns as pool_bag. */
    int64_t (*max_bag)(const rq_bag_rows *rows, int64_t begin, int64_t end, float *out);
} rq_kernels;

/* The variants, one kernel file each; dispatch.c lists those compiled in, best first. */
extern const rq_kernels rq_kernels_scalar;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RQ_X86 1
extern const rq_kernels rq_kernels_avx2;
extern const rq_kernels rq_kernels_avx512;
/* The memory-bound AVX2 kernels, which the AVX-512 table shares: wider registers do not make
 * memory faster, and one copy of them is one copy to test. */
void rq_avx2_dequantize_row(const uint8_t *codes, float scale, int64_t dim, float *out);
void rq_avx2_dequantize_rows_stream(const uint8_t *codes, int64_t codes_stride,
                                    const float *scales, int64_t n_rows, int64_t dim, float *out);
int64_t rq_avx2_pool_bag(const rq_bag_rows *rows, const float *weights, int64_t begin,
                         int64_t end, float *out);
int64_t rq_avx2_max_bag(const rq_bag_rows *rows, int64_t begin, int64_t end, float *out);
#endif

static inline uint32_t rq_float_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/* The value of one code: code - 128 is exact in float32, so the multiply is the one rounding
 * the contract allows. */
static inline float rq_dequantized(uint8_t code, float scale)
{
    return (float)((int32_t)code - RQ_BIAS) * scale;
}

/* Column of the first NaN or inf in values[0..dim), or -1. */
static inline int64_t rq_first_nonfinite(const float *values, int64_t dim)
{
    for (int64_t j = 0; j < dim; j++)
        if ((rq_float_bits(values[j]) & RQ_ABS_MASK) >= RQ_INF_BITS) return j;
    return -1;
}

/* The scale of a row whose largest magnitude has the bits max_bits (finite). */
static inline float rq_scale_from_max_bits(uint32_t max_bits)
{
    float row_max;
    memcpy(&row_max, &max_bits, sizeof row_max);
    return row_max / 127.0f; /* one float32 division, as the contract says */
}

/* Codes of values[0..n) for a scale s > 0, by the definition: both operands are float32, so one
 * float64 division is close enough to take floor(v / s + 128.5) exactly (DESIGN.md section 1);
 * a reciprocal multiply would not be. The clamp only acts when s is a subnormal too coarse for
 * max / s to stay below 127.5. Truncation is floor here: the shifted value is >= 1. */
static inline void rq_codes_exact(const float *restrict values, int64_t n, float s,
                                  uint8_t *restrict codes)
{
    const double s64 = (double)s;
    for (int64_t j = 0; j < n; j++) {
        double shifted = (double)values[j] / s64 + 128.5;
        shifted = shifted < 1.0 ? 1.0 : shifted;
        shifted = shifted > 255.0 ? 255.0 : shifted;
        codes[j] = (uint8_t)(int32_t)shifted;
    }
}

/* Gathers prefetch the row this many ids ahead: enough to cover a memory access while the
 * rows before it are converted. */
#define RQ_PREFETCH_IDS 8

/* Every cache line the row touches: rows need not start on a line, so the lines are counted
 * from the one holding the first code to the one holding the last. */
static inline void rq_prefetch_row(const uint8_t *codes, const float *scale, int64_t dim)
{
    const uintptr_t first = (uintptr_t)codes & ~(uintptr_t)63;
    for (uintptr_t line = first; line < (uintptr_t)codes + (uintptr_t)dim; line += 64)
        __builtin_prefetch((const void *)line);
    __builtin_prefetch(scale);
}

/* Whether row is a row of the table: negative ids wrap to huge and fail too. */
static inline int rq_valid_row(int64_t row, int64_t n_rows)
{
    return (uint64_t)row < (uint64_t)n_rows;
}

/* Prefetch row ids[k] when k < n_ids and the id is valid: an id changed by another thread must
 * not even form a pointer outside the table. */
static inline void rq_prefetch_id(const rq_bag_rows *rows, int64_t k)
{
    if (k >= rows->n_ids) return;
    const int64_t row = rows->ids[k];
    if (rq_valid_row(row, rows->n_rows))
        rq_prefetch_row(rows->codes + row * rows->codes_stride, rows->scales + row, rows->dim);
}

/* Keep in *bad the smallest position k of an id found outside the table: a kernel that reads
 * the ids in several passes (over groups of columns) may find an earlier one in a later pass. */
static inline void rq_note_bad(int64_t *bad, int64_t k)
{
    if (*bad < 0 || k < *bad) *bad = k;
}

/* The codes and scale of row ids[k] of a bag, or NULL for an id that adds nothing: padding_idx,
 * or an id outside the table, whose position goes to *bad unless an earlier one is there. The
 * id is read once. Also prefetches the row RQ_PREFETCH_IDS ids later. */
static inline const uint8_t *rq_bag_row(const rq_bag_rows *rows, int64_t k, float *scale,
                                        int64_t *bad)
{
    rq_prefetch_id(rows, k + RQ_PREFETCH_IDS);
    const int64_t row = rows->ids[k];
    if (!rq_valid_row(row, rows->n_rows)) {
        rq_note_bad(bad, k);
        return NULL;
    }
    if (row == rows->padding_idx) return NULL;
    *scale = rows->scales[row];
    return rows->codes + row * rows->codes_stride;
}

/* Below this scale the float32 fast paths hand a row to rq_codes_exact: their two-FMA proof
 * needs products of the scale to stay clear of float32's subnormal range. */
#define RQ_FAST_MIN_SCALE 0x1p-100f

#endif /* ROWQUANT_KERNELS_H */
