/* AVX2 + FMA kernels, compiled for that target only inside this file and chosen at run time
 * (dispatch.c) when supported() finds both. Same bits as kernels_scalar.c. */
#include "kernels.h"

#ifdef RQ_X86
/* Compiled before the target region below: it runs on processors without AVX2. */
static int supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>

/* Largest magnitude bits of the row (see kernels_scalar.c: NaN/inf sort above finite values). */
static uint32_t max_abs_bits(const float *values, int64_t dim)
{
    const __m256i mask = _mm256_set1_epi32((int)RQ_ABS_MASK);
    __m256i m0 = _mm256_setzero_si256(), m1 = m0, m2 = m0, m3 = m0;
    int64_t j = 0;
    for (; j + 32 <= dim; j += 32) {
        m0 = _mm256_max_epu32(m0, _mm256_and_si256(mask, _mm256_loadu_si256((const __m256i *)(values + j))));
        m1 = _mm256_max_epu32(m1, _mm256_and_si256(mask, _mm256_loadu_si256((const __m256i *)(values + j + 8))));
        m2 = _mm256_max_epu32(m2, _mm256_and_si256(mask, _mm256_loadu_si256((const __m256i *)(values + j + 16))));
        m3 = _mm256_max_epu32(m3, _mm256_and_si256(mask, _mm256_loadu_si256((const __m256i *)(values + j + 24))));
    }
    for (; j + 8 <= dim; j += 8)
        m0 = _mm256_max_epu32(m0, _mm256_and_si256(mask, _mm256_loadu_si256((const __m256i *)(values + j))));
    __m256i m = _mm256_max_epu32(_mm256_max_epu32(m0, m1), _mm256_max_epu32(m2, m3));
    __m128i h = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    h = _mm_max_epu32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_max_epu32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    uint32_t max_bits = (uint32_t)_mm_cvtsi128_si32(h);
    for (; j < dim; j++) {
        uint32_t bits = rq_float_bits(values[j]) & RQ_ABS_MASK;
        max_bits = bits > max_bits ? bits : max_bits;
    }
    return max_bits;
}

/* Codes of 8 values as int32. A candidate from the reciprocal is within one of the exact code;
 * c is exact iff (c - 128.5) * s <= v < (c - 127.5) * s, and an FMA evaluates each side's
 * difference with one rounding, which keeps its sign (scales >= RQ_FAST_MIN_SCALE keep the
 * products far from subnormals). So the two comparisons decide the exact code. */
static inline __m256i codes8(__m256 v, __m256 s, __m256 inv)
{
    const __m256 half_up = _mm256_set1_ps(128.5f), half_down = _mm256_set1_ps(127.5f);
    const __m256 one = _mm256_set1_ps(1.0f), top = _mm256_set1_ps(255.0f);
    __m256 c = _mm256_floor_ps(_mm256_add_ps(_mm256_mul_ps(v, inv), half_up));
    __m256 too_big = _mm256_cmp_ps(_mm256_fmsub_ps(_mm256_sub_ps(c, half_up), s, v),
                                   _mm256_setzero_ps(), _CMP_GT_OQ);
    __m256 too_small = _mm256_cmp_ps(_mm256_fmsub_ps(_mm256_sub_ps(c, half_down), s, v),
                                     _mm256_setzero_ps(), _CMP_LE_OQ);
    c = _mm256_sub_ps(c, _mm256_and_ps(too_big, one));
    c = _mm256_add_ps(c, _mm256_and_ps(too_small, one));
    c = _mm256_min_ps(_mm256_max_ps(c, one), top);
    return _mm256_cvttps_epi32(c);
}

/* fma(v, inv, 128.5) is within 1.6e-5 of the exact v / s + 128.5 (inv rounds by at most 2^-24
 * relative, so v * inv is within 127.0001 * 2^-24 of v / s, and the FMA's one rounding adds at
 * most 2^-17 below 256). So wherever it lies 2^-14 or more from an integer its floor is the
 * exact code; lanes nearer one (exact ties among them) go through codes8. */
static inline __m256 shifted8(__m256 v, __m256 inv)
{
    return _mm256_fmadd_ps(v, inv, _mm256_set1_ps(128.5f));
}

static inline __m256 unsure8(__m256 shifted)
{
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32((int)RQ_ABS_MASK));
    __m256 nearest = _mm256_round_ps(shifted, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 distance = _mm256_and_ps(_mm256_sub_ps(shifted, nearest), abs_mask); /* exact */
    return _mm256_cmp_ps(distance, _mm256_set1_ps(0x1p-14f), _CMP_LT_OQ);
}

/* Codes of 8 values, decided exactly lane by lane; stores 8 bytes. */
static void store_codes8(const float *values, __m256 s, __m256 inv, uint8_t *codes)
{
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i c = codes8(_mm256_loadu_ps(values), s, inv);
    __m256i bytes = _mm256_packus_epi16(_mm256_packus_epi32(c, c), _mm256_setzero_si256());
    bytes = _mm256_permutevar8x32_epi32(bytes, order);
    _mm_storel_epi64((__m128i *)codes, _mm256_castsi256_si128(bytes));
}

/* The rare block of 32 with a lane near an integer, out of line so that the fast loop keeps
 * its constants in registers. */
__attribute__((noinline)) static void store_codes32_exact(const float *values, float scale,
                                                          uint8_t *codes)
{
    const __m256 s = _mm256_set1_ps(scale), inv = _mm256_set1_ps(1.0f / scale);
    for (int b = 0; b < 32; b += 8) store_codes8(values + b, s, inv, codes + b);
}

static void codes_fast(const float *values, int64_t dim, float scale, uint8_t *codes)
{
    const __m256 inv = _mm256_set1_ps(1.0f / scale);
    /* packs work within 128-bit lanes; this puts the four dwords of each lane back in order */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t j = 0;
    for (; j + 32 <= dim; j += 32) {
        const float *v = values + j;
        __m256 t0 = shifted8(_mm256_loadu_ps(v), inv), t1 = shifted8(_mm256_loadu_ps(v + 8), inv);
        __m256 t2 = shifted8(_mm256_loadu_ps(v + 16), inv), t3 = shifted8(_mm256_loadu_ps(v + 24), inv);
        __m256 unsure = _mm256_or_ps(_mm256_or_ps(unsure8(t0), unsure8(t1)),
                                     _mm256_or_ps(unsure8(t2), unsure8(t3)));
        if (_mm256_movemask_ps(unsure)) {
            store_codes32_exact(v, scale, codes + j);
            continue;
        }
        __m256i c01 = _mm256_packus_epi32(_mm256_cvttps_epi32(t0), _mm256_cvttps_epi32(t1));
        __m256i c23 = _mm256_packus_epi32(_mm256_cvttps_epi32(t2), _mm256_cvttps_epi32(t3));
        __m256i words = _mm256_packus_epi16(c01, c23);
        _mm256_storeu_si256((__m256i *)(codes + j), _mm256_permutevar8x32_epi32(words, order));
    }
    const __m256 s = _mm256_set1_ps(scale);
    for (; j + 8 <= dim; j += 8) store_codes8(values + j, s, inv, codes + j);
    rq_codes_exact(values + j, dim - j, scale, codes + j);
}

static void encode_row(const float *values, int64_t dim, float scale, uint8_t *codes)
{
    if (scale < RQ_FAST_MIN_SCALE)
        rq_codes_exact(values, dim, scale, codes);
    else
        codes_fast(values, dim, scale, codes);
}

static inline __m256 codes8_as_floats(const uint8_t *codes)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)codes)));
}

static inline __m256 values8(const uint8_t *codes, __m256 s, __m256 bias)
{
    return _mm256_fmadd_ps(codes8_as_floats(codes), s, bias);
}

static inline __m256 values8_sub(const uint8_t *codes, __m256 s)
{
    return _mm256_mul_ps(_mm256_sub_ps(codes8_as_floats(codes), _mm256_set1_ps((float)RQ_BIAS)), s);
}

/* values8 for any scale: the two products agree wherever both are defined */
static inline __m256 values8_any(const uint8_t *codes, float scale)
{
    const __m256 s = _mm256_set1_ps(scale);
    return rq_fma_scale(scale) ? values8(codes, s, _mm256_set1_ps(-(float)RQ_BIAS * scale))
                               : values8_sub(codes, s);
}

static void dequantize_tail(const uint8_t *codes, float scale, int64_t n, float *out)
{
    for (int64_t j = 0; j < n; j++) out[j] = rq_dequantized(codes[j], scale);
}

static void dequantize_row(const uint8_t *codes, float scale, int64_t dim, float *out)
{
    if (!rq_fma_scale(scale)) {
        dequantize_tail(codes, scale, dim, out);
        return;
    }
    const __m256 s = _mm256_set1_ps(scale), bias = _mm256_set1_ps(-(float)RQ_BIAS * scale);
    int64_t j = 0;
    for (; j + 32 <= dim; j += 32) {
        _mm256_storeu_ps(out + j, values8(codes + j, s, bias));
        _mm256_storeu_ps(out + j + 8, values8(codes + j + 8, s, bias));
        _mm256_storeu_ps(out + j + 16, values8(codes + j + 16, s, bias));
        _mm256_storeu_ps(out + j + 24, values8(codes + j + 24, s, bias));
    }
    for (; j + 8 <= dim; j += 8) _mm256_storeu_ps(out + j, values8(codes + j, s, bias));
    dequantize_tail(codes + j, scale, dim - j, out + j);
}

/* Rows 0..n_rows of the table dequantized one after another into out, with non-temporal
 * stores: every aligned 32-byte block of out is streamed, including blocks that straddle two
 * rows, so whole cache lines go to memory without first being read. */
void rq_avx2_dequantize_rows_stream(const uint8_t *codes, int64_t codes_stride,
                                   const float *scales, int64_t n_rows, int64_t dim, float *out)
{
    const int64_t total = n_rows * dim;
    if (dim < 8) { /* no vector fits in a row: plain stores */
        for (int64_t i = 0; i < n_rows; i++) {
            const int64_t row = i;
            for (int64_t j = 0; j < dim; j++)
                out[i * dim + j] = rq_dequantized(codes[row * codes_stride + j], scales[row]);
        }
        return;
    }
    int64_t f = (int64_t)(((32 - ((uintptr_t)out & 31)) & 31) / sizeof(float));
    f = f < total ? f : total;
    int64_t i = 0, j = 0; /* the (row, column) of output position f */
    for (int64_t g = 0; g < f; g++) {
        const int64_t row = i;
        out[g] = rq_dequantized(codes[row * codes_stride + j], scales[row]);
        if (++j == dim) i++, j = 0;
    }
    for (; f + 8 <= total; f += 8) {
        const int64_t row = i;
        if (j + 8 <= dim) {
            _mm256_stream_ps(out + f, values8_any(codes + row * codes_stride + j, scales[row]));
            j += 8;
            if (j == dim) i++, j = 0;
        } else {
            /* the block holds the last `left` values of this row, then the next row's first:
             * rotate the last 8 of this row and the first 8 of the next into place, blend */
            const int64_t next = i + 1;
            const int left = (int)(dim - j);
            const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            const __m256i rotate = _mm256_and_si256(_mm256_sub_epi32(lane, _mm256_set1_epi32(left)),
                                                    _mm256_set1_epi32(7));
            __m256 tail = values8_any(codes + row * codes_stride + dim - 8, scales[row]);
            __m256 head = values8_any(codes + next * codes_stride, scales[next]);
            __m256 from_tail = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane));
            __m256 block = _mm256_blendv_ps(_mm256_permutevar8x32_ps(head, rotate),
                                            _mm256_permutevar8x32_ps(tail, rotate), from_tail);
            _mm256_stream_ps(out + f, block);
            i++;
            j = 8 - left;
        }
    }
    for (; f < total; f++) {
        const int64_t row = i;
        out[f] = rq_dequantized(codes[row * codes_stride + j], scales[row]);
        if (++j == dim) i++, j = 0;
    }
    _mm_sfence();
}

/* Up to this many vectors of columns are summed in registers in one pass over a bag's rows
 * (12 sums, the factor, the total and the codes fill the sixteen registers). */
#define RQ_YMM_PASS 12

/* Sum the bag's rows over `vectors` vectors of columns in the fast form of rq_bag_fold. Vector
 * v starts at column col + 8 v, except the last, which starts at last_col (a row whose width is
 * not a multiple of 8 ends with a vector overlapping the one before: its lanes are the same
 * columns' sums, so storing them twice stores the same bits). vectors is a literal at every
 * call (pool_vectors), so the sums stay in registers. Each step prefetches the same columns of
 * the row RQ_BAG_AHEAD ids later, in this bag or the next. */
RQ_INLINE void pool_columns(const rq_bag_rows *rows, const float *weights, int64_t begin,
                            int64_t end, int64_t col, int vectors, int64_t last_col, float *out,
                            int64_t *bad, int *nonfinite)
{
    const rq_bag_rows table = *rows; /* registers, not reloads after each store */
    const int64_t span = last_col + 8 - col;
    float total = 0.0f;
    __m256 acc[RQ_YMM_PASS];
    _Pragma("GCC unroll 32") for (int v = 0; v < vectors; v++) acc[v] = _mm256_setzero_ps();
    float factor;
    for (int64_t k = begin; k < end; k++) {
        const uint8_t *codes = rq_bag_step(&table, weights, k, col, span, bad, &factor, &total);
        if (!codes) continue;
        const __m256 f = _mm256_set1_ps(factor);
        _Pragma("GCC unroll 32") for (int v = 0; v < vectors; v++) {
            const int64_t at = v == vectors - 1 ? last_col - col : 8 * v;
            acc[v] = _mm256_fmadd_ps(codes8_as_floats(codes + at), f, acc[v]);
        }
    }
    const __m256 bias = _mm256_set1_ps(-(float)RQ_BIAS), t = _mm256_set1_ps(total);
    __m256 unordered = _mm256_setzero_ps(); /* x - x is NaN exactly where x is inf or NaN */
    _Pragma("GCC unroll 32") for (int v = 0; v < vectors; v++) {
        const __m256 value = _mm256_fmadd_ps(bias, t, acc[v]);
        unordered = _mm256_or_ps(unordered, _mm256_sub_ps(value, value));
        _mm256_storeu_ps(out + (v == vectors - 1 ? last_col : col + 8 * v), value);
    }
    *nonfinite |= _mm256_movemask_ps(_mm256_cmp_ps(unordered, unordered, _CMP_UNORD_Q)) != 0;
}

#define RQ_POOL_CASE(n) \
    case n: pool_columns(rows, weights, begin, end, col, n, last_col, out, bad, nonfinite); break;

/* pool_columns with a literal vector count for each of 1..RQ_YMM_PASS. */
static void pool_vectors(const rq_bag_rows *rows, const float *weights, int64_t begin,
                         int64_t end, int64_t col, int vectors, int64_t last_col, float *out,
                         int64_t *bad, int *nonfinite)
{
    switch (vectors) {
        RQ_POOL_CASE(1) RQ_POOL_CASE(2) RQ_POOL_CASE(3) RQ_POOL_CASE(4) RQ_POOL_CASE(5)
        RQ_POOL_CASE(6) RQ_POOL_CASE(7) RQ_POOL_CASE(8) RQ_POOL_CASE(9) RQ_POOL_CASE(10)
        RQ_POOL_CASE(11) RQ_POOL_CASE(12)
    }
}
#undef RQ_POOL_CASE

/* Rows narrower than a vector: the scalar kernel's loops (fmaf is one instruction here). */
static int64_t pool_narrow(const rq_bag_rows *rows, const float *weights, int64_t begin,
                           int64_t end, float *out)
{
    const rq_bag_rows table = *rows; /* registers, not reloads after each store to out */
    int64_t bad = -1;
    float scale, total = 0.0f;
    for (int64_t t = 0; t < table.dim; t++) out[t] = 0.0f;
    for (int64_t k = begin; k < end; k++) {
        const uint8_t *row_codes = rq_bag_row(&table, k, &scale, &bad);
        if (!row_codes) continue;
        const float factor = rq_bag_factor(scale, weights, k);
        total += factor;
        for (int64_t t = 0; t < table.dim; t++) out[t] = rq_bag_fold(row_codes[t], factor, out[t]);
    }
    for (int64_t t = 0; t < table.dim; t++) out[t] = rq_bag_finish(out[t], total);
    if (!rq_all_finite(out, table.dim)) return rq_pool_bag_centered(rows, weights, begin, end, out);
    return bad;
}

/* Passes of at most RQ_YMM_PASS vectors, of near-equal sizes, over the row's columns. */
static int64_t pool_bag(const rq_bag_rows *rows, const float *weights, int64_t begin,
                        int64_t end, float *out)
{
    const int64_t dim = rows->dim;
    if (dim < 8) return dim > 0 ? pool_narrow(rows, weights, begin, end, out) : -1;
    int64_t bad = -1;
    const int64_t total = (dim + 7) / 8;
    const int64_t passes = (total + RQ_YMM_PASS - 1) / RQ_YMM_PASS;
    int nonfinite = 0; /* whether a result is not finite */
    int64_t done = 0;
    for (int64_t p = 0; p < passes; p++) {
        const int64_t vectors = total * (p + 1) / passes - total * p / passes;
        const int64_t col = 8 * done;
        const int64_t last_col = done + vectors == total ? dim - 8 : col + 8 * (vectors - 1);
        pool_vectors(rows, weights, begin, end, col, (int)vectors, last_col, out, &bad,
                     &nonfinite);
        done += vectors;
    }
    if (nonfinite) return rq_pool_bag_centered(rows, weights, begin, end, out);
    return bad;
}

/* Bags whose rows take one pass of `vectors` vectors (a literal: pool_bags), all in one loop,
 * so that a bag costs no call and its sums are registers from start to store. */
RQ_INLINE int64_t pool_bags_one_pass(const rq_bag_rows *rows, const float *weights,
                                     const int64_t *bounds, int64_t first_bag,
                                     int64_t last_bag, float *out, int64_t out_stride,
                                     int vectors, int64_t last_col)
{
    int64_t bad = -1;
    for (int64_t b = first_bag; b < last_bag; b++) {
        const int64_t begin = bounds[b], end = bounds[b + 1];
        float *bag_out = out + b * out_stride;
        int nonfinite = 0;
        pool_columns(rows, weights, begin, end, 0, vectors, last_col, bag_out, &bad, &nonfinite);
        if (nonfinite) rq_pool_bag_centered(rows, weights, begin, end, bag_out);
    }
    return bad;
}

#define RQ_POOL_BAGS_CASE(n) \
    case n: \
        return pool_bags_one_pass(rows, weights, bounds, first_bag, last_bag, out, out_stride, n, \
                                  last_col);

static int64_t pool_bags(const rq_bag_rows *rows, const float *weights, const int64_t *bounds,
                         int64_t first_bag, int64_t last_bag, float *out, int64_t out_stride)
{
    const int64_t dim = rows->dim, vectors = (dim + 7) / 8, last_col = dim - 8;
    if (dim >= 8 && vectors <= RQ_YMM_PASS) {
        switch (vectors) {
            RQ_POOL_BAGS_CASE(1) RQ_POOL_BAGS_CASE(2) RQ_POOL_BAGS_CASE(3) RQ_POOL_BAGS_CASE(4)
            RQ_POOL_BAGS_CASE(5) RQ_POOL_BAGS_CASE(6) RQ_POOL_BAGS_CASE(7) RQ_POOL_BAGS_CASE(8)
            RQ_POOL_BAGS_CASE(9) RQ_POOL_BAGS_CASE(10) RQ_POOL_BAGS_CASE(11)
            RQ_POOL_BAGS_CASE(12)
        }
    }
    int64_t bad = -1; /* narrow rows, and rows of several passes: bag by bag */
    for (int64_t b = first_bag; b < last_bag; b++) {
        const int64_t found = pool_bag(rows, weights, bounds[b], bounds[b + 1], out + b * out_stride);
        if (bad < 0) bad = found; /* bags in order: the first found is the least */
    }
    return bad;
}
#undef RQ_POOL_BAGS_CASE

/* Column-wise max of a bag's rows, kept in out (the row is in the first level of cache, being
 * the one being written): out = max(value, out) lane by lane, which keeps out unless value is
 * strictly greater, the rule of the scalar kernel. */
int64_t rq_avx2_max_bag(const rq_bag_rows *rows, int64_t begin, int64_t end, float *out)
{
    const int64_t dim = rows->dim;
    int64_t bad = -1;
    int pooled = 0;
    float scale;
    for (int64_t k = begin; k < end; k++) {
        const uint8_t *row_codes = rq_bag_row(rows, k, &scale, &bad);
        if (!row_codes) continue;
        if (!pooled) {
            dequantize_row(row_codes, scale, dim, out);
            pooled = 1;
            continue;
        }
        int64_t j = 0;
        for (; j + 8 <= dim; j += 8)
            _mm256_storeu_ps(out + j, _mm256_max_ps(values8_any(row_codes + j, scale),
                                                    _mm256_loadu_ps(out + j)));
        for (; j < dim; j++) {
            const float value = rq_dequantized(row_codes[j], scale);
            out[j] = value > out[j] ? value : out[j];
        }
    }
    if (!pooled) memset(out, 0, (size_t)dim * sizeof(float));
    return bad;
}

/* 16 ids per step, compared as unsigned (the sign bit flipped on both sides), so that negative
 * ids are out of range too; the scalar loop finds the position in a step that has one. */
static int64_t first_bad_id(const int64_t *ids, int64_t n_ids, int64_t n_rows)
{
    if (n_rows <= 0) return n_ids > 0 ? 0 : -1; /* n_rows - 1 below must not wrap */
    const __m256i flip = _mm256_set1_epi64x(INT64_MIN);
    const __m256i last = _mm256_xor_si256(_mm256_set1_epi64x(n_rows - 1), flip);
    int64_t k = 0;
    for (; k + 16 <= n_ids; k += 16) {
        __m256i above = _mm256_setzero_si256();
        for (int b = 0; b < 16; b += 4) {
            const __m256i id = _mm256_loadu_si256((const __m256i *)(ids + k + b));
            above = _mm256_or_si256(above, _mm256_cmpgt_epi64(_mm256_xor_si256(id, flip), last));
        }
        if (!_mm256_testz_si256(above, above)) return rq_first_bad_id_from(ids, k, n_ids, n_rows);
    }
    return rq_first_bad_id_from(ids, k, n_ids, n_rows);
}

/* ------------------------------------------------------------------ scores */

/* Rows per block of the score kernels: each step's codes serve every query of the block, and
 * each query's load serves every row. */
#define RQ_AVX2_SCORE_ROWS 2
/* Queries per block of the fast kernel (8 sums in registers: 2 rows x 4 queries). */
#define RQ_AVX2_FAST_QUERIES 4

/* The row pointer of row i of a block, rows past the table's end standing in as its last row:
 * they are read (it is read anyway) and their sums thrown away, so no block is a special case. */
static inline const uint8_t *block_row(const uint8_t *codes, int64_t codes_stride,
                                       int64_t n_rows, int64_t i)
{
    return codes + (i < n_rows ? i : n_rows - 1) * codes_stride;
}

/* sum_j (q_j - 128) * x_j over 32 columns into 8 int32 lanes. vpmaddubsw multiplies unsigned by
 * signed bytes, but saturates its pair sums, which the codes as they are would reach
 * (2 * 255 * 127 > 32767). With c = q ^ 0x80 (q - 128 as int8), |c| (0..128, the 128 of
 * |-128| read unsigned) times sign(c) * x (x in -127..127: no overflow) is the same product, a
 * pair at most 2 * 128 * 127 = 32512: exact. vpmaddwd by ones adds the pairs into int32. */
RQ_INLINE __m256i centered_dot32(__m256i magnitude, __m256i centered, __m256i query)
{
    const __m256i pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(query, centered));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

/* `steps` steps of 32 columns of the block's rows (at rows[r]) by n_q queries (a literal; at
 * queries[b]), into acc[b * 2 + r]. */
RQ_INLINE void fast_steps(const uint8_t *const rows[RQ_AVX2_SCORE_ROWS],
                          const int8_t *const queries[RQ_AVX2_FAST_QUERIES], int n_q,
                          int64_t steps, __m256i acc[8])
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t s = 0; s < steps; s++) {
        __m256i centered[RQ_AVX2_SCORE_ROWS], magnitude[RQ_AVX2_SCORE_ROWS];
        for (int r = 0; r < RQ_AVX2_SCORE_ROWS; r++) {
            centered[r] = _mm256_xor_si256(
                _mm256_loadu_si256((const __m256i *)(rows[r] + 32 * s)), flip);
            magnitude[r] = _mm256_abs_epi8(centered[r]);
        }
        for (int b = 0; b < n_q; b++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)(queries[b] + 32 * s));
            for (int r = 0; r < RQ_AVX2_SCORE_ROWS; r++)
                acc[b * 2 + r] = _mm256_add_epi32(
                    acc[b * 2 + r], centered_dot32(magnitude[r], centered[r], x));
        }
    }
}

/* fast_steps with a literal query count for each of 1..RQ_AVX2_FAST_QUERIES. */
static void fast_steps_any(const uint8_t *const rows[RQ_AVX2_SCORE_ROWS],
                           const int8_t *const queries[RQ_AVX2_FAST_QUERIES], int n_q,
                           int64_t steps, __m256i acc[8])
{
    switch (n_q) {
    case 1: fast_steps(rows, queries, 1, steps, acc); break;
    case 2: fast_steps(rows, queries, 2, steps, acc); break;
    case 3: fast_steps(rows, queries, 3, steps, acc); break;
    default: fast_steps(rows, queries, 4, steps, acc); break;
    }
}

/* Lane k of the result is the sum of v[k]'s 8 lanes (the order is free: integers, and every
 * partial sum is the sum of a subset of one chunk's products, in range). */
RQ_INLINE __m256i sums8(const __m256i v[8])
{
    const __m256i low = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i high = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(low, high, 0x20),
                            _mm256_permute2x128_si256(low, high, 0x31));
}

/* The fast scores at 32 columns a step. The last dim % 32 columns of each row and query are
 * copied to a padded buffer (codes 128 and queries 0, which add 0), so no load passes the end
 * of a row: the table's last row may end where its mapping does. Chunks of RQ_FAST_CHUNK
 * columns (a multiple of 32: only the last has a tail) sum in int32, then into int64. */
void rq_avx2_scores_fast(const uint8_t *codes, int64_t codes_stride, int64_t n_rows, int64_t dim,
                         const int8_t *queries, int64_t n_queries, const double *row_factors,
                         const double *query_factors, float *scores, int64_t score_stride)
{
    const int64_t tail = dim % 32, full = dim - tail;
    int8_t query_tails[RQ_SCORE_QUERIES][32];
    memset(query_tails, 0, sizeof query_tails);
    for (int64_t b = 0; b < n_queries; b++)
        memcpy(query_tails[b], queries + b * dim + full, (size_t)tail);
    for (int64_t i0 = 0; i0 < n_rows; i0 += RQ_AVX2_SCORE_ROWS) {
        const uint8_t *rows[RQ_AVX2_SCORE_ROWS], *row_tails[RQ_AVX2_SCORE_ROWS];
        uint8_t tails[RQ_AVX2_SCORE_ROWS][32];
        for (int r = 0; r < RQ_AVX2_SCORE_ROWS; r++) {
            rows[r] = block_row(codes, codes_stride, n_rows, i0 + r);
            memset(tails[r], RQ_BIAS, 32);
            memcpy(tails[r], rows[r] + full, (size_t)tail);
            row_tails[r] = tails[r];
        }
        for (int64_t b0 = 0; b0 < n_queries; b0 += RQ_AVX2_FAST_QUERIES) {
            const int n_q = (int)(n_queries - b0 < RQ_AVX2_FAST_QUERIES ? n_queries - b0
                                                                         : RQ_AVX2_FAST_QUERIES);
            const int8_t *query_tail[RQ_AVX2_FAST_QUERIES];
            for (int b = 0; b < n_q; b++) query_tail[b] = query_tails[b0 + b];
            int64_t totals[8] = {0};
            for (int64_t chunk = 0; chunk < dim; chunk += RQ_FAST_CHUNK) {
                const int64_t columns = dim - chunk < RQ_FAST_CHUNK ? dim - chunk : RQ_FAST_CHUNK;
                const uint8_t *at[RQ_AVX2_SCORE_ROWS];
                const int8_t *query_at[RQ_AVX2_FAST_QUERIES];
                for (int r = 0; r < RQ_AVX2_SCORE_ROWS; r++) at[r] = rows[r] + chunk;
                for (int b = 0; b < n_q; b++) query_at[b] = queries + (b0 + b) * dim + chunk;
                __m256i acc[8];
                for (int a = 0; a < 8; a++) acc[a] = _mm256_setzero_si256();
                fast_steps_any(at, query_at, n_q, columns / 32, acc);
                if (columns % 32) fast_steps_any(row_tails, query_tail, n_q, 1, acc);
                int32_t sums[8];
                _mm256_storeu_si256((__m256i *)sums, sums8(acc));
                for (int a = 0; a < 8; a++) totals[a] += sums[a];
            }
            for (int b = 0; b < n_q; b++)
                for (int r = 0; r < RQ_AVX2_SCORE_ROWS && i0 + r < n_rows; r++)
                    scores[(b0 + b) * score_stride + i0 + r] = rq_score(
                        (double)totals[b * 2 + r], row_factors[i0 + r], query_factors[b0 + b]);
        }
    }
}

/* 8 dequantized values of a row, (q - 128) * s in float32 as rq_dequantized, widened (exactly)
 * to float64: lanes 0-3 in low, 4-7 in high. */
RQ_INLINE void values8_wide(const uint8_t *codes, __m256 s, __m256d *low, __m256d *high)
{
    const __m256i centered = _mm256_sub_epi32(
        _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)codes)), _mm256_set1_epi32(RQ_BIAS));
    const __m256 values = _mm256_mul_ps(_mm256_cvtepi32_ps(centered), s);
    *low = _mm256_cvtps_pd(_mm256_castps256_ps128(values));
    *high = _mm256_cvtps_pd(_mm256_extractf128_ps(values, 1));
}

/* Queries per block of the exact kernel: 2 rows x 2 queries x 2 vectors of lanes. */
#define RQ_AVX2_EXACT_QUERIES 2

/* The exact lanes of a block, 8 columns a step up to the last multiple of 8, into
 * acc[(b * 2 + r) * 2 + half]: lane j % 8 of column j, as the scalar kernel, the product exact
 * in float64 (so the FMA rounds as its add does). */
RQ_INLINE void exact_steps(const uint8_t *const rows[RQ_AVX2_SCORE_ROWS],
                           const float scales[RQ_AVX2_SCORE_ROWS],
                           const float *const queries[RQ_AVX2_EXACT_QUERIES], int n_q,
                           int64_t columns, __m256d acc[8])
{
    __m256 s[RQ_AVX2_SCORE_ROWS];
    for (int r = 0; r < RQ_AVX2_SCORE_ROWS; r++) s[r] = _mm256_set1_ps(scales[r]);
    for (int64_t j = 0; j + 8 <= columns; j += 8) {
        __m256d low[RQ_AVX2_SCORE_ROWS], high[RQ_AVX2_SCORE_ROWS];
        for (int r = 0; r < RQ_AVX2_SCORE_ROWS; r++) values8_wide(rows[r] + j, s[r], &low[r], &high[r]);
        for (int b = 0; b < n_q; b++) {
            const __m256d x_low = _mm256_cvtps_pd(_mm_loadu_ps(queries[b] + j));
            const __m256d x_high = _mm256_cvtps_pd(_mm_loadu_ps(queries[b] + j + 4));
            for (int r = 0; r < RQ_AVX2_SCORE_ROWS; r++) {
                acc[(b * 2 + r) * 2] = _mm256_fmadd_pd(low[r], x_low, acc[(b * 2 + r) * 2]);
                acc[(b * 2 + r) * 2 + 1] = _mm256_fmadd_pd(high[r], x_high, acc[(b * 2 + r) * 2 + 1]);
            }
        }
    }
}

/* One score of the exact kernel: the lanes of the vector part, the last dim % 8 columns added
 * as the scalar kernel adds them (columns 8k.. go to lanes 0..), then the fold. */
static inline double exact_finish(__m256d low, __m256d high, const uint8_t *row, float scale,
                                  const float *query, int64_t from, int64_t dim)
{
    double lanes[RQ_DOT_LANES];
    _mm256_storeu_pd(lanes, low);
    _mm256_storeu_pd(lanes + 4, high);
    for (int64_t j = from; j < dim; j++)
        lanes[j - from] += (double)rq_dequantized(row[j], scale) * (double)query[j];
    return rq_fold_lanes(lanes);
}

static void scores_exact(const uint8_t *codes, int64_t codes_stride, const float *scales,
                         int64_t n_rows, int64_t dim, const float *queries, int64_t n_queries,
                         const double *row_factors, const double *query_factors, float *scores,
                         int64_t score_stride)
{
    const int64_t full = dim - dim % 8;
    for (int64_t i0 = 0; i0 < n_rows; i0 += RQ_AVX2_SCORE_ROWS) {
        const uint8_t *rows[RQ_AVX2_SCORE_ROWS];
        float s[RQ_AVX2_SCORE_ROWS];
        for (int r = 0; r < RQ_AVX2_SCORE_ROWS; r++) {
            const int64_t i = i0 + r < n_rows ? i0 + r : n_rows - 1;
            rows[r] = codes + i * codes_stride;
            s[r] = scales[i];
        }
        for (int64_t b0 = 0; b0 < n_queries; b0 += RQ_AVX2_EXACT_QUERIES) {
            const int n_q = n_queries - b0 < RQ_AVX2_EXACT_QUERIES ? (int)(n_queries - b0)
                                                                  : RQ_AVX2_EXACT_QUERIES;
            const float *query[RQ_AVX2_EXACT_QUERIES];
            for (int b = 0; b < n_q; b++) query[b] = queries + (b0 + b) * dim;
            __m256d acc[8];
            for (int a = 0; a < 8; a++) acc[a] = _mm256_setzero_pd();
            if (n_q == 1)
                exact_steps(rows, s, query, 1, full, acc);
            else
                exact_steps(rows, s, query, 2, full, acc);
            for (int b = 0; b < n_q; b++)
                for (int r = 0; r < RQ_AVX2_SCORE_ROWS && i0 + r < n_rows; r++) {
                    const int a = (b * 2 + r) * 2;
                    const double sum = exact_finish(acc[a], acc[a + 1], rows[r], s[r], query[b],
                                                    full, dim);
                    scores[(b0 + b) * score_stride + i0 + r] =
                        rq_score(sum, row_factors[i0 + r], query_factors[b0 + b]);
                }
        }
    }
}

const rq_kernels rq_kernels_avx2 = {
    .name = "avx2",
    .supported = supported,
    .max_abs_bits = max_abs_bits,
    .encode_row = encode_row,
    .dequantize_row = dequantize_row,
    .dequantize_rows_stream = rq_avx2_dequantize_rows_stream,
    .pool_bags = pool_bags,
    .max_bag = rq_avx2_max_bag,
    .first_bad_id = first_bad_id,
    .scores_exact = scores_exact,
    .scores_fast = rq_avx2_scores_fast,
};

#pragma GCC pop_options
#endif /* RQ_X86 */
