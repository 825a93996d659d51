/* Test support for the ua's tests (see uatest.h). */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>

#include "rtp/rtp.h"
#include "uatest.h"

void uat_rec_init(struct uat_rec *r, size_t max)
{
	memset(r, 0, sizeof *r);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->max = max;
}

void uat_rec_destroy(struct uat_rec *r)
{
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
}

void uat_on_event(const struct ua_event *ev, void *arg)
{
	struct uat_rec *r = arg;
	pthread_mutex_lock(&r->mu);
	if (r->n < r->max && r->n < UAT_REC_MAX) {
		r->ev[r->n].kind = ev->kind;
		r->ev[r->n].flow = ev->flow;
		r->ev[r->n].outbound = ev->outbound;
		r->ev[r->n].recovered = ev->recovered;
		r->ev[r->n].flow_timer = ev->flow_timer;
		r->ev[r->n].expires = ev->expires;
		r->ev[r->n].interval_ms = ev->interval_ms;
		r->ev[r->n].status = ev->status;
		r->ev[r->n].retry_ms = ev->retry_ms;
		r->ev[r->n].failures = ev->failures;
		r->ev[r->n].exit_code = ev->exit_code;
		snprintf(r->ev[r->n].local, sizeof r->ev[r->n].local, "%s",
			 ev->local ? ev->local : "");
		const char *d = ev->detail ? ev->detail : "";
		if (ev->kind == UA_EV_VERDICT)
			d = rtp_verdict_name(ev->verdict_out->verdict);
		snprintf(r->ev[r->n].detail, sizeof r->ev[r->n].detail, "%s", d);
		r->n++;
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

size_t uat_wait(struct uat_rec *r, enum ua_event_kind kind, const char *text, size_t from)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += UAT_WAIT_MS / 1000;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		for (size_t i = from; i < r->n; i++)
			if (r->ev[i].kind == kind && (!text || strstr(r->ev[i].detail, text))) {
				pthread_mutex_unlock(&r->mu);
				return i;
			}
		if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT) {
			pthread_mutex_unlock(&r->mu);
			fail_msg("no %s event with '%s'", ua_event_name(kind), text ? text : "");
		}
	}
}

size_t uat_count(struct uat_rec *r, enum ua_event_kind kind)
{
	size_t n = 0;
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->n; i++)
		n += r->ev[i].kind == kind;
	pthread_mutex_unlock(&r->mu);
	return n;
}

void *uat_run_loop(void *arg)
{
	loop_run(arg);
	return NULL;
}

int uat_udp_bound(struct net_addr *a)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct net_addr any;
	net_addr_parse("127.0.0.1:0", 0, &any);
	assert_int_equal(bind(fd, &any.u.sa, net_addr_len(&any)), 0);
	net_sock_addr(fd, a);
	return fd;
}

size_t uat_recv_one(int fd, char *buf, size_t cap, struct net_addr *from)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, UAT_WAIT_MS), 1);
	socklen_t sl = sizeof from->u.ss;
	ssize_t n = recvfrom(fd, buf, cap - 1, 0, &from->u.sa, &sl);
	assert_true(n > 0);
	buf[n] = '\0';
	return (size_t)n;
}

void uat_send_to(int fd, const struct net_addr *to, const void *p, size_t len)
{
	assert_int_equal(sendto(fd, p, len, 0, &to->u.sa, net_addr_len(to)), (ssize_t)len);
}
