/* ua: events as one line of text or one JSON object. */
#include <errno.h>
#include <stdio.h>

#include "ua/ua.h"

static const char *const names[] = {
    [UA_EV_FLOW_UP] = "flow-up",
    [UA_EV_FLOW_DOWN] = "flow-down",
    [UA_EV_REGISTERED] = "registered",
    [UA_EV_NO_OUTBOUND] = "no-outbound",
    [UA_EV_KEEPALIVE_OK] = "keepalive-ok",
    [UA_EV_KEEPALIVE_FAILED] = "keepalive-failed",
    [UA_EV_RETRY] = "retry",
    [UA_EV_REG_FAILED] = "register-failed",
    [UA_EV_AUTH_FAILED] = "auth-failed",
    [UA_EV_UNREGISTERED] = "unregistered",
    [UA_EV_REQUEST] = "request",
    [UA_EV_BAD_MESSAGE] = "bad-message",
    [UA_EV_CALL] = "call",
    [UA_EV_VERDICT] = "verdict",
    [UA_EV_DONE] = "done",
    [UA_EV_SIP_ALG] = "sip-alg",
};

const char *ua_event_name(enum ua_event_kind k)
{
	return (unsigned)k < ARRAY_SIZE(names) && names[k] ? names[k] : "?";
}

/* The registered event's words: what a person wants to know at a glance. */
static const char *registered_word(const struct ua_event *ev)
{
	if (ev->recovered)
		return "re-registered";
	return ev->refresh ? "refreshed" : "registered";
}

static void text(const struct ua_event *ev, struct buf *o)
{
	const char *name =
	    ev->kind == UA_EV_REGISTERED ? registered_word(ev) : ua_event_name(ev->kind);
	buf_printf(o, "%llu.%03llu %s", (unsigned long long)(ev->t_ms / 1000),
		   (unsigned long long)(ev->t_ms % 1000), name);
	if (ev->flow)
		buf_printf(o, " flow=%u proxy=%s", ev->flow, ev->proxy);
	if (ev->local && ev->local[0])
		buf_printf(o, " local=%s", ev->local);
	switch (ev->kind) {
	case UA_EV_FLOW_UP:
		if (ev->tls)
			buf_printf(o, " tls=%s resumed=%s", ev->tls, ev->tls_resumed ? "yes" : "no");
		break;
	case UA_EV_REGISTERED:
		buf_printf(o, " expires=%u outbound=%s", ev->expires, ev->outbound ? "yes" : "no");
		if (ev->flow_timer)
			buf_printf(o, " flow-timer=%u", ev->flow_timer);
		buf_printf(o, " %s=%.1fs", ev->outbound ? "keepalive" : "refresh",
			   (double)ev->interval_ms / 1000);
		break;
	case UA_EV_NO_OUTBOUND:
		buf_printf(o,
			   " the server did not take SIP Outbound (no Require: outbound):"
			   " plain registration, refreshed every %.0f s to keep the NAT"
			   " binding",
			   (double)ev->interval_ms / 1000);
		break;
	case UA_EV_RETRY:
		buf_printf(o, " in=%.1fs failures=%u", (double)ev->retry_ms / 1000, ev->failures);
		break;
	case UA_EV_REQUEST:
		buf_printf(o, " method=%s answered=%u", ev->method, ev->status);
		break;
	case UA_EV_REG_FAILED:
	case UA_EV_AUTH_FAILED:
		if (ev->status)
			buf_printf(o, " status=%u", ev->status);
		break;
	case UA_EV_DONE:
		buf_printf(o, " exit=%d", ev->exit_code);
		break;
	case UA_EV_SIP_ALG:
		buf_printf(o, " request=%s alg=%s", ev->method ? ev->method : "?",
			   ev->rewritten ? "yes" : "no");
		break;
	case UA_EV_CALL:
		if (ev->status)
			buf_printf(o, " status=%u", ev->status);
		break;
	case UA_EV_VERDICT:
		if (ev->verdict_in && ev->verdict_out) {
			buf_append_cstr(o, "\n");
			rtp_verdict_text(ev->verdict_in, ev->verdict_out, o);
			while (o->len && o->data[o->len - 1] == '\n')
				o->len--;
		}
		break;
	default:
		break;
	}
	if (ev->detail && ev->kind != UA_EV_NO_OUTBOUND)
		buf_printf(o, ": %s", ev->detail);
}

static void json(const struct ua_event *ev, struct buf *o)
{
	buf_printf(o, "{\"event\":\"%s\",\"t\":%llu.%03llu", ua_event_name(ev->kind),
		   (unsigned long long)(ev->t_ms / 1000), (unsigned long long)(ev->t_ms % 1000));
	if (ev->flow)
		buf_printf(o, ",\"flow\":%u,\"reg_id\":%u,\"transport\":\"%s\",\"proxy\":\"%s\"",
			   ev->flow, ev->flow, net_transport_name(ev->tp), ev->proxy);
	if (ev->local && ev->local[0])
		buf_printf(o, ",\"local\":\"%s\"", ev->local);
	switch (ev->kind) {
	case UA_EV_FLOW_UP:
		if (ev->tls)
			buf_printf(o, ",\"tls\":\"%s\",\"resumed\":%s", ev->tls,
				   ev->tls_resumed ? "true" : "false");
		break;
	case UA_EV_REGISTERED:
		buf_printf(o,
			   ",\"expires\":%u,\"outbound\":%s,\"flow_timer\":%u,\"interval_ms\":%llu,"
			   "\"refresh\":%s,\"recovered\":%s",
			   ev->expires, ev->outbound ? "true" : "false", ev->flow_timer,
			   (unsigned long long)ev->interval_ms, ev->refresh ? "true" : "false",
			   ev->recovered ? "true" : "false");
		break;
	case UA_EV_NO_OUTBOUND:
		buf_printf(o, ",\"refresh_ms\":%llu", (unsigned long long)ev->interval_ms);
		break;
	case UA_EV_RETRY:
		buf_printf(o, ",\"retry_ms\":%llu,\"failures\":%u",
			   (unsigned long long)ev->retry_ms, ev->failures);
		break;
	case UA_EV_REQUEST:
		buf_append_cstr(o, ",\"method\":");
		buf_append_json_str(o, ev->method);
		buf_printf(o, ",\"status\":%u", ev->status);
		break;
	case UA_EV_DONE:
		buf_printf(o, ",\"exit\":%d", ev->exit_code);
		break;
	case UA_EV_SIP_ALG: {
		static const char *const parts[] = {"via", "contact", "sdp"};
		buf_append_cstr(o, ",\"request\":");
		buf_append_json_str(o, ev->method ? ev->method : "");
		buf_printf(o, ",\"alg\":%s,\"rewritten\":[", ev->rewritten ? "true" : "false");
		for (unsigned i = 0, n = 0; i < ARRAY_SIZE(parts); i++)
			if (ev->rewritten & (1u << i))
				buf_printf(o, "%s\"%s\"", n++ ? "," : "", parts[i]);
		buf_append_cstr(o, "]");
		break;
	}
	case UA_EV_VERDICT:
		if (ev->verdict_in && ev->verdict_out) {
			buf_append_cstr(o, ",\"media\":");
			rtp_verdict_json(ev->verdict_in, ev->verdict_out, o);
		}
		break;
	default:
		if (ev->status)
			buf_printf(o, ",\"status\":%u", ev->status);
		break;
	}
	if (ev->detail) {
		buf_append_cstr(o, ",\"detail\":");
		buf_append_json_str(o, ev->detail);
	}
	buf_append_cstr(o, "}");
}

int ua_event_format(const struct ua_event *ev, bool as_json, struct buf *out)
{
	if (as_json)
		json(ev, out);
	else
		text(ev, out);
	return out->failed ? ENOMEM : 0;
}
