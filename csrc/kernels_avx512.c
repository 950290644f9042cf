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
    .scores_exact = rq_scalar_scores_exact,
    .scores_fast = rq_scalar_scores_fast,
};

#pragma GCC pop_options
#endif /* RQ_X86 */
