/* AVX-512 (F, BW, VL, DQ) quantization: the AVX2 algorithm at 16 lanes, compiled for that
 * target only inside this file and chosen at run time (dispatch.c) when supported() finds the
 * processor has them; the memory-bound kernels are the AVX2 ones. Same bits as
 * kernels_scalar.c, which dispatch.c checks on a built-in table before using it. */
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

static void encode_row(const float *values, int64_t dim, float scale, uint8_t *codes)
{
    if (scale < RQ_FAST_MIN_SCALE) {
        rq_codes_exact(values, dim, scale, codes);
        return;
    }
    const __m512 sv = _mm512_set1_ps(scale), inv = _mm512_set1_ps(1.0f / scale);
    int64_t j = 0;
    for (; j + 16 <= dim; j += 16)
        _mm_storeu_si128((__m128i *)(codes + j), codes16(_mm512_loadu_ps(values + j), sv, inv));
    rq_codes_exact(values + j, dim - j, scale, codes + j);
}

const rq_kernels rq_kernels_avx512 = {
    .name = "avx512",
    .supported = supported,
    .max_abs_bits = max_abs_bits,
    .encode_row = encode_row,
    .dequantize_row = rq_avx2_dequantize_row,
    .dequantize_rows_stream = rq_avx2_dequantize_rows_stream,
    .pool_bag = rq_avx2_pool_bag,
    .max_bag = rq_avx2_max_bag,
};

#pragma GCC pop_options
#endif /* RQ_X86 */
