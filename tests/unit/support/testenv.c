/* Test support: a network namespace of a test's own, counters (see testenv.h). */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testenv.h"
#include "core/core.h"

bool test_own_netns(const char *const *addrs)
{
	char cmd[1024];
	int n = snprintf(cmd, sizeof cmd, "ip link set lo up");
	for (size_t i = 0; addrs && addrs[i] && n > 0 && (size_t)n < sizeof cmd; i++)
		n += snprintf(cmd + n, sizeof cmd - (size_t)n, " && ip addr add %s/32 dev lo",
			      addrs[i]);
	if (n > 0 && (size_t)n < sizeof cmd && unshare(CLONE_NEWNET) == 0 && system(cmd) == 0)
		return true;
	fprintf(stderr, "no network namespace of our own (not root?): skipping what needs one\n");
	return false;
}

int64_t test_metric(const char *name, const char *labels)
{
	struct metric *m = metric_find(name, labels);
	return m ? metric_get(m) : 0;
}

void test_sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int test_frame_lines(struct net_frame_state *fs, const char *p, size_t l, size_t max,
		     size_t *msglen)
{
	(void)fs, (void)max;
	const char *nl = memchr(p, '\n', l);
	if (!nl)
		return ENODATA;
	*msglen = (size_t)(nl - p) + 1;
	return 0;
}
