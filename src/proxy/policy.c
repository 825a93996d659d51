/* No open relay (who may reach beyond our domains) and loop detection (RFC 3261 16.3 step 4). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proxy_int.h"

static struct metric m_relay_denied = {
    .name = "proxy_relay_denied_total",
    .help = "requests for a target beyond our domain from an anonymous, untrusted source, "
	    "refused 403"};
static struct metric m_loops = {.name = "proxy_loops_total",
				.help = "requests that came back to us unchanged (or aimed at "
					"one of our own addresses), answered 482"};

static struct metric m_alias_ignored = {
    .name = "proxy_via_alias_ignored_total",
    .help = "Via ;alias not honoured (RFC 5923): not a [proxy] trusted peer's TCP connection, "
	    "or a sent-by that is not the connection's source address"};

void proxy_note_alias(struct proxy *p, const struct edge_rx *rx)
{
	const struct sip_via *v = &rx->msg->via1;
	if (!sip_param_find(v->params, "alias", NULL))
		return;
	struct net_addr sent_by;
	/* the sent-by must be the address the connection comes from: over TCP
	 * nothing proves a peer is another host it names (TLS would) */
	if ((rx->flow.tp != NET_TCP && rx->flow.tp != NET_TLS) || !rx->flow.conn_id ||
	    !proxy_source_trusted(p, &rx->flow.remote) ||
	    net_addr_from_host(v->host, v->port ? v->port : 5060, &sent_by) ||
	    !net_addr_ip_eq(&sent_by, &rx->flow.remote)) {
		metric_inc(&m_alias_ignored);
		return;
	}
	net_conn_alias(edge_net(p->edge), rx->flow.conn_id, net_addr_port(&sent_by));
}

static struct metric m_sips_dropped = {
    .name = "proxy_sips_not_tls_total",
    .help = "targets of sips: requests dropped for a flow that is not TLS (RFC 5630)"};

bool proxy_sips_filter(const struct sip_msg *m, struct proxy_target *t, size_t *n)
{
	if (!slice_eq_cstr_nocase(m->ruri.scheme, "sips"))
		return true;
	size_t k = 0;
	for (size_t i = 0; i < *n; i++) {
		if (t[i].flow.tp == NET_TLS || t[i].flow.tp == NET_WSS) /* both encrypted */
			t[k++] = t[i];
		else
			metric_inc(&m_sips_dropped);
	}
	*n = k;
	return k > 0;
}

int proxy_policy_init(struct proxy *p, const struct conf *c)
{
	metric_register(&m_sips_dropped);
	const char *spec = conf_str(c, "proxy", "trusted");
	char copy[2048];
	if (strlen(spec) >= sizeof copy) {
		LOG_E("proxy", "[proxy] trusted: longer than %zu characters", sizeof copy - 1);
		return EINVAL;
	}
	snprintf(copy, sizeof copy, "%s", spec);
	char *save = NULL;
	for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
		if (p->n_trusted == PROXY_MAX_TRUSTED) {
			LOG_E("proxy", "[proxy] trusted: more than %d entries", PROXY_MAX_TRUSTED);
			return EINVAL;
		}
		int err = net_cidr_parse(t, &p->trusted[p->n_trusted]);
		if (err) {
			LOG_E("proxy", "[proxy] trusted: \"%s\": %s", t,
			      err == ERANGE ? "prefix length out of range for the address family"
			      : err == EDOM ? "address has bits set beyond the prefix length"
					    : "expected an IP address or ADDRESS/PREFIX (CIDR)");
			return EINVAL;
		}
		p->n_trusted++;
	}
	metric_register(&m_relay_denied);
	metric_register(&m_loops);
	metric_register(&m_alias_ignored);
	return 0;
}

bool proxy_source_trusted(const struct proxy *p, const struct net_addr *src)
{
	for (size_t i = 0; i < p->n_trusted; i++)
		if (net_cidr_has(&p->trusted[i], src))
			return true;
	return false;
}

bool proxy_may_relay(struct proxy *p, const struct edge_rx *rx, bool authenticated)
{
	const struct net_addr *src = &rx->flow.remote;
	if (authenticated || proxy_source_trusted(p, src) || registrar_lan_default(p->reg, src))
		return true;
	metric_inc(&m_relay_denied);
	int64_t n;
	if (log_burst_due(&p->relay_log, 60000, &n)) {
		char a[NET_ADDR_STRLEN];
		bool users = registrar_has_users(p->reg);
		LOG_W("proxy",
		      "refused %lld requests for targets beyond our domains from anonymous sources "
		      "(last from %s, %.*s); only %s and [proxy] trusted peers may reach there%s",
		      (long long)n, net_addr_fmt(src, a, sizeof a),
		      (int)MIN(rx->msg->ruri_s.l, 100), rx->msg->ruri_s.p,
		      users ? "authenticated users" : "loopback and private sources (no users)",
		      users ? "" : "; add users with `pinhole user add`");
	}
	return false;
}

/* ---- loop detection ----
 *
 * Our branch, RFC 3261 16.6 step 8: a part unique per transaction and a
 * part that hashes what decides where the request goes, as we received it:
 *
 *   edge_branch_new_signed (29: unique, and signed so that a response can be
 *   checked as one to what we sent) | "." | 8: hash (48 bits, base64url)
 *
 * The hash is a suffix after a '.' (outside base64url), so that what comes
 * before it may change without touching the check.
 *
 * The hash covers To tag, From tag, Call-ID, CSeq number, Request-URI, the
 * Via below ours (the sender's, as we forward it: with received/rport),
 * Route, Proxy-Require and Proxy-Authorization. A request that comes back
 * with our Via in it and the same hash has looped; a changed field (another
 * Request-URI after a registrar lookup elsewhere, a popped Route) makes it a
 * spiral, and it goes on (16.3 step 4).
 */
#define LOOP_HASH 8
#define LOOP_BRANCH_LEN (EDGE_SIGNED_BRANCH_LEN + 1 + LOOP_HASH)

static uint64_t mix(uint64_t h, struct slice s)
{
	return (h ^ hash_bytes(s.p, s.l)) * 0x100000001b3ULL + s.l;
}

static uint64_t loop_hash(const struct sip_msg *m, struct slice below)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	h = mix(h, m->to_tag);
	h = mix(h, m->from_tag);
	h = mix(h, m->call_id);
	h = mix(h, (struct slice){(const char *)&m->cseq.num, sizeof m->cseq.num});
	h = mix(h, m->ruri_s);
	h = mix(h, slice_trim(below));
	for (size_t i = 0; i < m->n_hdrs; i++)
		if (m->hdrs[i].id == SIP_HDR_ROUTE || m->hdrs[i].id == SIP_HDR_PROXY_REQUIRE ||
		    m->hdrs[i].id == SIP_HDR_PROXY_AUTHORIZATION)
			h = mix(h, slice_trim(m->hdrs[i].value));
	return h;
}

static void hash_chars(uint64_t h, char out[LOOP_HASH])
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	for (int i = 0; i < LOOP_HASH; i++)
		out[i] = b64[(h >> (6 * i)) & 63];
}

void proxy_new_branch(const struct edge_rx *rx, char out[PROXY_BRANCH_SIZE])
{
	_Static_assert(LOOP_BRANCH_LEN < PROXY_BRANCH_SIZE, "branch fits");
	char sig[32];
	edge_branch_new_signed(rx->edge, rx->via1_fixed, rx->msg->call_id, sig);
	memcpy(out, sig, EDGE_SIGNED_BRANCH_LEN);
	out[EDGE_SIGNED_BRANCH_LEN] = '.';
	hash_chars(loop_hash(rx->msg, rx->via1_fixed), out + EDGE_SIGNED_BRANCH_LEN + 1);
	out[LOOP_BRANCH_LEN] = '\0';
}

/* Whether v is a Via of ours: a branch of our shape (checked first: the
 * cheap test that fails for nearly every Via) and our sent-by. */
static bool via_ours(struct proxy *p, const struct sip_via *v)
{
	return v->branch.l > 7 + 1 + LOOP_HASH && v->branch.p[v->branch.l - LOOP_HASH - 1] == '.' &&
	       memcmp(v->branch.p, SIP_BRANCH_MAGIC, 7) == 0 &&
	       edge_is_local(p->edge, v->host, v->port);
}

bool proxy_looped(struct proxy *p, const struct edge_rx *rx)
{
	const struct sip_msg *m = rx->msg;
	struct sip_via ours;
	bool have_ours = false;
	/* most requests carry one Via, the sender's, parsed already: not ours */
	if (!via_ours(p, &m->via1) && !sip_msg_hdr(m, SIP_HDR_VIA, 1) &&
	    !memchr(m->hdrs[m->via1_hdr].value.p, ',', m->hdrs[m->via1_hdr].value.l))
		return false;
	for (size_t i = 0; i < m->n_hdrs; i++) {
		if (m->hdrs[i].id != SIP_HDR_VIA)
			continue;
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(m->hdrs[i].value, &pos, &v)) {
			if (have_ours) {
				/* the Via below one of ours: what we hashed when we sent it */
				char want[LOOP_HASH];
				hash_chars(loop_hash(m, v), want);
				if (memcmp(ours.branch.p + ours.branch.l - LOOP_HASH, want,
					   LOOP_HASH) == 0) {
					metric_inc(&m_loops);
					return true;
				}
				have_ours = false;
			}
			struct sip_via via;
			if (sip_via_parse(slice_trim(v), &via) == 0 && via_ours(p, &via)) {
				ours = via;
				have_ours = true;
			}
		}
	}
	return false;
}

void proxy_count_loop(void)
{
	metric_inc(&m_loops);
}
