/* edge: SIP steering: each UDP datagram goes, in the kernel, to the socket of
 * the worker that owns its Call-ID (bpf/sip_steer.bpf.c), so that user space
 * does not hand it from worker to worker. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

#ifdef PINHOLE_HAVE_BPF

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "edge/bpf/sip_steer.h"
#include "sip_steer.skel.h"

/* one program instance per UDP listener: a sockarray holds one reuseport group */
struct edge_steer {
	unsigned n;
	struct sip_steer *skel[];
};

void edge_steer_free(struct edge_steer *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->n; i++)
		sip_steer__destroy(s->skel[i]);
	free(s);
}

static int steer_open(struct edge *e, struct edge_steer **out)
{
	unsigned nl = net_listener_count(e->net);
	struct edge_steer *s = calloc(1, sizeof *s + nl * sizeof s->skel[0]);
	if (!s)
		return ENOMEM;
	int err = 0;
	for (unsigned i = 0; i < nl; i++) {
		if (net_listener(e->net, i)->tp != NET_UDP)
			continue;
		struct sip_steer *k = sip_steer__open();
		if (!k) {
			err = errno ? errno : EINVAL;
			break;
		}
		s->skel[s->n++] = k;
		k->rodata->n_workers = e->n_wk;
		if (sip_steer__load(k)) {
			err = errno ? errno : EINVAL;
			break;
		}
		if ((err = net_udp_steer(e->net, i, bpf_program__fd(k->progs.sip_steer),
					 bpf_map__fd(k->maps.workers))))
			break;
	}
	if (!err && !s->n)
		err = ENOENT; /* no UDP listener */
	if (err) {
		edge_steer_free(s);
		return err;
	}
	*out = s;
	return 0;
}

int edge_steer_start(struct edge *e, const char *mode)
{
	e->steer = NULL;
	if (strcmp(mode, "off") == 0)
		return 0;
	int err = e->n_wk > SIP_STEER_MAX_WORKERS ? E2BIG : 0;
	if (e->n_wk < 2)
		return 0; /* one worker owns everything already */
	if (!err)
		err = steer_open(e, &e->steer);
	if (!err) {
		LOG_I("edge", "steering: UDP datagrams go to their Call-ID's worker in the kernel "
			      "(sk_reuseport on %u listener%s, bpf prog id %u)",
		      e->steer->n, e->steer->n == 1 ? "" : "s",
		      net_bpf_prog_id(bpf_program__fd(e->steer->skel[0]->progs.sip_steer)));
		return 0;
	}
	if (strcmp(mode, "on") == 0) {
		LOG_E("edge", "steering: cannot use it: %s", strerror(err));
		return err;
	}
	LOG_W("edge", "steering unavailable (%s): workers hand messages to the Call-ID's owner",
	      strerror(err));
	return 0;
}

void edge_steer_counts(const struct edge *e, int64_t *steered, int64_t *left)
{
	*steered = *left = 0;
	struct edge_steer *s = e->steer;
	int64_t *outs[SIP_STEER_NCOUNT] = {steered, left};
	for (unsigned l = 0; s && l < s->n; l++)
		for (uint32_t i = 0; i < SIP_STEER_NCOUNT; i++) {
			uint64_t sum;
			if (!net_bpf_percpu_sum(bpf_map__fd(s->skel[l]->maps.counts), i, &sum))
				*outs[i] += (int64_t)sum;
		}
}

#else /* !PINHOLE_HAVE_BPF */

void edge_steer_free(struct edge_steer *s)
{
	(void)s;
}

int edge_steer_start(struct edge *e, const char *mode)
{
	e->steer = NULL;
	if (strcmp(mode, "on") == 0 && e->n_wk > 1) {
		LOG_E("edge", "steering: this build has no eBPF support (PINHOLE_BPF=OFF)");
		return ENOTSUP;
	}
	return 0;
}

void edge_steer_counts(const struct edge *e, int64_t *steered, int64_t *left)
{
	(void)e;
	*steered = *left = 0;
}

#endif
