/* relay: the in-kernel fast path (DESIGN "Performance shape"): latched RTP streams are handed to a
 * tc program (bpf/relay_fast.bpf.c) and user space stays the fallback for everything else. */
#include <errno.h>
#include <string.h>

#include "relay/relay_int.h"

#ifdef PINHOLE_HAVE_BPF

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "relay/bpf/relay_fast.h"
#include "relay_fast.skel.h"

struct relay_fast_state {
	struct relay_fast *skel;
	int fwd_fd, stats_fd;
	struct net_tc tc;
	struct net_ip4_ifs ifs; /* at start: which destinations are local, and where */
};

static void fast_free(struct relay_fast_state *f)
{
	if (!f)
		return;
	net_tc_detach(&f->tc);
	relay_fast__destroy(f->skel);
	free(f);
}

static int fast_open(struct relay *r, struct relay_fast_state **out)
{
	struct relay_fast_state *f = calloc(1, sizeof *f);
	if (!f)
		return ENOMEM;
	net_bpf_log_init();
	int err = 0;
	f->skel = relay_fast__open_and_load();
	if (!f->skel) {
		err = errno ? errno : EINVAL;
		goto fail;
	}
	f->fwd_fd = bpf_map__fd(f->skel->maps.fwd);
	f->stats_fd = bpf_map__fd(f->skel->maps.stats);
	uint32_t zero = 0;
	struct relay_fast_conf c = {.port_lo = r->port_lo,
				    .port_hi = (uint16_t)(r->port_lo + 2 * r->npairs - 1)};
	if (bpf_map_update_elem(bpf_map__fd(f->skel->maps.conf), &zero, &c, BPF_ANY)) {
		err = errno;
		goto fail;
	}
	if ((err = net_ip4_ifs_read(&f->ifs)))
		goto fail;
	/* the relay's interfaces, and loopback for parties on this host */
	int prog = bpf_program__fd(f->skel->progs.relay_fast);
	err = net_tc_attach_ip4(&f->tc, prog, htonl(INADDR_LOOPBACK));
	for (unsigned i = 0; !err && i < r->nif; i++)
		if (r->ifs[i].family == AF_INET)
			err = net_tc_attach_ip4(&f->tc, prog, r->ifs[i].bind.u.in.sin_addr.s_addr);
	if (err)
		goto fail;
	*out = f;
	return 0;
fail:
	fast_free(f);
	return err;
}

int relay_fast_start(struct relay *r, const char *mode)
{
	if (strcmp(mode, "off") == 0)
		return 0;
	int err = fast_open(r, &r->fast);
	if (!err) {
		LOG_I("relay", "fast path: latched IPv4 RTP forwarded in the kernel (tc ingress on %u "
			       "interface%s, bpf prog id %u)",
		      r->fast->tc.n, r->fast->tc.n == 1 ? "" : "s",
		      net_bpf_prog_id(bpf_program__fd(r->fast->skel->progs.relay_fast)));
		return 0;
	}
	if (strcmp(mode, "on") == 0) {
		LOG_E("relay", "fast path: cannot load or attach the tc program: %s", strerror(err));
		return err;
	}
	LOG_W("relay", "fast path unavailable (%s; needs CAP_BPF and CAP_NET_ADMIN): all "
		       "media in user space",
	      strerror(err));
	return 0;
}

void relay_fast_stop(struct relay *r)
{
	fast_free(r->fast);
	r->fast = NULL;
}

static struct relay_fast_key sock_key(const struct relay *r, const struct relay_sock *k)
{
	const struct relay_if *ifc = &r->ifs[k->m->ifidx];
	return (struct relay_fast_key){.addr = ifc->bind.u.in.sin_addr.s_addr,
				       .port = htons(k->port)};
}

/* The source address a socket bound to the wildcard sends to dst from. */
static uint32_t route_source(uint32_t dst)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = dst};
	struct sockaddr_in s = {0};
	socklen_t sl = sizeof s;
	uint32_t out = 0;
	if (connect(fd, (struct sockaddr *)&d, sizeof d) == 0 &&
	    getsockname(fd, (struct sockaddr *)&s, &sl) == 0)
		out = s.sin_addr.s_addr;
	close(fd);
	return out;
}

/* The entry k (an RTP socket) should have now, if any. Session locked. */
static bool wanted(const struct relay *r, const struct relay_sock *k, struct relay_fast_fwd *e)
{
	const struct relay_media *m = k->m;
	const struct relay_media *om = m->s->leg[1 - m->leg].media[m->idx];
	const struct net_addr *d;
	if (k->fd < 0 || !k->latch.latched || k->latch.peer.u.sa.sa_family != AF_INET)
		return false;
	if (r->ifs[m->ifidx].family != AF_INET || !om || om->rtp.fd < 0 ||
	    r->ifs[om->ifidx].family != AF_INET)
		return false;
	if (!relay_latch_dest(&om->rtp.latch, &d) || d->u.sa.sa_family != AF_INET)
		return false;
	memset(e, 0, sizeof *e);
	e->peer_addr = k->latch.peer.u.in.sin_addr.s_addr;
	e->peer_port = k->latch.peer.u.in.sin_port;
	e->dst_addr = d->u.in.sin_addr.s_addr;
	e->dst_port = d->u.in.sin_port;
	e->out_port = htons(om->rtp.port);
	e->out_addr = r->ifs[om->ifidx].bind.u.in.sin_addr.s_addr;
	if (!e->out_addr && !(e->out_addr = route_source(e->dst_addr)))
		return false;
	if (net_ip4_ifs_find(&r->fast->ifs, e->dst_addr)) {
		/* A party on this host (a local PBX, the echo) gets the rewritten
		 * packet up the stack only if it came in on loopback, i.e. from
		 * this host too: arriving on another interface, its new source
		 * (ours) and a 127/8 destination make it a martian the kernel
		 * drops. From elsewhere it stays in user space. */
		if (!net_ip4_ifs_find(&r->fast->ifs, e->peer_addr))
			return false;
		e->flags = RELAY_FAST_LOCAL;
		return true;
	}
	/* out of the interface that holds the sending address, as the user
	 * space socket would; one not attached (or loopback) stays slow */
	int ifindex = net_ip4_ifs_find(&r->fast->ifs, e->out_addr);
	if (ifindex <= 0 || !net_tc_has(&r->fast->tc, ifindex) || (ntohl(e->out_addr) >> 24) == 127)
		return false;
	e->ifindex = (uint32_t)ifindex;
	return true;
}

static void sync_sock(struct relay *r, struct relay_sock *k)
{
	struct relay_fast_fwd e;
	struct relay_fast_key key = sock_key(r, k);
	if (!wanted(r, k, &e)) {
		if (k->fast && bpf_map_delete_elem(r->fast->fwd_fd, &key) == 0)
			k->fast = false;
		return;
	}
	if (!k->fast_stats) {
		/* the kernel continues the stream's sequence where user space is */
		struct relay_fast_stats st = {.ssrc = k->seq.ssrc,
					      .max_seq = k->seq.max_seq,
					      .seq_init = k->seq.init};
		if (bpf_map_update_elem(r->fast->stats_fd, &key, &st, BPF_NOEXIST))
			return; /* map full: stays in user space */
		k->fast_stats = true;
		memset(&k->fast_seen, 0, sizeof k->fast_seen);
	}
	if (bpf_map_update_elem(r->fast->fwd_fd, &key, &e, BPF_ANY) == 0)
		k->fast = true;
}

void relay_fast_sync(struct relay_media *m)
{
	struct relay *r = m->s->r;
	if (!r->fast)
		return;
	struct relay_media *om = m->s->leg[1 - m->leg].media[m->idx];
	sync_sock(r, &m->rtp);
	if (om)
		sync_sock(r, &om->rtp);
}

void relay_fast_pull(struct relay_sock *k)
{
	struct relay *r = k->m->s->r;
	if (!r->fast || !k->fast_stats)
		return;
	struct relay_fast_key key = sock_key(r, k);
	struct relay_fast_stats st;
	if (bpf_map_lookup_elem(r->fast->stats_fd, &key, &st))
		return;
	uint64_t dp = st.packets - k->fast_seen.packets;
	if (!dp)
		return;
	uint64_t db = st.bytes - k->fast_seen.bytes;
	k->packets += dp;
	k->bytes += db;
	k->seq.gaps += st.gaps - k->fast_seen.gaps;
	k->seq.resyncs += st.resyncs - k->fast_seen.resyncs;
	k->seq.init = st.seq_init;
	k->seq.ssrc = st.ssrc;
	k->seq.max_seq = st.max_seq;
	k->fast_seen.packets = st.packets;
	k->fast_seen.bytes = st.bytes;
	k->fast_seen.gaps = st.gaps;
	k->fast_seen.resyncs = st.resyncs;
	/* the latch sees the stream alive, for timeouts and re-latching */
	uint64_t last_ms = st.last_ns / 1000000u;
	if (last_ms > k->latch.last_ms)
		k->latch.last_ms = last_ms;
	k->latch.ssrc = st.ssrc;
	relay_metrics_fast((int64_t)dp, (int64_t)db);
}

void relay_fast_forget(struct relay_sock *k)
{
	struct relay *r = k->m->s->r;
	if (!r->fast)
		return;
	struct relay_fast_key key = sock_key(r, k);
	if (k->fast)
		bpf_map_delete_elem(r->fast->fwd_fd, &key);
	k->fast = false;
	relay_fast_pull(k);
	if (k->fast_stats)
		bpf_map_delete_elem(r->fast->stats_fd, &key);
	k->fast_stats = false;
}

#else /* !PINHOLE_HAVE_BPF: built without clang/bpftool/libbpf */

int relay_fast_start(struct relay *r, const char *mode)
{
	(void)r;
	if (strcmp(mode, "on") == 0) {
		LOG_E("relay", "fast path: this build has no eBPF support (PINHOLE_BPF=OFF)");
		return ENOTSUP;
	}
	return 0;
}

void relay_fast_stop(struct relay *r)
{
	(void)r;
}

void relay_fast_sync(struct relay_media *m)
{
	(void)m;
}

void relay_fast_pull(struct relay_sock *k)
{
	(void)k;
}

void relay_fast_forget(struct relay_sock *k)
{
	(void)k;
}

#endif
