/* What a probe result means for SIP, and how it is printed (text or JSON). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "probe.h"

#define KEEPALIVE_DEFAULT_S 25 /* below the 30 s UDP timeout many NATs use */
#define KEEPALIVE_MIN_S 5

const char *probe_behaviour_name(enum probe_behaviour b)
{
	switch (b) {
	case PROBE_NO_NAT:
		return "no-nat";
	case PROBE_EI:
		return "endpoint-independent";
	case PROBE_AD:
		return "address-dependent";
	case PROBE_APD:
		return "address-and-port-dependent";
	case PROBE_UNKNOWN:
		break;
	}
	return "unknown";
}

static void note(struct probe_verdict *v, const char *s)
{
	if (v->nnotes < ARRAY_SIZE(v->notes))
		v->notes[v->nnotes++] = s;
}

void probe_verdict(const struct probe_result *r, struct probe_verdict *v)
{
	memset(v, 0, sizeof *v);
	v->symmetric_ok = PROBE_NA;
	v->media_relay = "unknown";
	if (!r->answered)
		return;

	if (!r->nat) {
		v->keepalive_s = 0;
		v->symmetric_ok = PROBE_YES;
		v->media_relay = "not needed";
		note(v, "no NAT between this host and the server: the local address is public");
		if (r->filtering == PROBE_AD || r->filtering == PROBE_APD)
			note(v,
			     "but a stateful firewall filters inbound traffic: keep flows alive");
		return;
	}

	/* RFC 5626 4.4.1 asks for keepalives well inside the binding lifetime:
	 * 80% of what was measured, or the lifetime less 5 s when that is smaller */
	if (r->lifetime_tested && r->lifetime_hi_s) {
		unsigned lo = r->lifetime_lo_s;
		unsigned k = MIN(lo * 4 / 5, lo > 5 ? lo - 5 : 0);
		v->keepalive_s = MAX(k, (unsigned)KEEPALIVE_MIN_S);
		v->keepalive_measured = true;
		if (lo < 10)
			note(v, "the NAT forgets idle UDP bindings very fast: prefer SIP over TCP");
	} else if (r->lifetime_tested) {
		/* outlived the wait: anything below it is known to work */
		v->keepalive_s =
		    MAX(MIN(r->lifetime_lo_s * 4 / 5, 120u), (unsigned)KEEPALIVE_MIN_S);
		v->keepalive_measured = true;
	} else {
		v->keepalive_s = KEEPALIVE_DEFAULT_S;
		note(v, "binding lifetime not measured: the keepalive interval is a safe default");
	}

	/* Signalling goes to one proxy address, so the mapping type does not
	 * matter; what matters is that answers come from where requests went. */
	v->symmetric_ok = PROBE_YES;
	if (r->filtering == PROBE_APD || r->filtering == PROBE_AD || r->filtering == PROBE_UNKNOWN)
		note(v, "the proxy must answer from the exact address and port the phone sends to "
			"(pinhole's edge does)");

	switch (r->mapping) {
	case PROBE_EI:
		if (r->filtering == PROBE_EI) {
			v->media_relay = "not needed";
			note(v,
			     "full-cone behaviour: the STUN-mapped address reaches this host from "
			     "anywhere");
		} else {
			v->media_relay = "needed without ICE";
			note(v, "endpoint-independent mapping: ICE or a peer that sends first gets "
				"through; a latching relay covers clients without ICE");
		}
		break;
	case PROBE_AD:
	case PROBE_APD:
		v->media_relay = "needed";
		note(v,
		     "symmetric NAT: the mapping changes per destination, so addresses learned "
		     "via STUN are useless to peers; media needs a relay (pinhole relay or TURN)");
		break;
	default:
		v->media_relay = "unknown";
		break;
	}
	if (r->hairpin == PROBE_NO)
		note(v, "no hairpinning: calls between phones behind this NAT need the relay or "
			"ICE host candidates");
}

static const char *fmt_addr(const struct sockaddr_storage *ss, char *b, size_t l)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	uint16_t port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
		port = ntohs(in->sin_port);
		snprintf(b, l, "%s:%u", ip, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
		port = ntohs(in6->sin6_port);
		snprintf(b, l, "[%s]:%u", ip, port);
	} else {
		snprintf(b, l, "-");
	}
	return b;
}

static const char *tri_text(enum probe_tri t)
{
	return t == PROBE_YES ? "yes" : t == PROBE_NO ? "no" : "not tested";
}

static const char *tri_json(enum probe_tri t)
{
	return t == PROBE_YES ? "true" : t == PROBE_NO ? "false" : "null";
}

int probe_report_text(const struct probe_result *r, const struct probe_verdict *v, struct buf *out)
{
	char a[96], b[96];
	if (!r->answered) {
		buf_printf(out, "error: %s\n", r->error[0] ? r->error : "no answer");
		return out->failed ? ENOMEM : 0;
	}
	buf_printf(out, "local address:      %s\n", fmt_addr(&r->local, a, sizeof a));
	buf_printf(out, "mapped address:     %s%s\n", fmt_addr(&r->mapped, a, sizeof a),
		   r->nat ? "" : " (no NAT)");
	buf_printf(out, "server:             %s, RFC 5780 %s%s%s\n",
		   fmt_addr(&r->origin, a, sizeof a), r->rfc5780 ? "yes (other address " : "no",
		   r->rfc5780 ? fmt_addr(&r->other, b, sizeof b) : "", r->rfc5780 ? ")" : "");
	buf_printf(out, "mapping behaviour:  %s\n", probe_behaviour_name(r->mapping));
	buf_printf(out, "filtering:          %s\n",
		   r->filtering ? probe_behaviour_name(r->filtering) : "unknown");
	buf_printf(out, "hairpinning:        %s\n", tri_text(r->hairpin));
	buf_printf(out, "port preserved:     %s\n", tri_text(r->port_preserved));
	if (!r->lifetime_tested)
		buf_printf(out, "binding lifetime:   not tested\n");
	else if (r->lifetime_hi_s)
		buf_printf(out, "binding lifetime:   %u s (alive at %u s, gone at %u s)\n",
			   r->lifetime_lo_s, r->lifetime_lo_s, r->lifetime_hi_s);
	else
		buf_printf(out, "binding lifetime:   more than %u s (longest wait tested)\n",
			   r->lifetime_lo_s);
	buf_printf(out, "\nverdict for SIP:\n");
	if (v->keepalive_s)
		buf_printf(out, "  keepalive every %u s%s\n", v->keepalive_s,
			   v->keepalive_measured ? "" : " (default; lifetime not measured)");
	else
		buf_printf(out, "  no keepalive needed for the NAT\n");
	buf_printf(out, "  symmetric response + keepalives: %s\n",
		   v->symmetric_ok == PROBE_YES ? "enough for signalling" : "unknown");
	buf_printf(out, "  media relay: %s\n", v->media_relay);
	for (unsigned i = 0; i < v->nnotes; i++)
		buf_printf(out, "  - %s\n", v->notes[i]);
	if (r->error[0])
		buf_printf(out, "note: %s\n", r->error);
	return out->failed ? ENOMEM : 0;
}

static void json_str(struct buf *out, const char *s)
{
	buf_append(out, "\"", 1);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_printf(out, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			buf_printf(out, "\\u%04x", (unsigned char)*s);
		else
			buf_append(out, s, 1);
	}
	buf_append(out, "\"", 1);
}

int probe_report_json(const struct probe_result *r, const struct probe_verdict *v, struct buf *out)
{
	char a[96];
	buf_printf(out, "{\"answered\":%s", r->answered ? "true" : "false");
	if (r->answered) {
		buf_printf(out, ",\"local\":\"%s\"", fmt_addr(&r->local, a, sizeof a));
		buf_printf(out, ",\"mapped\":\"%s\"", fmt_addr(&r->mapped, a, sizeof a));
		buf_printf(out, ",\"response_origin\":\"%s\"", fmt_addr(&r->origin, a, sizeof a));
		buf_printf(out, ",\"rfc5780\":%s", r->rfc5780 ? "true" : "false");
		if (r->rfc5780)
			buf_printf(out, ",\"other_address\":\"%s\"",
				   fmt_addr(&r->other, a, sizeof a));
		buf_printf(out, ",\"nat\":%s", r->nat ? "true" : "false");
		buf_printf(out, ",\"mapping\":\"%s\"", probe_behaviour_name(r->mapping));
		buf_printf(out, ",\"filtering\":\"%s\"", probe_behaviour_name(r->filtering));
		buf_printf(out, ",\"hairpinning\":%s", tri_json(r->hairpin));
		buf_printf(out, ",\"port_preserved\":%s", tri_json(r->port_preserved));
		if (r->lifetime_tested)
			buf_printf(out,
				   ",\"lifetime\":{\"alive_s\":%u,\"gone_s\":%u,"
				   "\"exceeds_max_wait\":%s}",
				   r->lifetime_lo_s, r->lifetime_hi_s,
				   r->lifetime_hi_s ? "false" : "true");
		else
			buf_printf(out, ",\"lifetime\":null");
		buf_printf(out,
			   ",\"verdict\":{\"keepalive_interval_s\":%u,\"keepalive_measured\":%s,"
			   "\"symmetric_response_sufficient\":%s,\"media_relay\":",
			   v->keepalive_s, v->keepalive_measured ? "true" : "false",
			   tri_json(v->symmetric_ok));
		json_str(out, v->media_relay);
		buf_printf(out, ",\"notes\":[");
		for (unsigned i = 0; i < v->nnotes; i++) {
			if (i)
				buf_append(out, ",", 1);
			json_str(out, v->notes[i]);
		}
		buf_printf(out, "]}");
	}
	if (r->error[0]) {
		buf_printf(out, ",\"error\":");
		json_str(out, r->error);
	}
	buf_printf(out, "}\n");
	return out->failed ? ENOMEM : 0;
}
