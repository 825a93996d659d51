/* Our domains, who may register (no-users rule, [registrar] open), whose Path we honour. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "registrar_int.h"

struct metric reg_m_foreign_domain = {
    .name = "registrar_foreign_domain_total",
    .help = "REGISTER requests for a domain not in [sip] domains, refused 403"};
struct metric reg_m_closed = {
    .name = "registrar_closed_total",
    .help =
	"REGISTER requests refused 403 by the no-users rule (public source, no [registrar] open)"};

struct metric reg_m_path_untrusted = {
    .name = "registrar_path_untrusted_total",
    .help = "REGISTER requests with a Path from a source not in [proxy] trusted, refused 403"};

/* [proxy] trusted, read here too: the registrar may run without the proxy's
 * routing (a registrar-only process still has it, but arrows point down) and
 * it decides alone whose Path it stores. */
static int trusted_init(struct registrar *r, const struct conf *c)
{
	struct slice rest = slice_cstr(conf_str(c, "proxy", "trusted")), item;
	while (slice_next_item(&rest, ',', &item)) {
		if (!item.l)
			continue;
		char one[INET6_ADDRSTRLEN + 8];
		int err = EINVAL;
		if (r->n_trusted == REG_MAX_TRUSTED)
			err = ENOSPC;
		else if (item.l < sizeof one)
			err = net_cidr_parse(slice_to_cstr(item, one, sizeof one),
					     &r->trusted[r->n_trusted]);
		if (err) {
			LOG_E("registrar", "[proxy] trusted: \"%.*s\": %s", (int)MIN(item.l, 64),
			      item.p,
			      err == ENOSPC ? "more than 64 entries"
			      : err == ERANGE
				  ? "prefix length out of range for the address family"
			      : err == EDOM ? "address has bits set beyond the prefix length"
					    : "expected an IP address or ADDRESS/PREFIX (CIDR)");
			return EINVAL;
		}
		r->n_trusted++;
	}
	return 0;
}

bool registrar_source_trusted(const struct registrar *r, const struct net_addr *src)
{
	return net_cidr_list_has(r->trusted, r->n_trusted, src);
}

void registrar_auth_source(const struct registrar *r, const struct flow *f, const struct sip_msg *m,
			   struct net_addr *out)
{
	*out = f->remote;
	struct sip_via v;
	struct slice host;
	uint16_t port;
	if (!registrar_source_trusted(r, &f->remote) || !sip_msg_via2(m, &v, NULL))
		return; /* a trunk's own request: the trunk is the party */
	sip_via_sender(&v, &host, &port);
	if (net_addr_from_host(host, port, out))
		*out = f->remote;
}

bool registrar_counts_flow(const struct registrar *r, const struct store_binding *b)
{
	return b->reg_id && !b->path[0] && !registrar_source_trusted(r, &b->flow.remote);
}

void registrar_log_path_untrusted(struct registrar *r, const struct flow *f)
{
	metric_inc(&reg_m_path_untrusted);
	int64_t n;
	if (!log_burst_due(&r->path_log, 60000, &n))
		return;
	char a[NET_ADDR_STRLEN];
	LOG_W("registrar",
	      "refused %lld REGISTER with a Path from sources not in [proxy] trusted (last %s): "
	      "a Path names where requests for the phone go; list your edge proxies there",
	      (long long)n, net_addr_fmt(&f->remote, a, sizeof a));
}

int registrar_policy_init(struct registrar *r, const struct conf *c)
{
	r->open = conf_bool(c, "registrar", "open");
	const char *direct = conf_str(c, "relay", "direct_networks");
	if (net_cidr_list_parse(direct, r->direct, REG_MAX_TRUSTED, &r->n_direct)) {
		LOG_E("registrar", "[relay] direct_networks = %s: expected at most 64 addresses or "
				   "ADDRESS/PREFIX (CIDR), comma-separated", direct);
		return EINVAL;
	}
	if (trusted_init(r, c))
		return EINVAL;
	if (gethostname(r->hostname, sizeof r->hostname))
		r->hostname[0] = '\0';
	r->hostname[sizeof r->hostname - 1] = '\0';
	char copy[1024];
	const char *spec = conf_str(c, "sip", "domains");
	if (strlen(spec) >= sizeof copy) {
		LOG_E("registrar", "[sip] domains: longer than %zu characters", sizeof copy - 1);
		return EINVAL;
	}
	snprintf(copy, sizeof copy, "%s", spec);
	char *save = NULL;
	for (char *d = strtok_r(copy, ", \t", &save); d; d = strtok_r(NULL, ", \t", &save)) {
		if (r->n_domains == REG_MAX_DOMAINS) {
			LOG_E("registrar", "[sip] domains: more than %d domains", REG_MAX_DOMAINS);
			return EINVAL;
		}
		struct reg_domain *rd = &r->domains[r->n_domains];
		rd->is_ip = net_addr_from_host(slice_cstr(d), 0, &rd->ip) == 0;
		/* a domain is a host: no user, no port (only an IPv6 address has colons) */
		if (strlen(d) >= sizeof rd->name || strchr(d, '@') ||
		    (strchr(d, ':') && !rd->is_ip)) {
			LOG_E("registrar", "[sip] domains: \"%s\" is not a host name or address",
			      d);
			return EINVAL;
		}
		snprintf(rd->name, sizeof rd->name, "%s", d);
		r->n_domains++;
	}
	return 0;
}

bool registrar_domain_is_local(const struct registrar *r, const struct sip_uri *uri)
{
	struct slice host = uri->host;
	uint16_t port = uri->port;
	struct net_addr a;
	bool ip = net_addr_from_host(host, 0, &a) == 0;
	if (r->n_domains) {
		for (size_t i = 0; i < r->n_domains; i++) {
			const struct reg_domain *d = &r->domains[i];
			if (d->is_ip ? ip && net_addr_ip_eq(&d->ip, &a)
				     : !ip && slice_eq_cstr_nocase(host, d->name))
				return true;
		}
		return false;
	}
	/* the default: this server's names and addresses. An address with a
	 * port names us only with a port we listen on (another server on this
	 * host is not us); without one it is a domain, as in REGISTER sip:1.2.3.4 */
	if (ip && port) {
		net_addr_set_port(&a, port);
		return edge_addr_is_local(r->edge, &a);
	}
	if (ip)
		return edge_ip_is_local(r->edge, &a);
	const char *adv = edge_advertise(r->edge);
	return (adv[0] && slice_eq_cstr_nocase(host, adv)) ||
	       (r->hostname[0] && slice_eq_cstr_nocase(host, r->hostname));
}

bool registrar_has_users(const struct registrar *r)
{
	return r->creds && store_cred_count(r->creds) > 0;
}

bool registrar_lan_default(const struct registrar *r, const struct net_addr *src)
{
	return !registrar_has_users(r) && net_addr_is_private(src);
}

static void log_closed(struct registrar *r, const struct flow *f)
{
	int64_t n;
	if (!log_burst_due(&r->closed_log, 60000, &n))
		return;
	char a[NET_ADDR_STRLEN];
	LOG_W("registrar",
	      "refused %lld REGISTER from public sources (last %s): no users are configured, so "
	      "only loopback and private sources may register; add one with `pinhole user add` "
	      "or, to let anyone register, set [registrar] open = yes (dangerous)",
	      (long long)n, net_addr_fmt(&f->remote, a, sizeof a));
}

uint16_t registrar_admit(struct registrar *r, const struct edge_rx *rx, const char **reason)
{
	const struct sip_msg *m = rx->msg;
	/* RFC 3261 10.3 step 1: the Request-URI names the domain, the To the AOR */
	/* the answer depends on host and port only: the usual REGISTER names
	 * the same domain in both, and is checked once */
	bool same = m->ruri.port == m->to.uri.port && slice_eq(m->ruri.host, m->to.uri.host);
	if (!registrar_domain_is_local(r, &m->ruri) ||
	    (!same && !registrar_domain_is_local(r, &m->to.uri))) {
		metric_inc(&reg_m_foreign_domain);
		*reason = "Forbidden (Domain Not Served Here)";
		return 403;
	}
	if (!r->open && !registrar_has_users(r) && !net_addr_is_private(&rx->flow.remote)) {
		metric_inc(&reg_m_closed);
		log_closed(r, &rx->flow);
		*reason = "Forbidden (Registration Closed)";
		return 403;
	}
	return 0;
}

void registrar_log_rule(const struct registrar *r)
{
	if (registrar_has_users(r))
		LOG_I("registrar",
		      "%zu users: REGISTER and requests from local users need digest "
		      "authentication; the no-users source rule is off",
		      store_cred_count(r->creds));
	else if (r->open)
		LOG_W("registrar",
		      "no users configured and [registrar] open = yes: accepting every "
		      "REGISTER from anywhere, without authentication");
	else
		LOG_I("registrar",
		      "no users configured: accepting REGISTER (and relaying) only from loopback, "
		      "private and shared (100.64.0.0/10) sources; add users with `pinhole user "
		      "add`, or set [registrar] open = yes to accept any source (dangerous)");
}
