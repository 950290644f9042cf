/* Run-time choice of the kernel table: the best instruction set this processor (and its
 * operating system) supports, or the one ROWQUANT_SIMD names, via rq_simd_select. A variant is
 * used only after it reproduced the scalar kernels' bits on a built-in table, so a miscompiled
 * path, or one that a tool such as valgrind runs on a processor it emulates, falls back instead
 * of giving wrong bits. */
#include <stddef.h>

#include "kernels.h"
#include "rowquant.h"

const rq_kernels *rq_active = NULL;

/* Every variant compiled in, best first. A new instruction set is its kernel file, its extern
 * in kernels.h and one line here; the variant's own supported() says whether it runs. */
static const rq_kernels *const variants[] = {
#ifdef RQ_X86
    &rq_kernels_avx512vnni,
    &rq_kernels_avx512,
    &rq_kernels_avx2,
#endif
    &rq_kernels_scalar,
};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

/* A small table with ties, near-ties, zero and subnormal rows, negative values and a width
 * that leaves every loop tail: the variant must match the scalar kernels bit for bit, scores
 * included (scores_reproduce_scalar). */
#define CHECK_ROWS 6
#define CHECK_DIM 83

static void check_table(float *values)
{
    uint32_t state = 12345u;
    for (int i = 0; i < CHECK_ROWS; i++) {
        for (int j = 0; j < CHECK_DIM; j++) {
            state = state * 1664525u + 1013904223u;
            float noise = (float)((int32_t)(state >> 8) - (1 << 23)) / (float)(1 << 23);
            float value;
            switch (i) {
            case 0: value = (float)((j % 255) - 127) * 0.5f; break;  /* ties at scale 1 */
            case 1: value = (float)((j % 255) - 127); break;         /* exact codes */
            case 2: value = 0.0f; break;
            case 3: value = noise * 0x1p-140f; break;                /* subnormal scale */
            default: value = noise * (i == 4 ? 3.0e38f : 1.7f);
            }
            values[i * CHECK_DIM + j] = value;
        }
    }
    values[0] = 127.0f; /* row 0 max 127: scale 1, so (k + 0.5) are exact ties */
    values[CHECK_DIM] = 127.0f;
}

static int same_bits(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

/* Scores of the check table's rows, and of a row written by hand (codes 0 and 255, which the
 * quantizer never makes), against queries of both precisions: 7 rows and 5 queries leave a
 * partial block of rows and of queries in every kernel, 83 columns every column tail; the int8
 * queries reach -127 and 127, the float ones the table's ties, subnormals and 3e38. */
#define CHECK_SCORE_ROWS (CHECK_ROWS + 1)
#define CHECK_QUERIES 5

static int scores_reproduce_scalar(const rq_kernels *kernels, const float *values,
                                   const uint8_t *table_codes, const float *table_scales)
{
    static uint8_t codes[CHECK_SCORE_ROWS * CHECK_DIM];
    static float queries[CHECK_QUERIES * CHECK_DIM];
    static int8_t small[CHECK_QUERIES * CHECK_DIM];
    float scales[CHECK_SCORE_ROWS], out[4][CHECK_QUERIES * CHECK_SCORE_ROWS];
    double row_factors[CHECK_SCORE_ROWS], query_factors[CHECK_QUERIES];
    memcpy(codes, table_codes, CHECK_ROWS * CHECK_DIM);
    memcpy(scales, table_scales, sizeof(float) * CHECK_ROWS);
    for (int j = 0; j < CHECK_DIM; j++) codes[CHECK_ROWS * CHECK_DIM + j] = j % 3 ? 0 : 255;
    scales[CHECK_ROWS] = 0.75f;
    static const int query_rows[CHECK_QUERIES] = {5, 1, 4, 3, 0};
    for (int b = 0; b < CHECK_QUERIES; b++) {
        for (int j = 0; j < CHECK_DIM; j++) {
            const float value = values[query_rows[b] * CHECK_DIM + j];
            queries[b * CHECK_DIM + j] = b == 1 ? -value : value;
            const int code = (int)table_codes[5 * CHECK_DIM + j] - RQ_BIAS;
            small[b * CHECK_DIM + j] = (int8_t)(b == 0   ? 127
                                                : b == 1 ? -127
                                                : b == 2 ? (j % 2 ? 127 : -127)
                                                : b == 3 ? (code < -127 ? -127 : code)
                                                         : (j % 255) - 127);
        }
        query_factors[b] = b == 2 ? 1e-3 : 0.5 + b;
    }
    for (int i = 0; i < CHECK_SCORE_ROWS; i++) row_factors[i] = 1.0 / (i + 3);
    const rq_kernels *pair[2] = {&rq_kernels_scalar, kernels};
    for (int v = 0; v < 2; v++) {
        pair[v]->scores_exact(codes, CHECK_DIM, scales, CHECK_SCORE_ROWS, CHECK_DIM, queries,
                              CHECK_QUERIES, row_factors, query_factors, out[v],
                              CHECK_SCORE_ROWS);
        pair[v]->scores_fast(codes, CHECK_DIM, CHECK_SCORE_ROWS, CHECK_DIM, small, CHECK_QUERIES,
                             row_factors, query_factors, out[2 + v], CHECK_SCORE_ROWS);
    }
    return same_bits(out[0], out[1], sizeof out[0]) && same_bits(out[2], out[3], sizeof out[2]);
}

/* The scalar kernels are checked against themselves too: a few microseconds, once, and no
 * variant is special. */
static int reproduces_scalar(const rq_kernels *kernels)
{
    static float values[CHECK_ROWS * CHECK_DIM];
    uint8_t codes[2][CHECK_ROWS * CHECK_DIM];
    float scales[2][CHECK_ROWS], out[2][CHECK_ROWS * CHECK_DIM], bag[2][CHECK_DIM];
    float bag_max[2][CHECK_DIM];
    const int64_t ids[] = {1, 4, 0, 2, 4, 5, 3};
    const float weights[] = {0.5f, -2.0f, 1.0f, 3.0f, 0.25f, 1.0f, 7.0f};
    const rq_kernels *pair[2] = {&rq_kernels_scalar, kernels};
    check_table(values);
    for (int v = 0; v < 2; v++) {
        for (int i = 0; i < CHECK_ROWS; i++) {
            uint32_t max_bits = pair[v]->max_abs_bits(values + i * CHECK_DIM, CHECK_DIM);
            scales[v][i] = rq_scale_from_max_bits(max_bits);
            if (scales[v][i] > 0.0f)
                pair[v]->encode_row(values + i * CHECK_DIM, CHECK_DIM, scales[v][i],
                                    codes[v] + i * CHECK_DIM);
            else
                memset(codes[v] + i * CHECK_DIM, RQ_BIAS, CHECK_DIM);
            pair[v]->dequantize_row(codes[v] + i * CHECK_DIM, scales[v][i], CHECK_DIM,
                                    out[v] + i * CHECK_DIM);
        }
        const rq_bag_rows rows = {
            .codes = codes[v], .scales = {scales[v], RQ_SCALE_F32}, .codes_stride = CHECK_DIM,
            .n_rows = CHECK_ROWS, .dim = CHECK_DIM, .ids = ids, .n_ids = 7, .padding_idx = 5,
        };
        const int64_t bounds[] = {0, 7};
        pair[v]->pool_bags(&rows, weights, bounds, 0, 1, bag[v], CHECK_DIM);
        pair[v]->max_bag(&rows, 0, 7, bag_max[v]);
    }
    /* ids with one out of range (negative, then too large) in the vector steps and the tail */
    int64_t check_ids[40];
    for (int k = 0; k < 40; k++) check_ids[k] = k % CHECK_ROWS;
    check_ids[37] = -1;
    const int64_t tail_bad = kernels->first_bad_id(check_ids, 40, CHECK_ROWS);
    check_ids[21] = CHECK_ROWS;
    const int64_t step_bad = kernels->first_bad_id(check_ids, 40, CHECK_ROWS);
    const int64_t none_bad = kernels->first_bad_id(check_ids, 21, CHECK_ROWS);
    if (tail_bad != 37 || step_bad != 21 || none_bad != -1) return 0;
    if (!scores_reproduce_scalar(kernels, values, codes[0], scales[0])) return 0;
    return same_bits(codes[0], codes[1], sizeof codes[0]) &&
           same_bits(scales[0], scales[1], sizeof scales[0]) &&
           same_bits(out[0], out[1], sizeof out[0]) && same_bits(bag[0], bag[1], sizeof bag[0]) &&
           same_bits(bag_max[0], bag_max[1], sizeof bag_max[0]);
}

static int usable(const rq_kernels *kernels)
{
    return kernels->supported() && reproduces_scalar(kernels);
}

int rq_simd_count(void) { return N_VARIANTS; }

const char *rq_simd_variant(int index)
{
    if (index < 0 || index >= N_VARIANTS) return NULL;
    return variants[N_VARIANTS - 1 - index]->name; /* the table is best first */
}

int rq_simd_select(const char *name)
{
    for (int v = 0; v < N_VARIANTS; v++) {
        if (name && strcmp(name, variants[v]->name) != 0) continue;
        if (!usable(variants[v])) {
            if (name) return RQ_SIMD_UNAVAILABLE;
            continue;
        }
        rq_active = variants[v];
        return RQ_OK;
    }
    return name ? RQ_SIMD_UNKNOWN : RQ_SIMD_UNAVAILABLE;
}

const char *rq_simd_name(void)
{
    if (!rq_active) rq_simd_select(NULL);
    return rq_active->name;
}

int rq_simd_available(const char *name)
{
    for (int v = 0; v < N_VARIANTS; v++)
        if (strcmp(name, variants[v]->name) == 0) return usable(variants[v]);
    return 0;
}
