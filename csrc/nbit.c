/* 4-bit and 2-bit rows (the schemes rowwise-affine-u4-f16 and rowwise-affine-u2-f16): FBGEMM's
 * N-bit layout, a row's values packed 8 / bits to a byte (value j in byte j * bits / 8, at bit
 * (j * bits) % 8, low bits first), with one float16 scale s and one float16 bias c per row.
 * rowquant.reference defines the arithmetic and every path here gives its bits:
 *     dequantized   x = s * q + c            (the product is exact: one rounding, an FMA)
 *     bag term      acc = fmaf(f, q, acc + g)  with f = s, g = c, or f = s * w, g = c * w
 *                                            (float32 multiplies) for a weight w; acc + g is
 *                                            rounded first, as FBGEMM's EmbeddingSpMDMNBit does
 *     mean          acc / count (a float32 division), max: the largest x, a later x kept only
 *                   when strictly greater.
 * Three variants, chosen from the 8-bit kernels' variant in use (dispatch.c), so that
 * ROWQUANT_SIMD and rowquant.use_simd switch these too: scalar, AVX2 (8 values per step: the
 * bytes of a step spread to 32-bit lanes with one shuffle, shifted by per-lane counts and
 * masked) and AVX-512 (16 values per step, the row's tail masked); their bags pool a bag in
 * register passes of their own (avx2_bag_pass, avx512_bag_pass). Max bags take the scalar
 * loop on every variant (rare, and one copy to test). The float16 scale and bias of a row are
 * widened exactly, once per row (rq_half_to_float, or F16C's vcvtph2ps on the SIMD variants).
 * A row's scale and bias sit param_stride bytes apart from the next row's: in arrays of their
 * own (2), or after its codes in FBGEMM's fused rows, where a row is one read. */
#include "nbit.h"

#include <string.h>

#include "kernels.h"
#include "team.h"

extern const rq_kernels *rq_active;

/* Below this many bytes of output a job runs on the calling thread alone (as rowquant.c). */
#define RQ_NBIT_PARALLEL_MIN_BYTES ((int64_t)256 << 10)
/* Rows of a bag gathered before they are pooled (a bag longer than this is pooled in parts,
 * in order). */
#define RQ_NBIT_CHUNK 32

typedef struct rq_nbit_table {
    const uint8_t *codes;
    int64_t codes_stride;
    const uint8_t *scales;
    const uint8_t *biases;
    int64_t param_stride;
    int64_t n_rows;
    int bits;
    int64_t dim;
} rq_nbit_table;

/* The float16 bits at p (any alignment). */
static inline uint16_t rq_load_half(const uint8_t *p)
{
    uint16_t bits;
    memcpy(&bits, p, sizeof bits);
    return bits;
}

/* Whether the table is FBGEMM's fused rows: each row's scale and bias the 4 bytes after its
 * codes. */
static inline int rq_nbit_fused(const rq_nbit_table *t)
{
    return t->param_stride == t->codes_stride && t->biases == t->scales + 2 &&
           t->scales == t->codes + (t->dim * t->bits + 7) / 8;
}

/* Row row's scale and bias as float32. */
static inline void rq_nbit_params(const rq_nbit_table *t, int64_t row, float *scale, float *bias)
{
    *scale = rq_half_to_float(rq_load_half(t->scales + row * t->param_stride));
    *bias = rq_half_to_float(rq_load_half(t->biases + row * t->param_stride));
}

static inline uint32_t rq_nbit_code(const uint8_t *row, int bits, int64_t j)
{
    const int64_t bit = j * bits;
    return (uint32_t)(row[bit >> 3] >> (bit & 7)) & ((1u << bits) - 1u);
}

/* ------------------------------------------------------------------------------ scalar */

/* write: out[j] = s * q + c; else out[j] = fmaf(f, q, out[j] + g). */
static void scalar_row(const uint8_t *row, int bits, int64_t dim, float f, float g, float *out,
                       int write)
{
    if (write) {
        for (int64_t j = 0; j < dim; j++) out[j] = __builtin_fmaf(f, (float)rq_nbit_code(row, bits, j), g);
    } else {
        for (int64_t j = 0; j < dim; j++)
            out[j] = __builtin_fmaf(f, (float)rq_nbit_code(row, bits, j), out[j] + g);
    }
}

typedef void (*rq_nbit_row_fn)(const uint8_t *row, int bits, int64_t dim, float f, float g,
                               float *out, int write);

/* Bag terms of n rows in order: out[j] = fmaf(f[k], q_kj, out[j] + g[k]) for k = 0..n (each
 * column's chain over the rows in id order is what the contract fixes). */
static void scalar_pool(const uint8_t *const *rows, const float *f, const float *g, int64_t n,
                        int bits, int64_t dim, float *out)
{
    for (int64_t k = 0; k < n; k++) scalar_row(rows[k], bits, dim, f[k], g[k], out, 0);
}

/* The sum of one bag, ids[begin..end) skipping padding_idx, into out (zeros on entry), weighted
 * when weights is not NULL; ids are rows of the table (checked by the caller; an id changed
 * since by another thread to one outside the table is skipped, never read). */
typedef void (*rq_nbit_bag_fn)(const rq_nbit_table *t, const int64_t *ids, int64_t n_ids, const float *weights, int64_t padding_idx,
                               int64_t begin, int64_t end, float *out);

/* Two bags at once (ids[begin_a..end_a) and ids[begin_b..end_b)), as two calls of the bag kernel
 * would sum them; returns 0, having written nothing, for tables it does not take. */
typedef int (*rq_nbit_pair_fn)(const rq_nbit_table *t, const int64_t *ids, int64_t n_ids,
                               const float *weights, int64_t padding_idx, int64_t begin_a,
                               int64_t end_a, int64_t begin_b, int64_t end_b, float *out_a,
                               float *out_b);

/* Ids ahead whose rows a bag prefetches (codes, scale and bias: three lines at least). */
#define RQ_NBIT_AHEAD 16

static inline void prefetch_row(const rq_nbit_table *t, const int64_t *ids, int64_t k,
                                int64_t n_ids)
{
    if (k >= n_ids) return;
    const int64_t row = ids[k];
    if ((uint64_t)row >= (uint64_t)t->n_rows) return;
    const uint8_t *codes = t->codes + row * t->codes_stride;
    const int64_t bytes = (t->dim * t->bits + 7) / 8;
    for (int64_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(codes + offset);
    /* the scale and bias: the line after the codes in fused rows, lines of their own else */
    __builtin_prefetch(t->scales + row * t->param_stride);
    __builtin_prefetch(t->biases + row * t->param_stride + 1);
}

/* A bag's rows gathered RQ_NBIT_CHUNK at a time, then pooled in order: the scalar variant. */
static void gather_bag(const rq_nbit_table *t, const int64_t *ids, int64_t n_ids, const float *weights, int64_t padding_idx, int64_t begin,
                       int64_t end, float *out)
{
    const uint8_t *rows[RQ_NBIT_CHUNK];
    float f[RQ_NBIT_CHUNK], g[RQ_NBIT_CHUNK];
    int64_t n = 0;
    for (int64_t k = begin; k < end; k++) {
        prefetch_row(t, ids, k + RQ_NBIT_AHEAD, n_ids);
        const int64_t row = ids[k];
        if (row == padding_idx || (uint64_t)row >= (uint64_t)t->n_rows) continue;
        rows[n] = t->codes + row * t->codes_stride;
        rq_nbit_params(t, row, &f[n], &g[n]);
        if (weights) {
            f[n] = f[n] * weights[k];
            g[n] = g[n] * weights[k];
        }
        if (++n == RQ_NBIT_CHUNK) {
            scalar_pool(rows, f, g, n, t->bits, t->dim, out);
            n = 0;
        }
    }
    if (n) scalar_pool(rows, f, g, n, t->bits, t->dim, out);
}

/* One pass of a SIMD bag over a row: `units` units of unit_bytes code bytes from column col,
 * `columns` of them real (the rest, past the row's end, read as zeros and not stored), and the
 * bytes of the last unit that are the row's. */
typedef struct rq_nbit_pass {
    int64_t units, col, columns;
    int last_bytes;
} rq_nbit_pass;

/* Pass p of a row split into passes of at most `sums` sums (8 / bits per unit) of near-equal
 * sizes; *passes receives their count. */
static inline rq_nbit_pass rq_nbit_plan(int64_t dim, int bits, int64_t unit_bytes, int sums,
                                        int64_t p, int64_t *passes)
{
    const int64_t unit_columns = unit_bytes * 8 / bits;
    const int64_t total = (dim + unit_columns - 1) / unit_columns;
    const int64_t most = sums / (8 / bits);
    *passes = (total + most - 1) / most;
    rq_nbit_pass pass;
    const int64_t done = total * p / *passes;
    pass.units = total * (p + 1) / *passes - done;
    pass.col = unit_columns * done;
    pass.columns = dim - pass.col < unit_columns * pass.units ? dim - pass.col
                                                              : unit_columns * pass.units;
    pass.last_bytes = (int)(((pass.columns - unit_columns * (pass.units - 1)) * bits + 7) / 8);
    return pass;
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RQ_NBIT_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

/* 8 codes starting at value j (a multiple of 8: `bits` whole bytes) as floats. */
__attribute__((always_inline)) static inline __m256 avx2_codes8(const uint8_t *row, int bits,
                                                               int64_t j, __m128i spread,
                                                               __m256i shifts, __m256i mask)
{
    uint32_t packed = 0;
    memcpy(&packed, row + j * bits / 8, (size_t)bits);
    const __m128i bytes = _mm_shuffle_epi8(_mm_cvtsi32_si128((int)packed), spread);
    const __m256i lanes = _mm256_srlv_epi32(_mm256_cvtepu8_epi32(bytes), shifts);
    return _mm256_cvtepi32_ps(_mm256_and_si256(lanes, mask));
}

__attribute__((always_inline)) static inline void avx2_row_bits(const uint8_t *row, const int bits,
                                                               int64_t dim, float f, float g,
                                                               float *out, int write)
{
    const __m128i spread = bits == 4 ? _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0)
                                     : _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i shifts = bits == 4 ? _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4)
                                     : _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    const __m256i mask = _mm256_set1_epi32((1 << bits) - 1);
    const __m256 vf = _mm256_set1_ps(f), vg = _mm256_set1_ps(g);
    int64_t j = 0;
    if (write) {
        for (; j + 8 <= dim; j += 8)
            _mm256_storeu_ps(out + j,
                             _mm256_fmadd_ps(vf, avx2_codes8(row, bits, j, spread, shifts, mask), vg));
        for (; j < dim; j++) out[j] = __builtin_fmaf(f, (float)rq_nbit_code(row, bits, j), g);
    } else {
        for (; j + 8 <= dim; j += 8) {
            const __m256 shifted = _mm256_add_ps(_mm256_loadu_ps(out + j), vg);
            _mm256_storeu_ps(out + j, _mm256_fmadd_ps(
                vf, avx2_codes8(row, bits, j, spread, shifts, mask), shifted));
        }
        for (; j < dim; j++) out[j] = __builtin_fmaf(f, (float)rq_nbit_code(row, bits, j), out[j] + g);
    }
}

static void avx2_row(const uint8_t *row, int bits, int64_t dim, float f, float g, float *out,
                     int write)
{
    if (bits == 4)
        avx2_row_bits(row, 4, dim, f, g, out, write);
    else
        avx2_row_bits(row, 2, dim, f, g, out, write);
}

/* Bags on AVX2, as on AVX-512 (see avx512_bag_pass) with 8 lanes: units of 8 code bytes (16
 * columns of 4-bit rows, 32 of 2-bit ones), up to RQ_NBIT_AVX2_SUMS sums in registers per pass,
 * each code of a byte in a sum of its own, every value by the FMA (an 8-entry vpermps table
 * cannot hold 16 products). */
#define RQ_NBIT_AVX2_SUMS 10
#define RQ_NBIT_AVX2_AHEAD 12

__attribute__((always_inline)) static inline void avx2_bag_pass(
    const rq_nbit_table *t, const int64_t *ids, int64_t n_ids, const float *weights,
    int64_t padding_idx, int64_t begin, int64_t end, int64_t col, int64_t columns,
    const int units, int last_bytes, const int bits, const int fetch, float *out)
{
    const int per = 8 / bits;
    const int64_t first = col * bits / 8;
    const __m256i mask = _mm256_set1_epi32((1 << bits) - 1);
    const uint8_t *codes_base = t->codes;
    const int64_t stride = t->codes_stride, n_rows = t->n_rows;
    __m256 acc[RQ_NBIT_AVX2_SUMS];
    _Pragma("GCC unroll 16") for (int v = 0; v < units * per; v++) acc[v] = _mm256_setzero_ps();
    for (int64_t k = begin; k < end; k++) {
        if (fetch) { /* the first pass prefetches whole rows, whose lines the others find */
            const int64_t later = k + RQ_NBIT_AVX2_AHEAD < n_ids ? k + RQ_NBIT_AVX2_AHEAD
                                                                 : n_ids - 1;
            int64_t ahead = ids[later];
            ahead = (uint64_t)ahead < (uint64_t)n_rows ? ahead : 0;
            const uint8_t *soon = codes_base + ahead * stride;
            const int64_t bytes = (t->dim * bits + 7) / 8;
            for (int64_t at = 0; at < bytes; at += 64) rq_prefetch(soon + at);
            rq_prefetch(soon + bytes - 1);
            rq_prefetch(t->scales + ahead * t->param_stride);
            rq_prefetch(t->biases + ahead * t->param_stride + 1);
        }
        const int64_t row = ids[k];
        if (row == padding_idx || (uint64_t)row >= (uint64_t)n_rows) continue;
        const __m128 both = _mm_cvtph_ps(_mm_insert_epi16(
            _mm_cvtsi32_si128(rq_load_half(t->scales + row * t->param_stride)),
            rq_load_half(t->biases + row * t->param_stride), 1));
        float f = _mm_cvtss_f32(both), g = _mm_cvtss_f32(_mm_movehdup_ps(both));
        if (weights) {
            f = f * weights[k];
            g = g * weights[k];
        }
        const __m256 vf = _mm256_set1_ps(f), vg = _mm256_set1_ps(g);
        const uint8_t *codes = codes_base + row * stride + first;
        _Pragma("GCC unroll 16") for (int u = 0; u < units; u++) {
            __m128i bytes;
            if (u < units - 1 || last_bytes == 8) {
                bytes = _mm_loadl_epi64((const __m128i *)(codes + 8 * u));
            } else {
                uint64_t packed = 0;
                if (u > 0) { /* the unit's 8 bytes ending at the row's last, shifted down */
                    memcpy(&packed, codes + 8 * u + last_bytes - 8, 8);
                    packed >>= 8 * (8 - last_bytes);
                } else {
                    for (int b = 0; b < last_bytes; b++) packed |= (uint64_t)codes[b] << (8 * b);
                }
                bytes = _mm_cvtsi64_si128((long long)packed);
            }
            const __m256i lanes = _mm256_cvtepu8_epi32(bytes);
            _Pragma("GCC unroll 4") for (int r = 0; r < per; r++) {
                __m256i q = r == 0 ? lanes : _mm256_srli_epi32(lanes, r * bits);
                if (r < per - 1) q = _mm256_and_si256(q, mask);
                acc[u * per + r] = _mm256_fmadd_ps(vf, _mm256_cvtepi32_ps(q),
                                                   _mm256_add_ps(acc[u * per + r], vg));
            }
        }
    }
    _Pragma("GCC unroll 16") for (int u = 0; u < units; u++) {
        __m256 ordered[4];
        if (bits == 4) { /* even columns, odd columns */
            const __m256 lo = _mm256_unpacklo_ps(acc[2 * u], acc[2 * u + 1]);
            const __m256 hi = _mm256_unpackhi_ps(acc[2 * u], acc[2 * u + 1]);
            ordered[0] = _mm256_permute2f128_ps(lo, hi, 0x20);
            ordered[1] = _mm256_permute2f128_ps(lo, hi, 0x31);
        } else { /* columns 4i + r in sum r */
            const __m256 t0 = _mm256_unpacklo_ps(acc[4 * u], acc[4 * u + 1]);
            const __m256 t1 = _mm256_unpackhi_ps(acc[4 * u], acc[4 * u + 1]);
            const __m256 t2 = _mm256_unpacklo_ps(acc[4 * u + 2], acc[4 * u + 3]);
            const __m256 t3 = _mm256_unpackhi_ps(acc[4 * u + 2], acc[4 * u + 3]);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            ordered[0] = _mm256_permute2f128_ps(u0, u1, 0x20);
            ordered[1] = _mm256_permute2f128_ps(u2, u3, 0x20);
            ordered[2] = _mm256_permute2f128_ps(u0, u1, 0x31);
            ordered[3] = _mm256_permute2f128_ps(u2, u3, 0x31);
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < per; r++) {
            const int64_t at = (int64_t)(u * per + r) * 8;
            const int64_t left = columns - at;
            if (left >= 8) {
                _mm256_storeu_ps(out + col + at, ordered[r]);
            } else if (left > 0) {
                float spill[8];
                _mm256_storeu_ps(spill, ordered[r]);
                memcpy(out + col + at, spill, (size_t)left * sizeof(float));
            }
        }
    }
}

#define RQ_NBIT_AVX2_CASE(n) \
    case n: \
        avx2_bag_pass(t, ids, n_ids, weights, padding_idx, begin, end, col, columns, n, \
                      last_bytes, bits, p == 0, out); \
        break;

__attribute__((always_inline)) static inline void avx2_bag_bits(
    const rq_nbit_table *t, const int64_t *ids, int64_t n_ids, const float *weights,
    int64_t padding_idx, int64_t begin, int64_t end, const int bits, float *out)
{
    int64_t passes = 1;
    for (int64_t p = 0; p < passes; p++) {
        const rq_nbit_pass pass = rq_nbit_plan(t->dim, bits, 8, RQ_NBIT_AVX2_SUMS, p, &passes);
        const int64_t col = pass.col, columns = pass.columns;
        const int last_bytes = pass.last_bytes;
        switch (pass.units) {
            RQ_NBIT_AVX2_CASE(1) RQ_NBIT_AVX2_CASE(2)
        default:
            if (bits == 4) {
                switch (pass.units) {
                    RQ_NBIT_AVX2_CASE(3) RQ_NBIT_AVX2_CASE(4) RQ_NBIT_AVX2_CASE(5)
                default: break;
                }
            }
            break;
        }
    }
}
#undef RQ_NBIT_AVX2_CASE

static void avx2_bag(const rq_nbit_table *t, const int64_t *ids, int64_t n_ids, const float *weights, int64_t padding_idx, int64_t begin,
                     int64_t end, float *out)
{
    if (t->bits == 4)
        avx2_bag_bits(t, ids, n_ids, weights, padding_idx, begin, end, 4, out);
    else
        avx2_bag_bits(t, ids, n_ids, weights, padding_idx, begin, end, 2, out);
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")


/* 16 codes starting at value j (a multiple of 16), of which the first `count` are read. */
__attribute__((always_inline)) static inline __m512 avx512_codes16(const uint8_t *row, int bits,
                                                                  int64_t j, int64_t count,
                                                                  __m128i spread, __m512i shifts,
                                                                  __m512i mask)
{
    uint64_t packed = 0;
    memcpy(&packed, row + j * bits / 8, count == 16 ? (size_t)(2 * bits)
                                                    : (size_t)((count * bits + 7) / 8));
    const __m128i bytes = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)&packed), spread);
    const __m512i lanes = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(bytes), shifts);
    return _mm512_cvtepi32_ps(_mm512_and_si512(lanes, mask));
}

__attribute__((always_inline)) static inline void avx512_row_bits(const uint8_t *row,
                                                                 const int bits, int64_t dim,
                                                                 float f, float g, float *out,
                                                                 int write)
{
    const __m128i spread = bits == 4
        ? _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)
        : _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i shifts = bits == 4
        ? _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4)
        : _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6);
    const __m512i mask = _mm512_set1_epi32((1 << bits) - 1);
    const __m512 vf = _mm512_set1_ps(f), vg = _mm512_set1_ps(g);
    int64_t j = 0;
    if (write) {
        for (; j + 16 <= dim; j += 16)
            _mm512_storeu_ps(out + j, _mm512_fmadd_ps(
                vf, avx512_codes16(row, bits, j, 16, spread, shifts, mask), vg));
        if (j < dim) {
            const __mmask16 tail = (__mmask16)((1u << (dim - j)) - 1u);
            _mm512_mask_storeu_ps(out + j, tail, _mm512_fmadd_ps(
                vf, avx512_codes16(row, bits, j, dim - j, spread, shifts, mask), vg));
        }
    } else {
        for (; j + 16 <= dim; j += 16) {
            const __m512 shifted = _mm512_add_ps(_mm512_loadu_ps(out + j), vg);
            _mm512_storeu_ps(out + j, _mm512_fmadd_ps(
                vf, avx512_codes16(row, bits, j, 16, spread, shifts, mask), shifted));
        }
        if (j < dim) {
            const __mmask16 tail = (__mmask16)((1u << (dim - j)) - 1u);
            const __m512 shifted = _mm512_add_ps(_mm512_maskz_loadu_ps(tail, out + j), vg);
            _mm512_mask_storeu_ps(out + j, tail, _mm512_fmadd_ps(
                vf, avx512_codes16(row, bits, j, dim - j, spread, shifts, mask), shifted));
        }
    }
}

static void avx512_row(const uint8_t *row, int bits, int64_t dim, float f, float g, float *out,
                       int write)
{
    if (bits == 4)
        avx512_row_bits(row, 4, dim, f, g, out, write);
    else
        avx512_row_bits(row, 2, dim, f, g, out, write);
}

/* Bags on AVX-512 pool each bag's rows in id order in passes over up to RQ_NBIT_UNITS units of
 * 16 code bytes (32 columns of 4-bit rows, 64 of 2-bit ones), whose sums stay in registers from
 * the first row to the store (one pass for rows up to 320 wide). A unit's bytes widen to 16
 * lanes once, and each of its 8 / bits codes per byte is summed in a register of its own: the
 * 4-bit sums hold the even columns and the odd ones, interleaved back at the store, so that a
 * code costs a shift (and a mask) rather than a shuffle. Unweighted bags add each value from a
 * table of the row's 16 products s * q (vpermps): s is a float16 and q below 16, so s * q is
 * exact in float32 and (acc + c) + s * q rounds once, as fmaf(s, q, acc + c) does; weighted
 * bags take the FMA. Each row step prefetches the same bytes of the row RQ_NBIT_BAG_AHEAD ids
 * later (in this bag or the next) and that row's scale and bias, so the memory reads of later
 * rows overlap the arithmetic of this one. */
#define RQ_NBIT_UNITS 10
#define RQ_NBIT_SUMS 20
#define RQ_NBIT_BAG_AHEAD 12

/* The float32 scale and bias of a row (F16C). */
__attribute__((always_inline)) static inline void avx512_params(const rq_nbit_table *t,
                                                               int64_t row, float *scale,
                                                               float *bias)
{
    const __m128i halves = _mm_insert_epi16(
        _mm_cvtsi32_si128(rq_load_half(t->scales + row * t->param_stride)),
        rq_load_half(t->biases + row * t->param_stride), 1);
    const __m128 both = _mm_cvtph_ps(halves);
    *scale = _mm_cvtss_f32(both);
    *bias = _mm_cvtss_f32(_mm_movehdup_ps(both));
}

/* Prefetch the bytes of row ids[pos] (or of the last id) that a pass reads: from byte first to
 * byte fetch_end of the row (fused rows: through its scale and bias), and the scale and bias
 * of arrays of their own. A prefetch never faults: an id another thread made invalid only
 * wastes it. */
__attribute__((always_inline)) static inline void avx512_fetch(const rq_nbit_table *t,
                                                              const int64_t *ids, int64_t n_ids,
                                                              int64_t pos, int64_t first,
                                                              int64_t fetch_end, const int fused)
{
    const int64_t ahead = ids[pos < n_ids ? pos : n_ids - 1];
    const uint8_t *soon = t->codes + ahead * t->codes_stride;
    _Pragma("GCC unroll 8") for (int line = 0; line < 3; line++)
        if (first + 64 * line < fetch_end) rq_prefetch(soon + first + 64 * line);
    rq_prefetch(soon + fetch_end);
    if (!fused) {
        rq_prefetch(t->scales + ahead * t->param_stride);
        rq_prefetch(t->biases + ahead * t->param_stride + 1);
    }
}

/* Add row ids[k] (unless it is padding_idx, or not a row: changed by another thread) to the
 * sums of a pass: `units` units of 16 code bytes from byte first, the last one `tail` bytes. */
__attribute__((always_inline)) static inline void avx512_add_row(
    const rq_nbit_table *t, const int64_t *ids, int64_t k, const float *weights,
    int64_t padding_idx, int64_t first, int64_t params_at, __mmask16 tail, const int units,
    const int bits, const int products, const int fused, __m512 *acc)
{
    const int per = 8 / bits; /* sums per unit: codes per byte */
    const __m512i mask = _mm512_set1_epi32((1 << bits) - 1);
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int64_t row = ids[k];
    if (row == padding_idx || (uint64_t)row >= (uint64_t)t->n_rows) return;
    const uint8_t *row_codes = t->codes + row * t->codes_stride;
    __m512 vf, vg;
    if (fused && !weights) { /* one load and one conversion for both */
        uint32_t both_bits;
        memcpy(&both_bits, row_codes + params_at, sizeof both_bits);
        const __m128 both = _mm_cvtph_ps(_mm_cvtsi32_si128((int)both_bits));
        vf = _mm512_broadcastss_ps(both);
        vg = _mm512_broadcastss_ps(_mm_movehdup_ps(both));
    } else {
        float f, g;
        avx512_params(t, row, &f, &g);
        if (weights) {
            f = f * weights[k];
            g = g * weights[k];
        }
        vf = _mm512_set1_ps(f);
        vg = _mm512_set1_ps(g);
    }
    const __m512 table = _mm512_mul_ps(vf, iota); /* exact: see above (products only) */
    const uint8_t *codes = row_codes + first;
    _Pragma("GCC unroll 32") for (int u = 0; u < units; u++) {
        const __m128i bytes = u < units - 1 || tail == 0xffff
            ? _mm_loadu_si128((const __m128i *)(codes + 16 * u))
            : _mm_maskz_loadu_epi8(tail, codes + 16 * u);
        const __m512i lanes = _mm512_cvtepu8_epi32(bytes);
        _Pragma("GCC unroll 4") for (int r = 0; r < per; r++) {
            __m512i q = r == 0 ? lanes : _mm512_srli_epi32(lanes, r * bits);
            if (r < per - 1 && !(products && bits == 4)) q = _mm512_and_si512(q, mask);
            __m512 *sum = &acc[u * per + r];
            if (products) /* vpermps reads the index's low 4 bits */
                *sum = _mm512_add_ps(_mm512_add_ps(*sum, vg), _mm512_permutexvar_ps(q, table));
            else
                *sum = _mm512_fmadd_ps(vf, _mm512_cvtepi32_ps(q), _mm512_add_ps(*sum, vg));
        }
    }
}

/* Store the sums of a pass, columns [col, col + columns) of out, in column order. */
__attribute__((always_inline)) static inline void avx512_store_sums(const __m512 *acc,
                                                                   const int units,
                                                                   const int bits, int64_t col,
                                                                   int64_t columns, float *out)
{
    const int per = 8 / bits;
    /* back to column order: 4-bit sums hold columns 2i and 2i + 1; 2-bit ones 4i + r */
    const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30,
                                           15, 31);
    const __m512i pairs_low = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7,
                                                22, 23);
    const __m512i pairs_high = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29,
                                                 14, 15, 30, 31);
    _Pragma("GCC unroll 32") for (int u = 0; u < units; u++) {
        __m512 ordered[4];
        if (bits == 4) {
            ordered[0] = _mm512_permutex2var_ps(acc[2 * u], low, acc[2 * u + 1]);
            ordered[1] = _mm512_permutex2var_ps(acc[2 * u], high, acc[2 * u + 1]);
        } else {
            const __m512 a = _mm512_permutex2var_ps(acc[4 * u], low, acc[4 * u + 1]);
            const __m512 b = _mm512_permutex2var_ps(acc[4 * u], high, acc[4 * u + 1]);
            const __m512 c = _mm512_permutex2var_ps(acc[4 * u + 2], low, acc[4 * u + 3]);
            const __m512 d = _mm512_permutex2var_ps(acc[4 * u + 2], high, acc[4 * u + 3]);
            ordered[0] = _mm512_permutex2var_ps(a, pairs_low, c);
            ordered[1] = _mm512_permutex2var_ps(a, pairs_high, c);
            ordered[2] = _mm512_permutex2var_ps(b, pairs_low, d);
            ordered[3] = _mm512_permutex2var_ps(b, pairs_high, d);
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < per; r++) {
            const int64_t at = (int64_t)(u * per + r) * 16;
            const int64_t left = columns - at;
            if (left >= 16)
                _mm512_storeu_ps(out + col + at, ordered[r]);
            else if (left > 0)
                _mm512_mask_storeu_ps(out + col + at, (__mmask16)((1u << left) - 1u), ordered[r]);
        }
    }
}

/* Columns [col, col + units * 128 / bits) of one bag, `columns` of them stored (the rest, past
 * the row's end, are summed from zero bytes and dropped); `last_bytes` of the last unit read. */
__attribute__((always_inline)) static inline void avx512_bag_pass(
    const rq_nbit_table *t, const int64_t *ids, int64_t n_ids, const float *weights,
    int64_t padding_idx, int64_t begin, int64_t end, int64_t col, int64_t columns,
    const int units, int last_bytes, const int bits, const int products, const int fused,
    float *out)
{
    const int64_t first = col * bits / 8;
    /* fused rows: a row's scale and bias are the 4 bytes after its codes */
    const int64_t params_at = (t->dim * bits + 7) / 8;
    const int64_t fetch_end = fused ? params_at + 3 : first + 16 * (int64_t)(units - 1) + last_bytes - 1;
    const __mmask16 tail = (__mmask16)(last_bytes >= 16 ? 0xffffu : (1u << last_bytes) - 1u);
    __m512 acc[RQ_NBIT_SUMS];
    _Pragma("GCC unroll 32") for (int v = 0; v < units * (8 / bits); v++)
        acc[v] = _mm512_setzero_ps();
    for (int64_t k = begin; k < end; k++) {
        avx512_fetch(t, ids, n_ids, k + RQ_NBIT_BAG_AHEAD, first, fetch_end, fused);
        avx512_add_row(t, ids, k, weights, padding_idx, first, params_at, tail, units, bits,
                       products, fused, acc);
    }
    avx512_store_sums(acc, units, bits, col, columns, out);
}

/* Two bags of one pass each at once, their rows taken in turns (a row of the first, then one
 * of the second), so that the two bags' chains of dependent additions overlap: rows up to
 * RQ_NBIT_PAIR_SUMS sums wide, whose bags are otherwise latency-bound. Each bag's rows are
 * still added in id order, so the bits are those of avx512_bag_pass. */
#define RQ_NBIT_PAIR_SUMS 12

__attribute__((always_inline)) static inline void avx512_bag_pair(
    const rq_nbit_table *t, const int64_t *ids, int64_t n_ids, const float *weights,
    int64_t padding_idx, int64_t begin_a, int64_t end_a, int64_t begin_b, int64_t end_b,
    int64_t columns, const int units, int last_bytes, const int bits, const int products,
    const int fused, float *out_a, float *out_b)
{
    const int64_t params_at = (t->dim * bits + 7) / 8;
    const int64_t fetch_end = fused ? params_at + 3 : 16 * (int64_t)(units - 1) + last_bytes - 1;
    const __mmask16 tail = (__mmask16)(last_bytes >= 16 ? 0xffffu : (1u << last_bytes) - 1u);
    __m512 acc_a[RQ_NBIT_PAIR_SUMS], acc_b[RQ_NBIT_PAIR_SUMS];
    _Pragma("GCC unroll 32") for (int v = 0; v < units * (8 / bits); v++) {
        acc_a[v] = _mm512_setzero_ps();
        acc_b[v] = _mm512_setzero_ps();
    }
    const int64_t both = end_a - begin_a < end_b - begin_b ? end_a - begin_a : end_b - begin_b;
    /* the rows ahead, two a step: they run ahead of both bags, into the next pair */
    int64_t ahead = begin_b + RQ_NBIT_BAG_AHEAD;
    for (int64_t i = 0; i < both; i++, ahead += 2) {
        avx512_fetch(t, ids, n_ids, ahead, 0, fetch_end, fused);
        avx512_fetch(t, ids, n_ids, ahead + 1, 0, fetch_end, fused);
        avx512_add_row(t, ids, begin_a + i, weights, padding_idx, 0, params_at, tail, units,
                       bits, products, fused, acc_a);
        avx512_add_row(t, ids, begin_b + i, weights, padding_idx, 0, params_at, tail, units,
                       bits, products, fused, acc_b);
    }
    for (int64_t k = begin_a + both; k < end_a; k++) {
        avx512_fetch(t, ids, n_ids, k + RQ_NBIT_BAG_AHEAD, 0, fetch_end, fused);
        avx512_add_row(t, ids, k, weights, padding_idx, 0, params_at, tail, units, bits,
                       products, fused, acc_a);
    }
    for (int64_t k = begin_b + both; k < end_b; k++) {
        avx512_fetch(t, ids, n_ids, k + RQ_NBIT_BAG_AHEAD, 0, fetch_end, fused);
        avx512_add_row(t, ids, k, weights, padding_idx, 0, params_at, tail, units, bits,
                       products, fused, acc_b);
    }
    avx512_store_sums(acc_a, units, bits, 0, columns, out_a);
    avx512_store_sums(acc_b, units, bits, 0, columns, out_b);
}

#define RQ_NBIT_PASS_CASE(n) \
    case n: \
        if (weights) \
            avx512_bag_pass(t, ids, n_ids, weights, padding_idx, begin, end, col, columns, n, \
                            last_bytes, bits, 0, 0, out); \
        else if (fused) \
            avx512_bag_pass(t, ids, n_ids, NULL, padding_idx, begin, end, col, columns, n, \
                            last_bytes, bits, 1, 1, out); \
        else \
            avx512_bag_pass(t, ids, n_ids, NULL, padding_idx, begin, end, col, columns, n, \
                            last_bytes, bits, 1, 0, out); \
        break;

__attribute__((always_inline)) static inline void avx512_bag_bits(
    const rq_nbit_table *t, const int64_t *ids, int64_t n_ids, const float *weights,
    int64_t padding_idx, int64_t begin, int64_t end, const int bits, float *out)
{
    const int64_t dim = t->dim;
    const int fused = rq_nbit_fused(t);
    int64_t passes = 1;
    for (int64_t p = 0; p < passes; p++) {
        const rq_nbit_pass pass = rq_nbit_plan(dim, bits, 16, RQ_NBIT_SUMS, p, &passes);
        const int64_t col = pass.col, columns = pass.columns;
        const int last_bytes = pass.last_bytes;
        switch (pass.units) {
            RQ_NBIT_PASS_CASE(1) RQ_NBIT_PASS_CASE(2) RQ_NBIT_PASS_CASE(3)
            RQ_NBIT_PASS_CASE(4) RQ_NBIT_PASS_CASE(5)
        default:
            if (bits == 4) {
                switch (pass.units) {
                    RQ_NBIT_PASS_CASE(6) RQ_NBIT_PASS_CASE(7) RQ_NBIT_PASS_CASE(8)
                    RQ_NBIT_PASS_CASE(9) RQ_NBIT_PASS_CASE(10)
                default: break;
                }
            }
            break;
        }
    }
}
#undef RQ_NBIT_PASS_CASE

#define RQ_NBIT_PAIR_CASE(n) \
    case n: \
        if (weights) \
            avx512_bag_pair(t, ids, n_ids, weights, padding_idx, begin_a, end_a, begin_b, end_b, \
                            pass.columns, n, pass.last_bytes, bits, 0, 0, out_a, out_b); \
        else if (fused) \
            avx512_bag_pair(t, ids, n_ids, NULL, padding_idx, begin_a, end_a, begin_b, end_b, \
                            pass.columns, n, pass.last_bytes, bits, 1, 1, out_a, out_b); \
        else \
            avx512_bag_pair(t, ids, n_ids, NULL, padding_idx, begin_a, end_a, begin_b, end_b, \
                            pass.columns, n, pass.last_bytes, bits, 1, 0, out_a, out_b); \
        return 1;

__attribute__((always_inline)) static inline int avx512_bag2_bits(
    const rq_nbit_table *t, const int64_t *ids, int64_t n_ids, const float *weights,
    int64_t padding_idx, int64_t begin_a, int64_t end_a, int64_t begin_b, int64_t end_b,
    const int bits, float *out_a, float *out_b)
{
    int64_t passes = 1;
    const rq_nbit_pass pass = rq_nbit_plan(t->dim, bits, 16, RQ_NBIT_SUMS, 0, &passes);
    if (passes != 1 || pass.units * (8 / bits) > RQ_NBIT_PAIR_SUMS) return 0;
    const int fused = rq_nbit_fused(t);
    switch (pass.units) {
        RQ_NBIT_PAIR_CASE(1) RQ_NBIT_PAIR_CASE(2) RQ_NBIT_PAIR_CASE(3)
    default:
        if (bits == 4) {
            switch (pass.units) {
                RQ_NBIT_PAIR_CASE(4) RQ_NBIT_PAIR_CASE(5) RQ_NBIT_PAIR_CASE(6)
            default: break;
            }
        }
        break;
    }
    return 0;
}
#undef RQ_NBIT_PAIR_CASE

/* Two bags at once where their rows are narrow enough (avx512_bag_pair); 0 when not. */
static int avx512_bag2(const rq_nbit_table *t, const int64_t *ids, int64_t n_ids,
                       const float *weights, int64_t padding_idx, int64_t begin_a, int64_t end_a,
                       int64_t begin_b, int64_t end_b, float *out_a, float *out_b)
{
    if (t->bits == 4)
        return avx512_bag2_bits(t, ids, n_ids, weights, padding_idx, begin_a, end_a, begin_b,
                                end_b, 4, out_a, out_b);
    return avx512_bag2_bits(t, ids, n_ids, weights, padding_idx, begin_a, end_a, begin_b, end_b,
                            2, out_a, out_b);
}

static void avx512_bag(const rq_nbit_table *t, const int64_t *ids, int64_t n_ids, const float *weights, int64_t padding_idx, int64_t begin,
                       int64_t end, float *out)
{
    if (t->bits == 4)
        avx512_bag_bits(t, ids, n_ids, weights, padding_idx, begin, end, 4, out);
    else
        avx512_bag_bits(t, ids, n_ids, weights, padding_idx, begin, end, 2, out);
}
#pragma GCC pop_options
#endif

/* The kernels of one instruction set. */
typedef struct rq_nbit_variant {
    const char *name;
    rq_nbit_row_fn row;   /* one row: dequantize, take */
    rq_nbit_bag_fn bag;   /* one bag's sum */
    rq_nbit_pair_fn pair; /* two bags' sums at once, or NULL */
} rq_nbit_variant;

static const rq_nbit_variant scalar_variant = {"scalar", scalar_row, gather_bag, NULL};
#ifdef RQ_NBIT_X86
static const rq_nbit_variant avx2_variant = {"avx2", avx2_row, avx2_bag, NULL};
static const rq_nbit_variant avx512_variant = {"avx512", avx512_row, avx512_bag, avx512_bag2};
#endif

/* The variant of the 8-bit kernels in use (scalar when none is selected yet). */
static const rq_nbit_variant *variant(void)
{
    if (!rq_active) rq_simd_select(NULL);
    const char *name = rq_active ? rq_active->name : "scalar";
#ifdef RQ_NBIT_X86
    if (strncmp(name, "avx512", 6) == 0) return &avx512_variant;
    if (strcmp(name, "avx2") == 0) return &avx2_variant;
#endif
    (void)name;
    return &scalar_variant;
}

const char *rq_nbit_kernel_name(void)
{
    return variant()->name;
}

static int team_size(int n_threads, int64_t bytes)
{
    return rq_team_members(n_threads, bytes, RQ_NBIT_PARALLEL_MIN_BYTES);
}

static int64_t first_bad_id(const int64_t *ids, int64_t n_ids, int64_t n_rows)
{
    for (int64_t k = 0; k < n_ids; k++)
        if ((uint64_t)ids[k] >= (uint64_t)n_rows) return k;
    return -1;
}

/* ------------------------------------------------------------------ dequantize and take */

struct rows_job {
    const rq_nbit_table *table;
    rq_nbit_row_fn kernel;
    const int64_t *ids; /* NULL: every row in order */
    int64_t n_out;
    float *out;
    int64_t out_stride;
};

static void rows_part(void *context, int member, int members)
{
    const struct rows_job *job = context;
    const rq_nbit_table *t = job->table;
    int64_t begin, end;
    rq_team_share(job->n_out, member, members, &begin, &end);
    for (int64_t i = begin; i < end; i++) {
        const int64_t row = job->ids ? job->ids[i] : i;
        if (job->ids && i + RQ_NBIT_AHEAD < end)
            __builtin_prefetch(t->codes + job->ids[i + RQ_NBIT_AHEAD] * t->codes_stride);
        float scale, bias;
        rq_nbit_params(t, row, &scale, &bias);
        job->kernel(t->codes + row * t->codes_stride, t->bits, t->dim, scale, bias,
                    job->out + i * job->out_stride, 1);
    }
}

static int run_rows(const rq_nbit_table *table, const int64_t *ids, int64_t n_out, float *out,
                    int64_t out_stride, int n_threads)
{
    struct rows_job job = {
        .table = table, .kernel = variant()->row, .ids = ids, .n_out = n_out, .out = out,
        .out_stride = out_stride,
    };
    const int64_t bytes = n_out * table->dim * 4;
    rq_team_run(team_size(n_threads, bytes), rows_part, &job);
    return RQ_OK;
}

int rq_nbit_dequantize(const uint8_t *codes, int64_t codes_stride, const uint8_t *scales,
                       const uint8_t *biases, int64_t param_stride, int64_t n_rows, int bits,
                       int64_t dim, float *out, int64_t out_stride, int n_threads)
{
    const rq_nbit_table table = {codes, codes_stride, scales, biases, param_stride, n_rows, bits,
                                 dim};
    if (n_rows == 0 || dim == 0) return RQ_OK;
    return run_rows(&table, NULL, n_rows, out, out_stride, n_threads);
}

int rq_nbit_take(const uint8_t *codes, int64_t codes_stride, const uint8_t *scales,
                 const uint8_t *biases, int64_t param_stride, int64_t n_rows, int bits,
                 int64_t dim, const int64_t *ids, int64_t n_ids, float *out, int64_t out_stride,
                 int n_threads, int64_t *bad)
{
    const rq_nbit_table table = {codes, codes_stride, scales, biases, param_stride, n_rows, bits,
                                 dim};
    *bad = first_bad_id(ids, n_ids, n_rows);
    if (*bad >= 0) return RQ_ID_RANGE;
    if (n_ids == 0 || dim == 0) return RQ_OK;
    return run_rows(&table, ids, n_ids, out, out_stride, n_threads);
}

/* ------------------------------------------------------------------------------- bags */

struct bag_job {
    const rq_nbit_table *table;
    rq_nbit_bag_fn bag;
    rq_nbit_pair_fn pair; /* NULL for variants without */
    const int64_t *ids;
    int64_t n_ids;
    const int64_t *bounds;
    int64_t n_bags;
    const float *weights;
    int mode;
    int64_t padding_idx;
    float *out;
    int64_t out_stride;
};

static void max_bag(const rq_nbit_table *t, const int64_t *ids, int64_t begin, int64_t end,
                    int64_t padding_idx, float *out)
{
    int64_t count = 0;
    for (int64_t k = begin; k < end; k++) {
        const int64_t row = ids[k];
        if (row == padding_idx || (uint64_t)row >= (uint64_t)t->n_rows) continue;
        const uint8_t *codes = t->codes + row * t->codes_stride;
        float s, c;
        rq_nbit_params(t, row, &s, &c);
        for (int64_t j = 0; j < t->dim; j++) {
            const float value = __builtin_fmaf(s, (float)rq_nbit_code(codes, t->bits, j), c);
            if (count == 0 || value > out[j]) out[j] = value;
        }
        count++;
    }
}

/* A mean bag's sum divided by its count of ids that are rows and not padding_idx. */
static void finish_mean(const struct bag_job *job, int64_t b)
{
    const rq_nbit_table *t = job->table;
    int64_t count = 0;
    for (int64_t k = job->bounds[b]; k < job->bounds[b + 1]; k++)
        count += job->ids[k] != job->padding_idx && (uint64_t)job->ids[k] < (uint64_t)t->n_rows;
    if (count > 0) {
        float *out = job->out + b * job->out_stride;
        const float divisor = (float)count;
        for (int64_t j = 0; j < t->dim; j++) out[j] = out[j] / divisor;
    }
}

static void bag_part(void *context, int member, int members)
{
    const struct bag_job *job = context;
    const rq_nbit_table *t = job->table;
    int64_t first, last;
    rq_team_share(job->n_bags, member, members, &first, &last);
    const int64_t stop = last < job->n_bags ? job->bounds[last] : job->n_ids;
    for (int64_t b = first; b < last; b++) {
        float *out = job->out + b * job->out_stride;
        memset(out, 0, (size_t)t->dim * sizeof *out);
        const int64_t begin = job->bounds[b], end = job->bounds[b + 1];
        if (job->mode == RQ_BAG_MAX) {
            max_bag(t, job->ids, begin, end, job->padding_idx, out);
            continue;
        }
        if (job->pair && b + 1 < last) { /* this bag and the next at once, where it can */
            float *next = out + job->out_stride;
            if (job->pair(t, job->ids, stop, job->weights, job->padding_idx, begin, end, end,
                          job->bounds[b + 2], out, next)) {
                if (job->mode == RQ_BAG_MEAN) {
                    finish_mean(job, b);
                    finish_mean(job, b + 1);
                }
                b++;
                continue;
            }
        }
        job->bag(t, job->ids, stop, job->weights, job->padding_idx, begin, end, out);
        if (job->mode == RQ_BAG_MEAN) finish_mean(job, b);
    }
}

int rq_nbit_bag(const uint8_t *codes, int64_t codes_stride, const uint8_t *scales,
                const uint8_t *biases, int64_t param_stride, int64_t n_rows, int bits,
                int64_t dim, const int64_t *ids, int64_t n_ids, const int64_t *bounds,
                int64_t n_bags, const float *weights, int mode, int64_t padding_idx, float *out,
                int64_t out_stride, int n_threads, int64_t *bad)
{
    const rq_nbit_table table = {codes, codes_stride, scales, biases, param_stride, n_rows, bits,
                                 dim};
    *bad = first_bad_id(ids, n_ids, n_rows);
    if (*bad >= 0) return RQ_ID_RANGE;
    if (n_bags == 0 || dim == 0) return RQ_OK;
    struct bag_job job = {
        .table = &table, .bag = variant()->bag, .pair = variant()->pair,
        .ids = ids, .n_ids = n_ids,
        .bounds = bounds,
        .n_bags = n_bags, .weights = mode == RQ_BAG_MAX ? NULL : weights, .mode = mode,
        .padding_idx = padding_idx, .out = out, .out_stride = out_stride,
    };
    const int64_t row_bytes = (dim * bits + 7) / 8 + 4;
    const int64_t touched = (n_ids ? n_ids : 1) * row_bytes + n_bags * dim * 4;
    rq_team_run(team_size(n_threads, touched), bag_part, &job);
    return RQ_OK;
}
