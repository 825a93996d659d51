/* NAT verdict per binding: what a REGISTER's Via and Contact claim against where its packet came
 * from (docs/nat-evidence.md). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "registrar_int.h"

#define VERDICT_HELP "REGISTERs that wrote bindings, by the NAT verdict (docs/nat-evidence.md)"
static struct metric m_verdict[REG_NAT_N] = {
    [REG_NAT_UNKNOWN] = {.name = "registrar_nat_verdicts_total",
			 .help = VERDICT_HELP,
			 .labels = "verdict=\"unknown\""},
    [REG_NAT_NONE] = {.name = "registrar_nat_verdicts_total",
		      .help = VERDICT_HELP,
		      .labels = "verdict=\"no-nat\""},
    [REG_NAT] = {.name = "registrar_nat_verdicts_total",
		 .help = VERDICT_HELP,
		 .labels = "verdict=\"nat\""},
    [REG_NAT_ALG] = {.name = "registrar_nat_verdicts_total",
		     .help = VERDICT_HELP,
		     .labels = "verdict=\"nat-alg-suspected\""},
    [REG_NAT_STUN] = {.name = "registrar_nat_verdicts_total",
		      .help = VERDICT_HELP,
		      .labels = "verdict=\"stun-announced\""},
};
static struct metric m_changed = {
    .name = "registrar_nat_addresses_changed_total",
    .help = "REGISTERs whose Via/Contact addresses disagree with the same phone's previous "
	    "REGISTER (an ALG or a phone rewriting its Contact)"};

void registrar_nat_register_metrics(void)
{
	for (int i = 0; i < REG_NAT_N; i++)
		metric_register(&m_verdict[i]);
	metric_register(&m_changed);
}

void registrar_nat_count(uint8_t verdict, bool changed)
{
	if (verdict < REG_NAT_N)
		metric_inc(&m_verdict[verdict]);
	if (changed)
		metric_inc(&m_changed);
}

const char *registrar_nat_verdict_name(unsigned v)
{
	static const char *const names[REG_NAT_N] = {[REG_NAT_UNKNOWN] = "unknown",
						     [REG_NAT_NONE] = "no-nat",
						     [REG_NAT] = "nat",
						     [REG_NAT_ALG] = "nat-alg-suspected",
						     [REG_NAT_STUN] = "stun-announced"};
	return v < REG_NAT_N ? names[v] : "unknown";
}

const char *registrar_media_evidence_name(unsigned m)
{
	static const char *const names[] = {"-", "no-media", "media-as-announced",
					    "media-other-port", "media-other-ip"};
	return m < ARRAY_SIZE(names) ? names[m] : "-";
}

static const char *const ev_names[] = {
    "via=source",    "contact=source",	 "via-private",	   "contact-private", "via-other",
    "contact-other", "stun-from-source", "direct-network", "private-source",  "addresses-changed",
};

int registrar_nat_evidence_fmt(uint16_t ev, char *out, size_t cap)
{
	size_t n = 0;
	out[0] = '\0';
	for (unsigned i = 0; i < ARRAY_SIZE(ev_names); i++) {
		if (!(ev & (1u << i)))
			continue;
		int w = snprintf(out + n, cap - n, "%s%s", n ? "," : "", ev_names[i]);
		if (w < 0 || (size_t)w >= cap - n)
			return ENOSPC;
		n += (size_t)w;
	}
	if (!n)
		snprintf(out, cap, "-");
	return 0;
}

const char *registrar_nat_evidence_name(unsigned bit)
{
	return bit < ARRAY_SIZE(ev_names) ? ev_names[bit] : NULL;
}

/* How a claimed host:port compares with the packet's source. */
enum claim { CLAIM_NONE, CLAIM_SOURCE, CLAIM_PRIVATE, CLAIM_OTHER };

static enum claim compare(struct slice host, uint16_t port, const struct registrar_nat_in *in)
{
	struct net_addr a;
	if (!host.l || net_addr_from_host(host, 0, &a))
		return CLAIM_NONE; /* a name, or nothing: no address to compare */
	bool src_private = net_addr_is_private(&in->src);
	if (net_addr_is_private(&a) && !src_private)
		return CLAIM_PRIVATE;
	/* a stream's source port is the connection's, not the one in Via */
	if (net_addr_ip_eq(&a, &in->src) &&
	    (in->tp != NET_UDP || (port ? port : 5060) == net_addr_port(&in->src)))
		return CLAIM_SOURCE;
	return CLAIM_OTHER;
}

void registrar_nat_judge(const struct registrar_nat_in *in, uint8_t *verdict, uint16_t *evidence)
{
	uint16_t ev = 0;
	enum claim v = in->via ? compare(in->via->host, in->via->port, in) : CLAIM_NONE;
	enum claim c = in->contact ? compare(in->contact->host, in->contact->port, in) : CLAIM_NONE;
	ev |= v == CLAIM_SOURCE	   ? REG_EV_VIA_IS_SOURCE
	      : v == CLAIM_PRIVATE ? REG_EV_VIA_PRIVATE
	      : v == CLAIM_OTHER   ? REG_EV_VIA_OTHER
				   : 0;
	ev |= c == CLAIM_SOURCE	   ? REG_EV_CONTACT_IS_SOURCE
	      : c == CLAIM_PRIVATE ? REG_EV_CONTACT_PRIVATE
	      : c == CLAIM_OTHER   ? REG_EV_CONTACT_OTHER
				   : 0;
	if (in->stun_seen)
		ev |= REG_EV_STUN_SEEN;
	if (in->direct)
		ev |= REG_EV_DIRECT;
	if (net_addr_is_private(&in->src))
		ev |= REG_EV_PRIVATE_SOURCE;
	uint8_t out;
	if (v == CLAIM_PRIVATE || c == CLAIM_PRIVATE) {
		out = REG_NAT; /* the honest NATed phone: its own address, rport does the rest */
	} else if (v == CLAIM_SOURCE && (c == CLAIM_SOURCE || c == CLAIM_NONE)) {
		/* The message names exactly where its packet came from. Without
		 * NAT that is the truth; behind one, something wrote the NAT's
		 * address in: the phone from a STUN answer on this very flow, or
		 * an ALG on the path. Only a source we know reaches us directly
		 * (or a private one: no NAT between it and us) is believed. */
		out = in->direct || net_addr_is_private(&in->src) ? REG_NAT_NONE
		      : in->stun_seen				  ? REG_NAT_STUN
								  : REG_NAT_ALG;
	} else if (v == CLAIM_NONE && c == CLAIM_NONE) {
		out = in->direct ? REG_NAT_NONE : REG_NAT_UNKNOWN;
	} else {
		out = REG_NAT; /* a public address that is not the source: a NAT changed it */
	}
	*verdict = out;
	*evidence = ev;
}

static size_t claim_part(char *out, struct slice host, unsigned port)
{
	size_t l = MIN(host.l, 256);
	if (l) /* an absent host is a NULL slice */
		memcpy(out, host.p, l);
	out[l++] = ':';
	char d[8];
	size_t k = sizeof d;
	do {
		d[--k] = (char)('0' + port % 10);
		port /= 10;
	} while (port);
	memcpy(out + l, d + k, sizeof d - k);
	return l + sizeof d - k;
}

/* FNV-1a over the claimed Via sent-by and Contact host:port: what the
 * phone (or the path) says its address is, to compare across requests.
 * The text is "via-host:port|contact-host:port" (hosts cut at 256 bytes),
 * put together by hand: snprintf was a tenth of a REGISTER's instructions. */
uint32_t registrar_nat_claim(const struct sip_via *via, const struct sip_uri *contact)
{
	char buf[2 * 300];
	size_t n = claim_part(buf, via ? via->host : SLICE_NULL, via ? via->port : 0);
	buf[n++] = '|';
	n += claim_part(buf + n, contact ? contact->host : SLICE_NULL, contact ? contact->port : 0);
	uint32_t h = (uint32_t)hash_fnv1a_nocase(buf, n);
	return h ? h : 1;
}

/* ---- one REGISTER ---- */

/* How long a STUN Binding on our SIP port counts as the source of the
 * address a REGISTER claims: phones ask just before registering, and
 * refresh their keepalives well within this. */
#define NAT_STUN_WINDOW_MS (300 * 1000)

/* The NAT verdict of a REGISTER (nat.c). Through a trusted edge (a Path
 * from [proxy] trusted) the phone's source is what the edge wrote into the
 * phone's Via (received, rport), which we believe of a trusted hop; the
 * STUN it may have sent went to the edge, not here. */
void registrar_nat_request(struct registrar *r, const struct flow *f, const struct sip_msg *m,
			   const struct sip_uri *contact, bool has_path, struct sip_via *pvia,
			   uint8_t *verdict, uint16_t *evidence, uint32_t *claim)
{
	struct registrar_nat_in in = {.src = f->remote, .tp = f->tp, .via = &m->via1};
	struct sip_via pv;
	if (has_path && sip_msg_via2(m, &pv, NULL)) {
		struct slice host;
		uint16_t port;
		sip_via_sender(&pv, &host, &port);
		if (net_addr_from_host(host, port, &in.src) == 0) {
			*pvia = pv;
			in.via = pvia;
			in.tp = NET_UDP;
			if (!slice_eq_cstr_nocase(pv.transport, "UDP"))
				in.tp = NET_TCP;
		} else {
			in.src = f->remote;
		}
	} else {
		in.stun_seen = edge_stun_seen(r->edge, &in.src, time_mono_ms(), NAT_STUN_WINDOW_MS);
	}
	in.contact = contact;
	in.direct = net_cidr_list_has(r->direct, r->n_direct, &in.src) ||
		    (!has_path && registrar_source_trusted(r, &in.src));
	registrar_nat_judge(&in, verdict, evidence);
	*claim = registrar_nat_claim(in.via, in.contact);
}

void registrar_note_media(struct registrar *r, const char *aor, const struct net_addr *src,
			  unsigned m)
{
	store_nat_media_set(r->store, slice_cstr(aor), src, (uint8_t)m);
}
