/* Internal: rowquant's own pool of worker threads, which survives fork.
 *
 * OpenMP's runtime (libgomp) keeps its worker threads across calls, and a child made by fork
 * (multiprocessing, Dask and gunicorn workers, DataLoader workers) inherits the bookkeeping of
 * those threads but not the threads: its first parallel region waits for them forever. This
 * pool is plain POSIX threads, started on the first call that shares work, and a pthread_atfork
 * handler forgets them in the child, which starts its own on its first such call. */
#ifndef ROWQUANT_TEAM_H
#define ROWQUANT_TEAM_H

#include <stdint.h>

/* The most threads one call can run on, the caller included. */
#define RQ_TEAM_MAX 256

/* One member's part of a job: member in [0, members). */
typedef void (*rq_team_task)(void *context, int member, int members);

/* Run task(context, m, members) for every member m on `members` threads, the calling thread
 * being member 0, and return when all have finished. The job may run on fewer members than
 * asked (down to 1, the caller alone) when the pool is busy with another caller's job or a
 * thread cannot be started, so a task must be correct for whatever count it is handed. */
void rq_team_run(int members, rq_team_task task, void *context);

/* How many members a job of `work` units should have when each member needs at least
 * `min_work` units to pay for its hand-off: no more than n_threads, and 1 when n_threads < 1 or
 * the work is too small to split. */
static inline int rq_team_members(int n_threads, int64_t work, int64_t min_work)
{
    const int64_t useful = work / min_work;
    if (n_threads < 1 || useful < 2) return 1;
    return useful < n_threads ? (int)useful : n_threads;
}

/* The contiguous share [*begin, *end) of n items for one member of a job. */
static inline void rq_team_share(int64_t n, int member, int members, int64_t *begin,
                                 int64_t *end)
{
    *begin = n * member / members;
    *end = n * (member + 1) / members;
}

/* *target = min(*target, value), from any member of a job; the end of the job publishes it. */
static inline void rq_team_store_min(int64_t *target, int64_t value)
{
    int64_t seen = __atomic_load_n(target, __ATOMIC_RELAXED);
    while (value < seen &&
           !__atomic_compare_exchange_n(target, &seen, value, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
}

#endif /* ROWQUANT_TEAM_H */
