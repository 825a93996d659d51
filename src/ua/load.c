/* ua: `ua load`: many registered flows and many concurrent calls in one process, each call's
 * audio checked both ways; the figures of the whole run at the end.
 *
 * Every flow is a struct ua of its own (ua.c, reg.c, flow.c, call.c, media.c
 * unchanged in what they do), so a flow here keeps alive, fails over and
 * calls exactly as `ua register` and `ua call` do; all of them live on one
 * loop, and their timers in its wheel. What this file adds is when things
 * start (flows at reg_rate, calls at rate), whom each call goes to, and the
 * accounting.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ua_int.h"

#define TICK_MS 10

struct load_flow {
	struct ua_load *L;
	struct ua *ua;
	unsigned idx; /* 0-based in the run */
	bool started, ever_registered, up, done, failed;
	bool calling, answered; /* a call we placed stands; it was answered */
	uint64_t start_ms, call_ms;
	/* the verdict of the call that stands (ours or one we answer) */
	bool have_verdict;
	enum rtp_verdict verdict;
	double loss_in, loss_out, jitter, rtt;
	bool has_rtt, has_out;
	char cause[512];
};

struct ua_load {
	struct loop *loop;
	struct ua_load_conf c;
	ua_load_event_h *eh;
	ua_load_done_h *dh;
	void *arg;
	struct load_flow *f;
	unsigned n, n_started, n_settled; /* settled: registered once or given up */
	unsigned n_callers, cursor;
	uint64_t t0, ramp_ms, calls_t0;
	struct timer t_start, t_call, t_run;
	bool ramp_done, stopping, reported;
	unsigned active, n_done, reg_now;
	struct ua_load_result r;
	/* per call and per flow figures for the percentiles */
	double *reg_ms, *setup_ms, *loss_in, *loss_out, *jitter, *rtt;
	unsigned n_reg, n_setup, n_loss_in, n_loss_out, n_jitter, n_rtt;
};

int ua_load_fmt(const char *fmt, unsigned n, char *out, size_t cap)
{
	const char *p = strchr(fmt, '%');
	if (!p || (p[1] != 'u' && p[1] != 'd') || strchr(p + 2, '%'))
		return EINVAL;
	int w = snprintf(out, cap, "%.*s%u%s", (int)(p - fmt), fmt, n, p + 2);
	return w < 0 || (size_t)w >= cap ? ENAMETOOLONG : 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

void ua_load_pct(double *v, unsigned n, struct ua_load_pct *out)
{
	memset(out, 0, sizeof *out);
	out->n = n;
	if (!n)
		return;
	qsort(v, n, sizeof *v, cmp_double);
	/* nearest rank */
	out->p50 = v[(unsigned)ceil(0.50 * n) - 1];
	out->p95 = v[(unsigned)ceil(0.95 * n) - 1];
	out->p99 = v[(unsigned)ceil(0.99 * n) - 1];
	out->max = v[n - 1];
}

static bool pairs(const struct ua_load *L)
{
	return L->c.calls && !L->c.call_to[0];
}

/* The most telling exit code first, as ua.c orders a flow's failures. */
static int worse(int have, int code, const int *order, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (have == order[i])
			return have;
		if (code == order[i])
			return code;
	}
	return have ? have : code;
}

static void progress(struct ua_load *L, const char *what)
{
	if (L->eh)
		L->eh(0, NULL, what, L->arg);
}

static void finish(struct ua_load *L)
{
	if (L->reported)
		return;
	L->reported = true;
	timer_cancel(&L->t_start);
	timer_cancel(&L->t_call);
	timer_cancel(&L->t_run);
	struct ua_load_result *r = &L->r;
	r->flows = L->n;
	r->calls = L->c.calls;
	r->calls_not_placed = L->c.calls - r->calls_placed;
	r->ramp_s = (double)L->ramp_ms / 1000.0;
	r->elapsed_s = (double)(time_mono_ms() - L->t0) / 1000.0;
	ua_load_pct(L->reg_ms, L->n_reg, &r->reg_ms);
	ua_load_pct(L->setup_ms, L->n_setup, &r->setup_ms);
	ua_load_pct(L->loss_in, L->n_loss_in, &r->loss_in_pct);
	ua_load_pct(L->loss_out, L->n_loss_out, &r->loss_out_pct);
	ua_load_pct(L->jitter, L->n_jitter, &r->jitter_ms);
	ua_load_pct(L->rtt, L->n_rtt, &r->rtt_ms);
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		r->cpu_user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
		r->cpu_sys_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
		r->max_rss_kb = ru.ru_maxrss;
	}
	static const int call_order[] = {UA_EXIT_AUTH, UA_EXIT_REFUSED, UA_EXIT_TIMEOUT,
					 UA_EXIT_CANCELLED, UA_EXIT_ERROR};
	int code = r->flow_fail_code;
	if (!code) {
		unsigned counts[] = {r->fail_auth, r->fail_refused, r->fail_timeout,
				     r->fail_cancelled, r->fail_error};
		for (size_t i = 0; i < ARRAY_SIZE(counts) && !code; i++)
			if (counts[i])
				code = call_order[i];
	}
	/* a flow that failed later (a keepalive unanswered, a connection lost) */
	if (!code && r->flow_failures)
		code = UA_EXIT_TIMEOUT;
	/* a call not two-way, an answered one not two-way, a call never placed */
	if (!code && (r->calls_two_way < r->calls_answered || r->answered_two_way < r->answered ||
		      r->calls_not_placed))
		code = UA_EXIT_NO_AUDIO;
	r->exit_code = code;
	L->dh(r, L->arg);
}

static void maybe_finish(struct ua_load *L)
{
	if (L->stopping && L->n_done == L->n_started)
		finish(L);
}

void ua_load_stop(struct ua_load *L)
{
	if (L->stopping)
		return;
	L->stopping = true;
	timer_cancel(&L->t_start);
	timer_cancel(&L->t_call);
	timer_cancel(&L->t_run);
	progress(L, "stopping: hanging up, unregistering");
	for (unsigned i = 0; i < L->n_started; i++)
		if (!L->f[i].done)
			ua_shutdown(L->f[i].ua);
	maybe_finish(L);
}

static void run_due(void *arg)
{
	ua_load_stop(arg);
}

/* All placed calls are over and no more are due: the run's end (unless --run). */
static void calls_check_end(struct ua_load *L)
{
	if (L->stopping || !L->ramp_done || L->c.run_s)
		return;
	if (!L->c.calls)
		return; /* register only: until stopped */
	if (L->r.calls_placed + L->r.calls_not_placed >= L->c.calls && !L->active)
		ua_load_stop(L);
}

static void set_up(struct load_flow *lf, bool up)
{
	struct ua_load *L = lf->L;
	if (up == lf->up)
		return;
	lf->up = up;
	if (up && ++L->reg_now > L->r.max_flows_registered)
		L->r.max_flows_registered = L->reg_now;
	if (!up)
		L->reg_now--;
}

static bool flow_idle(const struct load_flow *lf)
{
	return lf->up && !lf->done && !lf->calling && !ua_in_call(lf->ua);
}

/* The next caller that can call now and its callee's URI; NULL when none. */
static struct load_flow *next_caller(struct ua_load *L, char *uri, size_t cap)
{
	for (unsigned k = 0; k < L->n_callers; k++) {
		unsigned i = (L->cursor + k) % L->n_callers;
		struct load_flow *lf = &L->f[i];
		if (!flow_idle(lf))
			continue;
		if (pairs(L)) {
			struct load_flow *callee = &L->f[i + L->n_callers];
			if (!flow_idle(callee))
				continue;
			if (ua_load_fmt(L->c.aor_fmt, L->c.first + callee->idx, uri, cap))
				continue;
		} else if (strchr(L->c.call_to, '%')) {
			unsigned cc = L->c.callee_count ? L->c.callee_count : 1;
			if (ua_load_fmt(L->c.call_to, L->c.callee_first + L->r.calls_placed % cc,
					uri, cap))
				continue;
		} else {
			snprintf(uri, cap, "%s", L->c.call_to);
		}
		L->cursor = (i + 1) % L->n_callers;
		return lf;
	}
	return NULL;
}

static void call_tick(void *arg)
{
	struct ua_load *L = arg;
	double rate = L->c.rate > 0 ? L->c.rate : 10;
	uint64_t due = (uint64_t)((double)(time_mono_ms() - L->calls_t0) * rate / 1000.0) + 1;
	unsigned refused = 0;
	while (L->r.calls_placed < L->c.calls && L->r.calls_placed < due) {
		char uri[300];
		struct load_flow *lf = next_caller(L, uri, sizeof uri);
		if (!lf)
			break; /* every caller busy (or down): the rate waits for them */
		int err = ua_call_place(lf->ua, uri);
		if (err) {
			/* not a call: the flow was not ready after all; at most one
			 * try per caller and tick */
			if (err == ENOTCONN)
				set_up(lf, false);
			if (++refused >= L->n_callers)
				break;
			continue;
		}
		lf->calling = true;
		lf->answered = false;
		lf->have_verdict = false;
		lf->call_ms = time_mono_ms();
		L->r.calls_placed++;
		if (++L->active > L->r.max_calls_active)
			L->r.max_calls_active = L->active;
	}
	if (L->r.calls_placed < L->c.calls) {
		bool any = false;
		for (unsigned i = 0; i < L->n_callers && !any; i++)
			any = !L->f[i].done;
		if (!any) {
			/* nobody left to call from */
			L->r.calls_not_placed = L->c.calls - L->r.calls_placed;
			calls_check_end(L);
			return;
		}
		timer_start(L->loop, &L->t_call, TICK_MS, call_tick, L);
	}
}

static void ramp_check(struct ua_load *L)
{
	if (L->ramp_done || L->n_settled < L->n)
		return;
	L->ramp_done = true;
	L->ramp_ms = time_mono_ms() - L->t0;
	char what[160];
	snprintf(what, sizeof what, "ramp done: %u of %u flows registered in %.1f s",
		 L->r.flows_registered, L->n, (double)L->ramp_ms / 1000.0);
	progress(L, what);
	if (!L->r.flows_registered) {
		ua_load_stop(L); /* nothing registered: nothing to hold or call from */
		return;
	}
	if (L->c.run_s)
		timer_start(L->loop, &L->t_run, (uint64_t)L->c.run_s * 1000, run_due, L);
	if (L->c.calls) {
		L->calls_t0 = time_mono_ms();
		call_tick(L);
	}
	calls_check_end(L);
}

static void settle(struct load_flow *lf)
{
	if (lf->ever_registered || lf->failed)
		return;
	lf->L->n_settled++;
	ramp_check(lf->L);
}

/* ---- one flow's events ---- */

static double pct_of(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0;
}

static void on_verdict(struct load_flow *lf, const struct ua_event *ev)
{
	const struct rtp_verdict_in *in = ev->verdict_in;
	lf->have_verdict = true;
	lf->verdict = ev->verdict_out->verdict;
	snprintf(lf->cause, sizeof lf->cause, "%s", ev->verdict_out->cause);
	uint64_t exp_in = in->echo ? in->sent_packets
				   : in->recv_packets + (in->lost > 0 ? (uint64_t)in->lost : 0);
	lf->loss_in = exp_in > in->recv_packets ? pct_of(exp_in - in->recv_packets, exp_in) : 0;
	lf->has_out = !in->echo && in->far_block;
	uint64_t exp_out = in->far_received + (in->far_lost > 0 ? (uint64_t)in->far_lost : 0);
	lf->loss_out = exp_out > in->far_received ? pct_of(exp_out - in->far_received, exp_out) : 0;
	lf->jitter = in->jitter_ms;
	lf->has_rtt = in->have_rtt;
	lf->rtt = in->rtt_ms;
	lf->L->r.packets_sent += in->sent_packets;
	lf->L->r.packets_received += in->recv_packets;
}

static void note_cause(struct ua_load *L, const struct load_flow *lf)
{
	if (L->r.example_cause[0])
		return;
	snprintf(L->r.example_cause, sizeof L->r.example_cause, "flow %u: %s", L->c.first + lf->idx,
		 lf->cause[0] ? lf->cause : "no verdict");
}

static void on_call_end(struct load_flow *lf, const struct ua_event *ev)
{
	struct ua_load *L = lf->L;
	struct ua_load_result *r = &L->r;
	if (ev->uas) {
		r->answered++;
		if (lf->have_verdict && lf->verdict == RTP_VERDICT_TWO_WAY)
			r->answered_two_way++;
		else
			note_cause(L, lf);
		lf->have_verdict = false;
		return;
	}
	if (!lf->calling)
		return;
	lf->calling = false;
	L->active--;
	if (lf->answered) {
		r->calls_answered++;
		enum rtp_verdict v = lf->have_verdict ? lf->verdict : RTP_VERDICT_NONE;
		if (v == RTP_VERDICT_TWO_WAY)
			r->calls_two_way++;
		else if (v == RTP_VERDICT_ONE_WAY_IN || v == RTP_VERDICT_ONE_WAY_OUT)
			r->calls_one_way++;
		else if (v == RTP_VERDICT_UNCONFIRMED)
			r->calls_unconfirmed++;
		else
			r->calls_none++;
		if (v != RTP_VERDICT_TWO_WAY)
			note_cause(L, lf);
		if (lf->have_verdict) {
			L->loss_in[L->n_loss_in++] = lf->loss_in;
			if (lf->has_out)
				L->loss_out[L->n_loss_out++] = lf->loss_out;
			L->jitter[L->n_jitter++] = lf->jitter;
			if (lf->has_rtt)
				L->rtt[L->n_rtt++] = lf->rtt;
		}
	} else {
		r->calls_failed++;
		switch (ev->exit_code) {
		case UA_EXIT_AUTH:
			r->fail_auth++;
			break;
		case UA_EXIT_REFUSED:
			r->fail_refused++;
			break;
		case UA_EXIT_TIMEOUT:
			r->fail_timeout++;
			break;
		case UA_EXIT_CANCELLED:
			r->fail_cancelled++;
			break;
		default:
			r->fail_error++;
			break;
		}
	}
	lf->have_verdict = false;
	calls_check_end(L);
}

static void on_event(const struct ua_event *ev, void *arg)
{
	struct load_flow *lf = arg;
	struct ua_load *L = lf->L;
	struct ua_load_result *r = &L->r;
	if (L->c.verbose && L->eh)
		L->eh(L->c.first + lf->idx, ev, NULL, L->arg);
	switch (ev->kind) {
	case UA_EV_REGISTERED:
		set_up(lf, true);
		if (ev->refresh)
			break;
		if (!lf->ever_registered) {
			r->flows_registered++;
			L->reg_ms[L->n_reg++] = (double)(time_mono_ms() - lf->start_ms);
			settle(lf);
			lf->ever_registered = true;
		} else if (ev->recovered) {
			r->flows_recovered++;
		}
		break;
	case UA_EV_FLOW_DOWN: {
		if (!L->stopping && !lf->done && lf->ever_registered)
			r->flow_failures++;
		bool up = false; /* the other flow may still stand */
		for (unsigned i = 0; i < lf->ua->n; i++)
			if (lf->ua->f[i].st == UAF_REGISTERED)
				up = true;
		set_up(lf, up);
		break;
	}
	case UA_EV_REG_FAILED:
	case UA_EV_AUTH_FAILED:
		if (!lf->ever_registered && ev->detail && !r->flow_fail_detail[0])
			snprintf(r->flow_fail_detail, sizeof r->flow_fail_detail,
				 "flow %u (%s): %s", L->c.first + lf->idx, ev->proxy, ev->detail);
		break;
	case UA_EV_UNREGISTERED:
		if (!ev->detail)
			r->flows_unregistered++;
		break;
	case UA_EV_CALL:
		if (ev->call_end)
			on_call_end(lf, ev);
		else if (lf->calling && !lf->answered && ev->status >= 200 && ev->status < 300) {
			lf->answered = true;
			L->setup_ms[L->n_setup++] = (double)(time_mono_ms() - lf->call_ms);
		}
		break;
	case UA_EV_VERDICT:
		on_verdict(lf, ev);
		break;
	case UA_EV_DONE:
		lf->done = true;
		set_up(lf, false);
		L->n_done++;
		if (!lf->ever_registered && !L->stopping) {
			static const int order[] = {UA_EXIT_AUTH, UA_EXIT_TLS, UA_EXIT_REFUSED,
						    UA_EXIT_TIMEOUT, UA_EXIT_ERROR};
			r->flows_failed++;
			r->flow_fail_code =
			    worse(r->flow_fail_code, ev->exit_code ? ev->exit_code : UA_EXIT_ERROR,
				  order, ARRAY_SIZE(order));
			settle(lf);
			lf->failed = true;
		}
		maybe_finish(L);
		break;
	default:
		break;
	}
}

/* ---- life cycle ---- */

/* Flow i's own +sip.instance: the installation's with its last 32 bits
 * XORed with the flow's number, so a run's flows are told apart by the
 * registrar and the next run finds (and replaces) the same bindings. */
static void flow_instance(const char *base, unsigned n, char *out, size_t cap)
{
	size_t len = strlen(base);
	snprintf(out, cap, "%s", base);
	if (len < 8 || len >= cap)
		return;
	unsigned long v = strtoul(base + len - 8, NULL, 16);
	snprintf(out + len - 8, cap - (len - 8), "%08lx", (v ^ n) & 0xffffffffUL);
}

static int flow_conf(const struct ua_load *L, unsigned i, struct ua_conf *c)
{
	*c = L->c.base;
	c->load = true;
	c->call_uri[0] = '\0';
	if (ua_load_fmt(L->c.aor_fmt, L->c.first + i, c->aor, sizeof c->aor))
		return EINVAL;
	flow_instance(L->c.base.instance, L->c.first + i, c->instance, sizeof c->instance);
	if (L->c.passwords && L->c.passwords[i])
		snprintf(c->password, sizeof c->password, "%s", L->c.passwords[i]);
	if (L->c.n_sources) {
		c->source = L->c.source;
		c->has_source = true;
		if (net_addr_family(&c->source) == AF_INET) {
			uint32_t a = ntohl(c->source.u.in.sin_addr.s_addr);
			c->source.u.in.sin_addr.s_addr = htonl(a + i % L->c.n_sources);
		}
	}
	if (pairs(L))
		c->auto_answer = i >= L->n_callers;
	return 0;
}

static void start_one(struct ua_load *L)
{
	unsigned i = L->n_started++;
	struct load_flow *lf = &L->f[i];
	lf->L = L;
	lf->idx = i;
	lf->started = true;
	lf->start_ms = time_mono_ms();
	struct ua_conf *c = malloc(sizeof *c);
	int err = c ? flow_conf(L, i, c) : ENOMEM;
	if (!err)
		err = ua_alloc(&lf->ua, L->loop, c, on_event, lf);
	if (c) {
		explicit_bzero(c->password, sizeof c->password);
		free(c);
	}
	if (!err)
		err = ua_start(lf->ua);
	if (err) {
		struct ua_event ev = {.kind = UA_EV_DONE, .exit_code = UA_EXIT_ERROR};
		if (!L->r.flow_fail_detail[0])
			snprintf(L->r.flow_fail_detail, sizeof L->r.flow_fail_detail,
				 "flow %u: cannot make its ua: %s", L->c.first + i, strerror(err));
		on_event(&ev, lf);
	}
}

static void start_tick(void *arg)
{
	struct ua_load *L = arg;
	double rate = L->c.reg_rate > 0 ? L->c.reg_rate : 200;
	uint64_t due = (uint64_t)((double)(time_mono_ms() - L->t0) * rate / 1000.0) + 1;
	while (L->n_started < L->n && L->n_started < due && !L->stopping)
		start_one(L);
	if (L->n_started < L->n && !L->stopping)
		timer_start(L->loop, &L->t_start, TICK_MS, start_tick, L);
}

int ua_load_alloc(struct ua_load **lp, struct loop *l, const struct ua_load_conf *conf,
		  ua_load_event_h *eh, ua_load_done_h *dh, void *arg)
{
	char probe[300];
	if (!conf->count || conf->count > UA_LOAD_MAX_FLOWS || conf->calls > UA_LOAD_MAX_CALLS ||
	    ua_load_fmt(conf->aor_fmt, conf->first + conf->count - 1, probe, sizeof probe) ||
	    strlen(probe) >= sizeof conf->base.aor || !dh)
		return EINVAL;
	if (conf->calls && !conf->call_to[0] && conf->count < 2)
		return EINVAL;
	if (conf->call_to[0] && strchr(conf->call_to, '%') &&
	    ua_load_fmt(conf->call_to, 1, probe, sizeof probe))
		return EINVAL;
	struct ua_load *L = calloc(1, sizeof *L);
	if (!L)
		return ENOMEM;
	L->loop = l;
	L->c = *conf;
	L->eh = eh;
	L->dh = dh;
	L->arg = arg;
	L->n = conf->count;
	L->n_callers = pairs(L) ? L->n / 2 : L->n;
	L->f = calloc(L->n, sizeof *L->f);
	L->reg_ms = calloc(L->n, sizeof(double));
	size_t nc = conf->calls ? conf->calls : 1;
	L->setup_ms = calloc(nc, sizeof(double));
	L->loss_in = calloc(nc, sizeof(double));
	L->loss_out = calloc(nc, sizeof(double));
	L->jitter = calloc(nc, sizeof(double));
	L->rtt = calloc(nc, sizeof(double));
	if (!L->f || !L->reg_ms || !L->setup_ms || !L->loss_in || !L->loss_out || !L->jitter ||
	    !L->rtt) {
		ua_load_free(L);
		return ENOMEM;
	}
	*lp = L;
	return 0;
}

int ua_load_start(struct ua_load *L)
{
	if (L->t0)
		return EALREADY;
	L->t0 = time_mono_ms();
	start_tick(L);
	return 0;
}

void ua_load_free(struct ua_load *L)
{
	if (!L)
		return;
	timer_cancel(&L->t_start);
	timer_cancel(&L->t_call);
	timer_cancel(&L->t_run);
	if (L->f)
		for (unsigned i = 0; i < L->n_started; i++)
			ua_free(L->f[i].ua);
	free(L->f);
	free(L->reg_ms);
	free(L->setup_ms);
	free(L->loss_in);
	free(L->loss_out);
	free(L->jitter);
	free(L->rtt);
	explicit_bzero(L->c.base.password, sizeof L->c.base.password);
	free(L);
}

/* ---- the summary ---- */

static void pct_text(struct buf *o, const char *what, const char *unit, const struct ua_load_pct *p)
{
	if (!p->n)
		return;
	buf_printf(o, "  %-14s p50 %.1f, p95 %.1f, p99 %.1f, max %.1f %s (%u)\n", what, p->p50,
		   p->p95, p->p99, p->max, unit, p->n);
}

int ua_load_text(const struct ua_load_result *r, struct buf *o)
{
	buf_printf(o, "flows: %u of %u registered in %.1f s, %u failed", r->flows_registered,
		   r->flows, r->ramp_s, r->flows_failed);
	if (r->flows_failed && r->flow_fail_detail[0])
		buf_printf(o, " (e.g. %s)", r->flow_fail_detail);
	buf_printf(o,
		   "; %u at once at most; %u flow failures later, %u recovered; %u "
		   "unregistered at the end\n",
		   r->max_flows_registered, r->flow_failures, r->flows_recovered,
		   r->flows_unregistered);
	if (r->calls || r->answered) {
		buf_printf(o,
			   "calls: %u of %u placed, %u answered: %u two-way, %u one-way, %u no "
			   "audio, %u unconfirmed; %u failed",
			   r->calls_placed, r->calls, r->calls_answered, r->calls_two_way,
			   r->calls_one_way, r->calls_none, r->calls_unconfirmed, r->calls_failed);
		if (r->calls_failed)
			buf_printf(o,
				   " (%u credentials refused, %u refused, %u no answer, %u "
				   "cancelled, %u local errors)",
				   r->fail_auth, r->fail_refused, r->fail_timeout,
				   r->fail_cancelled, r->fail_error);
		buf_printf(o, "; %u at once at most\n", r->max_calls_active);
		if (r->answered)
			buf_printf(o, "answered: %u calls, %u two-way\n", r->answered,
				   r->answered_two_way);
		if (r->example_cause[0])
			buf_printf(o, "first call not two-way: %s\n", r->example_cause);
	}
	pct_text(o, "register", "ms", &r->reg_ms);
	pct_text(o, "call setup", "ms", &r->setup_ms);
	pct_text(o, "loss in", "%", &r->loss_in_pct);
	pct_text(o, "loss out", "%", &r->loss_out_pct);
	pct_text(o, "jitter", "ms", &r->jitter_ms);
	pct_text(o, "rtt", "ms", &r->rtt_ms);
	buf_printf(o,
		   "rtp: %llu packets sent, %llu received; cpu %.2f s user + %.2f s system in "
		   "%.1f s; max rss %ld kB\n",
		   (unsigned long long)r->packets_sent, (unsigned long long)r->packets_received,
		   r->cpu_user_s, r->cpu_sys_s, r->elapsed_s, r->max_rss_kb);
	buf_printf(o, "load: %s (exit %d)\n", r->exit_code ? "NOT all ok" : "all ok", r->exit_code);
	return o->failed ? ENOMEM : 0;
}

static void pct_json(struct buf *o, const char *name, const struct ua_load_pct *p)
{
	buf_printf(o, ",\"%s\":{\"n\":%u,\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
		   name, p->n, p->p50, p->p95, p->p99, p->max);
}

int ua_load_json(const struct ua_load_result *r, struct buf *o)
{
	buf_printf(o,
		   "{\"event\":\"load\",\"ok\":%s,\"exit\":%d,\"flows\":{\"total\":%u,"
		   "\"registered\":%u,\"failed\":%u,\"max_registered\":%u,\"failures\":%u,"
		   "\"recovered\":%u,\"unregistered\":%u,\"ramp_s\":%.3f,\"detail\":",
		   r->exit_code ? "false" : "true", r->exit_code, r->flows, r->flows_registered,
		   r->flows_failed, r->max_flows_registered, r->flow_failures, r->flows_recovered,
		   r->flows_unregistered, r->ramp_s);
	buf_append_json_str(o, r->flow_fail_detail);
	buf_printf(o,
		   "},\"calls\":{\"total\":%u,\"placed\":%u,\"answered\":%u,\"two_way\":%u,"
		   "\"one_way\":%u,\"none\":%u,\"unconfirmed\":%u,\"failed\":%u,"
		   "\"failed_auth\":%u,\"failed_refused\":%u,\"failed_timeout\":%u,"
		   "\"failed_cancelled\":%u,\"failed_error\":%u,\"max_active\":%u,"
		   "\"answered_by_flows\":%u,\"answered_two_way\":%u,\"example_cause\":",
		   r->calls, r->calls_placed, r->calls_answered, r->calls_two_way, r->calls_one_way,
		   r->calls_none, r->calls_unconfirmed, r->calls_failed, r->fail_auth,
		   r->fail_refused, r->fail_timeout, r->fail_cancelled, r->fail_error,
		   r->max_calls_active, r->answered, r->answered_two_way);
	buf_append_json_str(o, r->example_cause);
	buf_append_cstr(o, "}");
	pct_json(o, "register_ms", &r->reg_ms);
	pct_json(o, "setup_ms", &r->setup_ms);
	pct_json(o, "loss_in_pct", &r->loss_in_pct);
	pct_json(o, "loss_out_pct", &r->loss_out_pct);
	pct_json(o, "jitter_ms", &r->jitter_ms);
	pct_json(o, "rtt_ms", &r->rtt_ms);
	buf_printf(o,
		   ",\"rtp_sent\":%llu,\"rtp_received\":%llu,\"cpu_user_s\":%.3f,"
		   "\"cpu_sys_s\":%.3f,\"elapsed_s\":%.3f,\"max_rss_kb\":%ld}",
		   (unsigned long long)r->packets_sent, (unsigned long long)r->packets_received,
		   r->cpu_user_s, r->cpu_sys_s, r->elapsed_s, r->max_rss_kb);
	return o->failed ? ENOMEM : 0;
}
