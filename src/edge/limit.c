/* edge: what bounds the load a stranger can put on the SIP edge: per-source rates, transaction caps, overload shedding. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

struct metric edge_m_rate_limited = {.name = "sip_rate_limited_total",
				     .help = "SIP messages dropped over [sip] rate_limit"};
struct metric edge_m_st_refused = {.name = "sip_transactions_refused_total",
				   .help = "requests answered 503 at a transaction cap",
				   .labels = "table=\"server\""};
struct metric edge_m_ct_refused = {.name = "sip_transactions_refused_total",
				   .help = "requests answered 503 at a transaction cap",
				   .labels = "table=\"client\""};
struct metric edge_m_overload_503 = {
    .name = "sip_overload_rejected_total",
    .help = "dialog-creating requests answered 503 because a worker was behind"};
struct metric edge_m_overload_dropped = {
    .name = "sip_overload_dropped_total",
    .help = "messages dropped because their worker's queue was past 4 x overload_queue"};

bool edge_rate_exempt(const struct edge *e, const struct net_addr *a)
{
	return net_cidr_list_has(e->exempt, e->n_exempt, a);
}

int edge_limits_init(struct edge *e, const struct conf *c)
{
	e->max_st = (size_t)conf_int(c, "sip", "max_server_transactions");
	e->max_ct = (size_t)conf_int(c, "sip", "max_client_transactions");
	e->overload_delay_ms = (unsigned)conf_int(c, "sip", "overload_delay");
	e->overload_queue = (size_t)conf_int(c, "sip", "overload_queue");
	snprintf(e->retry_after_hdr, sizeof e->retry_after_hdr, "Retry-After: %u\r\n",
		 (unsigned)conf_int(c, "sip", "retry_after"));
	const char *exempt = conf_str(c, "sip", "rate_limit_exempt");
	int perr = net_cidr_list_parse(exempt, e->exempt, ARRAY_SIZE(e->exempt), &e->n_exempt);
	if (perr) {
		LOG_E("edge", "[sip] rate_limit_exempt: want %s, got '%s'",
		      perr == ENOSPC ? "at most 16 addresses or prefixes"
		      : perr == EDOM ? "prefixes without host bits (10.0.0.0/8, not 10.1.0.0/8)"
				     : "addresses or prefixes (10.0.0.0/8, ::1)",
		      exempt);
		return EINVAL;
	}
	unsigned rate = (unsigned)conf_int(c, "sip", "rate_limit");
	if (rate) {
		int err = net_ratelimit_alloc(&e->rl, (size_t)conf_int(c, "sip", "rate_limit_sources"),
					      rate, (unsigned)conf_int(c, "sip", "rate_limit_burst"));
		if (err)
			return err;
	}
	metric_register(&edge_m_rate_limited);
	metric_register(&edge_m_st_refused);
	metric_register(&edge_m_ct_refused);
	metric_register(&edge_m_overload_503);
	metric_register(&edge_m_overload_dropped);
	return 0;
}

void edge_limits_free(struct edge *e)
{
	net_ratelimit_free(e->rl);
	e->rl = NULL;
}

bool edge_rate_ok(struct edge *e, struct worker *w, const struct flow *f)
{
	if (!e->rl || edge_rate_exempt(e, &f->remote))
		return true;
	uint64_t now = loop_now_ms(worker_loop(w));
	if (net_ratelimit_take(e->rl, &f->remote, now))
		return true;
	metric_inc(&edge_m_rate_limited);
	/* one line per 10 s at most, whoever floods: the log is no amplifier */
	uint64_t last = e->rl_logged_ms;
	if (now - last >= 10000 &&
	    atomic_compare_exchange_strong(&e->rl_logged_ms, &last, now)) {
		char a[NET_ADDR_STRLEN];
		LOG_W("edge",
		      "rate limit: dropping messages from %s (over [sip] rate_limit; %lld dropped "
		      "since start, sip_rate_limited_total)",
		      net_addr_ip_fmt(&f->remote, a, sizeof a),
		      (long long)metric_get(&edge_m_rate_limited));
	}
	return false;
}

void edge_tsx_counts(const struct edge *e, int64_t *server, int64_t *client)
{
	*server = (int64_t)e->n_st_all;
	*client = (int64_t)e->n_ct_all;
}

void edge_limit_counts(const struct edge *e, int64_t *limited, int64_t *evictions)
{
	*limited = *evictions = 0;
	if (e->rl)
		net_ratelimit_stats(e->rl, limited, evictions);
}

bool edge_creates_dialog(const struct sip_msg *m)
{
	return m->request && m->to_tag.l == 0 && m->method != SIP_ACK && m->method != SIP_CANCEL;
}

bool edge_admit(struct edge_wk *wk, const struct sip_msg *m, uint64_t rx_ms)
{
	struct edge *e = wk->edge;
	bool fresh = edge_creates_dialog(m);
	if (fresh && e->overload_delay_ms) {
		uint64_t now = loop_now_ms(worker_loop(wk->w));
		if (now > rx_ms && now - rx_ms > e->overload_delay_ms) {
			metric_inc(&edge_m_overload_503);
			return false;
		}
	}
	/* requests within dialogs (a BYE) may use an eighth more, so that calls
	 * in progress can end while new ones are refused */
	if (e->n_st_all >= e->max_st + (fresh ? 0 : e->max_st / 8)) {
		metric_inc(&edge_m_st_refused);
		return false;
	}
	/* a new dialog will need a client transaction unless answered here */
	if (fresh && !edge_handled_where_received(e, m) && e->n_ct_all >= e->max_ct) {
		metric_inc(&edge_m_ct_refused);
		return false;
	}
	return true;
}
