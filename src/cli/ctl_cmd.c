/* pinhole ctl: reads a running server's control endpoint. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ctl/ctl.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: pinhole ctl [--control ADDR] [--token-file FILE] [--json] <what>\n\n"
		   "  registrations   bindings: AOR, contact, real source, flow, expiry, NAT,\n"
		   "                  keepalive, NAT verdict with its evidence\n"
		   "  calls           relayed calls: per party and stream, the signalling source,\n"
		   "                  the SDP's address, where media comes from, the evidence\n"
		   "  flows           flows bindings use: transport, local socket, remote address,\n"
		   "                  age, last keepalive, owner AOR/instance/reg-id, state\n"
		   "  allocations     TURN allocations: user, client 5-tuple, relayed address,\n"
		   "                  expiry, permissions, channels, bytes each way\n"
		   "  counters        counters as JSON\n"
		   "  metrics         counters in Prometheus text format\n\n"
		   "  --control ADDR  control endpoint (default 127.0.0.1:5080)\n"
		   "  --token-file FILE\n"
		   "                  bearer token for an endpoint with [control] token: the\n"
		   "                  file's first line (default: $PINHOLE_CTL_TOKEN, if set)\n"
		   "  --json          machine-readable output\n");
}

int cli_ctl(int argc, char **argv)
{
	static const struct option opts[] = {
		{"control", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"token-file", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *addr = "127.0.0.1:5080";
	const char *token_file = NULL;
	bool json = false;
	int o;
	while ((o = getopt_long(argc, argv, "c:jt:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			addr = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *what = argv[optind];
	const char *path;
	if (strcmp(what, "registrations") == 0)
		path = json ? "/registrations" : "/registrations?format=text";
	else if (strcmp(what, "calls") == 0)
		path = json ? "/calls" : "/calls?format=text";
	else if (strcmp(what, "flows") == 0)
		path = json ? "/flows" : "/flows?format=text";
	else if (strcmp(what, "allocations") == 0)
		path = json ? "/allocations" : "/allocations?format=text";
	else if (strcmp(what, "counters") == 0)
		path = "/counters";
	else if (strcmp(what, "metrics") == 0)
		path = "/metrics";
	else {
		fprintf(stderr, "pinhole ctl: unknown \"%s\"\n", what);
		usage(stderr);
		return 2;
	}
	/* from a file or the environment, never argv: /proc shows argv to everyone */
	char token_buf[CTL_TOKEN_MAX + 1];
	const char *token = getenv("PINHOLE_CTL_TOKEN");
	if (token && !token[0])
		token = NULL;
	if (token_file) {
		int terr = ctl_token_read(token_file, token_buf, sizeof token_buf);
		if (terr) {
			fprintf(stderr, "pinhole ctl: %s: %s\n", token_file,
				terr == EINVAL ? "want one line of 16-256 token68 characters"
					       : strerror(terr));
			return 2;
		}
		token = token_buf;
	} else if (token && ctl_token_check(token)) {
		fprintf(stderr, "pinhole ctl: PINHOLE_CTL_TOKEN: want 16-256 token68 characters\n");
		return 2;
	}
	struct buf out;
	buf_init(&out);
	int status = 0;
	int err = ctl_get(addr, token, path, &out, &status);
	if (status == 401)
		fprintf(stderr, "pinhole ctl: %s: 401, the endpoint wants a token "
				"(--token-file or PINHOLE_CTL_TOKEN)\n", addr);
	if (err && out.len == 0) {
		fprintf(stderr, "pinhole ctl: %s: %s\n", addr, strerror(err));
		buf_free(&out);
		return 1;
	}
	fwrite(out.data, 1, out.len, stdout);
	buf_free(&out);
	return err ? 1 : 0;
}
