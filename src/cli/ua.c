/* pinhole ua: the command line of the user agent (register, call), its signals and output. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "ua/ua.h"

static const char usage_text[] =
    "usage: pinhole ua register [options] AOR\n"
    "       pinhole ua call [options] --aor AOR URI\n"
    "       pinhole ua check [options] AOR\n"
    "       pinhole ua load [options] --aor FMT --count N   (see ua load --help)\n"
    "Registers AOR (sip:user@domain) through one or two outbound proxies, one flow\n"
    "each (RFC 5626 SIP Outbound), keeps the flows alive, replaces a failed one, and\n"
    "unregisters on SIGINT or SIGTERM. One line per event on stdout.\n\n"
    "options:\n"
    "  --proxy TP:HOST[:PORT]  an outbound proxy, TP udp, tcp, tls, ws or wss, port\n"
    "                          5060 by default (tls: 5061, ws: 80, wss: 443);\n"
    "                          give it twice for two flows (reg-id 1 and 2). Default:\n"
    "                          udp:DOMAIN:PORT of the AOR\n"
    "  --user NAME             digest user name (default: the AOR's user part)\n"
    "  --password-stdin        read the password from the first line of stdin\n"
    "  --password-file FILE    read it from the first line of FILE\n"
    "                          (else $PINHOLE_UA_PASSWORD; none: register unauthenticated)\n"
    "  --state FILE            this installation's +sip.instance lives here (default\n"
    "                          $XDG_STATE_HOME/pinhole/ua.state, ~/.local/state/...)\n"
    "  --expires S             registration lifetime to ask for (default 600)\n"
    "  --keepalive S           keep flows alive every 80-100 %% of S seconds instead of\n"
    "                          the server's Flow-Timer (default: Flow-Timer, else\n"
    "                          24-29 s on UDP and 95-120 s on TCP)\n"
    "  --nat-refresh S         without outbound at the server: re-register every S\n"
    "                          seconds to hold the NAT binding (default 25 UDP, 110 TCP)\n"
    "  --backoff-ok S          RFC 5626 4.5 base-time while another flow works (90)\n"
    "  --backoff-all S         base-time when every flow failed (30)\n"
    "  --backoff-max S         max-time (1800)\n"
    "  --once                  register every flow, unregister, exit\n"
    "  --auto-answer           (register) answer incoming calls 200 with PCMU/PCMA\n"
    "                          media instead of 480; print a verdict per call\n\n"
    "call: registers AOR through the flows as register does (or --no-register), then\n"
    "INVITEs URI with an SDP offer (PCMU, PCMA, a=rtcp, rtcp-mux), answers digest\n"
    "challenges, sends a tone as 20 ms RTP packets and RTCP reports every 5 s, hangs\n"
    "up after --duration, and prints the media verdict: did audio go both ways.\n"
    "SIGINT before the answer sends CANCEL, after it BYE.\n"
    "  --aor AOR               who we are (From); --no-register default sip:ua@HOST\n"
    "  --no-register           call at once, without registering\n"
    "  --duration S            hang up after S seconds of call (default 10; answered\n"
    "                          calls: the far end hangs up, or 3600)\n"
    "  --answer-timeout S      CANCEL a call not answered within S seconds (60)\n"
    "  --tone HZ               the tone sent (440)\n"
    "  --echo                  the far end echoes our RTP (implied by sip:echo@...)\n"
    "\ncalls, either way (call, register --auto-answer):\n"
    "  --hold-after S          S seconds into the call, hold it: re-INVITE with\n"
    "                          a=sendonly (we go on sending, the far end stops)\n"
    "  --resume-after S        S seconds after the hold was answered, resume it:\n"
    "                          re-INVITE with a=sendrecv. A re-INVITE from the far\n"
    "                          end is answered with the mirrored direction (RFC 3264)\n"
    "                          and our RTP stops or restarts with it\n"
    "  --wav FILE              send FILE (WAV, 8 kHz mono 16-bit PCM; looped)\n"
    "                          instead of the tone\n"
    "  --record FILE           write the audio received to FILE (same format; the\n"
    "                          packets in arrival order, at most an hour; each call\n"
    "                          overwrites it)\n"
    "  --stun HOST[:PORT]      learn the RTP and RTCP sockets' mapped addresses from\n"
    "                          this STUN server (port 3478) and announce them in the\n"
    "                          SDP; the verdict says when that was not enough\n"
    "  --turn HOST[:PORT]      send the call's media through allocations on this TURN\n"
    "                          server (RFC 8656, UDP, port 3478): the SDP names the\n"
    "                          relayed addresses, RTP and RTCP go over channels\n"
    "  --turn-user USER        its long-term credentials; the password from\n"
    "                          --turn-password-file FILE, else $PINHOLE_TURN_PASSWORD\n"
    "  --turn-password PASS    (visible to ps: prefer the file or the environment)\n"
    "  --turn-secret SECRET    coturn's shared secret instead (use-auth-secret: the user\n"
    "                          name is EXPIRY:USER); or $PINHOLE_TURN_SECRET\n"
    "  --config FILE           read options from FILE first: INI, an optional [ua]\n"
    "                          section, key = value with the long options' names\n"
    "                          (proxy = udp:..., duration = 10, json = yes); the\n"
    "                          command line overrides it (and its --proxy replaces\n"
    "                          the file's)\n"
    "  --ca FILE               tls: trust the server certificates this PEM file's CAs\n"
    "                          signed (default: the system trust store); the\n"
    "                          certificate must also name the proxy's HOST\n"
    "  --ws-path PATH          ws:, wss: the upgrade's path (default /)\n"
    "  --ws-origin ORIGIN      ws:, wss: send this Origin (default none, as a\n"
    "                          non-browser client); wss: checks the certificate as\n"
    "                          tls: does (--ca)\n"
    "  --json                  one JSON object per event instead of text\n"
    "  -h, --help              this text\n\n"
    "exit status: 0 registered (and unregistered at the end), 1 local error (socket,\n"
    "state file), 2 usage, 3 credentials refused (401/407 to our answer), 4 refused\n"
    "(403, 404, 5xx... on every flow, or a refused WebSocket upgrade; for call: a\n"
    "4xx/5xx/6xx to the INVITE), 5 no answer (unreachable proxy, timeouts, no answer\n"
    "to the INVITE), 6 the call was answered but audio did not go both ways (the\n"
    "verdict says which way failed and why), 7 the call was cancelled (signal or\n"
    "--answer-timeout) before an answer, 8 a tls: or wss: flow's server certificate\n"
    "was refused (not trusted, or not naming the proxy's host), 9 --turn: no\n"
    "allocation for the media (credentials refused, another refusal, or no answer\n"
    "from the TURN server).\n"
    "Before any flow has registered, a failure of every flow ends the run; once one\n"
    "has, failed flows are retried (RFC 5626 4.5) until the end.\n\n"
    "check: probes the NAT (RFC 5780, against the first proxy's host on 3478, else its\n"
    "SIP port), registers AOR over the flows, calls the server's echo service for\n"
    "--duration (default 6) and prints one summary: NAT type, binding lifetime,\n"
    "keepalive interval, registration per flow, audio both ways, loss, jitter, RTT.\n"
    "  --echo-uri URI          the echo service (default sip:echo@ the AOR's domain)\n"
    "  --probe HOST[:PORT]     the STUN server to probe (default port 3478)\n"
    "  --no-probe              skip the NAT probe\n"
    "  --lifetime S            also measure the NAT binding lifetime, up to S seconds\n"
    "  (--no-register: probe and echo call only)\n"
    "check exits 0 when every flow registered and audio went both ways; else a flow's\n"
    "failure (3, 4, 5, 1), else the call's (4 refused, 5 no answer, 6 not two-way,\n"
    "7 not answered in time). A STUN server that does not answer is reported, not\n"
    "an error.\n";

/* ua check's own options, and what it found (src/ua/check.c). */
struct check_opts {
	const char *echo_uri, *probe;
	bool no_probe;
	unsigned lifetime_s;
	struct ua_check res;
};

struct run {
	struct loop *loop;
	struct ua *ua;
	bool json;
	int exit_code;
	bool done;
	char last_error[256];
	int sfd;
	unsigned signals;
	struct check_opts *check; /* ua check: events feed its summary */
};

static void on_event(const struct ua_event *ev, void *arg)
{
	struct run *r = arg;
	struct buf b;
	buf_init(&b);
	if (r->check) {
		ua_check_event(&r->check->res, ev);
		if (ev->kind == UA_EV_DONE) {
			/* the summary, then done with the check's own status */
			struct ua_event d = *ev;
			d.exit_code = ua_check_exit(&r->check->res);
			if (r->json)
				ua_check_json(&r->check->res, &b);
			else
				ua_check_text(&r->check->res, &b);
			if (r->json)
				buf_append(&b, "\n", 1);
			ua_event_format(&d, r->json, &b);
			buf_append(&b, "\n", 1);
			fwrite(b.data, 1, b.len, stdout);
			fflush(stdout);
			buf_free(&b);
			r->done = true;
			r->exit_code = d.exit_code;
			loop_stop(r->loop);
			return;
		}
	}
	ua_event_format(ev, r->json, &b);
	buf_append(&b, "\n", 1);
	fwrite(b.data, 1, b.len, stdout);
	fflush(stdout);
	buf_free(&b);
	if ((ev->kind == UA_EV_REG_FAILED || ev->kind == UA_EV_AUTH_FAILED) && ev->detail)
		snprintf(r->last_error, sizeof r->last_error, "flow %u (%s): %s", ev->flow,
			 ev->proxy, ev->detail);
	if (ev->kind == UA_EV_DONE) {
		r->done = true;
		r->exit_code = ev->exit_code;
		loop_stop(r->loop);
	}
}

static void on_signal(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct run *r = arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (++r->signals > 1) {
			/* a second ^C: leave without waiting for the unREGISTERs */
			loop_stop(r->loop);
			return;
		}
		ua_shutdown(r->ua);
	}
}

int cli_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || !*s || *end || v < min || v > max)
		return EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* "udp:host[:port]", "tcp:[v6]:port"; names are resolved once, here. */
static int parse_proxy(const char *s, struct ua_proxy *px, char *err, size_t errlen)
{
	const char *colon = strchr(s, ':');
	if (!colon) {
		snprintf(err, errlen, "--proxy '%s': want udp:, tcp:, tls:, ws: or wss:HOST[:PORT]",
			 s);
		return EINVAL;
	}
	if (net_transport_parse((struct slice){s, (size_t)(colon - s)}, &px->tp) ||
	    (px->tp != NET_UDP && px->tp != NET_TCP && px->tp != NET_TLS && px->tp != NET_WS &&
	     px->tp != NET_WSS)) {
		snprintf(err, errlen, "--proxy '%s': transport must be udp, tcp, tls, ws or wss", s);
		return EINVAL;
	}
	const char *hp = colon + 1, *port = NULL;
	char host[256];
	if (hp[0] == '[') {
		const char *end = strchr(hp, ']');
		if (!end || (size_t)(end - hp - 1) >= sizeof host || (end[1] && end[1] != ':')) {
			snprintf(err, errlen, "--proxy '%s': bad IPv6 reference", s);
			return EINVAL;
		}
		snprintf(host, sizeof host, "%.*s", (int)(end - hp - 1), hp + 1);
		port = end[1] == ':' ? end + 2 : NULL;
	} else {
		const char *c = strrchr(hp, ':');
		if (c && strchr(hp, ':') != c) {
			snprintf(err, errlen, "--proxy '%s': put an IPv6 address in [ ]", s);
			return EINVAL;
		}
		snprintf(host, sizeof host, "%.*s", (int)(c ? (size_t)(c - hp) : strlen(hp)), hp);
		port = c ? c + 1 : NULL;
	}
	unsigned p = px->tp == NET_TLS ? 5061 : px->tp == NET_WS ? 80 : px->tp == NET_WSS ? 443 : 5060;
	if (!host[0] || (port && cli_parse_uint(port, 1, 65535, &p))) {
		snprintf(err, errlen, "--proxy '%s': bad host or port", s);
		return EINVAL;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = px->tp == NET_UDP ? SOCK_DGRAM : SOCK_STREAM};
	struct addrinfo *res = NULL;
	char ps[8];
	snprintf(ps, sizeof ps, "%u", p);
	int rc = getaddrinfo(host, ps, &hints, &res);
	if (rc || !res) {
		snprintf(err, errlen, "--proxy '%s': cannot resolve %s: %s", s, host,
			 gai_strerror(rc));
		return EINVAL;
	}
	memset(&px->addr, 0, sizeof px->addr);
	memcpy(&px->addr.u.ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	snprintf(px->host, sizeof px->host, "%s", host);
	px->port = (uint16_t)p;
	return 0;
}

static int read_first_line(FILE *f, char *out, size_t cap)
{
	if (!fgets(out, (int)cap, f))
		return EIO;
	size_t n = strlen(out);
	if (n == cap - 1 && out[n - 1] != '\n')
		return ENAMETOOLONG;
	while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		out[--n] = '\0';
	return 0;
}

/* The AOR's host and port for the default proxy: "sip:alice@host:port". */
static int default_proxy(const char *aor, struct ua_proxy *px, char *err, size_t errlen)
{
	struct sip_uri u;
	if (sip_uri_parse(slice_cstr(aor), &u) || !u.host.l) {
		snprintf(err, errlen, "bad AOR '%s'", aor);
		return EINVAL;
	}
	char spec[300];
	snprintf(spec, sizeof spec, "udp:%.*s:%u", (int)u.host.l, u.host.p, u.port ? u.port : 5060);
	return parse_proxy(spec, px, err, errlen);
}

static int get_password(const char *file, bool from_stdin, char *pw, size_t cap)
{
	int err = 0;
	if (from_stdin) {
		err = read_first_line(stdin, pw, cap);
	} else if (file) {
		FILE *f = fopen(file, "re");
		if (!f)
			return errno;
		err = read_first_line(f, pw, cap);
		fclose(f);
	} else {
		const char *env = getenv("PINHOLE_UA_PASSWORD");
		if (env && strlen(env) >= cap)
			return ENAMETOOLONG;
		snprintf(pw, cap, "%s", env ? env : "");
	}
	return err;
}

/* ---- --config, --wav, --stun ---- */

#define UA_FILE_MAX (64u << 20) /* a WAV file: 70 minutes of 8 kHz mono */
#define UA_CONFIG_MAX 65536
#define UA_CONFIG_KEYS 64

static int read_file(const char *path, size_t max, struct buf *b)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	struct stat st;
	int err = 0;
	if (fstat(fd, &st))
		err = errno;
	else if (!S_ISREG(st.st_mode))
		err = EINVAL;
	else if ((uint64_t)st.st_size > max)
		err = EFBIG;
	while (!err) {
		char chunk[65536];
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0)
			err = errno;
		if (n <= 0)
			break;
		if (b->len + (size_t)n > max)
			err = EFBIG;
		else
			buf_append(b, chunk, (size_t)n);
	}
	close(fd);
	if (!err && b->failed)
		err = ENOMEM;
	return err;
}

static int load_wav(const char *path, struct ua_conf *c, char *err, size_t errlen)
{
	struct buf b;
	buf_init(&b);
	int e = read_file(path, UA_FILE_MAX, &b);
	struct rtp_wav w;
	if (e) {
		snprintf(err, errlen, "%s", e == EFBIG ? "over 64 MB" : strerror(e));
	} else if (rtp_wav_parse(&w, (const uint8_t *)b.data, b.len)) {
		snprintf(err, errlen, "%s", w.why);
		e = EINVAL;
	} else if (w.data_len / 2 < RTP_FRAME_SAMPLES) {
		snprintf(err, errlen, "shorter than one 20 ms packet");
		e = EINVAL;
	} else {
		size_t n = w.data_len / 2;
		int16_t *s = malloc(n * sizeof *s);
		if (!s) {
			e = ENOMEM;
			snprintf(err, errlen, "%s", strerror(e));
		} else {
			for (size_t i = 0; i < n; i++)
				s[i] = rtp_wav_sample(&w, (const uint8_t *)b.data, i);
			free((void *)c->wav);
			c->wav = s;
			c->wav_n = n;
		}
	}
	buf_free(&b);
	return e;
}

static int parse_stun(const char *s, struct ua_conf *c, char *err, size_t errlen)
{
	char spec[320];
	struct ua_proxy px;
	if (strlen(s) > 290) {
		snprintf(err, errlen, "too long");
		return EINVAL;
	}
	/* HOST[:PORT] parses as a UDP proxy would, with STUN's port by default */
	bool has_port = s[0] == '[' ? strstr(s, "]:") != NULL
				    : strchr(s, ':') && strchr(s, ':') == strrchr(s, ':');
	snprintf(spec, sizeof spec, "udp:%.290s%s", s, has_port ? "" : ":3478");
	char e2[320];
	if (parse_proxy(spec, &px, e2, sizeof e2)) {
		snprintf(err, errlen, "want HOST[:PORT] (port 3478 by default)");
		return EINVAL;
	}
	c->stun = px.addr;
	c->has_stun = true;
	return 0;
}

/* ---- --turn (src/ua/turn.c) ---- */

/* One --turn* option into c; 0 or EINVAL with err set. */
static int turn_option(int ch, const char *arg, struct ua_conf *c, char *err, size_t errlen)
{
	struct turnc_conf *t = &c->turn_cred;
	switch (ch) {
	case 0x120: {
		struct net_addr stun_was = c->stun;
		bool had = c->has_stun;
		int e = parse_stun(arg, c, err, errlen); /* the same HOST[:PORT], port 3478 */
		c->turn = c->stun;
		c->stun = stun_was;
		c->has_stun = had;
		c->has_turn = e == 0;
		return e;
	}
	case 0x121:
		if (strlen(arg) >= sizeof t->user || !arg[0])
			break;
		snprintf(t->user, sizeof t->user, "%s", arg);
		return 0;
	case 0x122:
		if (strlen(arg) >= sizeof t->pass || !arg[0])
			break;
		snprintf(t->pass, sizeof t->pass, "%s", arg);
		return 0;
	case 0x123: {
		FILE *f = fopen(arg, "re");
		if (!f) {
			snprintf(err, errlen, "%s", strerror(errno));
			return EINVAL;
		}
		int e = read_first_line(f, t->pass, sizeof t->pass);
		fclose(f);
		if (e || !t->pass[0]) {
			snprintf(err, errlen, "no password in it");
			return EINVAL;
		}
		return 0;
	}
	case 0x124:
		if (strlen(arg) >= sizeof t->secret || !arg[0])
			break;
		snprintf(t->secret, sizeof t->secret, "%s", arg);
		return 0;
	}
	snprintf(err, errlen, "empty or too long");
	return EINVAL;
}

/* After the options: the environment's secrets, and what goes together. */
static int turn_check(struct ua_conf *c, char *err, size_t errlen)
{
	struct turnc_conf *t = &c->turn_cred;
	if (!c->has_turn) {
		if (t->user[0] || t->pass[0] || t->secret[0]) {
			snprintf(err, errlen,
				 "--turn-user/--turn-password/--turn-secret need --turn");
			return EINVAL;
		}
		return 0;
	}
	if (c->has_stun) {
		snprintf(err, errlen,
			 "--turn and --stun do not go together (the relayed address "
			 "is what the SDP announces)");
		return EINVAL;
	}
	const char *pw = getenv("PINHOLE_TURN_PASSWORD"), *sec = getenv("PINHOLE_TURN_SECRET");
	if (!t->pass[0] && !t->secret[0] && pw && strlen(pw) < sizeof t->pass)
		snprintf(t->pass, sizeof t->pass, "%s", pw);
	if (!t->pass[0] && !t->secret[0] && sec && strlen(sec) < sizeof t->secret)
		snprintf(t->secret, sizeof t->secret, "%s", sec);
	if (!t->secret[0] && (!t->user[0] || !t->pass[0])) {
		snprintf(err, errlen,
			 "--turn wants --turn-user and a password "
			 "(--turn-password-file, $PINHOLE_TURN_PASSWORD), or --turn-secret");
		return EINVAL;
	}
	/* a call waits for the allocation: 0, 0.5, 1.5, 3.5, 7.5 s, then 8 s more */
	t->max_tries = 5;
	return 0;
}

/* The --config file's keys, read before the command line's options. */
struct file_opt {
	int ch, idx; /* idx: in the long options */
	char *val;
	unsigned line;
};
struct file_opts {
	const struct option *lo;
	const char *name;
	struct file_opt v[UA_CONFIG_KEYS];
	size_t n;
	char *err;
	size_t errlen;
};

static int file_key(const char *key, const char *value, unsigned line, void *arg)
{
	struct file_opts *fo = arg;
	const struct option *o = fo->lo;
	while (o->name && strcmp(o->name, key) != 0)
		o++;
	if (!o->name || o->val == 'C' || o->val == 'h') {
		snprintf(fo->err, fo->errlen, "unknown key '%s' (the keys are the long options)",
			 key);
		return EINVAL;
	}
	if (o->has_arg == no_argument) {
		if (!strcasecmp(value, "no") || !strcasecmp(value, "false") ||
		    !strcmp(value, "0") || !strcasecmp(value, "off"))
			return 0;
		if (strcasecmp(value, "yes") && strcasecmp(value, "true") && strcmp(value, "1") &&
		    strcasecmp(value, "on")) {
			snprintf(fo->err, fo->errlen, "%s wants yes or no, not '%s'", key, value);
			return EINVAL;
		}
	} else if (!value[0]) {
		snprintf(fo->err, fo->errlen, "%s wants a value", key);
		return EINVAL;
	}
	if (fo->n == UA_CONFIG_KEYS) {
		snprintf(fo->err, fo->errlen, "more than %d keys", UA_CONFIG_KEYS);
		return E2BIG;
	}
	char *v = strdup(value);
	if (!v) {
		snprintf(fo->err, fo->errlen, "out of memory");
		return ENOMEM;
	}
	fo->v[fo->n++] =
	    (struct file_opt){.ch = o->val, .idx = (int)(o - fo->lo), .val = v, .line = line};
	return 0;
}

/* --config FILE (or --config=FILE), wherever it is on the command line. */
static int load_config(int argc, char **argv, struct file_opts *fo, char *err, size_t errlen)
{
	const char *path = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			path = argv[i] + 9;
	}
	if (!path)
		return 0;
	fo->name = path;
	struct buf b;
	buf_init(&b);
	int e = read_file(path, UA_CONFIG_MAX, &b);
	buf_append(&b, "", 1);
	if (e || b.failed) {
		snprintf(err, errlen, "--config %s: %s", path,
			 e == EFBIG ? "over 64 kB" : strerror(e ? e : ENOMEM));
		buf_free(&b);
		return e ? e : ENOMEM;
	}
	if (memchr(b.data, '\0', b.len - 1)) {
		snprintf(err, errlen, "--config %s: not a text file (a NUL byte)", path);
		buf_free(&b);
		return EINVAL;
	}
	fo->err = err;
	fo->errlen = errlen;
	e = ua_ini_parse(path, (const char *)b.data, file_key, fo, err, errlen);
	buf_free(&b);
	return e;
}

static int run_loop(struct ua_conf *conf, bool json, struct check_opts *chk)
{
	struct run r = {.json = json, .sfd = -1, .check = chk};
	int rc = UA_EXIT_ERROR;
	if (loop_alloc(&r.loop)) {
		fprintf(stderr, "pinhole ua: cannot make an event loop\n");
		return UA_EXIT_ERROR;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	r.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (r.sfd < 0 || loop_fd_add(r.loop, r.sfd, EPOLLIN, on_signal, &r)) {
		fprintf(stderr, "pinhole ua: cannot watch signals: %s\n", strerror(errno));
		goto out_loop;
	}
	int err = ua_alloc(&r.ua, r.loop, conf, on_event, &r);
	if (err) {
		fprintf(stderr, "pinhole ua: %s\n",
			err == EINVAL ? "the AOR must be sip:user@domain" : strerror(err));
		rc = err == EINVAL ? UA_EXIT_USAGE : UA_EXIT_ERROR;
		goto out_loop;
	}
	if (chk) {
		ua_check_init(&chk->res, conf);
		if (!chk->no_probe &&
		    ua_check_probe(&chk->res, conf, chk->probe, chk->lifetime_s) == EINVAL) {
			fprintf(stderr, "pinhole ua: --probe '%s' does not resolve\n", chk->probe);
			rc = UA_EXIT_USAGE;
			ua_free(r.ua);
			goto out_loop;
		}
	}
	ua_start(r.ua);
	loop_run(r.loop);
	rc = r.done ? r.exit_code : UA_EXIT_OK;
	if (rc && r.last_error[0])
		fprintf(stderr, "pinhole ua: %s\n", r.last_error);
	else if (rc == UA_EXIT_TIMEOUT)
		fprintf(stderr, "pinhole ua: no flow got an answer\n");
	ua_free(r.ua);
out_loop:
	if (r.sfd >= 0) {
		loop_fd_del(r.loop, r.sfd);
		close(r.sfd);
	}
	loop_free(r.loop);
	return rc;
}

static int cli_ua_run(int argc, char **argv, bool call, struct check_opts *chk)
{
	static const struct option longopts[] = {
	    {"proxy", required_argument, NULL, 'p'},
	    {"user", required_argument, NULL, 'u'},
	    {"password-stdin", no_argument, NULL, 'S'},
	    {"password-file", required_argument, NULL, 'F'},
	    {"state", required_argument, NULL, 's'},
	    {"expires", required_argument, NULL, 'e'},
	    {"keepalive", required_argument, NULL, 'k'},
	    {"nat-refresh", required_argument, NULL, 'n'},
	    {"backoff-ok", required_argument, NULL, 'O'},
	    {"backoff-all", required_argument, NULL, 'A'},
	    {"backoff-max", required_argument, NULL, 'M'},
	    {"once", no_argument, NULL, '1'},
	    {"auto-answer", no_argument, NULL, 'a'},
	    {"aor", required_argument, NULL, 'R'},
	    {"no-register", no_argument, NULL, 'N'},
	    {"duration", required_argument, NULL, 'd'},
	    {"answer-timeout", required_argument, NULL, 'T'},
	    {"tone", required_argument, NULL, 't'},
	    {"echo", no_argument, NULL, 'E'},
	    {"hold-after", required_argument, NULL, 'H'},
	    {"resume-after", required_argument, NULL, 'U'},
	    {"wav", required_argument, NULL, 'W'},
	    {"record", required_argument, NULL, 'r'},
	    {"stun", required_argument, NULL, 'X'},
	    {"turn", required_argument, NULL, 0x120},
	    {"turn-user", required_argument, NULL, 0x121},
	    {"turn-password", required_argument, NULL, 0x122},
	    {"turn-password-file", required_argument, NULL, 0x123},
	    {"turn-secret", required_argument, NULL, 0x124},
	    {"config", required_argument, NULL, 'C'},
	    {"ca", required_argument, NULL, 0x110},
	    {"ws-path", required_argument, NULL, 0x130},
	    {"ws-origin", required_argument, NULL, 0x131},
	    {"json", no_argument, NULL, 'j'},
	    {"echo-uri", required_argument, NULL, 0x100},
	    {"probe", required_argument, NULL, 0x101},
	    {"no-probe", no_argument, NULL, 0x102},
	    {"lifetime", required_argument, NULL, 0x103},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct ua_conf *c = calloc(1, sizeof *c);
	if (!c)
		return UA_EXIT_ERROR;
	const char *state = NULL, *pwfile = NULL, *proxies[UA_MAX_FLOWS], *aor_opt = NULL;
	bool pwstdin = false, json = false;
	unsigned np = 0;
	int rc = UA_EXIT_USAGE, ch;
	char err[320];
	struct file_opts fo = {.lo = longopts};
	unsigned proxy_line[UA_MAX_FLOWS] = {0}; /* 0: from the command line */
	const char *where = "";
	char wbuf[4200];
	if (load_config(argc, argv, &fo, err, sizeof err)) {
		fprintf(stderr, "pinhole ua: %s\n", err);
		goto out;
	}
	size_t fi = 0;
	bool cli_proxy = false;
	optind = 1;
	int optind_long = 0;
	for (;;) {
		if (fi < fo.n) {
			/* the file's keys first, so that the command line wins */
			ch = fo.v[fi].ch;
			optarg = fo.v[fi].val;
			optind_long = fo.v[fi].idx;
			snprintf(wbuf, sizeof wbuf, "%s:%u: ", fo.name, fo.v[fi].line);
			where = wbuf;
			fi++;
		} else {
			where = "";
			ch = getopt_long(argc, argv, "h", longopts, &optind_long);
			if (ch == -1)
				break;
		}
		unsigned *num = NULL, lo = 1, hi = 86400;
		const char *name = NULL;
		switch (ch) {
		case 'p':
			if (!where[0] && !cli_proxy) {
				cli_proxy = true;
				np = 0; /* the command line's --proxy replace the file's */
			}
			if (np == UA_MAX_FLOWS) {
				fprintf(stderr, "pinhole ua: at most %d --proxy\n", UA_MAX_FLOWS);
				goto out;
			}
			proxy_line[np] = fi && where[0] ? fo.v[fi - 1].line : 0;
			proxies[np++] = optarg;
			break;
		case 'u':
			if (strlen(optarg) >= sizeof c->auth_user) {
				fprintf(stderr, "pinhole ua: --user too long\n");
				goto out;
			}
			snprintf(c->auth_user, sizeof c->auth_user, "%s", optarg);
			break;
		case 'S':
			pwstdin = true;
			break;
		case 'F':
			pwfile = optarg;
			break;
		case 's':
			state = optarg;
			break;
		case 'e':
			num = &c->expires, name = "--expires", lo = 1;
			break;
		case 'k':
			num = &c->keepalive_s, name = "--keepalive";
			break;
		case 'n':
			num = &c->nat_refresh_s, name = "--nat-refresh";
			break;
		case 'O':
			num = &c->backoff_ok_s, name = "--backoff-ok";
			break;
		case 'A':
			num = &c->backoff_all_s, name = "--backoff-all";
			break;
		case 'M':
			num = &c->backoff_max_s, name = "--backoff-max";
			break;
		case '1':
			c->once = true;
			break;
		case 'a':
			c->auto_answer = true;
			break;
		case 'R':
			aor_opt = optarg;
			break;
		case 'N':
			c->no_register = true;
			break;
		case 'd':
			num = &c->duration_s, name = "--duration";
			break;
		case 'T':
			num = &c->answer_s, name = "--answer-timeout";
			break;
		case 't':
			num = &c->tone_hz, name = "--tone", hi = 3999;
			break;
		case 'E':
			c->echo = true;
			break;
		case 'H':
			num = &c->hold_s, name = "--hold-after";
			break;
		case 'U':
			num = &c->resume_s, name = "--resume-after";
			break;
		case 'W':
			if (load_wav(optarg, c, err, sizeof err)) {
				fprintf(stderr, "pinhole ua: %s--wav %s: %s\n", where, optarg, err);
				where = "";
				goto out;
			}
			break;
		case 'r':
			if (strlen(optarg) >= 4096 || !optarg[0]) {
				fprintf(stderr, "pinhole ua: %s--record: bad file name\n", where);
				where = "";
				goto out;
			}
			c->record = optarg; /* argv, or the config's copy: both outlive the run */
			break;
		case 'X':
			if (parse_stun(optarg, c, err, sizeof err)) {
				fprintf(stderr, "pinhole ua: %s--stun %s: %s\n", where, optarg,
					err);
				where = "";
				goto out;
			}
			break;
		case 0x120:
		case 0x121:
		case 0x122:
		case 0x123:
		case 0x124:
			if (turn_option(ch, optarg, c, err, sizeof err)) {
				fprintf(stderr, "pinhole ua: %s--%s: %s\n", where,
					longopts[optind_long].name, err);
				where = "";
				goto out;
			}
			break;
		case 'C':
			break; /* read before the loop */
		case 0x110: {
			FILE *cf = fopen(optarg, "re");
			if (!cf || strlen(optarg) >= sizeof c->ca_file) {
				fprintf(stderr, "pinhole ua: %s--ca %s: %s\n", where, optarg,
					cf ? "name too long" : strerror(errno));
				if (cf)
					fclose(cf);
				where = "";
				goto out;
			}
			fclose(cf);
			snprintf(c->ca_file, sizeof c->ca_file, "%s", optarg);
			break;
		}
		case 0x130: /* ws:, wss: (src/ua/ws.c) */
		case 0x131: {
			bool bad = strlen(optarg) > 1024 || !optarg[0] ||
				   (ch == 0x130 && optarg[0] != '/');
			for (const char *q = optarg; !bad && *q; q++)
				bad = (unsigned char)*q <= ' ' || *q == 0x7f;
			if (bad) {
				fprintf(stderr, "pinhole ua: %s--%s: %s\n", where,
					longopts[optind_long].name,
					ch == 0x130 ? "want /PATH without spaces" : "want an origin without spaces");
				where = "";
				goto out;
			}
			/* argv, or the --config value: both live until the ua is gone */
			if (ch == 0x130)
				c->ws_path = optarg;
			else
				c->ws_origin = optarg;
			break;
		}
		case 'j':
			json = true;
			break;
		case 0x100: /* ua check */
		case 0x101:
		case 0x102:
		case 0x103:
			if (!chk) {
				fprintf(stderr, "pinhole ua: --%s is for check\n",
					longopts[optind_long].name);
				goto out;
			}
			if (ch == 0x100)
				chk->echo_uri = optarg;
			else if (ch == 0x101)
				chk->probe = optarg;
			else if (ch == 0x102)
				chk->no_probe = true;
			else
				num = &chk->lifetime_s, name = "--lifetime", hi = 3600;
			break;
		case 'h':
			fputs(usage_text, stdout);
			rc = UA_EXIT_OK;
			goto out;
		default:
			fputs(usage_text, stderr);
			goto out;
		}
		if (num && cli_parse_uint(optarg, lo, hi, num)) {
			fprintf(stderr, "pinhole ua: %s%s wants %u..%u seconds, not '%s'\n", where,
				name, lo, hi, optarg);
			where = ""; /* told already */
			goto out;
		}
	}
	if (optind != argc - 1) {
		fputs(usage_text, stderr);
		goto out;
	}
	const char *aor = argv[optind];
	struct sip_uri u;
	char anon[sizeof c->aor];
	if (call) {
		const char *uri = argv[optind];
		if (strlen(uri) >= sizeof c->call_uri || sip_uri_parse(slice_cstr(uri), &u) ||
		    !slice_eq_cstr_nocase(u.scheme, "sip") || !u.host.l) {
			fprintf(stderr, "pinhole ua: bad URI '%s': want sip:user@host\n", uri);
			goto out;
		}
		snprintf(c->call_uri, sizeof c->call_uri, "%s", uri);
		if (slice_eq_cstr_nocase(u.user, "echo"))
			c->echo = true;
		if (!aor_opt && !c->no_register) {
			fprintf(stderr, "pinhole ua: call wants --aor AOR (or --no-register)\n");
			goto out;
		}
		if (!aor_opt) {
			snprintf(anon, sizeof anon, "sip:ua@%.*s%s%.0u", (int)u.host.l, u.host.p,
				 u.port ? ":" : "", u.port);
			aor_opt = anon;
		}
		aor = aor_opt;
	} else if ((c->no_register && !chk) || aor_opt) {
		fprintf(stderr, "pinhole ua: --no-register and --aor are for call\n");
		goto out;
	}
	if (strlen(aor) >= sizeof c->aor || sip_uri_parse(slice_cstr(aor), &u) ||
	    !slice_eq_cstr_nocase(u.scheme, "sip") || !u.user.l || !u.host.l) {
		fprintf(stderr, "pinhole ua: bad AOR '%s': want sip:user@domain\n", aor);
		goto out;
	}
	snprintf(c->aor, sizeof c->aor, "%s", aor);
	for (unsigned i = 0; i < np; i++)
		if (parse_proxy(proxies[i], &c->proxy[i], err, sizeof err)) {
			if (proxy_line[i])
				fprintf(stderr, "pinhole ua: %s:%u: %s\n", fo.name, proxy_line[i], err);
			else
				fprintf(stderr, "pinhole ua: %s\n", err);
			goto out;
		}
	c->n_proxy = np;
	if (!np) {
		if (default_proxy(aor, &c->proxy[0], err, sizeof err)) {
			fprintf(stderr, "pinhole ua: %s\n", err);
			goto out;
		}
		c->n_proxy = 1;
	}
	if (turn_check(c, err, sizeof err)) {
		fprintf(stderr, "pinhole ua: %s\n", err);
		goto out;
	}
	int e = get_password(pwfile, pwstdin, c->password, sizeof c->password);
	if (e) {
		fprintf(stderr, "pinhole ua: cannot read the password: %s\n", strerror(e));
		goto out;
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
	e = ua_state_instance(state, c->instance);
	if (e) {
		fprintf(stderr, "pinhole ua: state file %s: %s\n", state,
			e == EBADMSG
			    ? "no valid 'instance = urn:uuid:...' line in it (left as it is)"
			    : strerror(e));
		rc = UA_EXIT_ERROR;
		goto out;
	}
	if (chk) {
		/* the echo of the AOR's domain, unless named */
		char echo[sizeof c->call_uri];
		struct sip_uri eu;
		if (!chk->echo_uri) {
			sip_uri_parse(slice_cstr(c->aor), &eu);
			snprintf(echo, sizeof echo, "sip:echo@%.*s", (int)eu.host.l, eu.host.p);
			if (eu.port)
				snprintf(echo + strlen(echo), sizeof echo - strlen(echo), ":%u",
					 eu.port);
		} else if (strlen(chk->echo_uri) >= sizeof echo ||
			   sip_uri_parse(slice_cstr(chk->echo_uri), &eu) || !eu.host.l) {
			fprintf(stderr, "pinhole ua: bad --echo-uri '%s'\n", chk->echo_uri);
			goto out;
		}
		snprintf(c->call_uri, sizeof c->call_uri, "%s",
			 chk->echo_uri ? chk->echo_uri : echo);
		c->echo = true;
		if (!c->duration_s)
			c->duration_s = 6; /* two RTCP reports (1 s, 6 s): an RTT */
	}
	rc = run_loop(c, json, chk);
out:
	/* the older options' messages do not say where: this line does */
	if (rc == UA_EXIT_USAGE && where[0])
		fprintf(stderr, "pinhole ua: (at %.*s)\n", (int)strlen(where) - 2, where);
	for (size_t i = 0; i < fo.n; i++)
		free(fo.v[i].val);
	free((void *)c->wav);
	OPENSSL_cleanse(c->password, sizeof c->password);
	free(c);
	return rc;
}

/* ---- for ua load (ua_load.c): the same proxy and password rules ---- */

int cli_ua_proxy(const char *s, struct ua_proxy *px, char *err, size_t errlen)
{
	return parse_proxy(s, px, err, errlen);
}

int cli_ua_password(const char *file, bool from_stdin, char *pw, size_t cap)
{
	return get_password(file, from_stdin, pw, cap);
}

int cli_ua(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "load") == 0)
		return cli_ua_load(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "register") == 0)
		return cli_ua_run(argc - 1, argv + 1, false, NULL);
	if (argc >= 2 && strcmp(argv[1], "call") == 0)
		return cli_ua_run(argc - 1, argv + 1, true, NULL);
	if (argc >= 2 && strcmp(argv[1], "check") == 0) {
		struct check_opts *chk = calloc(1, sizeof *chk); /* a probe result: not on the stack */
		if (!chk)
			return UA_EXIT_ERROR;
		int rc = cli_ua_run(argc - 1, argv + 1, false, chk);
		free(chk);
		return rc;
	}
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return UA_EXIT_OK;
	}
	fputs(usage_text, stderr);
	return UA_EXIT_USAGE;
}
