/* `pinhole probe`: command line, name resolution, and output. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    "  --turn-over LIST        check each way of reaching the server in LIST, in turn:\n"
    "                          udp, tcp, tls, each with an optional :PORT (default:\n"
    "                          SERVER's port, else 3478, tls 5349), e.g.\n"
    "                          udp,tcp,tls,tls:443 (default udp; the relay is UDP\n"
    "                          either way)\n"
    "  --turn-tcp, --turn-tls  the same as --turn-over tcp, --turn-over tls\n"
    "  --ca FILE               tls: trust the certificates this PEM file's CAs signed\n"
    "                          (default: the system trust store); the certificate\n"
    "                          must name SERVER as given (a name or an address)\n"
    "  --turn-user USER        long-term credentials (the password from\n"
    "                          $PINHOLE_TURN_PASSWORD or --turn-password)\n"
    "  --turn-password PASS    (visible to ps: prefer the environment)\n"
    "  --turn-secret SECRET    coturn's shared secret (use-auth-secret): the user name is\n"
    "                          EXPIRY[:USER]; or $PINHOLE_TURN_SECRET\n"
    "  exit status with --turn: 0 data went both ways, 1 no answer or no connection,\n"
    "  2 usage, 4 credentials refused, 5 allocation refused, 6 allocated but no round\n"
    "  trip, 7 no TLS (certificate not trusted, or not a TLS port); with several\n"
    "  ways, 0 when every one worked, else the status of the first that did not\n";

#define PROBE_TURN_MAX_WAYS 8

/* One way of reaching the TURN server: a transport and a port (0: default). */
struct turn_way {
	enum probe_turn_transport transport;
	uint16_t port;
};

/* "host", "host:port", "[v6]:port" or a bare IPv6 literal; the host part
 * into name (when not NULL) if it is a name, not an address. */
static int resolve(const char *s, int family, uint16_t defport, struct sockaddr_storage *out,
		   char *name, size_t namelen, char *err, size_t errlen)
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
	struct net_addr literal;
	if (name && net_addr_from_host(slice_cstr(host), 0, &literal))
		snprintf(name, namelen, "%s", host);
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

/* "udp,tcp,tls:443": the ways in order; EINVAL on anything else. */
static int parse_ways(const char *list, struct turn_way *ways, unsigned *n)
{
	char copy[256];
	if (snprintf(copy, sizeof copy, "%s", list) >= (int)sizeof copy)
		return EINVAL;
	*n = 0;
	char *save = NULL;
	for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		if (*n == PROBE_TURN_MAX_WAYS)
			return EINVAL;
		struct turn_way *t = &ways[(*n)++];
		char *colon = strchr(w, ':');
		t->port = 0;
		if (colon) {
			unsigned port;
			*colon = 0;
			if (parse_uint(colon + 1, 65535, &port) || !port)
				return EINVAL;
			t->port = (uint16_t)port;
		}
		if (!strcmp(w, "udp"))
			t->transport = PROBE_TURN_UDP;
		else if (!strcmp(w, "tcp"))
			t->transport = PROBE_TURN_TCP;
		else if (!strcmp(w, "tls"))
			t->transport = PROBE_TURN_TLS;
		else
			return EINVAL;
	}
	return *n ? 0 : EINVAL;
}

static int turn_main(const struct probe_opts *o, struct probe_turn_opts *to,
		     const struct turn_way *ways, unsigned nways, bool json)
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
	/* the check as a whole: a few round trips; a lost one costs an RTO */
	to->timeout_ms = o->timeout_ms * 5;
	struct net_addr srv;
	memcpy(&srv.u.ss, &o->server, sizeof srv.u.ss);
	uint16_t given = net_addr_port(&srv);
	int status = 0;
	struct buf out, works;
	buf_init(&out);
	buf_init(&works);
	if (json && nways > 1)
		buf_append_cstr(&out, "{\"turn_checks\":[");
	for (unsigned i = 0; i < nways; i++) {
		struct probe_turn_result r;
		to->transport = ways[i].transport;
		uint16_t port = ways[i].port ? ways[i].port : given;
		if (!port)
			port = to->transport == PROBE_TURN_TLS ? 5349 : 3478;
		net_addr_set_port(&srv, port);
		memcpy(&to->server, &srv.u.ss, sizeof to->server);
		int rc = probe_turn_run(to, &r) ? 1 : probe_turn_exit(&r);
		if (rc && !status)
			status = rc;
		const char *sep = !works.len ? "" : json ? "," : ", ", *q = json ? "\"" : "";
		if (!rc)
			buf_printf(&works, "%s%s%s:%u%s", sep, q,
				   probe_turn_transport_name(to->transport), port, q);
		if (json && nways > 1) {
			if (i)
				buf_append_cstr(&out, ",");
			probe_turn_json_check(to, &r, &out);
		} else if (json) {
			probe_turn_report_json(to, &r, &out);
		} else {
			if (i)
				buf_append_cstr(&out, "\n");
			probe_turn_report_text(to, &r, &out);
		}
	}
	if (json && nways > 1)
		buf_printf(&out, "],\"works_over\":[%.*s],\"exit\":%d}\n", (int)works.len,
			   works.data ? works.data : "", status);
	else if (nways > 1)
		buf_printf(&out, "\nTURN works over: %.*s\n", (int)(works.len ? works.len : 4),
			   works.len ? works.data : "none");
	fwrite(out.data, 1, out.len, stdout);
	buf_free(&out);
	buf_free(&works);
	explicit_bzero(to->cred.pass, sizeof to->cred.pass);
	explicit_bzero(to->cred.secret, sizeof to->cred.secret);
	return status;
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
	    {"turn-tls", no_argument, NULL, 'L'},
	    {"turn-over", required_argument, NULL, 'O'},
	    {"ca", required_argument, NULL, 'A'},
	    {"turn-user", required_argument, NULL, 'U'},
	    {"turn-password", required_argument, NULL, 'P'},
	    {"turn-secret", required_argument, NULL, 'S'},
	    {NULL, 0, NULL, 0},
	};
	struct probe_turn_opts to = {0};
	struct turn_way ways[PROBE_TURN_MAX_WAYS] = {{PROBE_TURN_UDP, 0}};
	unsigned nways = 1;
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
		case 'L':
			ways[0] = (struct turn_way){c == 'C' ? PROBE_TURN_TCP : PROBE_TURN_TLS, 0};
			nways = 1;
			break;
		case 'O':
			if (parse_ways(optarg, ways, &nways)) {
				fprintf(stderr,
					"probe: --turn-over wants up to %d of udp, tcp, tls, "
					"each with an optional :PORT, comma-separated\n",
					PROBE_TURN_MAX_WAYS);
				return 2;
			}
			break;
		case 'A':
			if (access(optarg, R_OK)) {
				fprintf(stderr, "probe: --ca %s: %s\n", optarg, strerror(errno));
				return 2;
			}
			to.ca_file = optarg;
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
		if (resolve(local, AF_UNSPEC, 0, &o.local, NULL, 0, err, sizeof err)) {
			fprintf(stderr, "probe: --local: %s\n", err);
			return 2;
		}
		family = o.local.ss_family;
	}
	/* port 0 here: none given (--turn picks one per transport) */
	if (resolve(argv[optind], family, turn ? 0 : 3478, &o.server, to.host, sizeof to.host, err,
		    sizeof err)) {
		fprintf(stderr, "probe: %s\n", err);
		return 2;
	}
	if (!local)
		o.local.ss_family = o.server.ss_family; /* any address, any port */
	if (turn)
		return turn_main(&o, &to, ways, nways, json);

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
