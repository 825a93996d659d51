/* ua: the user agent as a whole: its flows, their failures and recovery (RFC 5626 4.5),
 * incoming requests, shutdown. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ua_int.h"

static void open_flow(struct ua_flow *f);

void ua_emit(struct ua_flow *f, struct ua_event *ev)
{
	struct ua *ua = f->ua;
	ev->t_ms = time_mono_ms() - ua->t0;
	ev->flow = f->idx + 1;
	ev->tp = f->px->tp;
	ev->proxy = f->proxy_s;
	ev->local = f->fd >= 0 ? f->local_s : "";
	ua->h(ev, ua->arg);
}

static void emit_done(struct ua *ua)
{
	if (ua->done)
		return;
	ua->done = true;
	timer_cancel(&ua->t_unreg);
	struct ua_event ev = {.kind = UA_EV_DONE,
			      .t_ms = time_mono_ms() - ua->t0,
			      .proxy = "",
			      .local = "",
			      .exit_code = ua->exit_code};
	ua->h(&ev, ua->arg);
}

/* The code that failed flows stand for, the most telling first. */
static int worst_code(const struct ua *ua)
{
	static const int order[] = {UA_EXIT_AUTH, UA_EXIT_TLS, UA_EXIT_REFUSED, UA_EXIT_TIMEOUT,
				    UA_EXIT_ERROR};
	for (size_t k = 0; k < ARRAY_SIZE(order); k++)
		for (unsigned i = 0; i < ua->n; i++)
			if (!ua->f[i].ever_registered && ua->f[i].final_code == order[k])
				return order[k];
	return UA_EXIT_OK;
}

static void check_done(struct ua *ua)
{
	for (unsigned i = 0; i < ua->n; i++)
		if (ua->f[i].st != UAF_DONE)
			return;
	emit_done(ua);
}

static void unreg_timeout(void *arg)
{
	struct ua *ua = arg;
	for (unsigned i = 0; i < ua->n; i++) {
		struct ua_flow *f = &ua->f[i];
		if (f->st == UAF_DONE)
			continue;
		if (f->st == UAF_UNREGISTERING)
			ua_flow_unregistered(f, false, "no answer to the unREGISTER");
		ua_reg_stop(f);
		uaf_close(f);
		f->st = UAF_DONE;
	}
	emit_done(ua);
}

void ua_shutdown(struct ua *ua)
{
	if (ua->shutting_down || ua->done)
		return;
	if (ua_call_active(ua)) {
		/* CANCEL or BYE first; the call's end calls us again */
		ua->shutdown_pending = true;
		ua_call_hangup(ua);
		if (ua_call_active(ua))
			return;
		if (ua->shutting_down || ua->done)
			return;
	}
	ua->shutting_down = true;
	if (!ua->exit_code && ua->call_exit)
		ua->exit_code = ua->call_exit;
	if (!ua->exit_code)
		ua->exit_code =
		    ua->c.once ? worst_code(ua) : (ua->any_registered ? 0 : worst_code(ua));
	for (unsigned i = 0; i < ua->n; i++) {
		struct ua_flow *f = &ua->f[i];
		timer_cancel(&f->t_retry);
		uaf_ka_stop(f);
		if (f->connected && (f->registered || f->in_flight)) {
			/* an attempt in flight may have made a binding too */
			ua_reg_stop(f);
			ua_reg_start(f, 0);
		} else {
			ua_reg_stop(f);
			uaf_close(f);
			f->st = UAF_DONE;
		}
	}
	timer_start(ua->loop, &ua->t_unreg,
		    ua->c.unregister_wait_ms ? ua->c.unregister_wait_ms : 5000, unreg_timeout, ua);
	check_done(ua);
}

void ua_flow_unregistered(struct ua_flow *f, bool ok, const char *detail)
{
	struct ua_event ev = {.kind = UA_EV_UNREGISTERED,
			      .detail = ok	 ? NULL
					: detail ? detail
						 : "not confirmed"};
	ua_emit(f, &ev);
	ua_reg_stop(f);
	uaf_close(f);
	f->registered = false;
	f->st = UAF_DONE;
	check_done(f->ua);
}

static bool other_flow_ok(const struct ua_flow *f)
{
	for (unsigned i = 0; i < f->ua->n; i++)
		if (&f->ua->f[i] != f && f->ua->f[i].st == UAF_REGISTERED)
			return true;
	return false;
}

static void retry_due(void *arg)
{
	open_flow(arg);
}

/* RFC 5626 4.5: wait before forming the flow again. */
static void schedule_retry(struct ua_flow *f)
{
	struct ua *ua = f->ua;
	f->failures++;
	uint64_t bound = ua_backoff_bound_ms(f->failures, other_flow_ok(f), ua->c.backoff_ok_s,
					     ua->c.backoff_all_s, ua->c.backoff_max_s);
	uint64_t ms = ua_backoff_ms(bound, (double)rand_u32() / 4294967296.0);
	struct ua_event ev = {.kind = UA_EV_RETRY, .retry_ms = ms, .failures = f->failures};
	ua_emit(f, &ev);
	timer_start(ua->loop, &f->t_retry, ms, retry_due, f);
}

void ua_flow_failed(struct ua_flow *f, const char *cause, int code)
{
	struct ua *ua = f->ua;
	if (f->st == UAF_DONE || (f->st == UAF_IDLE && f->fd < 0))
		return;
	bool was_registered = f->registered;
	bool successful = was_registered && (!f->outbound || f->ka_answered) && !f->was_down;
	if (f->fd >= 0) {
		struct ua_event ev = {.kind = UA_EV_FLOW_DOWN, .detail = cause};
		ua_emit(f, &ev);
	}
	ua->stats.flow_failures++;
	ua_reg_stop(f);
	uaf_close(f);
	f->registered = false;
	f->final_code = code;
	if (was_registered || f->ever_registered)
		f->was_down = true;
	if (ua->shutting_down) {
		f->st = UAF_DONE;
		check_done(ua);
		return;
	}
	f->st = ua->c.once ? UAF_DONE : UAF_IDLE;
	if (!ua->any_registered && code == UA_EXIT_AUTH) {
		/* a wrong password is wrong on every flow */
		ua->exit_code = code;
		f->st = UAF_DONE;
		ua_shutdown(ua);
		return;
	}
	if (!ua->any_registered || ua->c.once) {
		/* nothing has worked yet (or a single check): the run ends once
		 * no flow is still trying, with the reason as its exit code */
		for (unsigned i = 0; i < ua->n; i++) {
			const struct ua_flow *o = &ua->f[i];
			if (o->st == UAF_CONNECTING || o->st == UAF_REGISTERING ||
			    (o->st == UAF_REGISTERED && !ua->c.once) || timer_active(&o->t_retry))
				return;
		}
		if (!ua->c.once)
			ua->exit_code = worst_code(ua);
		ua_shutdown(ua);
		return;
	}
	if (successful && f->failures == 0) {
		/* 4.5: a flow that worked is replaced at once; only failures
		 * to form it again wait */
		timer_start(ua->loop, &f->t_retry, 0, retry_due, f);
		return;
	}
	schedule_retry(f);
}

void ua_flow_registered(struct ua_flow *f)
{
	struct ua *ua = f->ua;
	f->was_down = false;
	f->ever_registered = true;
	if (!f->outbound)
		f->failures = 0; /* 4.5: no keepalives, so registered is successful */
	if (ua->c.call_uri[0] && !ua->call_started && !ua->shutting_down && !ua->c.load)
		ua_call_start(f);
	if (!ua->any_registered) {
		ua->any_registered = true;
		/* flows that failed before anything worked now retry by 4.5 */
		for (unsigned i = 0; i < ua->n; i++) {
			struct ua_flow *o = &ua->f[i];
			if (o != f && o->st == UAF_IDLE && !timer_active(&o->t_retry))
				schedule_retry(o);
		}
	}
	if (ua->c.once) {
		for (unsigned i = 0; i < ua->n; i++)
			if (ua->f[i].st != UAF_REGISTERED && ua->f[i].st != UAF_DONE)
				return;
		ua_shutdown(ua);
	}
}

static void open_flow(struct ua_flow *f)
{
	f->ka_answered = false;
	f->has_mapped = false;
	int err = uaf_open(f);
	if (err) {
		char why[128];
		snprintf(why, sizeof why, "cannot open a socket to %s: %s", f->proxy_s,
			 strerror(err));
		/* no socket: a failed attempt to form the flow */
		f->st = UAF_REGISTERING;
		struct ua_event ev = {.kind = UA_EV_REG_FAILED, .detail = why};
		ua_emit(f, &ev);
		ua_flow_failed(f, why, UA_EXIT_ERROR);
		return;
	}
	if (ua_stream(f->px)) {
		f->st = UAF_CONNECTING;
		return; /* flow.c reports it up and registers once connected */
	}
	struct ua_event ev = {.kind = UA_EV_FLOW_UP};
	ua_emit(f, &ev);
	ua_flow_ready(f);
}

void ua_flow_ready(struct ua_flow *f)
{
	struct ua *ua = f->ua;
	if (ua->c.no_register && !ua->shutting_down) {
		/* no binding: the call goes out on the first flow up */
		f->st = UAF_IDLE;
		if (ua->c.call_uri[0])
			ua_call_start(f);
		return;
	}
	ua_reg_start(f, ua->shutting_down ? 0 : ua->c.expires);
}

/* ---- incoming ---- */

void ua_bad_message(struct ua_flow *f, const char *what)
{
	f->ua->stats.bad_messages++;
	struct ua_event ev = {.kind = UA_EV_BAD_MESSAGE, .detail = what};
	ua_emit(f, &ev);
}

/* What the call layer did not take: OPTIONS 200 (the server's routing to us
 * works), INVITE 480 (no --auto-answer), CANCEL 481 (nothing to cancel: the INVITE was answered), ACK nothing,
 * the rest 405. One answer per request, on the flow it came on. */
static void answer(struct ua_flow *f, const struct sip_msg *m)
{
	static const char allow[] = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n";
	uint16_t status;
	const char *extra = NULL;
	switch (m->method) {
	case SIP_ACK:
		return;
	case SIP_OPTIONS:
		status = 200;
		extra = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
			"Accept: application/sdp\r\nSupported: outbound, path\r\n";
		break;
	case SIP_INVITE:
		status = 480;
		break;
	case SIP_CANCEL:
	case SIP_BYE:
		status = 481;
		break;
	default:
		status = 405;
		extra = allow;
		break;
	}
	/* the same tag for a retransmission of the same request */
	char tag[17];
	snprintf(tag, sizeof tag, "%016llx",
		 (unsigned long long)hash_bytes(m->call_id.p, m->call_id.l));
	f->ua->stats.requests_answered++;
	char method[24];
	slice_to_cstr(m->method_s, method, sizeof method);
	struct ua_event ev = {.kind = UA_EV_REQUEST, .status = status, .method = method};
	ua_emit(f, &ev);
	struct buf b;
	buf_init(&b);
	if (sip_build_response(&b, m, status, NULL, SLICE_NULL, slice_cstr(tag), extra) == 0)
		uaf_send(f, b.data, b.len);
	buf_free(&b);
}

void ua_on_sip(struct ua_flow *f, const char *data, size_t len, bool stream)
{
	struct sip_msg *m = malloc(sizeof *m); /* ~10 kB: not on the stack */
	if (!m)
		return;
	struct sip_parse_error pe;
	if (sip_msg_parse(m, data, len, stream, &pe)) {
		char why[96];
		snprintf(why, sizeof why, "malformed SIP message (%s)",
			 pe.reason ? pe.reason : "unparsable");
		ua_bad_message(f, why);
		/* a parsable-enough request still gets its 400 */
		struct buf b;
		buf_init(&b);
		if (m->request && pe.status && m->via1.whole.p &&
		    sip_build_response(&b, m, pe.status, pe.reason, SLICE_NULL, SLICE_NULL, NULL) ==
			0)
			uaf_send(f, b.data, b.len);
		buf_free(&b);
		free(m);
		return;
	}
	if (!m->request)
		ua_alg_on_response(f, m); /* before the response is acted on */
	if (m->request) {
		if (!ua_call_on_request(f, m))
			answer(f, m);
	} else if (m->cseq.method == SIP_REGISTER) {
		ua_reg_on_response(f, m);
	} else {
		ua_call_on_response(f, m);
	}
	free(m);
}

/* ---- life cycle ---- */

int ua_alloc(struct ua **up, struct loop *l, const struct ua_conf *conf, ua_event_h *h, void *arg)
{
	if (!conf->n_proxy || conf->n_proxy > UA_MAX_FLOWS || !ua_instance_valid(conf->instance))
		return EINVAL;
	struct sip_uri u;
	if (sip_uri_parse(slice_cstr(conf->aor), &u) || !slice_eq_cstr_nocase(u.scheme, "sip") ||
	    !u.user.l || !u.host.l || u.user.l >= 128 || u.host.l >= 256)
		return EINVAL;
	struct ua *ua = calloc(1, sizeof *ua);
	if (!ua)
		return ENOMEM;
	ua->loop = l;
	ua->c = *conf;
	if (!ua->c.expires)
		ua->c.expires = 600;
	ua->h = h;
	ua->arg = arg;
	slice_to_cstr(u.user, ua->aor_user, sizeof ua->aor_user);
	slice_to_cstr(u.host, ua->domain, sizeof ua->domain);
	ua->domain_port = u.port;
	if (u.port)
		snprintf(ua->ruri, sizeof ua->ruri, "sip:%s:%u", ua->domain, u.port);
	else
		snprintf(ua->ruri, sizeof ua->ruri, "sip:%s", ua->domain);
	snprintf(ua->auth_user, sizeof ua->auth_user, "%s",
		 conf->auth_user[0] ? conf->auth_user : ua->aor_user);
	/* strip the brackets of an IPv6 domain for comparing with a proxy host */
	if (ua->domain[0] == '[') {
		size_t n = strlen(ua->domain);
		memmove(ua->domain, ua->domain + 1, n - 2);
		ua->domain[n - 2] = '\0';
	}
	ua->n = conf->n_proxy;
	ua->call.ua = ua;
	buf_init(&ua->call.inv);
	buf_init(&ua->call.ack);
	buf_init(&ua->call.req);
	for (unsigned i = 0; i < ua->n; i++) {
		struct ua_flow *f = &ua->f[i];
		f->ua = ua;
		f->idx = i;
		f->px = &ua->c.proxy[i];
		f->fd = -1;
		buf_init(&f->rx);
		buf_init(&f->tx);
		buf_init(&f->req);
		char a[NET_ADDR_STRLEN];
		snprintf(f->proxy_s, sizeof f->proxy_s, "%s:%s", net_transport_name(f->px->tp),
			 net_addr_fmt(&f->px->addr, a, sizeof a));
		if (ua_tls(f->px) && !ua->tls) {
			char why[300];
			int err = net_tls_client_alloc(&ua->tls, ua->c.ca_file, true, why, sizeof why);
			if (err) {
				LOG_E("ua", "TLS: %s", why);
				ua_free(ua);
				return err;
			}
		}
	}
	*up = ua;
	return 0;
}

int ua_start(struct ua *ua)
{
	if (ua->started)
		return EALREADY;
	ua->started = true;
	ua->t0 = time_mono_ms();
	for (unsigned i = 0; i < ua->n; i++) {
		ua_reg_init(&ua->f[i]);
		open_flow(&ua->f[i]);
	}
	return 0;
}

void ua_free(struct ua *ua)
{
	if (!ua)
		return;
	ua->freeing = true;
	timer_cancel(&ua->t_unreg);
	ua_call_free(ua);
	for (unsigned i = 0; i < ua->n; i++) {
		struct ua_flow *f = &ua->f[i];
		ua_reg_stop(f);
		timer_cancel(&f->t_retry);
		uaf_close(f);
		uaws_free(f);
		buf_free(&f->rx);
		buf_free(&f->tx);
		buf_free(&f->req);
	}
	uaf_linger_free_all(ua);
	net_tls_client_free(ua->tls);
	explicit_bzero(ua->c.password, sizeof ua->c.password);
	free(ua);
}

void ua_stats_get(const struct ua *ua, struct ua_stats *out)
{
	*out = ua->stats;
}
