/* 4-bit and 2-bit rows in FBGEMM's N-bit layout (see nbit.c): dequantize, take and bags.
 * Scales and biases are IEEE float16 bits, one each per row, row i's at scales + i *
 * param_stride and biases + i * param_stride (bytes, no alignment needed): 2 for arrays of
 * their own, or the row stride of FBGEMM's fused rows [codes | scale | bias], where one row's
 * codes, scale and bias share its cache lines. Ids are checked before anything is written: on
 * RQ_ID_RANGE, *bad is the position of the first id outside [0, n_rows) and out is
 * untouched. */
#ifndef ROWQUANT_NBIT_H
#define ROWQUANT_NBIT_H

#include <stdint.h>

#include "rowquant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[i, j] = s_i * q_ij + c_i for every row. */
int rq_nbit_dequantize(const uint8_t *codes, int64_t codes_stride, const uint8_t *scales,
                       const uint8_t *biases, int64_t param_stride, int64_t n_rows, int bits,
                       int64_t dim, float *out, int64_t out_stride, int n_threads);

/* out[k, :] = dequantized row ids[k]. */
int rq_nbit_take(const uint8_t *codes, int64_t codes_stride, const uint8_t *scales,
                 const uint8_t *biases, int64_t param_stride, int64_t n_rows, int bits,
                 int64_t dim, const int64_t *ids, int64_t n_ids, float *out, int64_t out_stride,
                 int n_threads, int64_t *bad);

/* Bag b pools rows ids[bounds[b]..bounds[b + 1]) (RQ_BAG_SUM, RQ_BAG_MEAN with optional
 * weights, or RQ_BAG_MAX), skipping padding_idx (-1 for none), into out + b * out_stride. */
int rq_nbit_bag(const uint8_t *codes, int64_t codes_stride, const uint8_t *scales,
                const uint8_t *biases, int64_t param_stride, int64_t n_rows, int bits,
                int64_t dim, const int64_t *ids, int64_t n_ids, const int64_t *bounds, int64_t n_bags,
                const float *weights, int mode, int64_t padding_idx, float *out,
                int64_t out_stride, int n_threads, int64_t *bad);

/* The variant these kernels run: "scalar", "avx2" or "avx512" (the 8-bit kernels' choice). */
const char *rq_nbit_kernel_name(void);

#ifdef __cplusplus
}
#endif

#endif
