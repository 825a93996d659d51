/* cli: one entry point per subcommand. */
#ifndef PINHOLE_CLI_H
#define PINHOLE_CLI_H

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

#endif
