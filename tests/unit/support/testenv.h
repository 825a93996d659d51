/* Test support: what many unit tests need around them (a network namespace
 * of their own, the value of a counter). */
#ifndef PINHOLE_TEST_TESTENV_H
#define PINHOLE_TEST_TESTENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct net_frame_state;

/* Moves the process into a network namespace of its own (lo up) and gives lo
 * each IPv4 address of the NULL-ended list (as /32). False, with a line on
 * stderr, when that is not possible (not root): the caller skips what needs it. */
bool test_own_netns(const char *const *addrs);

/* The current value of metric name{labels} (labels NULL: the unlabelled one);
 * 0 when it does not exist. */
int64_t test_metric(const char *name, const char *labels);

/* A net framer (net_set_recv) for tests that speak lines: a message ends
 * with '\n'. */
int test_frame_lines(struct net_frame_state *fs, const char *p, size_t l, size_t max,
		     size_t *msglen);

/* Sleeps ms milliseconds, resumed after signals. */
void test_sleep_ms(unsigned ms);

/* Polls cond every 2 ms for at most ms milliseconds; evaluates to its last
 * value. The bound only keeps a broken build from hanging; no test passes
 * or fails on time. Needs core/core.h (time_mono_ms). */
#define WAIT_UNTIL(cond, ms)                                                                       \
	({                                                                                         \
		uint64_t wu_end_ = time_mono_ms() + (ms);                                          \
		while (!(cond) && time_mono_ms() < wu_end_)                                        \
			test_sleep_ms(2);                                                          \
		(cond);                                                                            \
	})

#endif
