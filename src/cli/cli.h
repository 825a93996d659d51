/* cli: one entry point per subcommand. */
#ifndef PINHOLE_CLI_H
#define PINHOLE_CLI_H

int cli_serve(int argc, char **argv);
int cli_ctl(int argc, char **argv);

#endif
