/* Internal: the per-instruction-set kernel table and the scalar pieces every variant shares.
 * Not part of the public header; only csrc/ includes it. */
#ifndef ROWQUANT_KERNELS_H
#define ROWQUANT_KERNELS_H

#include <stdint.h>
#include <string.h>

#include "rowquant.h" /* RQ_BIAS */

#define RQ_ABS_MASK 0x7fffffffu
#define RQ_INF_BITS 0x7f800000u

/* The float32 value of IEEE half-precision bits, exactly (every half is a float). */
static inline float rq_half_to_float(uint16_t half)
{
    const uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    const uint32_t exponent = (half >> 10) & 0x1fu;
    const uint32_t mantissa = half & 0x3ffu;
    uint32_t bits;
    if (exponent == 0) { /* zero or subnormal: mantissa * 2**-24, exact in float32 */
        float value = (float)mantissa * 0x1p-24f;
        memcpy(&bits, &value, sizeof bits);
        bits |= sign;
    } else if (exponent == 31) { /* inf or NaN, the payload kept */
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* The scales of a table, one per row, in one of the rq_scale_format encodings. A scale is
 * widened to float32 where a row is read (exactly: every bfloat16 and float16 is a float32),
 * so a table with 16-bit scales is served as it is stored, never copied. */
typedef struct rq_scales {
    const void *data;
    int format;
} rq_scales;

static inline float rq_scale_at(rq_scales scales, int64_t row)
{
    if (scales.format == RQ_SCALE_F32) return ((const float *)scales.data)[row];
    const uint16_t bits = ((const uint16_t *)scales.data)[row];
    if (scales.format == RQ_SCALE_F16) return rq_half_to_float(bits);
    const uint32_t wide = (uint32_t)bits << 16; /* bfloat16: the top half of a float32 */
    float value;
    memcpy(&value, &wide, sizeof value);
    return value;
}

static inline const void *rq_scale_address(rq_scales scales, int64_t row)
{
    return (const char *)scales.data + row * (scales.format == RQ_SCALE_F32 ? 4 : 2);
}

/* Rows [first, first + n) of scales as float32: float32 scales as they are, 16-bit ones widened
 * into out (room for n), so that kernels taking a block of rows with float32 scales get 16-bit
 * ones through a buffer on the caller's stack. */
#define RQ_SCALE_BLOCK 256

static inline const float *rq_scales_block(rq_scales scales, int64_t first, int64_t n, float *out)
{
    if (scales.format == RQ_SCALE_F32) return (const float *)scales.data + first;
    for (int64_t i = 0; i < n; i++) out[i] = rq_scale_at(scales, first + i);
    return out;
}

/* The rows of one bag call: the table, and the flat ids that every bag of the call indexes.
 * Kernels check each id as they read it (another thread may change ids during the call) and
 * address the table with that checked value only. */
typedef struct rq_bag_rows {
    const uint8_t *codes;
    rq_scales scales;
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
    /* Bags first_bag..last_bag: bag b sums rows ids[bounds[b]..bounds[b + 1]) (weighted when
     * weights != NULL, skipping padding_idx) into out + b * out_stride in id order, as
     * rq_bag_fold defines it (the centered form included). One call covers many bags, so that
     * a bag costs no call. Returns the position of the first id found outside [0, n_rows)
     * (that row is left out), or -1. */
    int64_t (*pool_bags)(const rq_bag_rows *rows, const float *weights, const int64_t *bounds,
                         int64_t first_bag, int64_t last_bag, float *out, int64_t out_stride);
    /* out[j] = the largest (q - 128) * scale of column j over rows ids[begin..end), skipping
     * padding_idx, in id order with a later value kept only when strictly greater (which
     * decides between -0 and +0); zeros when no row is pooled. Returns as pool_bag. */
    int64_t (*max_bag)(const rq_bag_rows *rows, int64_t begin, int64_t end, float *out);
    /* The position of the first id outside [0, n_rows) (negative ids included), or -1: the
     * check of a call's ids before any work, which on long bags took longer than a tenth of
     * the pooling as a scalar loop. */
    int64_t (*first_bad_id)(const int64_t *ids, int64_t n_ids, int64_t n_rows);
    /* Scores of rows 0..n_rows (codes with row stride codes_stride) against queries
     * 0..n_queries (n_queries <= RQ_SCORE_QUERIES, rows of dim values back to back):
     *     scores[b * score_stride + i] = rq_score(sum, row_factors[i], query_factors[b]),
     * where sum is, for scores_exact, the lane sum (rq_fold_lanes) of the row's dequantized
     * values times the float32 query's, and for scores_fast the exact integer
     * sum_j (codes[i][j] - 128) * queries[b][j] over int8 queries (see RQ_FAST_CHUNK), which
     * are query codes minus 128, so within -127..127 (the AVX2 kernel's sign trick needs it). A
     * kernel reads nothing past a row's dim codes nor past the last query. */
    void (*scores_exact)(const uint8_t *codes, int64_t codes_stride, const float *scales,
                         int64_t n_rows, int64_t dim, const float *queries, int64_t n_queries,
                         const double *row_factors, const double *query_factors, float *scores,
                         int64_t score_stride);
    void (*scores_fast)(const uint8_t *codes, int64_t codes_stride, int64_t n_rows, int64_t dim,
                        const int8_t *queries, int64_t n_queries, const double *row_factors,
                        const double *query_factors, float *scores, int64_t score_stride);
} rq_kernels;

/* The scalar score kernels, until a variant has its own (same bits, by definition). */
void rq_scalar_scores_exact(const uint8_t *codes, int64_t codes_stride, const float *scales,
                            int64_t n_rows, int64_t dim, const float *queries, int64_t n_queries,
                            const double *row_factors, const double *query_factors,
                            float *scores, int64_t score_stride);
void rq_scalar_scores_fast(const uint8_t *codes, int64_t codes_stride, int64_t n_rows,
                           int64_t dim, const int8_t *queries, int64_t n_queries,
                           const double *row_factors, const double *query_factors,
                           float *scores, int64_t score_stride);

/* The variants, one kernel file each; dispatch.c lists those compiled in, best first. */
extern const rq_kernels rq_kernels_scalar;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RQ_X86 1
extern const rq_kernels rq_kernels_avx2;
extern const rq_kernels rq_kernels_avx512;
extern const rq_kernels rq_kernels_avx512vnni;
/* The AVX2 kernels the AVX-512 table shares: the streaming whole-table dequantize runs at the
 * speed of memory already, and max bags are rare; one copy of them is one copy to test. */
void rq_avx2_dequantize_rows_stream(const uint8_t *codes, int64_t codes_stride,
                                    const float *scales, int64_t n_rows, int64_t dim, float *out);
int64_t rq_avx2_max_bag(const rq_bag_rows *rows, int64_t begin, int64_t end, float *out);
/* The fast scores of processors with AVX-512 but not its VNNI instructions (Skylake-SP). */
void rq_avx2_scores_fast(const uint8_t *codes, int64_t codes_stride, int64_t n_rows, int64_t dim,
                         const int8_t *queries, int64_t n_queries, const double *row_factors,
                         const double *query_factors, float *scores, int64_t score_stride);
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

/* Always inlined: kernels call these with literal counts so that their loops unroll and their
 * sums stay in registers. */
#define RQ_INLINE static inline __attribute__((always_inline))

/* The largest scale for which fma(q, s, -128 s) is the exact (q - 128) * s rounded once (-128 s
 * is exact while 128 s is finite); other scales, zero included ((q - 128) * 0 is -0 for
 * q < 128, which the FMA would round to +0), take the plain multiply. */
#define RQ_FMA_MAX_SCALE 0x1p120f

/* 0 < scale <= RQ_FMA_MAX_SCALE, on the bits: positive floats order as their bits, and -0,
 * negative scales and NaN have bits above those of RQ_FMA_MAX_SCALE, +0 wraps around to the
 * top. One integer compare, where two float ones kept a zero register busy. */
static inline int rq_fma_scale(float scale)
{
    return rq_float_bits(scale) - 1u < rq_float_bits(RQ_FMA_MAX_SCALE);
}

/* The factor of a bag's term for id position k: the row's scale, times the id's weight in a
 * weighted bag (one float32 multiply). */
static inline float rq_bag_factor(float scale, const float *weights, int64_t k)
{
    return weights ? scale * weights[k] : scale;
}

/* Bags are summed in FBGEMM's form, one FMA per element: with f_k = rq_bag_factor(s, w, k) for
 * the bag's rows in id order,
 *     sum[j] = fma(q_kj, f_k, sum[j])   from +0, the codes unshifted,
 *     total  = total + f_k              (float32) from +0,
 *     out[j] = fma(-128, total, sum[j]),
 * so that a 16-value step is a convert and an FMA, the bias -128 f_k being added once per bag.
 * Where that gives a value that is not finite (the unshifted sums reach twice the magnitude
 * of the result, and may overflow), the bag is summed again term by term instead,
 * out[j] = fma(q_kj - 128, f_k, out[j]) from +0: rq_pool_bag_centered. Every path, and
 * rowquant.reference, computes exactly this. */
static inline float rq_bag_fold(uint8_t code, float factor, float sum)
{
    return __builtin_fmaf((float)code, factor, sum);
}

static inline float rq_bag_finish(float sum, float total)
{
    return __builtin_fmaf(-(float)RQ_BIAS, total, sum);
}

/* Whether values[0..n) are all finite (an integer max over the magnitude bits, which
 * vectorizes). */
static inline int rq_all_finite(const float *values, int64_t n)
{
    uint32_t max_bits = 0;
    for (int64_t j = 0; j < n; j++) {
        const uint32_t bits = rq_float_bits(values[j]) & RQ_ABS_MASK;
        max_bits = bits > max_bits ? bits : max_bits;
    }
    return max_bits < RQ_INF_BITS;
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
static inline void rq_prefetch_row(const uint8_t *codes, const void *scale, int64_t dim)
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
        rq_prefetch_row(rows->codes + row * rows->codes_stride,
                        rq_scale_address(rows->scales, row), rows->dim);
}

/* The scalar check of ids[begin..n_ids), for every variant's tail. */
static inline int64_t rq_first_bad_id_from(const int64_t *ids, int64_t begin, int64_t n_ids,
                                           int64_t n_rows)
{
    for (int64_t k = begin; k < n_ids; k++)
        if (!rq_valid_row(ids[k], n_rows)) return k;
    return -1;
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
    *scale = rq_scale_at(rows->scales, row);
    return rows->codes + row * rows->codes_stride;
}

/* The centered form of a bag (see rq_bag_fold), for bags whose fast form is not finite. */
static inline int64_t rq_pool_bag_centered(const rq_bag_rows *rows, const float *weights,
                                           int64_t begin, int64_t end, float *out)
{
    const rq_bag_rows table = *rows; /* registers, not reloads after each store to out */
    int64_t bad = -1;
    float scale;
    for (int64_t j = 0; j < table.dim; j++) out[j] = 0.0f;
    for (int64_t k = begin; k < end; k++) {
        const uint8_t *row_codes = rq_bag_row(&table, k, &scale, &bad);
        if (!row_codes) continue;
        const float factor = rq_bag_factor(scale, weights, k);
        for (int64_t j = 0; j < table.dim; j++)
            out[j] = __builtin_fmaf((float)((int32_t)row_codes[j] - RQ_BIAS), factor, out[j]);
    }
    return bad;
}

/* Bag kernels prefetch the columns they are about to sum of the row this many ids later (in
 * the same bag or the next ones). */
#define RQ_BAG_AHEAD 12

/* A prefetch the compiler keeps where it is written: GCC 12 dropped the __builtin_prefetch
 * calls of the AVX-512 bag loop (when it specialized the loop for a vector count), and bags
 * of 400000x300 took 15 ms instead of 7. */
static inline __attribute__((always_inline)) void rq_prefetch(const void *address)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)address));
#else
    __builtin_prefetch(address);
#endif
}

/* Prefetch `span` bytes (at most 512) from column col of row ids[later] and the row's scale,
 * where later < n_ids and the id is a row of the table (else those of row 0, harmlessly).
 * Branch-free, with a fixed count of lines. */
static inline __attribute__((always_inline)) void rq_prefetch_columns(const rq_bag_rows *rows,
                                                                      int64_t later, int64_t col,
                                                                      int64_t span)
{
    const int64_t at = later < rows->n_ids ? later : rows->n_ids - 1;
    int64_t row = rows->ids[at];
    row = rq_valid_row(row, rows->n_rows) ? row : 0;
    const uint8_t *first = rows->codes + row * rows->codes_stride + col;
    _Pragma("GCC unroll 8") for (int line = 0; line < 8; line++)
        if (64 * line < span) rq_prefetch(first + 64 * line);
    rq_prefetch(first + span - 1);
    rq_prefetch(rq_scale_address(rows->scales, row));
}

/* One id of a bag in the SIMD pool loops: prefetch the same columns of the row RQ_BAG_AHEAD
 * ids later, read ids[k] once and check it. Returns the row's codes from column col, with its
 * factor in *factor, added to *total; or NULL for padding_idx and for an id outside the table,
 * whose position goes to *bad (see rq_note_bad). */
RQ_INLINE const uint8_t *rq_bag_step(const rq_bag_rows *table, const float *weights, int64_t k,
                                     int64_t col, int64_t span, int64_t *bad, float *factor,
                                     float *total)
{
    rq_prefetch_columns(table, k + RQ_BAG_AHEAD, col, span);
    const int64_t row = table->ids[k];
    if (!rq_valid_row(row, table->n_rows)) {
        rq_note_bad(bad, k);
        return NULL;
    }
    if (row == table->padding_idx) return NULL;
    *factor = rq_bag_factor(rq_scale_at(table->scales, row), weights, k);
    *total += *factor;
    return table->codes + row * table->codes_stride + col;
}

/* ------------------------------------------------------------------ similarity */

/* The most queries one call of a scores kernel takes: the driver (similarity.c) hands them a
 * block of rows and up to this many queries at a time, so a kernel may keep a row's work for
 * every query of the block on its stack or in registers. */
#define RQ_SCORE_QUERIES 16

/* Exact sums run in 8 float64 lanes, column j adding to lane j % 8 from +0 in column order
 * (a product of two float32 values is exact in float64, so FMA or not gives the same lanes;
 * and lanes from +0 are never -0, so masked-off columns adding +0 change nothing), then fold
 * as a vector of 8 lanes folds in halves: ((0+4) + (2+6)) + ((1+5) + (3+7)). */
#define RQ_DOT_LANES 8

static inline double rq_fold_lanes(const double lanes[RQ_DOT_LANES])
{
    return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) +
           ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
}

/* Every score's last step, in float64 then rounded once to float32 (out of range: +-inf). */
static inline float rq_score(double sum, double row_factor, double query_factor)
{
    return (float)((sum * row_factor) * query_factor);
}

/* Fast sums add int32 partial sums of at most this many columns into an int64: a product of
 * a code (0..255, or 128 below and above after centering) and a query code (-127..127) is at
 * most 255 * 127 = 32385 in magnitude, and 65536 of them, 2122383360, stay below 2^31 - 1 =
 * 2147483647, whether a kernel sums the codes as they are (uint8 by int8, as vpdpbusd does,
 * taking 128 * the query's sum off afterwards) or centered. */
#define RQ_FAST_CHUNK 65536

/* Below this scale the float32 fast paths hand a row to rq_codes_exact: their two-FMA proof
 * needs products of the scale to stay clear of float32's subnormal range. */
#define RQ_FAST_MIN_SCALE 0x1p-100f

#endif /* ROWQUANT_KERNELS_H */
