/* rowquant kernels: per-row symmetric 8-bit quantization (Botha et al. 2017, section 2.2).
 *
 * Plain C99, no Python. Every function takes raw pointers, sizes and row strides (in elements),
 * never allocates, and returns an int status. Where a kernel can reject its input it reports the
 * position of the first offending element through an out-parameter, so the caller can name it.
 *
 * The arithmetic is the contract of DESIGN.md section 1:
 *   scale  s = float32(max_j |E[i, j]| / 127)           (one float32 division)
 *   code   q = floor(E / s + 128.5), evaluated exactly   (s == 0 gives 128)
 *   value  x = float32((q - 128) * s)                    (one float32 multiply)
 * The enums and RQ_BIAS are for callers too (the Cython glue reads them), so that no layer
 * retypes them.
 */
#ifndef ROWQUANT_H
#define ROWQUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The code of the value 0 (the 128 above). */
#define RQ_BIAS 128

enum rq_status {
    RQ_OK = 0,
    RQ_NONFINITE = 1,   /* quantize: *bad = flat index (row * dim + column) of the first NaN/inf */
    RQ_ID_RANGE = 2,    /* take/bag: *bad = position in ids of the first id outside [0, n_rows) */
    RQ_SIMD_UNKNOWN = 3,     /* rq_simd_select: no such instruction set */
    RQ_SIMD_UNAVAILABLE = 4, /* rq_simd_select: this processor cannot run it */
    RQ_BAD_ARGUMENT = 5,     /* rq_scores: an unknown precision, or no output */
};

enum rq_dot_precision { RQ_DOT_EXACT = 0, RQ_DOT_FAST = 1 };

enum rq_bag_mode { RQ_BAG_SUM = 0, RQ_BAG_MEAN = 1, RQ_BAG_MAX = 2 };

/* How the lookups' scales are stored, one per row: float32, or 16 bits, bfloat16 (the top half
 * of a float32, as CLD3 stores them) or IEEE float16. A 16-bit scale is widened exactly where
 * its row is read; the arithmetic is that of its float32 value. */
enum rq_scale_format { RQ_SCALE_F32 = 0, RQ_SCALE_BF16 = 1, RQ_SCALE_F16 = 2 };

/* Quantize n_rows rows of dim floats. On RQ_NONFINITE the contents of codes and scales are
 * unspecified. codes and scales must not overlap values. */
int rq_quantize_rows(const float *values, int64_t n_rows, int64_t dim, int64_t values_stride,
                     uint8_t *codes, int64_t codes_stride, float *scales,
                     int n_threads, int64_t *bad);

/* out[i, j] = (codes[i, j] - 128) * scales[i] for every row (scales in scale_format). */
int rq_dequantize(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows, int64_t dim,
                  int64_t codes_stride, float *out, int64_t out_stride, int n_threads);

/* out[k, :] = dequantized row ids[k]. Every id is checked before anything is written, and again
 * where it is read: ids changed by another thread during the call give RQ_ID_RANGE (with some
 * rows written) or rows of the new ids, never a read outside the table. */
int rq_take(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows, int64_t dim,
            int64_t codes_stride, const int64_t *ids, int64_t n_ids,
            float *out, int64_t out_stride, int n_threads, int64_t *bad);

/* Pooled lookup. Sums and means are computed as FBGEMM computes them, one fused multiply-add
 * per value: with f = the row's scale (times the id's weight, one float32 multiply),
 * sum[j] = fma(code, f, sum[j]) over the bag's rows in id order, f added up in float32 beside,
 * and the bag is fma(-128, sum of f, sum[j]); a bag for which that is not finite (sums of
 * unshifted codes overflow first) is summed again as fma(code - 128, f, out[j]). Means divide
 * by the count. rowquant.reference computes the same bits.
 * Bag b holds ids[bounds[b] .. bounds[b + 1]); bounds has n_bags + 1 entries,
 * non-decreasing, from 0 to at most n_ids (the caller checks this). weights (one per id) may be
 * NULL, and are ignored with RQ_BAG_MAX. Ids equal to padding_idx (pass -1 for none) are skipped
 * and not counted. RQ_BAG_MAX takes each column's largest value over the bag's rows (the first
 * row's where values tie), and an empty bag is zeros. Each bag is pooled in id order by one
 * thread, so results do not depend on the thread count. Ids are checked as in rq_take. */
int rq_bag(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows, int64_t dim,
           int64_t codes_stride, const int64_t *ids, int64_t n_ids,
           const int64_t *bounds, int64_t n_bags, const float *weights,
           int mode, int64_t padding_idx,
           float *out, int64_t out_stride, int n_threads, int64_t *bad);

/* Scores of n_queries queries (rows of dim values, back to back) against every row of the
 * table, as rowquant.reference defines them: with sum the exact precision's float64 lane sum
 * of the row's dequantized values times a float32 query's (RQ_DOT_EXACT), or the fast
 * precision's exact integer sum of (code - 128) times an int8 query's (RQ_DOT_FAST, the query
 * quantized as a row is, its codes minus 128), and
 *     row factor   = 1 (exact) or the row's scale (fast), times inverse_norms[i] if given,
 *     score        = float32((sum * row factor) * query_factors[b])   (in float64).
 * With out != NULL the scores go to out[b * out_stride + i]. Otherwise each member m of the
 * call's threads keeps its rows' k best per query in top_scores / top_ids
 * [(m * n_queries + b) * k ...] (a heap, unsorted), entries it has no row for left as (-inf, -1):
 * the caller gives room for n_threads members, fills it with (-inf, -1) (members may be fewer)
 * and merges them, best score first and the smaller id first among equal scores. The codes are
 * read once per call whatever the number of queries. */
int rq_scores(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows, int64_t dim,
              int64_t codes_stride, const void *queries, int64_t n_queries, int precision,
              const double *inverse_norms, const double *query_factors, float *out,
              int64_t out_stride, int64_t k, float *top_scores, int64_t *top_ids, int n_threads);

/* out[i] = float32(sqrt(s)), s the lane sum (as the exact scores sum) of row i's dequantized
 * values squared: the norms cosine scores divide by. */
int rq_norms(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows, int64_t dim,
             int64_t codes_stride, float *out, int n_threads);

/* The kernel variants compiled into this build, by index from 0 to rq_simd_count() - 1, slowest
 * first: index 0 is "scalar", which every build has and every processor runs; an x86 build
 * follows it with "avx2", "avx512" and "avx512vnni" (AVX-512 with vpdpbusd for the fast
 * scores). rq_simd_variant gives NULL for an index outside that range. Whether this processor
 * runs a variant is rq_simd_available's answer. */
int rq_simd_count(void);
const char *rq_simd_variant(int index);

/* Choose the kernels by one of those names, or NULL for the best this processor runs.
 * Until called, the first kernel call chooses the best. Not to be called while kernels run. */
int rq_simd_select(const char *name);
/* The name of the kernels in use. */
const char *rq_simd_name(void);
/* Whether this processor can run the named kernels (1) or not (0). */
int rq_simd_available(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* ROWQUANT_H */
