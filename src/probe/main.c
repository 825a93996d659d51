/* `pinhole probe`: command line, name resolution, and output. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"

static const char usage[] =
    "usage: pinhole probe [options] SERVER[:PORT]\n"
    "Runs the RFC 5780 NAT behaviour tests against a STUN server (default port 3478)\n"
    "and says what they mean for SIP.\n"
    "  --json            one JSON object on stdout instead of text\n"
    "  --max-wait S      longest binding lifetime to test, seconds (default 90)\n"
    "  --no-lifetime     skip the binding lifetime test (RFC 5780 4.6)\n"
    "  --timeout MS      per request, retransmissions included (default 2000)\n"
    "  --local ADDR      local address to send from (default: any)\n"
    "  -h, --help        this text\n"
    "exit status: 0 done, 1 no answer, 2 usage, 3 partial (server lacks RFC 5780)\n"
    "\n"
    "--turn checks a TURN server (RFC 8656) instead: allocate, permit, relay a random\n"
    "payload from a second socket of ours up through the relay and back over a channel,\n"
    "deallocate; it reports the time to allocate and the relayed address.\n"
    "  --turn                  the TURN check (SERVER is the TURN server, port 3478)\n"
    "  --turn-tcp              to the server over TCP (the relay is UDP either way)\n"
    "  --turn-user USER        long-term credentials (the password from\n"
    "                          $PINHOLE_TURN_PASSWORD or --turn-password)\n"
    "  --turn-password PASS    (visible to ps: prefer the environment)\n"
    "  --turn-secret SECRET    coturn's shared secret (use-auth-secret): the user name is\n"
    "                          EXPIRY[:USER]; or $PINHOLE_TURN_SECRET\n"
    "  exit status with --turn: 0 data went both ways, 1 no answer, 2 usage,\n"
    "  4 credentials refused, 5 allocation refused, 6 allocated but no round trip\n";

/* "host", "host:port", "[v6]:port" or a bare IPv6 literal. */
static int resolve(const char *s, int family, uint16_t defport, struct sockaddr_storage *out,
		   char *err, size_t errlen)
{
	char host[256], port[16];
	snprintf(port, sizeof port, "%u", defport);
	const char *colon = strrchr(s, ':');
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || (size_t)(end - s - 1) >= sizeof host) {
			snprintf(err, errlen, "bad address '%s'", s);
			return EINVAL;
		}
		memcpy(host, s + 1, (size_t)(end - s - 1));
		host[end - s - 1] = 0;
		if (end[1] == ':')
			snprintf(port, sizeof port, "%s", end + 2);
	} else if (colon && strchr(s, ':') == colon) {
		snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
		snprintf(port, sizeof port, "%s", colon + 1);
	} else {
		snprintf(host, sizeof host, "%s", s);
	}
	struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_DGRAM};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc || !res) {
		snprintf(err, errlen, "cannot resolve '%s': %s", s, gai_strerror(rc));
		return EINVAL;
	}
	memset(out, 0, sizeof *out);
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || !*s || *end || v > max)
		return EINVAL;
	*out = (unsigned)v;
	return 0;
}

static int turn_main(const struct probe_opts *o, struct probe_turn_opts *to, bool json)
{
	const char *env = getenv("PINHOLE_TURN_PASSWORD");
	if (!to->cred.pass[0] && env)
		snprintf(to->cred.pass, sizeof to->cred.pass, "%s", env);
	env = getenv("PINHOLE_TURN_SECRET");
	if (!to->cred.secret[0] && env)
		snprintf(to->cred.secret, sizeof to->cred.secret, "%s", env);
	if (!to->cred.secret[0] && (!to->cred.user[0] || !to->cred.pass[0])) {
		fprintf(stderr, "probe: --turn wants --turn-user and a password "
				"($PINHOLE_TURN_PASSWORD), or --turn-secret\n");
		return 2;
	}
	to->server = o->server;
	/* the check as a whole: a few round trips; a lost one costs an RTO */
	to->timeout_ms = o->timeout_ms * 5;
	struct probe_turn_result r;
	int err = probe_turn_run(to, &r);
	struct buf out;
	buf_init(&out);
	if (json)
		probe_turn_report_json(to, &r, &out);
	else
		probe_turn_report_text(to, &r, &out);
	fwrite(out.data, 1, out.len, stdout);
	buf_free(&out);
	explicit_bzero(to->cred.pass, sizeof to->cred.pass);
	explicit_bzero(to->cred.secret, sizeof to->cred.secret);
	return err ? 1 : probe_turn_exit(&r);
}

int probe_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"max-wait", required_argument, NULL, 'w'},
	    {"no-lifetime", no_argument, NULL, 'n'},
	    {"timeout", required_argument, NULL, 't'},
	    {"local", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    /* --turn */
	    {"turn", no_argument, NULL, 'T'},
	    {"turn-tcp", no_argument, NULL, 'C'},
	    {"turn-user", required_argument, NULL, 'U'},
	    {"turn-password", required_argument, NULL, 'P'},
	    {"turn-secret", required_argument, NULL, 'S'},
	    {NULL, 0, NULL, 0},
	};
	struct probe_turn_opts to = {0};
	bool turn = false;
	struct probe_opts o = {.timeout_ms = 2000, .max_wait_s = 90, .lifetime = true};
	bool json = false;
	const char *local = NULL;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'w':
			if (parse_uint(optarg, 3600, &o.max_wait_s) || !o.max_wait_s) {
				fprintf(stderr, "probe: --max-wait wants 1..3600 seconds\n");
				return 2;
			}
			break;
		case 'n':
			o.lifetime = false;
			break;
		case 't':
			if (parse_uint(optarg, 60000, &o.timeout_ms) || o.timeout_ms < 100) {
				fprintf(stderr, "probe: --timeout wants 100..60000 ms\n");
				return 2;
			}
			break;
		case 'l':
			local = optarg;
			break;
		case 'T':
			turn = true;
			break;
		case 'C':
			to.tcp = true;
			break;
		case 'U':
			snprintf(to.cred.user, sizeof to.cred.user, "%s", optarg);
			break;
		case 'P':
			snprintf(to.cred.pass, sizeof to.cred.pass, "%s", optarg);
			break;
		case 'S':
			snprintf(to.cred.secret, sizeof to.cred.secret, "%s", optarg);
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fputs(usage, stderr);
		return 2;
	}
	char err[256];
	int family = AF_UNSPEC;
	if (local) {
		if (resolve(local, AF_UNSPEC, 0, &o.local, err, sizeof err)) {
			fprintf(stderr, "probe: --local: %s\n", err);
			return 2;
		}
		family = o.local.ss_family;
	}
	if (resolve(argv[optind], family, 3478, &o.server, err, sizeof err)) {
		fprintf(stderr, "probe: %s\n", err);
		return 2;
	}
	if (!local)
		o.local.ss_family = o.server.ss_family; /* any address, any port */
	if (turn)
		return turn_main(&o, &to, json);

	struct probe_result r;
	int rc = probe_run(&o, &r);
	struct probe_verdict v;
	probe_verdict(&r, &v);
	struct buf out;
	buf_init(&out);
	if (json)
		probe_report_json(&r, &v, &out);
	else
		probe_report_text(&r, &v, &out);
	if (!r.answered && !json)
		fprintf(stderr, "probe: %.*s", (int)out.len, out.data);
	else
		fwrite(out.data, 1, out.len, stdout);
	buf_free(&out);
	if (rc || !r.answered)
		return 1;
	return r.rfc5780 ? 0 : 3;
}
