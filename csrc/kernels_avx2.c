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

/* 8 dequantized values from 8 codes, rounded once: fma(q, s, -128 s) is the exact
 * (q - 128) * s rounded once, because -128 s is exact. That holds while 128 s is finite, which
 * rq_fma_scale checks; larger scales take values8_sub. Zero scales do too: (q - 128) * 0 is
 * -0 for q < 128, which the FMA would round to +0. */
#define RQ_FMA_MAX_SCALE 0x1p120f

/* 0 < scale <= RQ_FMA_MAX_SCALE, on the bits: positive floats order as their bits, and -0,
 * negative scales and NaN have bits above those of RQ_FMA_MAX_SCALE, +0 wraps around to the
 * top. One integer compare, where two float ones kept a zero register busy in the bag loops. */
static inline int rq_fma_scale(float scale)
{
    return rq_float_bits(scale) - 1u < rq_float_bits(RQ_FMA_MAX_SCALE);
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

void rq_avx2_dequantize_row(const uint8_t *codes, float scale, int64_t dim, float *out)
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

/* The helpers below that take a count of 8-column blocks are always inlined, and called with a
 * constant count (pool_blocks turns a variable one into constants), so that their loops over the
 * blocks unroll and the sums stay in registers; with a variable count they live on the stack. */
#define RQ_INLINE static inline __attribute__((always_inline))

/* Keeps the compiler from loading the codes once above the three ways of adding a row (it
 * does, as they all read the same codes): the eight loaded blocks plus eight sums then need
 * more than the sixteen vector registers, and the sums spill to the stack, a load and a store
 * per block and row. Loads stay below this point; the sums are registers, unaffected. */
RQ_INLINE void no_hoist(void) { __asm__ volatile("" ::: "memory"); }

/* measured on 400000x300: 8 ids ahead 11.4 ms, 16 ids 9.0 ms, 32 ids 8.6 ms but twice as slow on
 * cache-resident tables */
#define RQ_BAG_AHEAD 16

#define RQ_BAG_READY_MAX 64 /* ids of a bag worked out at once; longer bags take pool_pass */

/* One rq_avx2_pool_bag call, as each pass over a group of its columns sees it. */
typedef struct bag_call {
    const rq_bag_rows *rows;
    const float *weights;
    int64_t begin, end;
    float *out;
    int64_t bad; /* what rq_avx2_pool_bag returns */
    /* from prepare_rows, for pool_ready_pass */
    const uint8_t *row_at[RQ_BAG_READY_MAX];
    float row_scale[RQ_BAG_READY_MAX], row_bias[RQ_BAG_READY_MAX];
} bag_call;

/* Prefetch columns [col, col + 8 * blocks) of row ids[later] (and its scale with the first
 * columns), if later < n_ids and that id is a row of the table: ids are read once and checked,
 * as another thread may change them during the call. */
RQ_INLINE void prefetch_later(const rq_bag_rows *table, int64_t later, int64_t col, int blocks)
{
    if (later >= table->n_ids) return;
    const int64_t later_row = table->ids[later];
    if (!rq_valid_row(later_row, table->n_rows)) return;
    const uint8_t *later_codes = table->codes + later_row * table->codes_stride + col;
    __builtin_prefetch(later_codes);
    __builtin_prefetch(later_codes + 8 * blocks - 1);
    if (col == 0) __builtin_prefetch(table->scales + later_row);
}

/* The lanes first..7 of a vector, as a mask. */
RQ_INLINE __m256i lanes_from(int first)
{
    return _mm256_cmpgt_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                              _mm256_set1_epi32(first - 1));
}

/* Store the sums of the blocks at out. A pass that starts inside columns already stored (the
 * last of a row, which ends at dim) masks its first block's store with first_lanes: each lane
 * is its own column's sum, so the lanes left out are the ones stored before. */
RQ_INLINE void store_sums(float *out, const __m256 *acc, int blocks, int mask_first,
                          __m256i first_lanes)
{
    for (int b = 0; b < blocks; b++) {
        if (b == 0 && mask_first)
            _mm256_maskstore_ps(out, first_lanes, acc[0]);
        else
            _mm256_storeu_ps(out + 8 * b, acc[b]);
    }
}

/* Add the rows of one bag, in id order, over columns [col, col + 8 * blocks) held in registers,
 * then store them. Each step also prefetches the same columns of the row RQ_BAG_AHEAD ids later
 * (into the next bags when this one ends, whose passes run over the same columns): the loads
 * spread evenly over the work instead of queueing behind each other. */
RQ_INLINE void pool_pass(bag_call *call, int64_t col, int blocks, int mask_first,
                         __m256i first_lanes)
{
    /* locals, not loads through call after each no_hoist() */
    const rq_bag_rows table = *call->rows;
    const float *weights = call->weights;
    const int64_t end = call->end;
    __m256 acc[8];
    for (int b = 0; b < blocks; b++) acc[b] = _mm256_setzero_ps();
    for (int64_t k = call->begin; k < end; k++) {
        prefetch_later(&table, k + RQ_BAG_AHEAD, col, blocks);
        const int64_t row = table.ids[k];
        if (!rq_valid_row(row, table.n_rows)) {
            rq_note_bad(&call->bad, k);
            continue;
        }
        if (row == table.padding_idx) continue;
        const uint8_t *row_codes = table.codes + row * table.codes_stride + col;
        const float scale = table.scales[row];
        const __m256 s = _mm256_set1_ps(scale);
        if (weights) {
            no_hoist();
            const __m256 w = _mm256_set1_ps(weights[k]);
            for (int b = 0; b < blocks; b++) {
                const __m256 value = values8_any(row_codes + 8 * b, scale);
                acc[b] = _mm256_add_ps(acc[b], _mm256_mul_ps(w, value));
            }
        } else if (rq_fma_scale(scale)) {
            no_hoist();
            const __m256 bias = _mm256_set1_ps(-(float)RQ_BIAS * scale);
            for (int b = 0; b < blocks; b++)
                acc[b] = _mm256_add_ps(acc[b], values8(row_codes + 8 * b, s, bias));
        } else {
            no_hoist();
            for (int b = 0; b < blocks; b++)
                acc[b] = _mm256_add_ps(acc[b], values8_sub(row_codes + 8 * b, s));
        }
    }
    store_sums(call->out + col, acc, blocks, mask_first, first_lanes);
}

/* pool_pass for unweighted bags whose rows all take the FMA path, from per-row pointers, scales
 * and biases worked out once for the bag instead of once per pass (a pass covers 64 columns).
 * Worth it from three passes on: 1000x300, 8192 bags of 20, 4.3 -> 3.9 ms (callgrind: 172 ->
 * 147 million instructions with the no_hoist fix); with one pass (dim 64) it costs 15%. */
RQ_INLINE void pool_ready_pass(bag_call *call, int64_t col, int blocks, int mask_first,
                               __m256i first_lanes)
{
    const rq_bag_rows table = *call->rows;
    const int64_t begin = call->begin, count = call->end - call->begin;
    __m256 acc[8];
    for (int b = 0; b < blocks; b++) acc[b] = _mm256_setzero_ps();
    for (int64_t i = 0; i < count; i++) {
        prefetch_later(&table, begin + i + RQ_BAG_AHEAD, col, blocks);
        const uint8_t *row_codes = call->row_at[i];
        if (!row_codes) continue;
        const __m256 s = _mm256_broadcast_ss(call->row_scale + i);
        const __m256 bias = _mm256_broadcast_ss(call->row_bias + i);
        for (int b = 0; b < blocks; b++)
            acc[b] = _mm256_add_ps(acc[b], values8(row_codes + col + 8 * b, s, bias));
    }
    store_sums(call->out + col, acc, blocks, mask_first, first_lanes);
}

RQ_INLINE void pool_blocks_of(bag_call *call, int ready, int64_t col, int blocks,
                              int mask_first, __m256i first_lanes)
{
    if (ready)
        pool_ready_pass(call, col, blocks, mask_first, first_lanes);
    else
        pool_pass(call, col, blocks, mask_first, first_lanes);
}

/* pool_ready_pass when ready, else pool_pass, over 1 to 8 blocks from col: each count is a
 * literal here, for the reason RQ_INLINE gives. */
RQ_INLINE void pool_blocks(bag_call *call, int ready, int64_t col, int blocks, int mask_first,
                           __m256i first_lanes)
{
    switch (blocks) {
    case 8: pool_blocks_of(call, ready, col, 8, mask_first, first_lanes); break;
    case 7: pool_blocks_of(call, ready, col, 7, mask_first, first_lanes); break;
    case 6: pool_blocks_of(call, ready, col, 6, mask_first, first_lanes); break;
    case 5: pool_blocks_of(call, ready, col, 5, mask_first, first_lanes); break;
    case 4: pool_blocks_of(call, ready, col, 4, mask_first, first_lanes); break;
    case 3: pool_blocks_of(call, ready, col, 3, mask_first, first_lanes); break;
    case 2: pool_blocks_of(call, ready, col, 2, mask_first, first_lanes); break;
    default: pool_blocks_of(call, ready, col, 1, mask_first, first_lanes); break;
    }
}

/* All columns of a row of 64 or more: passes of 64, then the last columns in one pass of whole
 * vectors ending at dim; its first vector starts inside the columns already stored, and its
 * store skips those lanes. */
RQ_INLINE void pool_wide(bag_call *call, int ready)
{
    const int64_t dim = call->rows->dim;
    int64_t j = 0;
    for (; j + 64 <= dim; j += 64) pool_blocks_of(call, ready, j, 8, 0, _mm256_setzero_si256());
    if (j < dim) {
        const int vectors = (int)((dim - j + 7) / 8);
        const int64_t start = dim - 8 * (int64_t)vectors;
        pool_blocks(call, ready, start, vectors, 1, lanes_from((int)(j - start)));
    }
}

/* Row pointers (NULL for padding and for ids outside the table, whose first position goes to
 * call->bad), scales and biases of the bag's ids for pool_ready_pass; 0 when a row needs
 * another path (scale 0 or past RQ_FMA_MAX_SCALE). Each id is read once: the passes over the
 * columns then use these pointers, not the ids. */
static int prepare_rows(bag_call *call)
{
    const rq_bag_rows *rows = call->rows;
    int ready = 1;
    for (int64_t k = call->begin; k < call->end; k++) {
        const int64_t i = k - call->begin, row = rows->ids[k];
        call->row_at[i] = NULL;
        call->row_scale[i] = call->row_bias[i] = 0.0f;
        if (!rq_valid_row(row, rows->n_rows)) {
            rq_note_bad(&call->bad, k);
            continue;
        }
        if (row == rows->padding_idx) continue;
        const float scale = rows->scales[row];
        call->row_at[i] = rows->codes + row * rows->codes_stride;
        call->row_scale[i] = scale;
        call->row_bias[i] = -(float)RQ_BIAS * scale;
        ready &= rq_fma_scale(scale);
    }
    return ready;
}

/* Rows narrower than a vector, as the scalar kernel sums them. */
RQ_INLINE int64_t pool_narrow(const rq_bag_rows *rows, const float *weights, int64_t begin,
                              int64_t end, float *out)
{
    const rq_bag_rows table = *rows; /* registers, not reloads after each store to out */
    const int64_t dim = table.dim;
    int64_t bad = -1;
    float scale;
    for (int64_t t = 0; t < dim; t++) out[t] = 0.0f;
    for (int64_t k = begin; k < end; k++) {
        const uint8_t *row_codes = rq_bag_row(&table, k, &scale, &bad);
        if (!row_codes) continue;
        for (int64_t t = 0; t < dim; t++) {
            const float value = rq_dequantized(row_codes[t], scale);
            out[t] += weights ? weights[k] * value : value;
        }
    }
    return bad;
}

int64_t rq_avx2_pool_bag(const rq_bag_rows *rows, const float *weights, int64_t begin,
                         int64_t end, float *out)
{
    const int64_t dim = rows->dim;
    if (dim < 8) return dim > 0 ? pool_narrow(rows, weights, begin, end, out) : -1;
    /* fields one by one: an initializer would also zero the row arrays, a kilobyte per bag */
    bag_call call;
    call.rows = rows, call.weights = weights, call.begin = begin, call.end = end, call.out = out;
    call.bad = -1;
    if (!weights && dim > 128 && end - begin <= RQ_BAG_READY_MAX) {
        if (prepare_rows(&call)) {
            pool_wide(&call, 1);
            return call.bad;
        }
        call.bad = -1; /* found again by pool_pass */
    }
    if (dim >= 64) {
        pool_wide(&call, 0);
        return call.bad;
    }
    /* narrower rows: the whole vectors in one pass, so their sums run side by side; then the 8
     * columns ending the row, of which the store keeps the last dim % 8 */
    pool_blocks(&call, 0, 0, (int)(dim / 8), 0, _mm256_setzero_si256());
    if (dim % 8) pool_pass(&call, dim - 8, 1, 1, lanes_from(8 - (int)(dim % 8)));
    return call.bad;
}

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
            rq_avx2_dequantize_row(row_codes, scale, dim, out);
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

const rq_kernels rq_kernels_avx2 = {
    .name = "avx2",
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
