/* Registrations as JSON and as a table, for pinhole ctl. */
#include <errno.h>
#include <stdio.h>

#include "registrar_int.h"

struct dump {
	struct buf *out;
	int64_t now;
	bool first;
};

static int dump_one(const struct store_binding *b, void *arg)
{
	struct dump *d = arg;
	struct buf *o = d->out;
	char src[NET_ADDR_STRLEN], flow[NET_ADDR_STRLEN + 32];
	net_addr_fmt(&b->flow.remote, src, sizeof src);
	flow_fmt(&b->flow, flow, sizeof flow);
	buf_append_cstr(o, d->first ? "\n  {" : ",\n  {");
	d->first = false;
	buf_append_cstr(o, "\"aor\":");
	buf_append_json_str(o, b->aor);
	buf_append_cstr(o, ",\"contact\":");
	buf_append_json_str(o, b->contact);
	char local[NET_ADDR_STRLEN];
	net_addr_fmt(&b->flow.local, local, sizeof local);
	buf_printf(o,
		   ",\"source\":\"%s\",\"transport\":\"%s\",\"flow\":\"%s\","
		   "\"local\":\"%s\",\"conn_id\":%llu",
		   src, net_transport_name(b->flow.tp), flow, local,
		   (unsigned long long)b->flow.conn_id);
	buf_printf(o, ",\"expires_in\":%lld,\"behind_nat\":%s,\"q\":%u.%03u",
		   (long long)(b->expires_at - d->now), b->behind_nat ? "true" : "false",
		   b->q / 1000, b->q % 1000);
	buf_append_cstr(o, ",\"instance\":");
	buf_append_json_str(o, b->instance);
	buf_printf(o, ",\"reg_id\":%u,\"path\":", b->reg_id);
	buf_append_json_str(o, b->path);
	buf_append_cstr(o, ",\"user_agent\":");
	buf_append_json_str(o, b->user_agent);
	buf_printf(o, ",\"nat\":{\"verdict\":\"%s\",\"evidence\":[",
		   registrar_nat_verdict_name(b->nat_verdict));
	for (unsigned i = 0, n = 0; registrar_nat_evidence_name(i); i++)
		if (b->nat_evidence & (1u << i))
			buf_printf(o, "%s\"%s\"", n++ ? "," : "", registrar_nat_evidence_name(i));
	buf_printf(o, "],\"media\":\"%s\"}", registrar_media_evidence_name(b->nat_media));
	buf_printf(o,
		   ",\"keepalive\":{\"last_sent\":%lld,\"last_answer\":%lld,"
		   "\"answered_ago\":%lld,\"failures\":%u,\"unreachable\":%s}}",
		   (long long)b->ka.last_sent, (long long)b->ka.last_answer,
		   b->ka.last_answer ? (long long)(d->now - b->ka.last_answer) : -1LL,
		   b->ka.failures, b->ka.unreachable ? "true" : "false");
	return 0;
}

int registrar_dump_json(struct registrar *r, struct buf *out)
{
	struct dump d = {.out = out, .now = time_wall_s(), .first = true};
	buf_append_cstr(out, "{\"registrations\":[");
	int err = store_foreach(r->store, dump_one, &d);
	buf_append_cstr(out, d.first ? "]}\n" : "\n]}\n");
	return err ? err : (out->failed ? ENOMEM : 0);
}

/* One line per binding; an outbound one (instance, reg-id) or one behind an
 * edge (Path) gets a second, indented line with those. */
static int table_one(const struct store_binding *b, void *arg)
{
	struct dump *d = arg;
	char src[NET_ADDR_STRLEN], local[NET_ADDR_STRLEN], flow[2 * NET_ADDR_STRLEN + 40], ka[32];
	net_addr_fmt(&b->flow.remote, src, sizeof src);
	net_addr_fmt(&b->flow.local, local, sizeof local);
	if (b->flow.conn_id)
		snprintf(flow, sizeof flow, "%s %s<-%s #%llu", net_transport_name(b->flow.tp),
			 local, src, (unsigned long long)b->flow.conn_id);
	else
		snprintf(flow, sizeof flow, "%s %s<-%s", net_transport_name(b->flow.tp), local,
			 src);
	if (b->ka.unreachable)
		snprintf(ka, sizeof ka, "UNREACHABLE");
	else if (b->ka.last_answer)
		snprintf(ka, sizeof ka, "%llds ago", (long long)(d->now - b->ka.last_answer));
	else
		snprintf(ka, sizeof ka, "-");
	buf_printf(d->out, "%-28s %-40s %-50s %6lld %-3s %-11s %s\n", b->aor, b->contact, flow,
		   (long long)(b->expires_at - d->now), b->behind_nat ? "yes" : "no", ka,
		   registrar_nat_verdict_name(b->nat_verdict));
	char ev[256];
	registrar_nat_evidence_fmt(b->nat_evidence, ev, sizeof ev);
	buf_printf(d->out, "%-28s nat=%s evidence=%s media=%s\n", "",
		   registrar_nat_verdict_name(b->nat_verdict), ev,
		   registrar_media_evidence_name(b->nat_media));
	if (b->instance[0] || b->reg_id || b->path[0])
		buf_printf(d->out, "%-28s instance=%s reg-id=%u path=%s\n", "",
			   b->instance[0] ? b->instance : "-", b->reg_id,
			   b->path[0] ? b->path : "-");
	return 0;
}

int registrar_dump_text(struct registrar *r, struct buf *out)
{
	struct dump d = {.out = out, .now = time_wall_s(), .first = true};
	buf_printf(out, "%-28s %-40s %-50s %6s %-3s %-11s %s\n", "AOR", "CONTACT",
		   "FLOW (TRANSPORT LOCAL<-REMOTE #CONN)", "EXPIRES", "NAT", "KEEPALIVE",
		   "NAT VERDICT");
	int err = store_foreach(r->store, table_one, &d);
	return err ? err : (out->failed ? ENOMEM : 0);
}
