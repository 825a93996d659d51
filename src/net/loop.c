/* The per-thread event loop: epoll, a cross-thread post queue, end-of-turn hooks and a timer wheel. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

/* x 10 ms = 40.96 s per revolution: the 64*T1 (32 s) timers that every
 * transaction ends with fire on their first pass instead of being walked
 * (a cache miss each) three times; longer ones go round */
#define WHEEL_SLOTS 4096
#define TICK_MS 10
#define MAX_EVENTS 64
#define MAX_TURN_HOOKS 8

struct fd_reg {
	int fd;
	loop_fd_h *h;
	void *arg;
	bool dead; /* deleted during this turn; freed at turn end */
	struct fd_reg *next_dead;
};

struct post {
	loop_call_h *h;
	void *arg;
	struct post *next;
};

struct loop {
	int epfd;
	int evfd;
	_Atomic bool stop;
	uint64_t now_ms;
	/* fd -> registration. Written on the loop's thread; loop_fd_mod may read
	 * it from any thread (a TCP send asking for EPOLLOUT), so guarded by
	 * regs_lock. dead is loop-thread only. */
	pthread_mutex_t regs_lock;
	struct fd_reg **regs;
	size_t n_regs;
	struct fd_reg *dead;
	/* posted calls; guarded by post_lock */
	pthread_mutex_t post_lock;
	struct post *post_head, *post_tail;
	_Atomic size_t n_posts; /* posted and not yet run (loop_post_pending) */
	/* timer wheel; worker-local. Each slot is a circular list with a sentinel. */
	struct timer slots[WHEEL_SLOTS];
	uint64_t tick; /* last processed tick */
	/* the slots of every tick after tick and before this one are empty (0:
	 * nothing known): where next_timeout's scan starts */
	uint64_t scan_from;
	size_t n_timers;
	struct {
		loop_call_h *h;
		void *arg;
	} turn_hooks[MAX_TURN_HOOKS];
	size_t n_turn_hooks;
	unsigned batch_wait_us; /* RO after start; see loop_set_batch_wait */
	uint64_t turn_end_us;	/* when the last turn (and its wait) ended */
};

static _Thread_local struct loop *current_loop;

struct loop *loop_current(void)
{
	return current_loop;
}

uint64_t loop_now_ms(const struct loop *l)
{
	return l->now_ms;
}

int loop_alloc(struct loop **lp)
{
	struct loop *l = calloc(1, sizeof *l);
	if (!l)
		return ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->epfd < 0 || l->evfd < 0) {
		int err = errno;
		if (l->epfd >= 0)
			close(l->epfd);
		if (l->evfd >= 0)
			close(l->evfd);
		free(l);
		return err;
	}
	pthread_mutex_init(&l->post_lock, NULL);
	pthread_mutex_init(&l->regs_lock, NULL);
	for (size_t i = 0; i < WHEEL_SLOTS; i++)
		l->slots[i].next = l->slots[i].prev = &l->slots[i];
	l->now_ms = time_mono_ms();
	l->tick = l->now_ms / TICK_MS;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev);
	*lp = l;
	return 0;
}

static void free_dead(struct loop *l)
{
	while (l->dead) {
		struct fd_reg *r = l->dead;
		l->dead = r->next_dead;
		free(r);
	}
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	/* detach armed timers: their owners may still cancel them afterwards */
	for (size_t i = 0; i < WHEEL_SLOTS; i++) {
		struct timer *head = &l->slots[i];
		while (head->next != head) {
			struct timer *t = head->next;
			head->next = t->next;
			t->next = t->prev = NULL;
			t->loop = NULL;
		}
	}
	for (size_t i = 0; i < l->n_regs; i++)
		free(l->regs[i]);
	free(l->regs);
	free_dead(l);
	while (l->post_head) {
		struct post *p = l->post_head;
		l->post_head = p->next;
		free(p);
	}
	close(l->epfd);
	close(l->evfd);
	pthread_mutex_destroy(&l->post_lock);
	pthread_mutex_destroy(&l->regs_lock);
	free(l);
}

int loop_fd_add(struct loop *l, int fd, uint32_t events, loop_fd_h *h, void *arg)
{
	if (fd < 0)
		return EBADF;
	int err = 0;
	pthread_mutex_lock(&l->regs_lock);
	if ((size_t)fd >= l->n_regs) {
		size_t n = l->n_regs ? l->n_regs : 64;
		while (n <= (size_t)fd)
			n *= 2;
		struct fd_reg **grown = realloc(l->regs, n * sizeof *grown);
		if (!grown) {
			err = ENOMEM;
			goto out_unlock;
		}
		memset(grown + l->n_regs, 0, (n - l->n_regs) * sizeof *grown);
		l->regs = grown;
		l->n_regs = n;
	}
	if (l->regs[fd]) {
		err = EEXIST;
		goto out_unlock;
	}
	struct fd_reg *r = calloc(1, sizeof *r);
	if (!r) {
		err = ENOMEM;
		goto out_unlock;
	}
	r->fd = fd;
	r->h = h;
	r->arg = arg;
	struct epoll_event ev = {.events = events, .data.ptr = r};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		err = errno;
		free(r);
		goto out_unlock;
	}
	l->regs[fd] = r;
out_unlock:
	pthread_mutex_unlock(&l->regs_lock);
	return err;
}

int loop_fd_mod(struct loop *l, int fd, uint32_t events)
{
	int err = 0;
	pthread_mutex_lock(&l->regs_lock);
	if (fd < 0 || (size_t)fd >= l->n_regs || !l->regs[fd]) {
		err = ENOENT;
	} else {
		struct epoll_event ev = {.events = events, .data.ptr = l->regs[fd]};
		if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
			err = errno;
	}
	pthread_mutex_unlock(&l->regs_lock);
	return err;
}

void loop_fd_del(struct loop *l, int fd)
{
	pthread_mutex_lock(&l->regs_lock);
	if (fd < 0 || (size_t)fd >= l->n_regs || !l->regs[fd]) {
		pthread_mutex_unlock(&l->regs_lock);
		return;
	}
	struct fd_reg *r = l->regs[fd];
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	l->regs[fd] = NULL;
	pthread_mutex_unlock(&l->regs_lock);
	/* events for it may still sit in this turn's batch: free later */
	r->dead = true;
	r->next_dead = l->dead;
	l->dead = r;
}

void loop_stop(struct loop *l)
{
	l->stop = true;
	uint64_t one = 1;
	ssize_t n = write(l->evfd, &one, sizeof one);
	(void)n;
}

int loop_post(struct loop *l, loop_call_h *h, void *arg)
{
	struct post *p = malloc(sizeof *p);
	if (!p)
		return ENOMEM;
	p->h = h;
	p->arg = arg;
	p->next = NULL;
	pthread_mutex_lock(&l->post_lock);
	bool was_empty = !l->post_head;
	if (l->post_tail)
		l->post_tail->next = p;
	else
		l->post_head = p;
	l->post_tail = p;
	l->n_posts++;
	pthread_mutex_unlock(&l->post_lock);
	if (was_empty) {
		uint64_t one = 1;
		ssize_t n = write(l->evfd, &one, sizeof one);
		(void)n;
	}
	return 0;
}

int loop_on_turn_end(struct loop *l, loop_call_h *h, void *arg)
{
	if (l->n_turn_hooks == MAX_TURN_HOOKS)
		return ENOSPC;
	l->turn_hooks[l->n_turn_hooks].h = h;
	l->turn_hooks[l->n_turn_hooks].arg = arg;
	l->n_turn_hooks++;
	return 0;
}

static void run_posts(struct loop *l)
{
	uint64_t v;
	ssize_t n = read(l->evfd, &v, sizeof v);
	(void)n;
	pthread_mutex_lock(&l->post_lock);
	struct post *p = l->post_head;
	l->post_head = l->post_tail = NULL;
	pthread_mutex_unlock(&l->post_lock);
	while (p) {
		struct post *next = p->next;
		p->h(p->arg);
		free(p);
		l->n_posts--;
		p = next;
	}
}

void loop_run_pending(struct loop *l)
{
	struct loop *was = current_loop;
	current_loop = l;
	l->now_ms = time_mono_ms();
	run_posts(l);
	for (size_t i = 0; i < l->n_turn_hooks; i++)
		l->turn_hooks[i].h(l->turn_hooks[i].arg);
	free_dead(l);
	current_loop = was;
}

size_t loop_post_pending(const struct loop *l)
{
	return l->n_posts;
}

/* ---- timers ---- */

void timer_init(struct timer *t)
{
	memset(t, 0, sizeof *t);
}

bool timer_active(const struct timer *t)
{
	return t->next != NULL;
}

void timer_cancel(struct timer *t)
{
	if (!t->next)
		return;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = t->prev = NULL;
	if (t->loop)
		t->loop->n_timers--;
}

static void slot_insert(struct loop *l, struct timer *t)
{
	uint64_t tick = (t->expire_ms + TICK_MS - 1) / TICK_MS;
	if (tick <= l->tick)
		tick = l->tick + 1; /* never into a slot already processed this turn */
	struct timer *head = &l->slots[tick % WHEEL_SLOTS];
	t->next = head;
	t->prev = head->prev;
	head->prev->next = t;
	head->prev = t;
	/* beyond a revolution its slot comes round before its tick: rescan */
	if (tick > l->tick + WHEEL_SLOTS)
		l->scan_from = MIN(l->scan_from, l->tick + 1);
	else if (tick < l->scan_from)
		l->scan_from = tick;
}

void timer_start(struct loop *l, struct timer *t, uint64_t delay_ms, timer_h *h, void *arg)
{
	timer_cancel(t);
	t->loop = l;
	t->h = h;
	t->arg = arg;
	/* on the loop's thread the turn's clock; before the loop runs (setup)
	 * the cached clock may be old, and the timer would fire early */
	uint64_t now = current_loop == l ? l->now_ms : MAX(l->now_ms, time_mono_ms());
	t->expire_ms = now + delay_ms;
	slot_insert(l, t);
	l->n_timers++;
}

static void run_slot(struct loop *l, struct timer *head)
{
	/* move the slot aside so handlers may re-arm into it safely */
	struct timer pending;
	if (head->next == head)
		return;
	pending.next = head->next;
	pending.prev = head->prev;
	pending.next->prev = &pending;
	pending.prev->next = &pending;
	head->next = head->prev = head;
	while (pending.next != &pending) {
		struct timer *t = pending.next;
		t->prev->next = t->next;
		t->next->prev = t->prev;
		if (t->expire_ms > l->now_ms) {
			/* a later revolution: back into its slot */
			l->scan_from = 0;
			t->next = head;
			t->prev = head->prev;
			head->prev->next = t;
			head->prev = t;
			continue;
		}
		t->next = t->prev = NULL;
		l->n_timers--;
		t->h(t->arg);
	}
}

static void run_timers(struct loop *l)
{
	uint64_t now_tick = l->now_ms / TICK_MS;
	if (now_tick <= l->tick)
		return;
	uint64_t from = l->tick + 1;
	if (now_tick - l->tick > WHEEL_SLOTS)
		from = now_tick - WHEEL_SLOTS + 1; /* fell far behind: each slot once */
	l->tick = now_tick;
	for (uint64_t t = from; t <= now_tick; t++)
		run_slot(l, &l->slots[t % WHEEL_SLOTS]);
}

/* Sleeps until the tick of the first non-empty wheel slot, at most one
 * revolution; an idle worker with one 1 s timer wakes once a second, not at
 * every tick. The scan starts where the last one found a slot (the empty
 * ones before it stay empty until a timer goes there, which moves
 * scan_from back): a loop that wakes thousands of times a second (relayed
 * media) does not walk the same empty slots at every sleep. */
static int next_timeout(struct loop *l)
{
	if (!l->n_timers)
		return 1000;
	uint64_t now = time_mono_ms();
	/* slots after the last processed tick; ones already due give 0 */
	uint64_t from = MAX(l->tick + 1, l->scan_from);
	for (uint64_t t = from; t <= l->tick + WHEEL_SLOTS; t++) {
		struct timer *head = &l->slots[t % WHEEL_SLOTS];
		if (head->next != head) {
			l->scan_from = t;
			uint64_t at = t * TICK_MS;
			return at > now ? (int)(at - now) : 0;
		}
	}
	if (l->scan_from > l->tick + 1) { /* not to happen: the whole wheel again */
		l->scan_from = 0;
		return next_timeout(l);
	}
	return WHEEL_SLOTS * TICK_MS;
}

void loop_set_batch_wait(struct loop *l, unsigned us)
{
	l->batch_wait_us = us;
}

int loop_run(struct loop *l)
{
	current_loop = l;
	struct epoll_event evs[MAX_EVENTS];
	if (l->batch_wait_us)
		prctl(PR_SET_TIMERSLACK, 1000UL); /* ns: make the short waits short */
	while (!l->stop) {
		int timeout = next_timeout(l);
		int n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout);
		l->now_ms = time_mono_ms();
		/* busy = woken within one batch wait of the last turn's end: the
		 * next packets are due before a wait would end anyway */
		bool busy = l->batch_wait_us && n > 0 &&
			    time_mono_us() - l->turn_end_us < l->batch_wait_us;
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			struct fd_reg *r = evs[i].data.ptr;
			if (!r) {
				run_posts(l);
				continue;
			}
			if (!r->dead)
				r->h(r->fd, evs[i].events, r->arg);
		}
		run_timers(l);
		for (size_t i = 0; i < l->n_turn_hooks; i++)
			l->turn_hooks[i].h(l->turn_hooks[i].arg);
		free_dead(l);
		if (busy) {
			/* let packets gather on many sockets so the next turn serves
			 * them in one wake-up instead of one wake-up each; a quiet
			 * worker answers at once and sleeps only in epoll_wait */
			struct timespec ts = {0, (long)l->batch_wait_us * 1000};
			nanosleep(&ts, NULL);
		}
		if (l->batch_wait_us)
			l->turn_end_us = time_mono_us();
	}
	/* run what was posted before stop so no posted object leaks */
	run_posts(l);
	l->stop = false; /* the loop may be run again */
	current_loop = NULL;
	return 0;
}
