/* stund: the in-kernel fast path: plain IPv4 Binding requests answered by a tc program
 * (bpf/stun_fast.bpf.c); the server's sockets get everything else. */
#include <errno.h>
#include <string.h>

#include "stund_int.h"

#ifdef PINHOLE_HAVE_BPF

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "stun_fast.skel.h"
#include "stund/bpf/stun_fast.h"

struct stund_fast {
	struct stun_fast *skel;
	struct net_tc tc;
	pthread_mutex_t lock;
	uint64_t seen[STUN_FAST_NCOUNT]; /* kernel counts already handed out */
};

void stund_fast_free(struct stund_fast *f)
{
	if (!f)
		return;
	net_tc_detach(&f->tc);
	stun_fast__destroy(f->skel);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static int add_sock(struct stund_fast *f, const struct sockaddr_storage *ss,
		    const struct sockaddr_storage *other, bool rfc5780, int prog)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
	struct stun_fast_key k = {.addr = in->sin_addr.s_addr, .port = in->sin_port};
	struct stun_fast_sock v = {0};
	if (rfc5780) {
		const struct sockaddr_in *o = (const struct sockaddr_in *)other;
		v.flags = STUN_FAST_5780;
		v.other_addr = o->sin_addr.s_addr;
		v.other_port = o->sin_port;
	}
	if (bpf_map_update_elem(bpf_map__fd(f->skel->maps.socks), &k, &v, BPF_ANY))
		return errno;
	return net_tc_attach_ip4(&f->tc, prog, k.addr);
}

static int fast_open(struct stund_fast **out, const struct stund_view *views,
		     const unsigned *nslots, unsigned nlisten, uint32_t rate, uint32_t burst)
{
	struct stund_fast *f = calloc(1, sizeof *f);
	if (!f)
		return ENOMEM;
	pthread_mutex_init(&f->lock, NULL);
	int err = 0;
	if (!(f->skel = stun_fast__open_and_load())) {
		err = errno ? errno : EINVAL;
		goto fail;
	}
	uint32_t zero = 0;
	struct stun_fast_conf c = {.rate = rate, .burst = burst ? burst : 1};
	if (bpf_map_update_elem(bpf_map__fd(f->skel->maps.conf), &zero, &c, BPF_ANY)) {
		err = errno;
		goto fail;
	}
	int prog = bpf_program__fd(f->skel->progs.stun_fast);
	/* clients on this host */
	if ((err = net_tc_attach_ip4(&f->tc, prog, htonl(INADDR_LOOPBACK))))
		goto fail;
	unsigned n = 0;
	for (unsigned i = 0; i < nlisten; i++)
		for (unsigned s = 0; s < nslots[i]; s++) {
			if (views[i].addr[s].ss_family != AF_INET)
				continue;
			/* RFC 5780 7.4: OTHER-ADDRESS is the other IP and the other port */
			if ((err = add_sock(f, &views[i].addr[s], &views[i].addr[s ^ 3u],
					    views[i].rfc5780, prog)))
				goto fail;
			n++;
		}
	if (!n) {
		err = ENOENT; /* no IPv4 socket to serve */
		goto fail;
	}
	*out = f;
	return 0;
fail:
	stund_fast_free(f);
	return err;
}

int stund_fast_start(struct stund_fast **out, const char *mode, const struct stund_view *views,
		     const unsigned *nslots, unsigned nlisten, uint32_t rate, uint32_t burst)
{
	*out = NULL;
	if (strcmp(mode, "off") == 0)
		return 0;
	int err = ENOTSUP;
	for (unsigned i = 0; i < nlisten; i++)
		if (views[i].software)
			goto unavailable; /* the kernel's answers carry no SOFTWARE */
	err = fast_open(out, views, nslots, nlisten, rate, burst);
	if (!err) {
		LOG_I("stun", "fast path: plain IPv4 Binding requests answered in the kernel (tc "
			      "ingress on %u interface%s, bpf prog id %u)",
		      (*out)->tc.n, (*out)->tc.n == 1 ? "" : "s",
		      net_bpf_prog_id(bpf_program__fd((*out)->skel->progs.stun_fast)));
		return 0;
	}
unavailable:
	if (strcmp(mode, "on") == 0) {
		LOG_E("stun", "fast path: cannot use it: %s%s", strerror(err),
		      err == ENOTSUP ? " (SOFTWARE is set)" : "");
		return err;
	}
	LOG_W("stun", "fast path unavailable (%s): every request in user space", strerror(err));
	return 0;
}

void stund_fast_pull(struct stund_fast *f, int64_t *requests, int64_t *responses,
		     int64_t *limited)
{
	*requests = *responses = *limited = 0;
	if (!f)
		return;
	int64_t *outs[STUN_FAST_NCOUNT] = {requests, responses, limited};
	pthread_mutex_lock(&f->lock);
	for (uint32_t i = 0; i < STUN_FAST_NCOUNT; i++) {
		uint64_t sum;
		if (net_bpf_percpu_sum(bpf_map__fd(f->skel->maps.counts), i, &sum))
			continue;
		*outs[i] = (int64_t)(sum - f->seen[i]);
		f->seen[i] = sum;
	}
	pthread_mutex_unlock(&f->lock);
}

#else /* !PINHOLE_HAVE_BPF */

int stund_fast_start(struct stund_fast **out, const char *mode, const struct stund_view *views,
		     const unsigned *nslots, unsigned nlisten, uint32_t rate, uint32_t burst)
{
	(void)views, (void)nslots, (void)nlisten, (void)rate, (void)burst;
	*out = NULL;
	if (strcmp(mode, "on") == 0) {
		LOG_E("stun", "fast path: this build has no eBPF support (PINHOLE_BPF=OFF)");
		return ENOTSUP;
	}
	return 0;
}

void stund_fast_pull(struct stund_fast *f, int64_t *requests, int64_t *responses,
		     int64_t *limited)
{
	(void)f;
	*requests = *responses = *limited = 0;
}

void stund_fast_free(struct stund_fast *f)
{
	(void)f;
}

#endif
