/* The worker pool of team.h. Idle workers sleep on a condition variable, but only after
 * watching for the next job for a while (RQ_SPIN_NS): calls that share work come in runs (a
 * serving loop, a benchmark, a chunked file), and on a busy machine a sleeping worker can wait
 * milliseconds to be scheduled again, while one that is still running starts at once. OpenMP's
 * runtime spins the same way. The caller likewise watches for its workers to finish before it
 * sleeps. */
#define _GNU_SOURCE /* pthread_atfork, sigfillset and clock_gettime under -std=c99 */
#include "team.h"

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>

/* How long a thread watches a value change before it sleeps. */
#define RQ_SPIN_NS 200000

static int64_t now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Watch *value (read without the lock) for up to RQ_SPIN_NS while it equals `unchanged`;
 * whether it changed. The caller confirms under the lock. */
static int spin_while_equal(const unsigned long *value, unsigned long unchanged)
{
    const int64_t deadline = now_ns() + RQ_SPIN_NS;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (__atomic_load_n(value, __ATOMIC_ACQUIRE) != unchanged) return 1;
            cpu_relax();
        }
        if (now_ns() > deadline) return 0;
    }
}

/* Watch *value for up to RQ_SPIN_NS while it is not zero. */
static void spin_while_nonzero(const unsigned long *value)
{
    const int64_t deadline = now_ns() + RQ_SPIN_NS;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (__atomic_load_n(value, __ATOMIC_ACQUIRE) == 0) return;
            cpu_relax();
        }
        if (now_ns() > deadline) return;
    }
}

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* workers wait here for the next job */
    pthread_cond_t finished; /* the caller waits here for its workers */
    int busy;                /* a caller is running a job on the pool */
    int n_workers;           /* workers started; worker w is member w + 1 of every job */
    unsigned long job;       /* number of the current job; workers watch it change */
    unsigned long unfinished; /* workers of the current job that have not finished their part */
    rq_team_task task;
    void *context;
    int members; /* of the current job, the caller included */
} pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .finished = PTHREAD_COND_INITIALIZER,
};

static pthread_once_t fork_handlers_once = PTHREAD_ONCE_INIT;

/* Around fork the forking thread holds the lock, so the child's copy of the pool is not caught
 * halfway through a change. The child has none of the workers: it forgets them (and any job
 * that was running, whose caller is not in the child either) and starts new ones when it
 * next shares work. Its condition variables may record the parent's waiting workers, so they
 * are made anew. */
static void before_fork(void) { pthread_mutex_lock(&pool.lock); }

static void after_fork_in_parent(void) { pthread_mutex_unlock(&pool.lock); }

static void after_fork_in_child(void)
{
    pool.busy = 0;
    pool.n_workers = 0;
    pool.unfinished = 0;
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.finished, NULL);
    pthread_mutex_unlock(&pool.lock);
}

static void install_fork_handlers(void)
{
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
}

static void *worker_main(void *argument)
{
    const int member = (int)(intptr_t)argument;
    pthread_mutex_lock(&pool.lock);
    /* started by the caller of the current job, under the lock it still holds: this job is
     * the first one this worker takes part in */
    unsigned long seen = pool.job - 1;
    for (;;) {
        if (pool.job == seen) {
            pthread_mutex_unlock(&pool.lock);
            spin_while_equal(&pool.job, seen);
            pthread_mutex_lock(&pool.lock);
        }
        while (pool.job == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.job;
        if (member >= pool.members) continue; /* a smaller job: not needed */
        rq_team_task task = pool.task;
        void *context = pool.context;
        const int members = pool.members;
        pthread_mutex_unlock(&pool.lock);
        task(context, member, members);
        pthread_mutex_lock(&pool.lock);
        if (__atomic_sub_fetch(&pool.unfinished, 1, __ATOMIC_RELEASE) == 0)
            pthread_cond_signal(&pool.finished);
    }
    return NULL;
}

/* Start workers until `wanted` run (called with the lock held); returns how many run. Workers
 * block every signal, so that signals reach the threads that expect them (Python handles
 * signals in its main thread). */
static int start_workers(int wanted)
{
    pthread_attr_t attributes;
    sigset_t all, previous;
    if (pthread_attr_init(&attributes) != 0) return pool.n_workers;
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    while (pool.n_workers < wanted) {
        pthread_t thread;
        void *member = (void *)(intptr_t)(pool.n_workers + 1);
        if (pthread_create(&thread, &attributes, worker_main, member) != 0) break;
        pool.n_workers++;
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    pthread_attr_destroy(&attributes);
    return pool.n_workers;
}

void rq_team_run(int members, rq_team_task task, void *context)
{
    if (members > RQ_TEAM_MAX) members = RQ_TEAM_MAX;
    if (members <= 1) {
        task(context, 0, 1);
        return;
    }
    pthread_once(&fork_handlers_once, install_fork_handlers);
    pthread_mutex_lock(&pool.lock);
    if (pool.busy) { /* another thread's job holds the workers: run alone rather than wait */
        pthread_mutex_unlock(&pool.lock);
        task(context, 0, 1);
        return;
    }
    pool.busy = 1;
    const int workers = start_workers(members - 1); /* they wait for the lock; see worker_main */
    if (workers < members - 1) members = workers + 1;
    pool.task = task;
    pool.context = context;
    pool.members = members;
    pool.unfinished = (unsigned long)(members - 1);
    /* last: a worker watching the number without the lock then finds the job complete */
    __atomic_store_n(&pool.job, pool.job + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    task(context, 0, members);

    if (__atomic_load_n(&pool.unfinished, __ATOMIC_ACQUIRE) != 0)
        spin_while_nonzero(&pool.unfinished);
    pthread_mutex_lock(&pool.lock);
    while (__atomic_load_n(&pool.unfinished, __ATOMIC_ACQUIRE) != 0)
        pthread_cond_wait(&pool.finished, &pool.lock);
    pool.busy = 0;
    pthread_mutex_unlock(&pool.lock);
}
