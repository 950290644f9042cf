/* AVX-512 (F, BW, VL, DQ) kernels: quantize (the AVX2 algorithm at 16 lanes), dequantize and
 * take rows, bags with a whole row of sums in registers, and the check of ids; compiled for that
 * target only inside this file and chosen at run time (dispatch.c) when supported() finds the
 * processor has them. The whole-table streaming dequantize and max bags are the AVX2 ones. Same
 * bits as kernels_scalar.c, which dispatch.c checks on a built-in table before using it. */
#include "kernels.h"

#ifdef RQ_X86
/* Compiled before the target region below: it runs on processors without AVX-512. The
 * features include the operating system's support for the wider registers. */
static int supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
}

/* The VNNI variant's (vpdpbusd, for the fast scores): its own check, also before the region. */
static int supported_vnni(void)
{
    return supported() && __builtin_cpu_supports("avx512vnni");
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
#include <immintrin.h>

static uint32_t max_abs_bits(const float *values, int64_t dim)
{
    const __m512i mask = _mm512_set1_epi32((int)RQ_ABS_MASK);
    __m512i m0 = _mm512_setzero_si512(), m1 = m0;
    int64_t j = 0;
    for (; j + 32 <= dim; j += 32) {
        m0 = _mm512_max_epu32(m0, _mm512_and_si512(mask, _mm512_loadu_si512(values + j)));
        m1 = _mm512_max_epu32(m1, _mm512_and_si512(mask, _mm512_loadu_si512(values + j + 16)));
    }
    for (; j + 16 <= dim; j += 16)
        m0 = _mm512_max_epu32(m0, _mm512_and_si512(mask, _mm512_loadu_si512(values + j)));
    uint32_t max_bits = (uint32_t)_mm512_reduce_max_epu32(_mm512_max_epu32(m0, m1));
    for (; j < dim; j++) {
        uint32_t bits = rq_float_bits(values[j]) & RQ_ABS_MASK;
        max_bits = bits > max_bits ? bits : max_bits;
    }
    return max_bits;
}

/* 16 codes; see codes8 in kernels_avx2.c for why the two FMA comparisons are exact. */
static inline __m128i codes16(__m512 v, __m512 s, __m512 inv)
{
    const __m512 half_up = _mm512_set1_ps(128.5f), half_down = _mm512_set1_ps(127.5f);
    const __m512 one = _mm512_set1_ps(1.0f), top = _mm512_set1_ps(255.0f);
    __m512 c = _mm512_roundscale_ps(_mm512_add_ps(_mm512_mul_ps(v, inv), half_up),
                                    _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __mmask16 too_big = _mm512_cmp_ps_mask(_mm512_fmsub_ps(_mm512_sub_ps(c, half_up), s, v),
                                           _mm512_setzero_ps(), _CMP_GT_OQ);
    __mmask16 too_small = _mm512_cmp_ps_mask(_mm512_fmsub_ps(_mm512_sub_ps(c, half_down), s, v),
                                             _mm512_setzero_ps(), _CMP_LE_OQ);
    c = _mm512_mask_sub_ps(c, too_big, c, one);
    c = _mm512_mask_add_ps(c, too_small, c, one);
    c = _mm512_min_ps(_mm512_max_ps(c, one), top);
    return _mm512_cvtusepi32_epi8(_mm512_cvttps_epu32(c));
}

/* The rare block of 64 with a lane near an integer (see unsure16), out of line so that the
 * fast loop keeps its constants in registers. */
__attribute__((noinline)) static void store_codes64_exact(const float *values, float scale,
                                                          uint8_t *codes)
{
    const __m512 s = _mm512_set1_ps(scale), inv = _mm512_set1_ps(1.0f / scale);
    for (int b = 0; b < 64; b += 16)
        _mm_storeu_si128((__m128i *)(codes + b), codes16(_mm512_loadu_ps(values + b), s, inv));
}

/* fma(v, 1 / s, 128.5), which is within 1.6e-5 of the exact v / s + 128.5 (see shifted8 in
 * kernels_avx2.c): its floor is the exact code wherever it lies 2^-14 or more from an integer. */
static inline __m512 shifted16(const float *values, __m512 inv)
{
    return _mm512_fmadd_ps(_mm512_loadu_ps(values), inv, _mm512_set1_ps(128.5f));
}

/* The lanes within 2^-14 of an integer: vreduceps gives x - round(x) in one instruction. */
static inline __mmask16 unsure16(__m512 shifted)
{
    const __m512 distance = _mm512_reduce_ps(shifted, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 abs_distance = _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(distance), _mm512_set1_epi32((int)RQ_ABS_MASK)));
    return _mm512_cmp_ps_mask(abs_distance, _mm512_set1_ps(0x1p-14f), _CMP_LT_OQ);
}

static inline __m128i floor16(__m512 shifted) /* shifted >= 1: truncation is floor */
{
    return _mm512_cvtusepi32_epi8(_mm512_cvttps_epu32(shifted));
}

static void codes_fast(const float *values, int64_t dim, float scale, uint8_t *codes)
{
    const __m512 inv = _mm512_set1_ps(1.0f / scale);
    int64_t j = 0;
    for (; j + 64 <= dim; j += 64) {
        const float *v = values + j;
        const __m512 t0 = shifted16(v, inv), t1 = shifted16(v + 16, inv);
        const __m512 t2 = shifted16(v + 32, inv), t3 = shifted16(v + 48, inv);
        if (unsure16(t0) | unsure16(t1) | unsure16(t2) | unsure16(t3)) {
            store_codes64_exact(v, scale, codes + j);
            continue;
        }
        _mm_storeu_si128((__m128i *)(codes + j), floor16(t0));
        _mm_storeu_si128((__m128i *)(codes + j + 16), floor16(t1));
        _mm_storeu_si128((__m128i *)(codes + j + 32), floor16(t2));
        _mm_storeu_si128((__m128i *)(codes + j + 48), floor16(t3));
    }
    const __m512 s = _mm512_set1_ps(scale);
    for (; j + 16 <= dim; j += 16)
        _mm_storeu_si128((__m128i *)(codes + j), codes16(_mm512_loadu_ps(values + j), s, inv));
    rq_codes_exact(values + j, dim - j, scale, codes + j);
}

static void encode_row(const float *values, int64_t dim, float scale, uint8_t *codes)
{
    if (scale < RQ_FAST_MIN_SCALE)
        rq_codes_exact(values, dim, scale, codes);
    else
        codes_fast(values, dim, scale, codes);
}

/* ------------------------------------------------------------------ dequantize and take */

/* 16 codes as floats. */
static inline __m512 codes16_as_floats(__m128i codes)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(codes));
}

/* The AVX2 kernel's exact product at 16 lanes: fma(q, s, -128 s) is (q - 128) * s rounded
 * once, because -128 s is exact, while 128 s is finite (rq_fma_scale; other scales, zero
 * included, take the plain multiply). */
static void dequantize_row(const uint8_t *codes, float scale, int64_t dim, float *out)
{
    if (!rq_fma_scale(scale)) {
        for (int64_t j = 0; j < dim; j++) out[j] = rq_dequantized(codes[j], scale);
        return;
    }
    const __m512 s = _mm512_set1_ps(scale), bias = _mm512_set1_ps(-(float)RQ_BIAS * scale);
    int64_t j = 0;
    /* The first columns up to a 64-byte line of out, masked, so that the full stores below do
     * not each straddle two lines (which cost half as much time again on 1000x64). */
    const uintptr_t misaligned = (uintptr_t)out & 63;
    if (misaligned && (misaligned & 3) == 0 && dim >= 16) {
        j = (int64_t)(64 - misaligned) / 4;
        const __mmask16 head = (__mmask16)((1u << j) - 1u);
        const __m128i first = _mm_maskz_loadu_epi8(head, codes);
        _mm512_mask_storeu_ps(out, head, _mm512_fmadd_ps(codes16_as_floats(first), s, bias));
    }
    for (; j + 64 <= dim; j += 64) {
        const __m512i block = _mm512_loadu_si512(codes + j);
        _mm512_storeu_ps(out + j, _mm512_fmadd_ps(codes16_as_floats(_mm512_castsi512_si128(block)), s, bias));
        _mm512_storeu_ps(out + j + 16, _mm512_fmadd_ps(codes16_as_floats(_mm512_extracti32x4_epi32(block, 1)), s, bias));
        _mm512_storeu_ps(out + j + 32, _mm512_fmadd_ps(codes16_as_floats(_mm512_extracti32x4_epi32(block, 2)), s, bias));
        _mm512_storeu_ps(out + j + 48, _mm512_fmadd_ps(codes16_as_floats(_mm512_extracti32x4_epi32(block, 3)), s, bias));
    }
    for (; j + 16 <= dim; j += 16)
        _mm512_storeu_ps(out + j, _mm512_fmadd_ps(codes16_as_floats(_mm_loadu_si128((const __m128i *)(codes + j))), s, bias));
    if (j < dim) { /* the last 1..15 columns: masked, so nothing past the row is read or written */
        const __mmask16 tail = (__mmask16)((1u << (dim - j)) - 1u);
        const __m128i last = _mm_maskz_loadu_epi8(tail, codes + j);
        _mm512_mask_storeu_ps(out + j, tail, _mm512_fmadd_ps(codes16_as_floats(last), s, bias));
    }
}

/* ------------------------------------------------------------------ bags */

/* Up to this many vectors of columns are summed in registers in one pass over a bag's rows:
 * rows up to 384 wide (bert, glove) take one pass, each row read once; 24 sums leave registers
 * for the factor, the codes and the constants. */
#define RQ_ZMM_PASS 24

/* Sum the bag's rows over `vectors` vectors of 16 columns from col in the fast form of
 * rq_bag_fold; `lanes` masks the last vector's loads and store (the row's last columns).
 * vectors is a literal at every call (pool_vectors), so the sums stay in registers. Each step
 * prefetches the same columns of the row RQ_BAG_AHEAD ids later, in this bag or the next. */
RQ_INLINE void pool_columns(const rq_bag_rows *rows, const float *weights, int64_t begin,
                            int64_t end, int64_t col, int vectors, __mmask16 lanes, float *out,
                            int64_t *bad, int *nonfinite)
{
    const rq_bag_rows table = *rows; /* registers, not reloads after each store */
    const int64_t span = 16 * (int64_t)(vectors - 1) + __builtin_popcount(lanes);
    float total = 0.0f;
    __m512 acc[RQ_ZMM_PASS];
    _Pragma("GCC unroll 32") for (int v = 0; v < vectors; v++) acc[v] = _mm512_setzero_ps();
    float factor;
    for (int64_t k = begin; k < end; k++) {
        const uint8_t *codes = rq_bag_step(&table, weights, k, col, span, bad, &factor, &total);
        if (!codes) continue;
        const __m512 f = _mm512_set1_ps(factor);
        _Pragma("GCC unroll 32") for (int v = 0; v < vectors - 1; v++)
            acc[v] = _mm512_fmadd_ps(
                codes16_as_floats(_mm_loadu_si128((const __m128i *)(codes + 16 * v))), f, acc[v]);
        const __m128i last = _mm_maskz_loadu_epi8(lanes, codes + 16 * (vectors - 1));
        acc[vectors - 1] = _mm512_fmadd_ps(codes16_as_floats(last), f, acc[vectors - 1]);
    }
    const __m512 bias = _mm512_set1_ps(-(float)RQ_BIAS), t = _mm512_set1_ps(total);
    const int infinities_and_nans = 0x01 | 0x08 | 0x10 | 0x80; /* QNaN, +inf, -inf, SNaN */
    __mmask16 found = 0;
    _Pragma("GCC unroll 32") for (int v = 0; v < vectors - 1; v++) {
        const __m512 value = _mm512_fmadd_ps(bias, t, acc[v]);
        found |= _mm512_fpclass_ps_mask(value, infinities_and_nans);
        _mm512_storeu_ps(out + col + 16 * v, value);
    }
    const __m512 value = _mm512_fmadd_ps(bias, t, acc[vectors - 1]);
    found |= _mm512_mask_fpclass_ps_mask(lanes, value, infinities_and_nans);
    _mm512_mask_storeu_ps(out + col + 16 * (vectors - 1), lanes, value);
    *nonfinite |= found != 0;
}

/* pool_columns with a literal vector count for each of 1..RQ_ZMM_PASS. */
#define RQ_POOL_CASE(n) \
    case n: pool_columns(rows, weights, begin, end, col, n, lanes, out, bad, nonfinite); break;

static void pool_vectors(const rq_bag_rows *rows, const float *weights, int64_t begin,
                         int64_t end, int64_t col, int vectors, __mmask16 lanes, float *out,
                         int64_t *bad, int *nonfinite)
{
    switch (vectors) {
        RQ_POOL_CASE(1) RQ_POOL_CASE(2) RQ_POOL_CASE(3) RQ_POOL_CASE(4) RQ_POOL_CASE(5)
        RQ_POOL_CASE(6) RQ_POOL_CASE(7) RQ_POOL_CASE(8) RQ_POOL_CASE(9) RQ_POOL_CASE(10)
        RQ_POOL_CASE(11) RQ_POOL_CASE(12) RQ_POOL_CASE(13) RQ_POOL_CASE(14) RQ_POOL_CASE(15)
        RQ_POOL_CASE(16) RQ_POOL_CASE(17) RQ_POOL_CASE(18) RQ_POOL_CASE(19) RQ_POOL_CASE(20)
        RQ_POOL_CASE(21) RQ_POOL_CASE(22) RQ_POOL_CASE(23) RQ_POOL_CASE(24)
    }
}
#undef RQ_POOL_CASE

/* One bag of rows up to 16 * RQ_ZMM_PASS wide, in passes of at most RQ_ZMM_PASS vectors, of
 * near-equal sizes, the last vector of each masked to the row's end. */
static int64_t pool_bag_passes(const rq_bag_rows *rows, const float *weights, int64_t begin,
                               int64_t end, float *out)
{
    const int64_t dim = rows->dim;
    int64_t bad = -1;
    int nonfinite = 0; /* whether a result is not finite */
    const int64_t total = (dim + 15) / 16;
    const int64_t passes = (total + RQ_ZMM_PASS - 1) / RQ_ZMM_PASS;
    int64_t done = 0;
    for (int64_t p = 0; p < passes; p++) {
        const int64_t vectors = total * (p + 1) / passes - total * p / passes;
        const int64_t last = dim - 16 * (done + vectors - 1); /* columns in the last vector */
        const __mmask16 lanes = (__mmask16)(last >= 16 ? 0xffffu : (1u << last) - 1u);
        pool_vectors(rows, weights, begin, end, 16 * done, (int)vectors, lanes, out, &bad,
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
                                     int vectors, __mmask16 lanes)
{
    int64_t bad = -1;
    for (int64_t b = first_bag; b < last_bag; b++) {
        const int64_t begin = bounds[b], end = bounds[b + 1];
        float *bag_out = out + b * out_stride;
        int nonfinite = 0;
        pool_columns(rows, weights, begin, end, 0, vectors, lanes, bag_out, &bad, &nonfinite);
        if (nonfinite) rq_pool_bag_centered(rows, weights, begin, end, bag_out);
    }
    return bad;
}

#define RQ_POOL_BAGS_CASE(n) \
    case n: \
        return pool_bags_one_pass(rows, weights, bounds, first_bag, last_bag, out, out_stride, n, \
                                  lanes);

static int64_t pool_bags(const rq_bag_rows *rows, const float *weights, const int64_t *bounds,
                         int64_t first_bag, int64_t last_bag, float *out, int64_t out_stride)
{
    const int64_t dim = rows->dim, vectors = (dim + 15) / 16;
    if (dim == 0) return -1;
    if (vectors > RQ_ZMM_PASS) {
        int64_t bad = -1;
        for (int64_t b = first_bag; b < last_bag; b++) {
            const int64_t found = pool_bag_passes(rows, weights, bounds[b], bounds[b + 1],
                                                  out + b * out_stride);
            if (bad < 0) bad = found; /* bags in order: the first found is the least */
        }
        return bad;
    }
    const int64_t last = dim - 16 * (vectors - 1);
    const __mmask16 lanes = (__mmask16)(last >= 16 ? 0xffffu : (1u << last) - 1u);
    switch (vectors) {
        RQ_POOL_BAGS_CASE(1) RQ_POOL_BAGS_CASE(2) RQ_POOL_BAGS_CASE(3) RQ_POOL_BAGS_CASE(4)
        RQ_POOL_BAGS_CASE(5) RQ_POOL_BAGS_CASE(6) RQ_POOL_BAGS_CASE(7) RQ_POOL_BAGS_CASE(8)
        RQ_POOL_BAGS_CASE(9) RQ_POOL_BAGS_CASE(10) RQ_POOL_BAGS_CASE(11) RQ_POOL_BAGS_CASE(12)
        RQ_POOL_BAGS_CASE(13) RQ_POOL_BAGS_CASE(14) RQ_POOL_BAGS_CASE(15) RQ_POOL_BAGS_CASE(16)
        RQ_POOL_BAGS_CASE(17) RQ_POOL_BAGS_CASE(18) RQ_POOL_BAGS_CASE(19) RQ_POOL_BAGS_CASE(20)
        RQ_POOL_BAGS_CASE(21) RQ_POOL_BAGS_CASE(22) RQ_POOL_BAGS_CASE(23) RQ_POOL_BAGS_CASE(24)
    }
    return -1; /* not reached: 1 <= vectors <= RQ_ZMM_PASS */
}
#undef RQ_POOL_BAGS_CASE

/* 32 ids per step, compared as unsigned, so that negative ids are out of range too; the scalar
 * loop finds the position in a step that has one. */
static int64_t first_bad_id(const int64_t *ids, int64_t n_ids, int64_t n_rows)
{
    const __m512i rows = _mm512_set1_epi64(n_rows);
    int64_t k = 0;
    for (; k + 32 <= n_ids; k += 32) {
        const __mmask8 bad = _mm512_cmpge_epu64_mask(_mm512_loadu_si512(ids + k), rows) |
                             _mm512_cmpge_epu64_mask(_mm512_loadu_si512(ids + k + 8), rows) |
                             _mm512_cmpge_epu64_mask(_mm512_loadu_si512(ids + k + 16), rows) |
                             _mm512_cmpge_epu64_mask(_mm512_loadu_si512(ids + k + 24), rows);
        if (bad) return rq_first_bad_id_from(ids, k, n_ids, n_rows);
    }
    return rq_first_bad_id_from(ids, k, n_ids, n_rows);
}

/* ------------------------------------------------------------------ scores */

/* Blocks of the score kernels: 4 rows by up to 4 queries, 16 vectors of sums. Each step's row
 * values serve every query of the block, and each query's load every row. */
#define RQ_ZMM_SCORE_ROWS 4
#define RQ_ZMM_SCORE_QUERIES 4
#define RQ_ZMM_SCORE_SUMS (RQ_ZMM_SCORE_ROWS * RQ_ZMM_SCORE_QUERIES)

/* Row i of a block, rows past the table's end standing in as its last row: they are read (it
 * is read anyway) and their sums thrown away, so no block is a special case. */
static inline int64_t block_row(int64_t n_rows, int64_t i) { return i < n_rows ? i : n_rows - 1; }

/* The factors of a block's rows, twice: lanes b * 4 + r of two queries' scores. Rows past the
 * table take 0 (their scores are not stored). */
static inline __m512d block_row_factors(const double *row_factors, int64_t i0, int64_t n_rows)
{
    const int64_t n = n_rows - i0 < RQ_ZMM_SCORE_ROWS ? n_rows - i0 : RQ_ZMM_SCORE_ROWS;
    const __m256d four = _mm256_maskz_loadu_pd((__mmask8)((1u << n) - 1u), row_factors + i0);
    return _mm512_broadcast_f64x4(four);
}

/* Scores of two queries (b and b + 1 when n_q > 1) of a block from their float64 sums, lanes
 * b * 4 + r: rq_score lane by lane, the rows of each query stored (masked to the table) at
 * out (query b's score of the block's first row) and out + score_stride. */
RQ_INLINE void store_scores8(__m512d sums, __m512d row_factors, const double *query_factors,
                             int n_q, __mmask8 rows, float *out, int64_t score_stride)
{
    const __m512d query = _mm512_insertf64x4(_mm512_set1_pd(query_factors[0]),
                                             _mm256_set1_pd(n_q > 1 ? query_factors[1] : 0.0), 1);
    const __m256 s = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_mul_pd(sums, row_factors), query));
    _mm_mask_storeu_ps(out, rows, _mm256_castps256_ps128(s));
    if (n_q > 1) _mm_mask_storeu_ps(out + score_stride, rows, _mm256_extractf128_ps(s, 1));
}

/* 16 dequantized values of a row, (q - 128) * s in float32 as rq_dequantized (masked-off lanes
 * +0), widened exactly to float64: columns 0-7 in *low, 8-15 in *high, lane l of each column
 * l (mod 8). */
RQ_INLINE void values16_wide(__m128i codes, __m512 s, __mmask16 lanes, __m512d *low, __m512d *high)
{
    const __m512i centered = _mm512_sub_epi32(_mm512_cvtepu8_epi32(codes), _mm512_set1_epi32(RQ_BIAS));
    const __m512 values = _mm512_maskz_mul_ps(lanes, _mm512_cvtepi32_ps(centered), s);
    *low = _mm512_cvtps_pd(_mm512_castps512_ps256(values));
    *high = _mm512_cvtps_pd(_mm512_extractf32x8_ps(values, 1));
}

/* One step of 16 columns (`lanes` of them, the rest adding +0 to lanes never -0) of a block's
 * rows by n_q queries (a literal) into acc[b * 4 + r]: column j adds to lane j % 8, the first 8
 * columns before the next 8, as the scalar kernel; the products are exact in float64, so the
 * FMA rounds as its add does. */
RQ_INLINE void exact_step(const uint8_t *const rows[RQ_ZMM_SCORE_ROWS],
                          const __m512 s[RQ_ZMM_SCORE_ROWS],
                          const float *const queries[RQ_ZMM_SCORE_QUERIES], int n_q, int64_t j,
                          __mmask16 lanes, __m512d acc[RQ_ZMM_SCORE_SUMS])
{
    __m512d low[RQ_ZMM_SCORE_ROWS], high[RQ_ZMM_SCORE_ROWS];
    for (int r = 0; r < RQ_ZMM_SCORE_ROWS; r++)
        values16_wide(_mm_maskz_loadu_epi8(lanes, rows[r] + j), s[r], lanes, &low[r], &high[r]);
    for (int b = 0; b < n_q; b++) {
        const __m512 x = _mm512_maskz_loadu_ps(lanes, queries[b] + j);
        const __m512d x_low = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
        const __m512d x_high = _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1));
        for (int r = 0; r < RQ_ZMM_SCORE_ROWS; r++)
            acc[b * 4 + r] = _mm512_fmadd_pd(low[r], x_low, acc[b * 4 + r]);
        for (int r = 0; r < RQ_ZMM_SCORE_ROWS; r++)
            acc[b * 4 + r] = _mm512_fmadd_pd(high[r], x_high, acc[b * 4 + r]);
    }
}

/* The lanes of a block over all dim columns (n_q a literal), from +0. The sums are locals
 * copied out at the end: kept in out, GCC stored all 16 to the stack at every step. */
RQ_INLINE void exact_block(const uint8_t *const rows[RQ_ZMM_SCORE_ROWS],
                           const __m512 s[RQ_ZMM_SCORE_ROWS],
                           const float *const queries[RQ_ZMM_SCORE_QUERIES], int n_q,
                           int64_t dim, __m512d out[RQ_ZMM_SCORE_SUMS])
{
    __m512d acc[RQ_ZMM_SCORE_SUMS];
    for (int a = 0; a < RQ_ZMM_SCORE_SUMS; a++) acc[a] = _mm512_setzero_pd();
    int64_t j = 0;
    for (; j + 16 <= dim; j += 16) exact_step(rows, s, queries, n_q, j, 0xffff, acc);
    if (j < dim) exact_step(rows, s, queries, n_q, j, (__mmask16)((1u << (dim - j)) - 1u), acc);
    for (int a = 0; a < RQ_ZMM_SCORE_SUMS; a++) out[a] = acc[a];
}

/* [a0+a4, a1+a5, a2+a6, a3+a7, b0+b4, ..., b3+b7]: the first fold of two vectors of lanes. */
RQ_INLINE __m512d halves2(__m512d a, __m512d b)
{
    return _mm512_add_pd(_mm512_shuffle_f64x2(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f64x2(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}

/* From halves2(a, b) and halves2(c, d): [a.q0, a.q1, b.q0, ..., d.q1] with q0 = h0 + h2 =
 * (0+4) + (2+6) and q1 = h1 + h3 = (1+5) + (3+7). */
RQ_INLINE __m512d quarters4(__m512d ab, __m512d cd)
{
    return _mm512_add_pd(_mm512_shuffle_f64x2(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f64x2(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The folds of 8 vectors of lanes a..h, each exactly rq_fold_lanes (q0 + q1 of quarters4),
 * in the lane order [a, e, b, f, c, g, d, h]: 21 instructions for 8 folds. */
RQ_INLINE __m512d fold8(__m512d a, __m512d b, __m512d c, __m512d d, __m512d e, __m512d f,
                        __m512d g, __m512d h)
{
    const __m512d abcd = quarters4(halves2(a, b), halves2(c, d));
    const __m512d efgh = quarters4(halves2(e, f), halves2(g, h));
    return _mm512_add_pd(_mm512_unpacklo_pd(abcd, efgh), _mm512_unpackhi_pd(abcd, efgh));
}

/* Folds of queries b and b + 1 of a block, lanes b * 4 + r (see fold8's order). */
RQ_INLINE __m512d fold_pair(const __m512d *acc)
{
    return fold8(acc[0], acc[2], acc[4], acc[6], acc[1], acc[3], acc[5], acc[7]);
}

static void exact_block_any(const uint8_t *const rows[RQ_ZMM_SCORE_ROWS],
                            const __m512 s[RQ_ZMM_SCORE_ROWS],
                            const float *const queries[RQ_ZMM_SCORE_QUERIES], int n_q,
                            int64_t dim, __m512d acc[RQ_ZMM_SCORE_SUMS])
{
    switch (n_q) {
    case 1: exact_block(rows, s, queries, 1, dim, acc); break;
    case 2: exact_block(rows, s, queries, 2, dim, acc); break;
    case 3: exact_block(rows, s, queries, 3, dim, acc); break;
    default: exact_block(rows, s, queries, 4, dim, acc); break;
    }
}

static void scores_exact(const uint8_t *codes, int64_t codes_stride, const float *scales,
                         int64_t n_rows, int64_t dim, const float *queries, int64_t n_queries,
                         const double *row_factors, const double *query_factors, float *scores,
                         int64_t score_stride)
{
    for (int64_t i0 = 0; i0 < n_rows; i0 += RQ_ZMM_SCORE_ROWS) {
        const uint8_t *rows[RQ_ZMM_SCORE_ROWS];
        __m512 s[RQ_ZMM_SCORE_ROWS];
        for (int r = 0; r < RQ_ZMM_SCORE_ROWS; r++) {
            const int64_t i = block_row(n_rows, i0 + r);
            rows[r] = codes + i * codes_stride;
            s[r] = _mm512_set1_ps(scales[i]);
        }
        const __m512d factors = block_row_factors(row_factors, i0, n_rows);
        const int64_t n = n_rows - i0 < RQ_ZMM_SCORE_ROWS ? n_rows - i0 : RQ_ZMM_SCORE_ROWS;
        const __mmask8 stored = (__mmask8)((1u << n) - 1u);
        for (int64_t b0 = 0; b0 < n_queries; b0 += RQ_ZMM_SCORE_QUERIES) {
            const int n_q = n_queries - b0 < RQ_ZMM_SCORE_QUERIES ? (int)(n_queries - b0)
                                                                  : RQ_ZMM_SCORE_QUERIES;
            const float *query[RQ_ZMM_SCORE_QUERIES];
            __m512d acc[RQ_ZMM_SCORE_SUMS];
            for (int b = 0; b < RQ_ZMM_SCORE_QUERIES; b++) query[b] = queries + (b0 + b) * dim;
            exact_block_any(rows, s, query, n_q, dim, acc);
            for (int b = 0; b < n_q; b += 2)
                store_scores8(fold_pair(acc + b * 4), factors, query_factors + b0 + b, n_q - b,
                              stored, scores + (b0 + b) * score_stride + i0, score_stride);
        }
    }
}

/* ------------------------------------------------------------------ fast scores with VNNI */

/* The VNNI kernel is compiled for that extension alone: the rest of the file must run on
 * AVX-512 processors without it. The helpers above inline into it (its target is a superset). */
#define RQ_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,avx512vnni")))

/* Lane k of the result is the sum of v[k]'s 16 lanes, by an unpack/add transpose (45
 * instructions for 16 sums). Integers: the order is free, every partial sum being the sum of
 * a subset of one chunk's products, in range. */
RQ_INLINE __m512i sums16(const __m512i v[RQ_ZMM_SCORE_SUMS])
{
    __m512i pairs[8], quads[4], octs[2];
    for (int k = 0; k < 8; k++)
        pairs[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * k], v[2 * k + 1]),
                                    _mm512_unpackhi_epi32(v[2 * k], v[2 * k + 1]));
    for (int k = 0; k < 4; k++) /* per 128-bit lane: that lane's sums of v[4k..4k+3] */
        quads[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(pairs[2 * k], pairs[2 * k + 1]),
                                    _mm512_unpackhi_epi64(pairs[2 * k], pairs[2 * k + 1]));
    for (int k = 0; k < 2; k++)
        octs[k] = _mm512_add_epi32(
            _mm512_shuffle_i32x4(quads[2 * k], quads[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
            _mm512_shuffle_i32x4(quads[2 * k], quads[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(octs[0], octs[1], _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(octs[0], octs[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* One step of 64 columns (`lanes` of them; masked loads read nothing past a row or the last
 * query) of sum q * x, the codes as they are (unsigned) by the queries (signed), into
 * acc[b * 4 + r]: vpdpbusd adds 4 products into each int32 lane without saturating. */
RQ_INLINE RQ_VNNI_TARGET void vnni_step(const uint8_t *const rows[RQ_ZMM_SCORE_ROWS],
                                        const int8_t *const queries[RQ_ZMM_SCORE_QUERIES],
                                        int n_q, int64_t j, __mmask64 lanes,
                                        __m512i acc[RQ_ZMM_SCORE_SUMS])
{
    __m512i q[RQ_ZMM_SCORE_ROWS];
    for (int r = 0; r < RQ_ZMM_SCORE_ROWS; r++) q[r] = _mm512_maskz_loadu_epi8(lanes, rows[r] + j);
    for (int b = 0; b < n_q; b++) {
        const __m512i x = _mm512_maskz_loadu_epi8(lanes, queries[b] + j);
        for (int r = 0; r < RQ_ZMM_SCORE_ROWS; r++)
            acc[b * 4 + r] = _mm512_dpbusd_epi32(acc[b * 4 + r], q[r], x);
    }
}

/* The raw sums of a block over columns [begin, end) (n_q a literal). */
RQ_INLINE RQ_VNNI_TARGET void vnni_block(const uint8_t *const rows[RQ_ZMM_SCORE_ROWS],
                                         const int8_t *const queries[RQ_ZMM_SCORE_QUERIES],
                                         int n_q, int64_t begin, int64_t end,
                                         __m512i acc[RQ_ZMM_SCORE_SUMS])
{
    int64_t j = begin;
    for (; j + 64 <= end; j += 64) vnni_step(rows, queries, n_q, j, ~(__mmask64)0, acc);
    if (j < end) vnni_step(rows, queries, n_q, j, ~(__mmask64)0 >> (64 - (end - j)), acc);
}

static RQ_VNNI_TARGET void vnni_block_any(const uint8_t *const rows[RQ_ZMM_SCORE_ROWS],
                                          const int8_t *const queries[RQ_ZMM_SCORE_QUERIES],
                                          int n_q, int64_t begin, int64_t end,
                                          __m512i acc[RQ_ZMM_SCORE_SUMS])
{
    switch (n_q) {
    case 1: vnni_block(rows, queries, 1, begin, end, acc); break;
    case 2: vnni_block(rows, queries, 2, begin, end, acc); break;
    case 3: vnni_block(rows, queries, 3, begin, end, acc); break;
    default: vnni_block(rows, queries, 4, begin, end, acc); break;
    }
}

/* 128 * sum_j x_j over columns [begin, end) of a query: what the raw sums q * x hold beyond
 * the centered (q - 128) * x. */
static RQ_VNNI_TARGET int32_t bias_term(const int8_t *query, int64_t begin, int64_t end)
{
    const __m512i bias = _mm512_set1_epi8((char)RQ_BIAS);
    __m512i acc = _mm512_setzero_si512();
    int64_t j = begin;
    for (; j + 64 <= end; j += 64)
        acc = _mm512_dpbusd_epi32(acc, bias, _mm512_loadu_si512(query + j));
    if (j < end)
        acc = _mm512_dpbusd_epi32(
            acc, bias, _mm512_maskz_loadu_epi8(~(__mmask64)0 >> (64 - (end - j)), query + j));
    return _mm512_reduce_add_epi32(acc);
}

/* The bias terms of a block's queries over a chunk, lane b * 4 + r holding query b's (lanes of
 * queries past n_q: 0). */
static RQ_VNNI_TARGET __m512i bias_terms(const int8_t *const queries[RQ_ZMM_SCORE_QUERIES],
                                         int n_q, int64_t begin, int64_t end)
{
    int32_t terms[RQ_ZMM_SCORE_SUMS] = {0};
    for (int b = 0; b < n_q; b++) {
        const int32_t term = bias_term(queries[b], begin, end);
        for (int r = 0; r < RQ_ZMM_SCORE_ROWS; r++) terms[b * 4 + r] = term;
    }
    return _mm512_loadu_si512(terms);
}

/* Scores of 16 rows (lane r: row i0 + r) for one query from their centered int32 sums:
 * rq_score lane by lane ((sum * row factor) * query factor in float64), stored for the first
 * n rows. */
RQ_INLINE RQ_VNNI_TARGET void store_row_scores16(__m512i sums, const double *row_factors,
                                                 double query_factor, int64_t n, float *out)
{
    const __mmask16 rows = (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
    const __m512d query = _mm512_set1_pd(query_factor);
    const __m512d low = _mm512_mul_pd(
        _mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(sums)),
                      _mm512_maskz_loadu_pd((__mmask8)rows, row_factors)), query);
    const __m512d high = _mm512_mul_pd(
        _mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(sums, 1)),
                      _mm512_maskz_loadu_pd((__mmask8)(rows >> 8), row_factors + 8)), query);
    const __m512 scores = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(low)),
                                             _mm512_cvtpd_ps(high), 1);
    _mm512_mask_storeu_ps(out, rows, scores);
}

/* One query (dim <= RQ_FAST_CHUNK): 16 rows at a time, each row's 64-column steps into its own
 * vector, and one sums16 for the 16 rows, whose lanes are then the rows in order: the 4 x 4
 * blocks spent a whole sums16 on 4 sums here, which on rows of 64 columns cost more than
 * reading them. */
static RQ_VNNI_TARGET void scores_fast_vnni_one(const uint8_t *codes, int64_t codes_stride,
                                                int64_t n_rows, int64_t dim, const int8_t *query,
                                                const double *row_factors, double query_factor,
                                                float *scores)
{
    const __m512i terms = _mm512_set1_epi32(bias_term(query, 0, dim));
    const __mmask64 tail = ~(__mmask64)0 >> (63 - (dim - 1) % 64);
    for (int64_t i0 = 0; i0 < n_rows; i0 += 16) {
        const uint8_t *rows[16];
        for (int r = 0; r < 16; r++) rows[r] = codes + block_row(n_rows, i0 + r) * codes_stride;
        __m512i acc[16];
        for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_si512();
        int64_t j = 0;
        for (; j + 64 < dim; j += 64) {
            const __m512i x = _mm512_loadu_si512(query + j);
            for (int r = 0; r < 16; r++)
                acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_loadu_si512(rows[r] + j), x);
        }
        if (j < dim) { /* the last 1..64 columns, masked */
            const __m512i x = _mm512_maskz_loadu_epi8(tail, query + j);
            for (int r = 0; r < 16; r++)
                acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_maskz_loadu_epi8(tail, rows[r] + j), x);
        }
        store_row_scores16(_mm512_sub_epi32(sums16(acc), terms), row_factors + i0, query_factor,
                           n_rows - i0, scores + i0);
    }
}

/* The packed kernel's packed queries (64 bytes per 4 columns) stay on the stack: 32 kB for
 * rows of up to this many columns. */
#define RQ_PACKED_MAX_DIM 2048

/* a[i] lane p -> a[p] lane i for a 16 x 16 matrix of int32: four stages, each swapping bit s
 * of the row with bit s of the lane (the blocks off the diagonal at that scale). */
RQ_INLINE RQ_VNNI_TARGET void transpose16(__m512i a[16])
{
    for (int s = 8; s >= 1; s /= 2) {
        int32_t keep[16], take[16];
        for (int p = 0; p < 16; p++) {
            keep[p] = (p & s) == 0 ? p : 16 + p - s; /* row i: its low block, then i + s's */
            take[p] = (p & s) == 0 ? p + s : 16 + p; /* row i + s: i's high block, then its own */
        }
        const __m512i keep_index = _mm512_loadu_si512(keep), take_index = _mm512_loadu_si512(take);
        for (int i = 0; i < 16; i++) {
            if (i & s) continue;
            const __m512i low = a[i], high = a[i + s];
            a[i] = _mm512_permutex2var_epi32(low, keep_index, high);
            a[i + s] = _mm512_permutex2var_epi32(low, take_index, high);
        }
    }
}

/* Many queries: the queries are packed, 4 columns of each of the block's (up to 16) queries
 * per vector (lane b: query b), and each row's 4 codes of those columns broadcast, so that one
 * vpdpbusd adds 4 columns of one row against 16 queries and no sum needs the 16 lanes of a
 * vector added up; 16 rows by 16 queries end in one transpose, after which lane r is row r
 * again. Columns past dim are 0 in the packed queries, and the codes of the last group are
 * read masked (nothing past a row). */
static RQ_VNNI_TARGET void scores_fast_vnni_packed(const uint8_t *codes, int64_t codes_stride,
                                                   int64_t n_rows, int64_t dim,
                                                   const int8_t *queries, int64_t n_queries,
                                                   const double *row_factors,
                                                   const double *query_factors, float *scores,
                                                   int64_t score_stride)
{
    __m512i packed[RQ_PACKED_MAX_DIM / 4];
    const int64_t groups = (dim + 3) / 4, whole = dim / 4;
    __m512i terms = _mm512_setzero_si512();
    const __m512i bias = _mm512_set1_epi8((char)RQ_BIAS);
    for (int64_t g = 0; g < groups; g++) {
        int32_t lanes[16] = {0};
        const int64_t width = dim - 4 * g < 4 ? dim - 4 * g : 4;
        for (int64_t b = 0; b < n_queries; b++)
            memcpy(&lanes[b], queries + b * dim + 4 * g, (size_t)width);
        packed[g] = _mm512_loadu_si512(lanes);
        terms = _mm512_dpbusd_epi32(terms, bias, packed[g]); /* lane b: 128 * sum of query b */
    }
    int32_t term[16];
    _mm512_storeu_si512(term, terms);
    const __mmask16 last = (__mmask16)((1u << (dim - 4 * whole)) - 1u);
    for (int64_t i0 = 0; i0 < n_rows; i0 += 16) {
        const uint8_t *rows[16];
        for (int r = 0; r < 16; r++) rows[r] = codes + block_row(n_rows, i0 + r) * codes_stride;
        __m512i acc[16];
        for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_si512();
        for (int64_t g = 0; g < whole; g++) {
            const __m512i x = packed[g];
            for (int r = 0; r < 16; r++) {
                int32_t four;
                memcpy(&four, rows[r] + 4 * g, sizeof four);
                acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(four), x);
            }
        }
        if (whole < groups)
            for (int r = 0; r < 16; r++) {
                const __m128i four = _mm_maskz_loadu_epi8(last, rows[r] + 4 * whole);
                acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_broadcastd_epi32(four),
                                             packed[whole]);
            }
        transpose16(acc); /* acc[b] lane r: row i0 + r by query b */
        for (int64_t b = 0; b < n_queries; b++)
            store_row_scores16(_mm512_sub_epi32(acc[b], _mm512_set1_epi32(term[b])),
                               row_factors + i0, query_factors[b], n_rows - i0,
                               scores + b * score_stride + i0);
    }
}

/* Whether the packed kernel is the faster: per score it spends dim / (4 * n_queries) vpdpbusd
 * and as many broadcasts, the 4 x 4 blocks dim / 64 vpdpbusd and about 3 instructions of
 * sums16. Measured (Xeon, 8192 rows in cache, 16 to 64 queries): 1.3 against 1.9 ns a score
 * at 64 columns, 3.5 against 3.3 at 300; the two cross near 230 columns. */
#define RQ_PACKED_PAYS_DIM 192

static inline int packed_pays(int64_t dim, int64_t n_queries)
{
    return dim <= RQ_PACKED_PAYS_DIM && 16 * dim < n_queries * (dim + 192);
}

/* The fast scores: per chunk of RQ_FAST_CHUNK columns, the int32 sums of q * x (at most
 * 65536 * 255 * 128 < 2^31) less 128 * sum x (wrapping int32 arithmetic; the centered result
 * is in range), added into int64 lanes. The bias terms of a call's first chunk are worked out
 * once per query block; those of later chunks (rows over 65536 wide) for each block of rows. */
static RQ_VNNI_TARGET void scores_fast_vnni(const uint8_t *codes, int64_t codes_stride,
                                            int64_t n_rows, int64_t dim, const int8_t *queries,
                                            int64_t n_queries, const double *row_factors,
                                            const double *query_factors, float *scores,
                                            int64_t score_stride)
{
    if (n_queries == 1 && dim > 0 && dim <= RQ_FAST_CHUNK) {
        scores_fast_vnni_one(codes, codes_stride, n_rows, dim, queries, row_factors,
                             query_factors[0], scores);
        return;
    }
    if (dim > 0 && dim <= RQ_PACKED_MAX_DIM && packed_pays(dim, n_queries)) {
        scores_fast_vnni_packed(codes, codes_stride, n_rows, dim, queries, n_queries,
                                row_factors, query_factors, scores, score_stride);
        return;
    }
    const int64_t first_end = dim < RQ_FAST_CHUNK ? dim : RQ_FAST_CHUNK;
    __m512i first_terms[RQ_SCORE_QUERIES / RQ_ZMM_SCORE_QUERIES];
    for (int64_t b0 = 0; b0 < n_queries; b0 += RQ_ZMM_SCORE_QUERIES) {
        const int8_t *query[RQ_ZMM_SCORE_QUERIES];
        const int n_q = n_queries - b0 < RQ_ZMM_SCORE_QUERIES ? (int)(n_queries - b0)
                                                              : RQ_ZMM_SCORE_QUERIES;
        for (int b = 0; b < n_q; b++) query[b] = queries + (b0 + b) * dim;
        first_terms[b0 / RQ_ZMM_SCORE_QUERIES] = bias_terms(query, n_q, 0, first_end);
    }
    for (int64_t i0 = 0; i0 < n_rows; i0 += RQ_ZMM_SCORE_ROWS) {
        const uint8_t *rows[RQ_ZMM_SCORE_ROWS];
        for (int r = 0; r < RQ_ZMM_SCORE_ROWS; r++)
            rows[r] = codes + block_row(n_rows, i0 + r) * codes_stride;
        const __m512d factors = block_row_factors(row_factors, i0, n_rows);
        const int64_t n = n_rows - i0 < RQ_ZMM_SCORE_ROWS ? n_rows - i0 : RQ_ZMM_SCORE_ROWS;
        const __mmask8 stored = (__mmask8)((1u << n) - 1u);
        for (int64_t b0 = 0; b0 < n_queries; b0 += RQ_ZMM_SCORE_QUERIES) {
            const int n_q = n_queries - b0 < RQ_ZMM_SCORE_QUERIES ? (int)(n_queries - b0)
                                                                  : RQ_ZMM_SCORE_QUERIES;
            const int8_t *query[RQ_ZMM_SCORE_QUERIES];
            for (int b = 0; b < RQ_ZMM_SCORE_QUERIES; b++) query[b] = queries + (b0 + b) * dim;
            __m512i low = _mm512_setzero_si512(), high = low; /* int64 totals, lanes 0-7, 8-15 */
            for (int64_t chunk = 0; chunk < dim; chunk += RQ_FAST_CHUNK) {
                const int64_t end = dim - chunk < RQ_FAST_CHUNK ? dim : chunk + RQ_FAST_CHUNK;
                __m512i acc[RQ_ZMM_SCORE_SUMS];
                for (int a = 0; a < RQ_ZMM_SCORE_SUMS; a++) acc[a] = _mm512_setzero_si512();
                vnni_block_any(rows, query, n_q, chunk, end, acc);
                const __m512i terms = chunk == 0 ? first_terms[b0 / RQ_ZMM_SCORE_QUERIES]
                                                 : bias_terms(query, n_q, chunk, end);
                const __m512i sums = _mm512_sub_epi32(sums16(acc), terms);
                low = _mm512_add_epi64(low, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(sums)));
                high = _mm512_add_epi64(high, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(sums, 1)));
            }
            float *out = scores + b0 * score_stride + i0;
            store_scores8(_mm512_cvtepi64_pd(low), factors, query_factors + b0, n_q, stored, out,
                          score_stride);
            if (n_q > 2)
                store_scores8(_mm512_cvtepi64_pd(high), factors, query_factors + b0 + 2, n_q - 2,
                              stored, out + 2 * score_stride, score_stride);
        }
    }
}

const rq_kernels rq_kernels_avx512 = {
    .name = "avx512",
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

/* The AVX-512 kernels with the fast scores of VNNI (vpdpbusd): a variant of its own, so that
 * processors with AVX-512 but not VNNI (Skylake-SP) keep "avx512" for everything else. */
const rq_kernels rq_kernels_avx512vnni = {
    .name = "avx512vnni",
    .supported = supported_vnni,
    .max_abs_bits = max_abs_bits,
    .encode_row = encode_row,
    .dequantize_row = dequantize_row,
    .dequantize_rows_stream = rq_avx2_dequantize_rows_stream,
    .pool_bags = pool_bags,
    .max_bag = rq_avx2_max_bag,
    .first_bad_id = first_bad_id,
    .scores_exact = scores_exact,
    .scores_fast = scores_fast_vnni,
};

#pragma GCC pop_options
#endif /* RQ_X86 */
