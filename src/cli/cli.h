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

#endif
