/* Scores of queries against the rows of a table, and the k best rows of each query, without
 * dequantizing the table: rq_scores splits the rows across threads (team.c), walks each
 * member's share in tiles of rows small enough to stay in the cache while every block of
 * queries is scored against them (so the codes are read from memory once per call, not once
 * per query), and either writes the scores or keeps the member's k best per query in a heap.
 * The arithmetic is the active kernels' (scores_exact, scores_fast; see kernels.h and
 * rowquant.reference). */
#include "rowquant.h"

#include "kernels.h"
#include "team.h"

extern const rq_kernels *rq_active;

/* Rows per tile: about RQ_TILE_BYTES of codes, which the queries of a call then reuse from
 * the cache, and at least 128 rows (at most RQ_TILE_ROWS), so that each query's scores of a
 * tile are written as one run of at least 512 bytes: with 128 rows of a 300-wide table, 1024
 * queries into a (1024, 400000) output took 2.7 s, the stores of every tile touching 1024
 * pages. */
#define RQ_TILE_ROWS 1024
#define RQ_TILE_BYTES ((int64_t)256 << 10)
/* Below this much work per thread (bytes of codes read, plus a proxy for the multiplies),
 * a call keeps to fewer threads, as the other entry points do. */
#define RQ_SCORES_MIN_WORK ((int64_t)256 << 10)

struct scores_job {
    const rq_kernels *kernels;
    const uint8_t *codes;
    rq_scales scales;
    int64_t n_rows, dim, codes_stride;
    const void *queries;
    int64_t n_queries;
    int precision;
    const double *inverse_norms; /* per row, or NULL for dot products */
    const double *query_factors;
    float *out;                  /* dense scores, or NULL to keep the k best */
    int64_t out_stride;
    int64_t k;
    float *top_scores;           /* [member][query][k] */
    int64_t *top_ids;
};

/* Whether (score, id) ranks below (other_score, other_id): a lower score, or the same score
 * and a larger id (ties go to the smaller id). NaN ranks below every number and NaNs by id,
 * as rowquant.reference.top_k sorts them: a table with values that overflow float32 scores
 * NaN (inf - inf), and a NaN compared with < would freeze the heap with it at the root. */
static inline int ranks_below(float score, int64_t id, float other_score, int64_t other_id)
{
    if (score != score) return other_score != other_score ? id > other_id : 1;
    return score < other_score || (score == other_score && id > other_id);
}

/* The heap of one member and query: its worst entry at 0. */
static void heap_sift_down(float *scores, int64_t *ids, int64_t size, int64_t at)
{
    const float score = scores[at];
    const int64_t id = ids[at];
    for (;;) {
        int64_t child = 2 * at + 1;
        if (child >= size) break;
        if (child + 1 < size &&
            ranks_below(scores[child + 1], ids[child + 1], scores[child], ids[child]))
            child++;
        if (!ranks_below(scores[child], ids[child], score, id)) break;
        scores[at] = scores[child];
        ids[at] = ids[child];
        at = child;
    }
    scores[at] = score;
    ids[at] = id;
}

static void heap_sift_up(float *scores, int64_t *ids, int64_t at)
{
    const float score = scores[at];
    const int64_t id = ids[at];
    while (at > 0) {
        const int64_t parent = (at - 1) / 2;
        if (!ranks_below(score, id, scores[parent], ids[parent])) break;
        scores[at] = scores[parent];
        ids[at] = ids[parent];
        at = parent;
    }
    scores[at] = score;
    ids[at] = id;
}

/* Offer rows first..first + n (scores of one query) to its heap, which holds `filled`
 * entries before the first of them; returns how many it holds after. */
static int64_t heap_offer(float *heap_scores, int64_t *heap_ids, int64_t k, int64_t filled,
                          const float *scores, int64_t first, int64_t n)
{
    int64_t r = 0;
    for (; r < n && filled < k; r++, filled++) {
        heap_scores[filled] = scores[r];
        heap_ids[filled] = first + r;
        heap_sift_up(heap_scores, heap_ids, filled);
    }
    if (filled < k) return filled;
    float worst = heap_scores[0];
    for (; r < n; r++) {
        /* rows come in increasing id order, so a score equal to the worst never displaces it,
         * nor a NaN a NaN; any number displaces a NaN */
        if (scores[r] > worst || (worst != worst && scores[r] == scores[r])) {
            heap_scores[0] = scores[r];
            heap_ids[0] = first + r;
            heap_sift_down(heap_scores, heap_ids, k, 0);
            worst = heap_scores[0];
        }
    }
    return filled;
}

static void scores_part(void *context, int member, int members)
{
    const struct scores_job *job = context;
    const rq_kernels *kern = job->kernels;
    const int64_t dim = job->dim, n_queries = job->n_queries, k = job->k;
    const int exact = job->precision == RQ_DOT_EXACT;
    int64_t begin, end;
    rq_team_share(job->n_rows, member, members, &begin, &end);
    float *heap_scores = job->top_scores ? job->top_scores + (int64_t)member * n_queries * k : NULL;
    int64_t *heap_ids = job->top_ids ? job->top_ids + (int64_t)member * n_queries * k : NULL;
    int64_t filled = 0;
    float tile_scores[RQ_SCORE_QUERIES * RQ_TILE_ROWS];
    double row_factors[RQ_TILE_ROWS];
    float scale_block[RQ_TILE_ROWS]; /* the tile's 16-bit scales widened */
    int64_t tile_rows = dim > 0 ? RQ_TILE_BYTES / dim : RQ_TILE_ROWS;
    tile_rows = tile_rows < 128 ? 128 : tile_rows > RQ_TILE_ROWS ? RQ_TILE_ROWS : tile_rows;
    tile_rows -= tile_rows % 16;
    for (int64_t first = begin; first < end; first += tile_rows) {
        const int64_t n = end - first < tile_rows ? end - first : tile_rows;
        for (int64_t r = 0; r < n; r++) {
            const double base = exact ? 1.0 : (double)rq_scale_at(job->scales, first + r);
            row_factors[r] = job->inverse_norms ? base * job->inverse_norms[first + r] : base;
        }
        const uint8_t *tile = job->codes + first * job->codes_stride;
        const float *tile_scales = rq_scales_block(job->scales, first, n, scale_block);
        int64_t tile_filled = filled;
        for (int64_t b0 = 0; b0 < n_queries; b0 += RQ_SCORE_QUERIES) {
            const int64_t nb = n_queries - b0 < RQ_SCORE_QUERIES ? n_queries - b0
                                                                 : RQ_SCORE_QUERIES;
            float *scores = job->out ? job->out + b0 * job->out_stride + first : tile_scores;
            const int64_t stride = job->out ? job->out_stride : RQ_TILE_ROWS;
            if (exact)
                kern->scores_exact(tile, job->codes_stride, tile_scales, n, dim,
                                   (const float *)job->queries + b0 * dim, nb, row_factors,
                                   job->query_factors + b0, scores, stride);
            else
                kern->scores_fast(tile, job->codes_stride, n, dim,
                                  (const int8_t *)job->queries + b0 * dim, nb, row_factors,
                                  job->query_factors + b0, scores, stride);
            if (job->out) continue;
            for (int64_t b = 0; b < nb; b++)
                tile_filled = heap_offer(heap_scores + (b0 + b) * k, heap_ids + (b0 + b) * k, k,
                                         filled, tile_scores + b * RQ_TILE_ROWS, first, n);
        }
        filled = tile_filled;
    }
    /* a member with fewer than k rows leaves its other entries empty */
    for (int64_t b = 0; heap_scores && b < n_queries; b++)
        for (int64_t e = filled; e < k; e++) {
            heap_scores[b * k + e] = -__builtin_inff();
            heap_ids[b * k + e] = -1;
        }
}

int rq_scores(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows,
              int64_t dim, int64_t codes_stride, const void *queries, int64_t n_queries, int precision,
              const double *inverse_norms, const double *query_factors, float *out,
              int64_t out_stride, int64_t k, float *top_scores, int64_t *top_ids, int n_threads)
{
    if (precision != RQ_DOT_EXACT && precision != RQ_DOT_FAST) return RQ_BAD_ARGUMENT;
    if (!out && (k < 0 || !top_scores || !top_ids)) return RQ_BAD_ARGUMENT;
    if (!rq_active) rq_simd_select(NULL);
    struct scores_job job = {
        .kernels = rq_active, .codes = codes, .scales = {scales, scale_format}, .n_rows = n_rows,
        .dim = dim, .codes_stride = codes_stride, .queries = queries, .n_queries = n_queries,
        .precision = precision, .inverse_norms = inverse_norms, .query_factors = query_factors,
        .out = out, .out_stride = out_stride, .k = k, .top_scores = top_scores,
        .top_ids = top_ids,
    };
    /* the codes read, plus the multiplies (a query's pass over a row of 16 codes costing about
     * as much as reading them) */
    const int64_t work = n_rows * dim + n_rows * dim / 16 * n_queries;
    rq_team_run(rq_team_members(n_threads, work, RQ_SCORES_MIN_WORK), scores_part, &job);
    return RQ_OK;
}

/* ------------------------------------------------------------------ norms */

struct norms_job {
    const uint8_t *codes;
    rq_scales scales;
    int64_t n_rows, dim, codes_stride;
    float *out;
};

static void norms_part(void *context, int member, int members)
{
    const struct norms_job *job = context;
    int64_t begin, end;
    rq_team_share(job->n_rows, member, members, &begin, &end);
    for (int64_t i = begin; i < end; i++) {
        const uint8_t *row = job->codes + i * job->codes_stride;
        const float scale = rq_scale_at(job->scales, i);
        double lanes[RQ_DOT_LANES] = {0.0};
        for (int64_t j0 = 0; j0 < job->dim; j0 += RQ_DOT_LANES)
            for (int64_t l = 0; l < RQ_DOT_LANES && j0 + l < job->dim; l++) {
                const double value = (double)rq_dequantized(row[j0 + l], scale);
                lanes[l] += value * value;
            }
        job->out[i] = (float)__builtin_sqrt(rq_fold_lanes(lanes));
    }
}

int rq_norms(const uint8_t *codes, const void *scales, int scale_format, int64_t n_rows,
             int64_t dim, int64_t codes_stride, float *out, int n_threads)
{
    struct norms_job job = {
        .codes = codes, .scales = {scales, scale_format}, .n_rows = n_rows, .dim = dim,
        .codes_stride = codes_stride, .out = out,
    };
    rq_team_run(rq_team_members(n_threads, n_rows * dim * 4, RQ_SCORES_MIN_WORK), norms_part,
                &job);
    return RQ_OK;
}
