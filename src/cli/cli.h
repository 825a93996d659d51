/* cli: one entry point per subcommand. */
#ifndef PINHOLE_CLI_H
#define PINHOLE_CLI_H

#include <sys/types.h>

#include "core/core.h"

/* Every config key table of the server (serve, and user for [store]/[auth]). */
extern const struct conf_key *const cli_conf_tables[];

int cli_serve(int argc, char **argv);
int cli_ctl(int argc, char **argv);
int cli_user(int argc, char **argv);
int cli_ua(int argc, char **argv);
/* ua load (ua_load.c), and the pieces of ua.c it shares */
int cli_ua_load(int argc, char **argv);
struct ua_proxy;
int cli_ua_proxy(const char *s, struct ua_proxy *px, char *err, size_t errlen);
int cli_ua_password(const char *file, bool from_stdin, char *pw, size_t cap);
/* A decimal number in [min, max], nothing else around it: 0 or EINVAL. */
int cli_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);

/* [process] user and group (privs.c): who serve runs as once started. */
extern const struct conf_key cli_process_conf_keys[];
struct cli_privs {
	bool on;
	uid_t uid;
	gid_t gid;
	char user[64];
};
/* Reads and checks the section before anything starts: an unknown user or
 * group, root, or a switch without root is an error (err says which). */
int cli_privs_resolve(const struct conf *c, struct cli_privs *out, char *err, size_t errlen);
/* Switches every thread to the user for good and checks it did; 0, or an
 * error (the caller stops: running on as root was not asked for). */
int cli_privs_drop(const struct cli_privs *p, char *err, size_t errlen);

#endif
