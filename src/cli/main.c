/* pinhole: the one binary; dispatches to its subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "probe/probe.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: pinhole <command> [options]\n\n"
		   "commands:\n"
		   "  serve   run the server roles (edge, registrar, proxy, stun) from a config\n"
		   "  ctl     ask a running server: registrations, counters, metrics\n"
		   "  user    add, delete, list users and change passwords (digest HA1 only)\n"
		   "  probe   discover the NAT in front of this host with a STUN server\n"
		   "  ua      a SIP Outbound user agent: `ua register` keeps one or two flows\n"
		   "  version print the version\n\n"
		   "pinhole <command> --help for a command's options\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "serve") == 0)
		return cli_serve(argc - 1, argv + 1);
	if (strcmp(cmd, "ctl") == 0)
		return cli_ctl(argc - 1, argv + 1);
	if (strcmp(cmd, "user") == 0)
		return cli_user(argc - 1, argv + 1);
	if (strcmp(cmd, "ua") == 0)
		return cli_ua(argc - 1, argv + 1);
	if (strcmp(cmd, "probe") == 0)
		return probe_main(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("pinhole 0.1.0\n");
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "pinhole: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 2;
}
