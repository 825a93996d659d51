/* pinhole ua load: the command line of the load mode (src/ua/load.c): many flows and calls
 * in one process, a summary in words or JSON at the end. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "ua/ua.h"

static const char load_usage[] =
    "usage: pinhole ua load [options] --aor FMT --count N\n"
    "One process, many registered flows and calls: AORs from FMT (sip:user%u@domain,\n"
    "%u = 1, 2, ... N; --first moves the start), each its own ua with its own\n"
    "flow socket(s), registered and kept alive as `ua register` does, all on one\n"
    "event loop. Once every flow has registered (or given up), calls start at --rate\n"
    "per second, each held --duration seconds with G.711 RTP both ways and its own\n"
    "verdict. At the end (calls done, --run elapsed, or SIGINT/SIGTERM) every flow\n"
    "unregisters and one summary is printed: flows registered/failed, calls two-way,\n"
    "one-way, no audio, failed, percentiles of registration and call setup time,\n"
    "loss, jitter and RTT, and the process's CPU time.\n\n"
    "  --aor FMT               the AORs: one %u (or %d) for the flow's number\n"
    "  --count N               how many flows (1..100000)\n"
    "  --first N               the first number (default 1)\n"
    "  --proxy TP:HOST[:PORT]  as for register (once or twice: flows per AOR)\n"
    "  --password-file FILE    one password for every AOR (first line of FILE; else\n"
    "  --password-stdin        $PINHOLE_UA_PASSWORD; none: unauthenticated)\n"
    "  --password-fmt FMT      each AOR's password from FMT, %u its number\n"
    "  --passwords FILE        'user password' lines (the AOR's user part); AORs not\n"
    "                          in it use the password above\n"
    "  --source A[-B]          bind flow i (and its media) to A + i modulo the range\n"
    "                          of IPv4 addresses A..B (e.g. 127.0.0.2-127.0.0.250):\n"
    "                          a server's per-address limits, more source ports\n"
    "  --state FILE            the installation's +sip.instance (each flow's is it\n"
    "                          with its number mixed in)\n"
    "  --expires S, --keepalive S, --nat-refresh S   as for register\n"
    "  --reg-rate R            flows started per second (default 200)\n"
    "  --calls N               calls to place in all (default 0: register only)\n"
    "  --rate R                calls started per second (default 10; a caller has\n"
    "                          one call at a time, so at most the callers at once)\n"
    "  --duration S            each call's length (default 10)\n"
    "  --call-to URI|FMT       whom to call: a URI (sip:echo@domain: the echo\n"
    "                          service), or FMT with %u filled with --callee-first +\n"
    "                          k modulo --callee-count for the k-th call. Default:\n"
    "                          pairs: the first half of the flows call the second\n"
    "                          half, which answer\n"
    "  --callee-first N, --callee-count N   (default 1 and --count)\n"
    "  --auto-answer           every flow answers calls (a callee process)\n"
    "  --answer-timeout S      CANCEL a call not answered within S (60)\n"
    "  --echo                  the far end echoes (implied by sip:echo@...)\n"
    "  --tone HZ               the tone sent (440)\n"
    "  --run S                 after the ramp, run S seconds (calls placed meanwhile)\n"
    "                          then stop; default: until the calls are done, or\n"
    "                          with no calls until SIGINT/SIGTERM\n"
    "  --verbose               every flow's events too, each prefixed ua=N\n"
    "  --json                  JSON objects instead of text\n"
    "  -h, --help              this text\n\n"
    "exit status: 0 every flow registered and every call placed went two-way (and\n"
    "every call the flows answered); 2 usage; else a flow that never registered\n"
    "(3 credentials, 8 certificate, 4 refused, 5 no answer, 1 local), else a call\n"
    "that failed before media (3, 4, 5, 7, 1), else 5 when a registered flow\n"
    "failed later (keepalive unanswered, connection lost), else 6: a call answered\n"
    "but not two-way (or one never placed: every caller busy or down until the end).\n";

struct load_run {
	struct loop *loop;
	struct ua_load *L;
	bool json, done;
	int exit_code;
	unsigned signals;
	uint64_t t0;
};

static void out_line(struct buf *b)
{
	buf_append(b, "\n", 1);
	fwrite(b->data, 1, b->len, stdout);
	fflush(stdout);
}

static void on_load_event(unsigned flow, const struct ua_event *ev, const char *what, void *arg)
{
	struct load_run *r = arg;
	struct buf b;
	buf_init(&b);
	if (ev) {
		if (r->json) {
			buf_printf(&b, "{\"ua\":%u,\"ev\":", flow);
			ua_event_format(ev, true, &b);
			buf_append_cstr(&b, "}");
		} else {
			buf_printf(&b, "ua=%u ", flow);
			ua_event_format(ev, false, &b);
		}
	} else {
		uint64_t ms = time_mono_ms() - r->t0;
		if (r->json) {
			buf_printf(&b, "{\"event\":\"progress\",\"t\":%.3f,\"detail\":",
				   (double)ms / 1000);
			buf_append_json_str(&b, what);
			buf_append_cstr(&b, "}");
		} else {
			buf_printf(&b, "%llu.%03llu load: %s", (unsigned long long)(ms / 1000),
				   (unsigned long long)(ms % 1000), what);
		}
	}
	out_line(&b);
	buf_free(&b);
}

static void on_load_done(const struct ua_load_result *res, void *arg)
{
	struct load_run *r = arg;
	struct buf b;
	buf_init(&b);
	if (r->json) {
		ua_load_json(res, &b);
		out_line(&b);
	} else {
		ua_load_text(res, &b);
		fwrite(b.data, 1, b.len, stdout);
		fflush(stdout);
	}
	buf_free(&b);
	r->done = true;
	r->exit_code = res->exit_code;
	loop_stop(r->loop);
}

static void on_load_signal(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct load_run *r = arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (++r->signals > 1) {
			loop_stop(r->loop); /* a second ^C: no waiting for unREGISTERs */
			return;
		}
		ua_load_stop(r->L);
	}
}

static int rate(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || !*s || *end || !(v > 0) || v > 100000)
		return EINVAL;
	*out = v;
	return 0;
}

/* "A" or "A-B", IPv4 */
static int parse_source(const char *s, struct net_addr *a, unsigned *n)
{
	char lo[64], hi[64] = "";
	const char *dash = strchr(s, '-');
	if (strlen(s) >= sizeof lo)
		return EINVAL;
	snprintf(lo, sizeof lo, "%.*s", (int)(dash ? (size_t)(dash - s) : strlen(s)), s);
	if (dash)
		snprintf(hi, sizeof hi, "%s", dash + 1);
	struct in_addr x, y;
	if (inet_pton(AF_INET, lo, &x) != 1 || (dash && inet_pton(AF_INET, hi, &y) != 1))
		return EINVAL;
	uint32_t first = ntohl(x.s_addr), last = dash ? ntohl(y.s_addr) : first;
	if (last < first || last - first >= 65536)
		return EINVAL;
	memset(a, 0, sizeof *a);
	a->u.in.sin_family = AF_INET;
	a->u.in.sin_addr = x;
	*n = last - first + 1;
	return 0;
}

/* Where FMT's number sits in the AOR's user part: the text before it (after
 * "sip:") and after it (up to '@'). EINVAL when it is not in the user part. */
static int user_affixes(const char *fmt, char *pre, char *suf, size_t cap)
{
	const char *colon = strchr(fmt, ':'), *pct = strchr(fmt, '%'), *at = strchr(fmt, '@');
	if (!colon || !pct || !at || pct < colon || pct > at || (size_t)(at - fmt) >= cap)
		return EINVAL;
	snprintf(pre, cap, "%.*s", (int)(pct - colon - 1), colon + 1);
	snprintf(suf, cap, "%.*s", (int)(at - pct - 2), pct + 2);
	return 0;
}

/* --passwords FILE: 'user password' lines matched to the flows' users. */
static int load_passwords(const char *path, const struct ua_load_conf *c, char **pw)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errno;
	char line[600];
	int err = 0;
	unsigned lineno = 0;
	while (!err && fgets(line, sizeof line, f)) {
		lineno++;
		char user[256], pass[256];
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "%255s %255s", user, pass) != 2) {
			fprintf(stderr, "pinhole ua: --passwords %s:%u: want 'user password'\n",
				path, lineno);
			err = EINVAL;
			break;
		}
		/* the number in user where FMT's user part has %u */
		char pre[256], suf[256];
		if (user_affixes(c->aor_fmt, pre, suf, sizeof pre)) {
			fprintf(stderr, "pinhole ua: --passwords wants the %%u in the AOR's user "
					"part\n");
			err = EINVAL;
			break;
		}
		size_t pl = strlen(pre), sl = strlen(suf), ul = strlen(user);
		if (ul <= pl + sl || strncmp(user, pre, pl) || strcmp(user + ul - sl, suf))
			continue;
		char digits[32];
		if (ul - pl - sl >= sizeof digits)
			continue;
		snprintf(digits, sizeof digits, "%.*s", (int)(ul - pl - sl), user + pl);
		unsigned n;
		if (cli_parse_uint(digits, 0, 4000000000u, &n) || n < c->first ||
		    n - c->first >= c->count)
			continue;
		free(pw[n - c->first]);
		pw[n - c->first] = strdup(pass);
		OPENSSL_cleanse(pass, sizeof pass);
		if (!pw[n - c->first])
			err = ENOMEM;
	}
	OPENSSL_cleanse(line, sizeof line);
	fclose(f);
	return err;
}

static int load_run(struct ua_load_conf *c, bool json)
{
	struct load_run r = {.json = json};
	int rc = UA_EXIT_ERROR;
	/* a flow is a socket, a call two more on each side */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (loop_alloc(&r.loop)) {
		fprintf(stderr, "pinhole ua: cannot make an event loop\n");
		return UA_EXIT_ERROR;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0 || loop_fd_add(r.loop, sfd, EPOLLIN, on_load_signal, &r)) {
		fprintf(stderr, "pinhole ua: cannot watch signals: %s\n", strerror(errno));
		goto out;
	}
	int err = ua_load_alloc(&r.L, r.loop, c, on_load_event, on_load_done, &r);
	if (err) {
		fprintf(stderr, "pinhole ua: %s\n",
			err == EINVAL ? "load: bad --aor or --call-to pattern (one %u), or "
					"--count"
				      : strerror(err));
		rc = err == EINVAL ? UA_EXIT_USAGE : UA_EXIT_ERROR;
		goto out;
	}
	r.t0 = time_mono_ms();
	ua_load_start(r.L);
	loop_run(r.loop);
	rc = r.done ? r.exit_code : UA_EXIT_ERROR;
	ua_load_free(r.L);
out:
	if (sfd >= 0) {
		loop_fd_del(r.loop, sfd);
		close(sfd);
	}
	loop_free(r.loop);
	return rc;
}

int cli_ua_load(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"aor", required_argument, NULL, 'R'},
	    {"count", required_argument, NULL, 'n'},
	    {"first", required_argument, NULL, 'f'},
	    {"proxy", required_argument, NULL, 'p'},
	    {"password-file", required_argument, NULL, 'F'},
	    {"password-stdin", no_argument, NULL, 'S'},
	    {"password-fmt", required_argument, NULL, 'P'},
	    {"passwords", required_argument, NULL, 'W'},
	    {"source", required_argument, NULL, 'b'},
	    {"state", required_argument, NULL, 's'},
	    {"expires", required_argument, NULL, 'e'},
	    {"keepalive", required_argument, NULL, 'k'},
	    {"nat-refresh", required_argument, NULL, 'N'},
	    {"reg-rate", required_argument, NULL, 'g'},
	    {"calls", required_argument, NULL, 'c'},
	    {"rate", required_argument, NULL, 'r'},
	    {"duration", required_argument, NULL, 'd'},
	    {"call-to", required_argument, NULL, 'T'},
	    {"callee-first", required_argument, NULL, 'x'},
	    {"callee-count", required_argument, NULL, 'y'},
	    {"auto-answer", no_argument, NULL, 'a'},
	    {"answer-timeout", required_argument, NULL, 'A'},
	    {"echo", no_argument, NULL, 'E'},
	    {"tone", required_argument, NULL, 't'},
	    {"run", required_argument, NULL, 'u'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct ua_load_conf *c = calloc(1, sizeof *c);
	if (!c)
		return UA_EXIT_ERROR;
	char **pw = NULL;
	const char *proxies[UA_MAX_FLOWS], *pwfile = NULL, *pwfmt = NULL, *pwlist = NULL,
					   *state = NULL;
	unsigned np = 0;
	bool pwstdin = false, json = false;
	int rc = UA_EXIT_USAGE, ch, li = 0;
	c->first = 1;
	c->callee_first = 1;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", lo, &li)) != -1) {
		unsigned *n = NULL, nlo = 1, nhi = 86400;
		switch (ch) {
		case 'R':
			if (strlen(optarg) >= sizeof c->aor_fmt)
				goto bad;
			snprintf(c->aor_fmt, sizeof c->aor_fmt, "%s", optarg);
			break;
		case 'n':
			n = &c->count, nhi = UA_LOAD_MAX_FLOWS;
			break;
		case 'f':
			n = &c->first, nlo = 0, nhi = 1000000000;
			break;
		case 'p':
			if (np == UA_MAX_FLOWS) {
				fprintf(stderr, "pinhole ua: at most %d --proxy\n", UA_MAX_FLOWS);
				goto out;
			}
			proxies[np++] = optarg;
			break;
		case 'F':
			pwfile = optarg;
			break;
		case 'S':
			pwstdin = true;
			break;
		case 'P':
			pwfmt = optarg;
			break;
		case 'W':
			pwlist = optarg;
			break;
		case 'b':
			if (parse_source(optarg, &c->source, &c->n_sources)) {
				fprintf(stderr,
					"pinhole ua: --source '%s': want IPv4 A or A-B (at most "
					"65536)\n",
					optarg);
				goto out;
			}
			break;
		case 's':
			state = optarg;
			break;
		case 'e':
			n = &c->base.expires;
			break;
		case 'k':
			n = &c->base.keepalive_s;
			break;
		case 'N':
			n = &c->base.nat_refresh_s;
			break;
		case 'g':
			if (rate(optarg, &c->reg_rate))
				goto bad;
			break;
		case 'c':
			n = &c->calls, nlo = 0, nhi = UA_LOAD_MAX_CALLS;
			break;
		case 'r':
			if (rate(optarg, &c->rate))
				goto bad;
			break;
		case 'd':
			n = &c->base.duration_s;
			break;
		case 'T':
			if (strlen(optarg) >= sizeof c->call_to)
				goto bad;
			snprintf(c->call_to, sizeof c->call_to, "%s", optarg);
			break;
		case 'x':
			n = &c->callee_first, nlo = 0, nhi = 1000000000;
			break;
		case 'y':
			n = &c->callee_count, nhi = UA_LOAD_MAX_FLOWS;
			break;
		case 'a':
			c->base.auto_answer = true;
			break;
		case 'A':
			n = &c->base.answer_s;
			break;
		case 'E':
			c->base.echo = true;
			break;
		case 't':
			n = &c->base.tone_hz, nhi = 3999;
			break;
		case 'u':
			n = &c->run_s;
			break;
		case 'v':
			c->verbose = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(load_usage, stdout);
			rc = UA_EXIT_OK;
			goto out;
		default:
			fputs(load_usage, stderr);
			goto out;
		}
		if (n && cli_parse_uint(optarg, nlo, nhi, n)) {
		bad:
			fprintf(stderr, "pinhole ua: --%s: bad value '%s'\n", lo[li].name, optarg);
			goto out;
		}
	}
	if (optind != argc || !c->aor_fmt[0] || !c->count) {
		fprintf(stderr, "pinhole ua: load wants --aor FMT and --count N\n");
		goto out;
	}
	char a1[300], a2[300];
	struct sip_uri u;
	if (ua_load_fmt(c->aor_fmt, c->first, a1, sizeof a1) || strlen(a1) >= sizeof c->base.aor ||
	    ua_load_fmt(c->aor_fmt, c->first + c->count - 1, a2, sizeof a2) ||
	    strlen(a2) >= sizeof c->base.aor || sip_uri_parse(slice_cstr(a2), &u) ||
	    !slice_eq_cstr_nocase(u.scheme, "sip") || !u.user.l || !u.host.l) {
		fprintf(stderr,
			"pinhole ua: bad --aor '%s': want sip:user%%u@domain (one %%u, no other "
			"%%)\n",
			c->aor_fmt);
		goto out;
	}
	if (c->call_to[0]) {
		bool fmt = strchr(c->call_to, '%') != NULL;
		if ((fmt && ua_load_fmt(c->call_to, 1, a1, sizeof a1)) ||
		    sip_uri_parse(slice_cstr(fmt ? a1 : c->call_to), &u) || !u.host.l) {
			fprintf(stderr, "pinhole ua: bad --call-to '%s'\n", c->call_to);
			goto out;
		}
		if (slice_eq_cstr_nocase(u.user, "echo"))
			c->base.echo = true;
		if (!c->callee_count)
			c->callee_count = c->count;
	} else if (c->calls && c->count < 2) {
		fprintf(stderr, "pinhole ua: calls between pairs want --count 2 or more\n");
		goto out;
	}
	char err[320];
	for (unsigned i = 0; i < np; i++)
		if (cli_ua_proxy(proxies[i], &c->base.proxy[i], err, sizeof err)) {
			fprintf(stderr, "pinhole ua: %s\n", err);
			goto out;
		}
	c->base.n_proxy = np;
	if (!np) {
		char spec[300];
		sip_uri_parse(slice_cstr(a2), &u);
		snprintf(spec, sizeof spec, "udp:%.*s:%u", (int)u.host.l, u.host.p,
			 u.port ? u.port : 5060);
		if (cli_ua_proxy(spec, &c->base.proxy[0], err, sizeof err)) {
			fprintf(stderr, "pinhole ua: %s\n", err);
			goto out;
		}
		c->base.n_proxy = 1;
	}
	int e = cli_ua_password(pwfile, pwstdin, c->base.password, sizeof c->base.password);
	if (e) {
		fprintf(stderr, "pinhole ua: cannot read the password: %s\n", strerror(e));
		goto out;
	}
	if (pwfmt || pwlist) {
		pw = calloc(c->count, sizeof *pw);
		if (!pw) {
			rc = UA_EXIT_ERROR;
			goto out;
		}
		for (unsigned i = 0; pwfmt && i < c->count; i++) {
			char p[256];
			if (ua_load_fmt(pwfmt, c->first + i, p, sizeof p)) {
				fprintf(stderr, "pinhole ua: bad --password-fmt (one %%u)\n");
				goto out;
			}
			pw[i] = strdup(p);
			OPENSSL_cleanse(p, sizeof p);
		}
		if (pwlist && (e = load_passwords(pwlist, c, pw))) {
			if (e != EINVAL)
				fprintf(stderr, "pinhole ua: --passwords %s: %s\n", pwlist,
					strerror(e));
			goto out;
		}
		c->passwords = pw;
	}
	char path[4096];
	if (!state) {
		if (ua_state_default_path(path, sizeof path)) {
			fprintf(stderr,
				"pinhole ua: no XDG_STATE_HOME or HOME: give --state FILE\n");
			goto out;
		}
		state = path;
	}
	e = ua_state_instance(state, c->base.instance);
	if (e) {
		fprintf(stderr, "pinhole ua: state file %s: %s\n", state,
			e == EBADMSG ? "no valid instance line in it (left as it is)"
				     : strerror(e));
		rc = UA_EXIT_ERROR;
		goto out;
	}
	rc = load_run(c, json);
out:
	if (pw) {
		for (unsigned i = 0; i < c->count; i++) {
			if (pw[i])
				OPENSSL_cleanse(pw[i], strlen(pw[i]));
			free(pw[i]);
		}
		free(pw);
	}
	OPENSSL_cleanse(c->base.password, sizeof c->base.password);
	free(c);
	return rc;
}
