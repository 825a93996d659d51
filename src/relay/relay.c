/* relay: configuration, interfaces, the port pool, start and free of the role. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay/relay_int.h"

const struct conf_key relay_conf_keys[] = {
    {"relay", "address", CONF_STR, "0.0.0.0", 0, 0, NULL,
     "interfaces to relay on: [name/]ip list, IPv6 as [::] or [2001:db8::1]; one port range each"},
    {"relay", "advertise", CONF_STR, "", 0, 0, NULL,
     "address written into SDP per interface, in address order (1:1 NAT); empty entry = the "
     "bound IP, or for a wildcard the source IP of the default route"},
    {"relay", "ports", CONF_STR, "30000-39999", 0, 0, NULL,
     "UDP port range: RTP on even ports, RTCP on the next odd one"},
    {"relay", "timeout", CONF_INT, "60", 1, 86400, NULL,
     "seconds of silence on both legs after which a session is deleted"},
    {"relay", "hold_timeout", CONF_INT, "3600", 1, 86400, NULL,
     "seconds of silence after which a session on hold (every stream sendonly, recvonly, "
     "inactive or c=0.0.0.0 in the last offer or answer) is deleted"},
    {"relay", "latch", CONF_ENUM, "strict", 0, 0, "strict|loose",
     "strict: latch only onto the party's SIP source IP or SDP IP (RTP Bleed safe); loose: "
     "any source, for carriers whose media comes from elsewhere"},
    {"relay", "relatch", CONF_INT, "2000", 0, 3600000, NULL,
     "milliseconds a latched source must be silent before another may take over (strict: "
     "same SSRC only)"},
    {"relay", "batch_wait", CONF_INT, "0", 0, 1000, NULL,
     "microseconds a busy worker waits before its next poll so packets of many streams share "
     "a wake-up; saves CPU under load, adds up to that much latency; 0 = off"},
    {"relay", "fastpath", CONF_ENUM, "auto", 0, 0, "auto|on|off",
     "forward latched IPv4 RTP in the kernel (eBPF tc program; needs CAP_BPF and "
     "CAP_NET_ADMIN): auto = when it loads, else user space; on = fail to start without it"},
    {"relay", "max_media", CONF_INT, "4", 1, SDP_MAX_MEDIA, NULL,
     "m= lines with ports a relayed call may have (two port pairs each); an offer with more "
     "gets 488 (proxy_media_too_many_streams_total from the proxy, relay_limit_media_total "
     "from the relay: ng clients, re-offers)"},
    {"relay", "max_pairs_per_source", CONF_INT, "256", 0, 1000000, NULL,
     "port pairs the calls of one signalling source (IP, IPv6 /64) may hold; beyond: 503 and "
     "relay_limit_source_total; 0 = no limit"},
    {"relay", "max_pairs_per_aor", CONF_INT, "64", 0, 1000000, NULL,
     "port pairs the calls of one caller AOR (From) may hold; beyond: 503 and "
     "relay_limit_aor_total; 0 = no limit"},
    {"relay", "ng", CONF_STR, "", 0, 0, NULL,
     "rtpengine ng control socket, e.g. udp:127.0.0.1:2223; empty = off"},
    {"relay", "ng_allow", CONF_STR, "127.0.0.0/8, ::1", 0, 0, NULL,
     "sources that may send ng commands: addresses or prefixes (10.0.0.0/24, 2001:db8::/64); "
     "others are dropped unanswered and counted (relay_ng_denied_total)"},
    {"relay", "ng_list_max", CONF_INT, "1000", 1, 100000, NULL,
     "most call-IDs an ng list answers whatever limit it asks (no limit: 32); the answer "
     "also stops short of 60000 bytes"},
    {"relay", "media", CONF_ENUM, "nat-facing", 0, 0, "nat-facing|auto|always|never",
     "(read by the proxy) relay media: nat-facing = every call with a party whose packets do "
     "not come from direct_networks or [proxy] trusted, whatever its Via, Contact and SDP "
     "say; auto = when the message says NAT (private addresses, Via/Contact unlike the "
     "source) or the families differ: trusts what a SIP ALG rewrote (docs/relay.md)"},
    {"relay", "direct_networks", CONF_STR, "", 0, 0, NULL,
     "(read by the proxy and registrar) sources that reach us without NAT (the operator's "
     "LAN, trunks and gateways): prefixes or addresses; with [proxy] trusted the only "
     "parties nat-facing does not relay, and whose bindings may get the no-nat verdict"},
    {"relay", "webrtc", CONF_ENUM, "pass", 0, 0, "pass|relay",
     "(read by the proxy) calls whose offer has ICE and a=fingerprint (WebRTC): pass = not "
     "relayed by nat-facing or auto (the relay strips ICE and drops DTLS; ICE finds the "
     "path); relay = as other calls"},
    {NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* ---- the port pool: pairs (even RTP, odd RTCP) per interface ---- */

int relay_pool_get(struct relay *r, unsigned ifidx, struct relay_media *m)
{
	struct relay_if *ifc = &r->ifs[ifidx];
	pthread_mutex_lock(&r->pool_lock);
	int err = relay_charge_check(r, m->s);
	if (err) {
		pthread_mutex_unlock(&r->pool_lock);
		return err;
	}
	err = ENOSPC;
	/* one pass over the range at most; ports another process holds are
	 * skipped, not marked, since it may let go of them */
	for (uint32_t tries = 0; tries < r->npairs && ifc->nfree; tries++) {
		uint32_t i = ifc->cursor;
		ifc->cursor = (ifc->cursor + 1) % r->npairs;
		if (ifc->used[i])
			continue;
		uint16_t port = (uint16_t)(r->port_lo + 2 * i);
		struct net_addr a = ifc->bind;
		int fd0, fd1;
		net_addr_set_port(&a, port);
		if (net_udp_socket(&a, false, &fd0))
			continue;
		net_addr_set_port(&a, (uint16_t)(port + 1));
		if (net_udp_socket(&a, false, &fd1)) {
			close(fd0);
			continue;
		}
		ifc->used[i] = 1;
		ifc->nfree--;
		m->ifidx = ifidx;
		m->pair = i;
		m->rtp.fd = fd0;
		m->rtp.port = port;
		m->rtcp.fd = fd1;
		m->rtcp.port = (uint16_t)(port + 1);
		relay_charge_add(m->s, 1);
		err = 0;
		break;
	}
	pthread_mutex_unlock(&r->pool_lock);
	return err;
}

void relay_pool_put(struct relay *r, struct relay_media *m)
{
	if (m->rtp.fd >= 0)
		close(m->rtp.fd);
	if (m->rtcp.fd >= 0)
		close(m->rtcp.fd);
	m->rtp.fd = m->rtcp.fd = -1;
	pthread_mutex_lock(&r->pool_lock);
	struct relay_if *ifc = &r->ifs[m->ifidx];
	if (ifc->used[m->pair]) {
		ifc->used[m->pair] = 0;
		ifc->nfree++;
		relay_charge_add(m->s, -1);
	}
	pthread_mutex_unlock(&r->pool_lock);
}

/* ---- configuration ---- */

/* Splits a comma list into trimmed items; empty items are kept (advertise). */
static unsigned split_list(const char *s, char items[][96], unsigned max)
{
	unsigned n = 0;
	const char *p = s;
	if (!*s)
		return 0;
	for (;;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (n < max) {
			struct slice t = slice_trim((struct slice){p, l});
			slice_to_cstr(t, items[n], 96);
		}
		n++;
		if (!c)
			break;
		p = c + 1;
	}
	return n;
}

static int parse_ifs(struct relay *r, const struct conf *c)
{
	char addrs[RELAY_MAX_IF][96], advs[RELAY_MAX_IF][96];
	unsigned na = split_list(conf_str(c, "relay", "address"), addrs, RELAY_MAX_IF);
	unsigned nv = split_list(conf_str(c, "relay", "advertise"), advs, RELAY_MAX_IF);
	if (na == 0 || na > RELAY_MAX_IF) {
		LOG_E("relay", "relay.address: want 1 to %u addresses", RELAY_MAX_IF);
		return EINVAL;
	}
	if (nv > na) {
		LOG_E("relay", "relay.advertise: more entries than relay.address");
		return EINVAL;
	}
	for (unsigned i = 0; i < na; i++) {
		struct relay_if *ifc = &r->ifs[i];
		const char *a = addrs[i];
		const char *slash = strchr(a, '/');
		if (slash) {
			snprintf(ifc->name, sizeof ifc->name, "%.*s", (int)(slash - a), a);
			a = slash + 1;
		} else {
			snprintf(ifc->name, sizeof ifc->name, "%u", i);
		}
		if (net_addr_parse(a, 0, &ifc->bind) || net_addr_port(&ifc->bind) != 0) {
			LOG_E("relay", "relay.address: '%s' is not an IP address (no port)",
			      addrs[i]);
			return EINVAL;
		}
		ifc->family = net_addr_family(&ifc->bind);
		const char *v = i < nv ? advs[i] : "";
		if (v[0]) {
			if (net_addr_parse(v, 0, &ifc->adv_addr) ||
			    net_addr_family(&ifc->adv_addr) != ifc->family) {
				LOG_E("relay",
				      "relay.advertise: '%s' is not an IP of the family of '%s'", v,
				      addrs[i]);
				return EINVAL;
			}
		} else if (net_addr_is_any(&ifc->bind)) {
			if (net_default_source(ifc->family, &ifc->adv_addr)) {
				LOG_E("relay",
				      "relay.address %s: no route to guess the address to "
				      "advertise; set relay.advertise",
				      addrs[i]);
				return EINVAL;
			}
		} else {
			ifc->adv_addr = ifc->bind;
		}
		net_addr_set_port(&ifc->adv_addr, 0);
		net_addr_ip_fmt(&ifc->adv_addr, ifc->adv, sizeof ifc->adv);
	}
	r->nif = na;
	return 0;
}

static int parse_ports(struct relay *r, const struct conf *c)
{
	const char *s = conf_str(c, "relay", "ports");
	unsigned lo, hi;
	char extra;
	if (sscanf(s, "%u - %u %c", &lo, &hi, &extra) != 2 || lo < 1024 || hi > 65535 || hi <= lo) {
		LOG_E("relay", "relay.ports: want lo-hi within 1024-65535, got '%s'", s);
		return EINVAL;
	}
	lo += lo & 1; /* RFC 3550 11: RTP on an even port, RTCP on the next */
	if (hi < lo + 1) {
		LOG_E("relay", "relay.ports: '%s' holds no even/odd pair", s);
		return EINVAL;
	}
	r->port_lo = (uint16_t)lo;
	r->npairs = (hi - lo + 1) / 2;
	return 0;
}

static void sweep_timer(void *arg);

/* Runs on worker 0's thread. */
static void sweep_arm(void *arg)
{
	struct relay_worker *w = arg;
	timer_start(w->loop, &w->sweep, RELAY_SWEEP_MS, sweep_timer, w);
}

static void sweep_timer(void *arg)
{
	struct relay_worker *w = arg;
	relay_sweep(w->r, loop_now_ms(w->loop));
	timer_start(w->loop, &w->sweep, RELAY_SWEEP_MS, sweep_timer, w);
}

int relay_start(struct relay **rp, struct net *n, const struct conf *c)
{
	relay_metrics_register();
	relay_limits_register();
	struct relay *r = calloc(1, sizeof *r);
	if (!r)
		return ENOMEM;
	r->net = n;
	pthread_mutex_init(&r->pool_lock, NULL);
	pthread_mutex_init(&r->table_lock, NULL);
	r->timeout_ms = (uint64_t)conf_int(c, "relay", "timeout") * 1000;
	r->hold_timeout_ms = (uint64_t)conf_int(c, "relay", "hold_timeout") * 1000;
	r->latch.mode = strcmp(conf_str(c, "relay", "latch"), "loose") == 0 ? RELAY_LATCH_LOOSE
									    : RELAY_LATCH_STRICT;
	r->latch.relatch_ms = (uint32_t)conf_int(c, "relay", "relatch");
	int err = parse_ifs(r, c);
	if (!err)
		err = parse_ports(r, c);
	if (!err)
		err = relay_limits_init(r, c);
	if (err)
		goto out_free;
	for (unsigned i = 0; i < r->nif; i++) {
		r->ifs[i].used = calloc(r->npairs, 1);
		if (!r->ifs[i].used) {
			err = ENOMEM;
			goto out_free;
		}
		r->ifs[i].nfree = r->npairs;
		r->ifs[i].cursor = rand_u32() % r->npairs;
		/* fail now, not on the first call: can we bind there at all? */
		int fd;
		err = net_udp_socket(&r->ifs[i].bind, false, &fd);
		if (err) {
			char t[NET_ADDR_STRLEN];
			LOG_E("relay", "cannot bind %s: %s",
			      net_addr_ip_fmt(&r->ifs[i].bind, t, sizeof t), strerror(err));
			goto out_free;
		}
		close(fd);
	}
	r->table_size = 1024;
	r->table = calloc(r->table_size, sizeof *r->table);
	r->nworkers = net_worker_count(n);
	unsigned wait_us = (unsigned)conf_int(c, "relay", "batch_wait");
	for (unsigned i = 0; wait_us && i < r->nworkers; i++)
		loop_set_batch_wait(worker_loop(net_worker(n, i)), wait_us);
	r->workers = calloc(r->nworkers ? r->nworkers : 1, sizeof *r->workers);
	if (!r->table || !r->workers) {
		err = ENOMEM;
		goto out_free;
	}
	for (unsigned i = 0; i < r->nworkers; i++) {
		struct relay_worker *w = calloc(1, sizeof *w);
		if (!w) {
			err = ENOMEM;
			goto out_free;
		}
		r->workers[i] = w;
		w->r = r;
		w->loop = worker_loop(net_worker(n, i));
		timer_init(&w->sweep);
	}
	if (r->nworkers == 0) {
		LOG_E("relay", "no net workers to run on");
		err = EINVAL;
		goto out_free;
	}
	if ((err = relay_fast_start(r, conf_str(c, "relay", "fastpath"))))
		goto out_free;
	if (conf_str(c, "relay", "ng")[0] && (err = relay_ngd_start(r, c)))
		goto out_free;
	/* nothing fails after this point: the posted arm must find a live relay */
	if (loop_post(r->workers[0]->loop, sweep_arm, r->workers[0]))
		LOG_W("relay", "cannot start the session timeout sweep");
	for (unsigned i = 0; i < r->nif; i++) {
		char t[NET_ADDR_STRLEN];
		LOG_I("relay", "interface %s on %s advertised as %s, ports %u-%u, latch %s",
		      r->ifs[i].name, net_addr_ip_fmt(&r->ifs[i].bind, t, sizeof t), r->ifs[i].adv,
		      r->port_lo, r->port_lo + 2 * r->npairs - 1,
		      r->latch.mode == RELAY_LATCH_STRICT ? "strict" : "loose");
	}
	*rp = r;
	return 0;
out_free:
	relay_free(r);
	return err;
}

const char *relay_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case EBADMSG:
		return "malformed SDP or message";
	case ENOTSUP:
		return "unsupported SDP or option";
	case ENOSPC:
		return "out of relay ports";
	case EDQUOT:
		return "relay ports for this source or caller used up";
	case E2BIG:
		return "too many media streams";
	case ENOENT:
		return "unknown call-id or tag";
	case EINVAL:
		return "missing or bad argument";
	case ENOMEM:
		return "out of memory";
	default:
		return "relay error";
	}
}

void relay_free(struct relay *r)
{
	if (!r)
		return;
	relay_ngd_free(r->ngd);
	relay_sessions_free(r); /* before the fast path: closing sockets reads its counters */
	relay_fast_stop(r);
	for (unsigned i = 0; r->workers && i < r->nworkers; i++) {
		struct relay_worker *w = r->workers[i];
		if (!w)
			continue;
		/* after net_stop the loop no longer runs: detach from its wheel */
		if (timer_active(&w->sweep))
			timer_cancel(&w->sweep);
		free(w);
	}
	free(r->workers);
	free(r->table);
	relay_limits_free(r);
	for (unsigned i = 0; i < RELAY_MAX_IF; i++)
		free(r->ifs[i].used);
	pthread_mutex_destroy(&r->pool_lock);
	pthread_mutex_destroy(&r->table_lock);
	free(r);
}

void relay_stats_get(struct relay *r, struct relay_stats *out)
{
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&r->table_lock);
	out->sessions = (int64_t)r->nsessions;
	pthread_mutex_unlock(&r->table_lock);
	pthread_mutex_lock(&r->pool_lock);
	for (unsigned i = 0; i < r->nif; i++)
		out->ports_free += r->ifs[i].nfree;
	pthread_mutex_unlock(&r->pool_lock);
	out->packets = relay_metrics_get(0);
	out->bytes = relay_metrics_get(1);
	out->fast_packets = relay_metrics_fast_get();
	out->fast = r->fast != NULL;
	for (int d = 0; d < RELAY_DROP_COUNT; d++)
		out->dropped[d] = relay_metrics_get(2 + d);
}

const struct net_addr *relay_ng_addr(const struct relay *r)
{
	return r->ngd ? relay_ngd_addr(r->ngd) : NULL;
}
