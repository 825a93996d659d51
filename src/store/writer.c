/* The writer thread: drains the update queue into one transaction per batch (group commit). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"

#define KICK_FALLBACK_MS 5
#define FAIL_LOG_MS 10000 /* one line per this much of a run of failed commits */

/*
 * Group commit. Workers append jobs under `lock` and (unless kicks are
 * explicit) signal `wake`. The writer takes the whole list at once, writes it
 * in one transaction, and only then calls the done callbacks. While a COMMIT
 * and its fsync are in flight, new jobs pile up and form the next batch, so the
 * number of fsyncs follows the disk's speed, not the request rate.
 */
struct store_writer {
	struct store *s; /* back-pointer, not a reference */
	const struct store_backend_ops *ops;
	void *ctx; /* backend connection: only the writer thread touches it after alloc */
	pthread_t thread;
	pthread_mutex_t lock; /* protects everything below */
	pthread_cond_t wake;  /* writer waits for work */
	pthread_cond_t idle;  /* flushers wait for done_seq */
	struct store_job *head, **tail;
	size_t pending;
	uint64_t enq_seq;  /* jobs ever queued */
	uint64_t done_seq; /* jobs whose done callbacks have run */
	int last_err;
	bool kick_explicit;
	bool kicked;
	bool stop;
	/* failed commits, logged once per burst: writer thread only */
	uint64_t fail_run;    /* consecutive failed commits */
	uint64_t fail_quiet;  /* of which not logged yet */
	uint64_t fail_log_ms; /* when the last line went out */
};

/* A full disk fails every batch, and every batch is a burst of REGISTERs:
 * the first failure is logged with the backend's reason, then one line per
 * FAIL_LOG_MS with how many failed meanwhile, and one when commits work
 * again. store_commit_errors_total counts each. */
static void log_commit(struct store_writer *w, int err)
{
	uint64_t now = time_mono_ms();
	if (!err) {
		if (w->fail_run)
			LOG_W("store", "commits succeed again after %llu failed",
			      (unsigned long long)w->fail_run);
		w->fail_run = w->fail_quiet = 0;
		return;
	}
	w->fail_run++;
	if (w->fail_run > 1 && now - w->fail_log_ms < FAIL_LOG_MS) {
		w->fail_quiet++;
		return;
	}
	const char *why = w->ops->errmsg ? w->ops->errmsg(w->ctx) : NULL;
	if (w->fail_run == 1)
		LOG_E("store",
		      "commit failed: %s; the changes are undone and their "
		      "callers get the error",
		      why ? why : strerror(err));
	else
		LOG_E("store", "commit failed: %s (%llu more failed in the last %llu s)",
		      why ? why : strerror(err), (unsigned long long)w->fail_quiet,
		      (unsigned long long)((now - w->fail_log_ms) / 1000));
	w->fail_quiet = 0;
	w->fail_log_ms = now;
}

static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_nsec += ms * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec += ts->tv_nsec / 1000000000L;
		ts->tv_nsec %= 1000000000L;
	}
}

/* Waits until there is a batch to write; returns false when told to stop and idle. */
static bool wait_batch(struct store_writer *w)
{
	for (;;) {
		if (w->head && (w->stop || w->kicked || !w->kick_explicit))
			return true;
		if (!w->head && w->stop)
			return false;
		if (!w->head) {
			pthread_cond_wait(&w->wake, &w->lock);
			continue;
		}
		/* explicit kicks, work queued, no kick yet: a lost kick costs 5 ms */
		struct timespec ts;
		deadline_in(&ts, KICK_FALLBACK_MS);
		if (pthread_cond_timedwait(&w->wake, &w->lock, &ts) == ETIMEDOUT && w->head)
			return true;
	}
}

static void *writer_main(void *arg)
{
	struct store_writer *w = arg;
	struct store *s = w->s;

	pthread_mutex_lock(&w->lock);
	while (wait_batch(w)) {
		struct store_job *jobs = w->head;
		uint64_t seq = w->enq_seq;
		w->head = NULL;
		w->tail = &w->head;
		w->pending = 0;
		w->kicked = false;
		pthread_mutex_unlock(&w->lock);

		size_t rows = 0;
		int err = w->ops->write(w->ctx, jobs, &rows);
		if (err) {
			atomic_fetch_add(&s->commit_errors, 1);
			metric_inc(&store_m_errors);
		} else {
			atomic_fetch_add(&s->commits, 1);
			atomic_fetch_add(&s->commit_rows, rows);
			metric_inc(&store_m_commits);
			metric_add(&store_m_rows, (int64_t)rows);
		}
		log_commit(w, err);
		/* durable (or failed) now: memory follows the database, then every
		 * REGISTER of the batch is told */
		for (struct store_job *j = jobs, *next; j; j = next) {
			next = j->next;
			store_job_resolve(s, j, err);
			store_done_h *done = j->done;
			void *done_arg = j->done_arg;
			free(j);
			if (done)
				done(err, done_arg);
		}

		pthread_mutex_lock(&w->lock);
		w->done_seq = seq;
		w->last_err = err;
		pthread_cond_broadcast(&w->idle);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int store_writer_alloc(struct store_writer **wp, struct store *s,
		       const struct store_backend_ops *ops, void *ctx, bool kick_explicit)
{
	struct store_writer *w = calloc(1, sizeof *w);
	if (!w)
		return ENOMEM;
	w->s = s;
	w->ops = ops;
	w->ctx = ctx;
	w->tail = &w->head;
	w->kick_explicit = kick_explicit;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&w->idle, NULL);
	int err = pthread_create(&w->thread, NULL, writer_main, w);
	if (err) {
		pthread_cond_destroy(&w->idle);
		pthread_cond_destroy(&w->wake);
		pthread_mutex_destroy(&w->lock);
		free(w);
		return err;
	}
	*wp = w;
	return 0;
}

void store_writer_free(struct store_writer *w)
{
	pthread_mutex_lock(&w->lock);
	w->stop = true; /* the thread writes what is queued, then leaves */
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	w->ops->close(w->ctx);
	pthread_cond_destroy(&w->idle);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

void store_writer_push(struct store_writer *w, struct store_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&w->lock);
	*w->tail = job;
	w->tail = &job->next;
	w->pending++;
	w->enq_seq++;
	if (!w->kick_explicit)
		pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
}

void store_writer_kick(struct store_writer *w)
{
	pthread_mutex_lock(&w->lock);
	if (w->head) {
		w->kicked = true;
		pthread_cond_signal(&w->wake);
	}
	pthread_mutex_unlock(&w->lock);
}

int store_writer_flush(struct store_writer *w)
{
	pthread_mutex_lock(&w->lock);
	uint64_t target = w->enq_seq;
	if (w->head) {
		w->kicked = true;
		pthread_cond_signal(&w->wake);
	}
	while (w->done_seq < target)
		pthread_cond_wait(&w->idle, &w->lock);
	int err = w->last_err;
	pthread_mutex_unlock(&w->lock);
	return err;
}

size_t store_writer_pending(struct store_writer *w)
{
	pthread_mutex_lock(&w->lock);
	size_t n = w->pending;
	pthread_mutex_unlock(&w->lock);
	return n;
}
