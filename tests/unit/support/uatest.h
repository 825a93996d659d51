/* Test support for the ua's tests: its events recorded for the test thread, loopback UDP. */
#ifndef PINHOLE_TEST_UATEST_H
#define PINHOLE_TEST_UATEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/net.h"
#include "ua/ua.h"

/* A bound on waits for things that must happen, not a measure. */
#define UAT_WAIT_MS 40000
#define UAT_REC_MAX 96

/* The events a ua reported, in order; filled by uat_on_event on the ua's thread. */
struct uat_rec {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct {
		enum ua_event_kind kind;
		unsigned flow;
		bool outbound, recovered;
		uint32_t flow_timer, expires;
		uint64_t interval_ms, retry_ms;
		unsigned failures;
		int exit_code;
		uint16_t status;
		char local[NET_ADDR_STRLEN];
		char detail[400]; /* a verdict's name for UA_EV_VERDICT */
	} ev[UAT_REC_MAX];
	size_t n;
	size_t max; /* events kept at most (later ones are not), <= UAT_REC_MAX */
};

/* A static recorder keeping at most max events. */
#define UAT_REC_INIT(max_)                                                                         \
	{                                                                                          \
		.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .max = (max_)     \
	}

void uat_rec_init(struct uat_rec *r, size_t max);
void uat_rec_destroy(struct uat_rec *r);

/* A ua_event_h; arg is the struct uat_rec. */
void uat_on_event(const struct ua_event *ev, void *arg);

/* Waits (UAT_WAIT_MS at most, else the test fails) for the first event of kind
 * at index >= from, with text in its detail when text is not NULL; its index. */
size_t uat_wait(struct uat_rec *r, enum ua_event_kind kind, const char *text, size_t from);

/* How many events of kind were kept. */
size_t uat_count(struct uat_rec *r, enum ua_event_kind kind);

/* A pthread body running the loop arg until loop_stop. */
void *uat_run_loop(void *arg);

/* A UDP socket on 127.0.0.1, port chosen by the kernel; its address in *a. */
int uat_udp_bound(struct net_addr *a);

/* Receives one datagram (UAT_WAIT_MS at most, else the test fails) into buf,
 * NUL-terminated (cap - 1 bytes at most); its source in *from; its length. */
size_t uat_recv_one(int fd, char *buf, size_t cap, struct net_addr *from);

void uat_send_to(int fd, const struct net_addr *to, const void *p, size_t len);

#endif
