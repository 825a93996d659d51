/* pinhole ctl: reads a running server's control endpoint. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ctl/ctl.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: pinhole ctl [--control ADDR] [--json] <what>\n\n"
		   "  registrations   bindings: AOR, contact, real source, flow, expiry, NAT, keepalive\n"
		   "  counters        counters as JSON\n"
		   "  metrics         counters in Prometheus text format\n\n"
		   "  --control ADDR  control endpoint (default 127.0.0.1:5080)\n"
		   "  --json          machine-readable output\n");
}

int cli_ctl(int argc, char **argv)
{
	static const struct option opts[] = {
		{"control", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *addr = "127.0.0.1:5080";
	bool json = false;
	int o;
	while ((o = getopt_long(argc, argv, "c:jh", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			addr = optarg;
			break;
		case 'j':
			json = true;
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
	else if (strcmp(what, "counters") == 0)
		path = "/counters";
	else if (strcmp(what, "metrics") == 0)
		path = "/metrics";
	else {
		fprintf(stderr, "pinhole ctl: unknown \"%s\"\n", what);
		usage(stderr);
		return 2;
	}
	struct buf out;
	buf_init(&out);
	int err = ctl_get(addr, path, &out);
	if (err && out.len == 0) {
		fprintf(stderr, "pinhole ctl: %s: %s\n", addr, strerror(err));
		buf_free(&out);
		return 1;
	}
	fwrite(out.data, 1, out.len, stdout);
	buf_free(&out);
	return err ? 1 : 0;
}
