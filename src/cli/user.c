/* pinhole user: adds, deletes and lists users in the store; keeps HA1 values, never a password. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "cli.h"
#include "store/store.h"

#define PW_MAX 256

static void usage(FILE *f)
{
	fprintf(f, "usage: pinhole user add|passwd USER[@REALM] [--password-stdin] [options]\n"
		   "       pinhole user del USER[@REALM] [options]\n"
		   "       pinhole user list [options]\n\n"
		   "options:\n"
		   "  --config FILE      the server's config: its [store] users or path, [auth] realm\n"
		   "  --db PATH          the SQLite file (default: [store] users, else path, pinhole.db)\n"
		   "  --realm REALM      the digest realm (default: @REALM, else [auth] realm);\n"
		   "                     with the default [auth] realm it is the SIP domain the\n"
		   "                     phones register to (their To host)\n"
		   "  --password-stdin   read the password from the first line of stdin\n\n"
		   "The password is asked twice without echo unless --password-stdin is given.\n"
		   "Only H(user:realm:password) is stored, for MD5, SHA-256 and SHA-512-256.\n"
		   "A running `pinhole serve` on the same file sees the change within a second.\n");
}

/* User names go into HA1 input as "user:realm:password" and into quoted
 * strings: no ':', '"', '\\', '@', controls or spaces. */
static bool user_ok(const char *u)
{
	if (!u[0] || strlen(u) >= STORE_CRED_USER_MAX)
		return false;
	for (const char *p = u; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f ||
		    strchr(":\"\\@<>%", *p))
			return false;
	return true;
}

static bool realm_ok(const char *r)
{
	if (!r[0] || strlen(r) >= STORE_CRED_REALM_MAX)
		return false;
	for (const char *p = r; *p; p++)
		if ((unsigned char)*p < ' ' || (unsigned char)*p >= 0x7f || strchr("\"\\", *p))
			return false;
	return true;
}

static int read_line(FILE *f, char *buf, size_t cap)
{
	if (!fgets(buf, (int)cap, f))
		return EIO;
	size_t n = strlen(buf);
	if (n == cap - 1 && buf[n - 1] != '\n')
		return ENAMETOOLONG;
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return 0;
}

/* Prompts on the terminal with echo off. */
static int prompt(const char *what, char *buf, size_t cap)
{
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return ENOTTY;
	FILE *tty = fdopen(fd, "r+");
	if (!tty) {
		close(fd);
		return ENOMEM;
	}
	struct termios old, quiet;
	bool restore = tcgetattr(fd, &old) == 0;
	if (restore) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(fd, TCSAFLUSH, &quiet);
	}
	fputs(what, tty);
	fflush(tty);
	int err = read_line(tty, buf, cap);
	if (restore)
		tcsetattr(fd, TCSAFLUSH, &old);
	fputs("\n", tty);
	fclose(tty);
	return err;
}

static int get_password(bool from_stdin, char *pw, size_t cap)
{
	int err;
	if (from_stdin) {
		err = read_line(stdin, pw, cap);
	} else {
		char again[PW_MAX];
		err = prompt("Password: ", pw, cap);
		if (!err)
			err = prompt("Again: ", again, sizeof again);
		if (!err && strcmp(pw, again) != 0) {
			fprintf(stderr, "pinhole user: the passwords differ\n");
			err = EINVAL;
		}
		OPENSSL_cleanse(again, sizeof again);
	}
	if (err == ENOTTY)
		fprintf(stderr, "pinhole user: no terminal to ask the password on; "
				"use --password-stdin\n");
	else if (err == ENAMETOOLONG)
		fprintf(stderr, "pinhole user: password longer than %d bytes\n", PW_MAX - 2);
	else if (err == EIO)
		fprintf(stderr, "pinhole user: no password given\n");
	if (!err && !pw[0]) {
		fprintf(stderr, "pinhole user: empty password refused\n");
		err = EINVAL;
	}
	return err;
}

static int print_user(const char *user, const char *realm, const struct store_cred_entry *e,
		      void *arg)
{
	(void)arg;
	printf("%s\t%s\t", user, realm);
	const char *sep = "";
	for (int a = 0; a < STORE_CRED_ALGS; a++) {
		if (e->ha1[a][0]) {
			printf("%s%s", sep, auth_alg_name((enum store_cred_alg)a));
			sep = ",";
		}
	}
	printf("\n");
	return 0;
}

struct user_args {
	const char *config, *db, *realm;
	bool pw_stdin;
};

static int open_store(const struct user_args *ua, struct conf **cp, struct store_cred **credp)
{
	char err[512];
	if (conf_alloc(cp, cli_conf_tables))
		return ENOMEM;
	if (ua->config && conf_load_file(*cp, ua->config, err, sizeof err)) {
		fprintf(stderr, "pinhole user: %s\n", err);
		return EINVAL;
	}
	const char *path = ua->db ? ua->db : conf_str(*cp, "store", "users");
	if (!path[0])
		path = conf_str(*cp, "store", "path");
	if (!path[0]) {
		fprintf(stderr, "pinhole user: [store] path and users are empty (memory only): no "
				"file to keep users in; set [store] users or give --db\n");
		return EINVAL;
	}
	int e = store_cred_open(credp, path, 0);
	if (e)
		fprintf(stderr, "pinhole user: %s: %s\n", path, strerror(e));
	return e;
}

int cli_user(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"db", required_argument, NULL, 'd'},
	    {"realm", required_argument, NULL, 'r'},  {"password-stdin", no_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},	      {NULL, 0, NULL, 0},
	};
	struct user_args ua = {0};
	int o;
	while ((o = getopt_long(argc, argv, "c:d:r:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			ua.config = optarg;
			break;
		case 'd':
			ua.db = optarg;
			break;
		case 'r':
			ua.realm = optarg;
			break;
		case 'p':
			ua.pw_stdin = true;
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
	const char *verb = argv[optind++];
	bool list = strcmp(verb, "list") == 0, del = strcmp(verb, "del") == 0;
	bool add = strcmp(verb, "add") == 0, passwd = strcmp(verb, "passwd") == 0;
	if (!list && !del && !add && !passwd) {
		fprintf(stderr, "pinhole user: unknown action \"%s\"\n", verb);
		usage(stderr);
		return 2;
	}
	if (list ? optind != argc : optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	struct conf *c = NULL;
	struct store_cred *cred = NULL;
	int rc = 1;
	char user[STORE_CRED_USER_MAX + STORE_CRED_REALM_MAX + 2], realm[STORE_CRED_REALM_MAX];
	char pw[PW_MAX];
	pw[0] = '\0';
	if (open_store(&ua, &c, &cred))
		goto out;
	if (list) {
		rc = store_cred_foreach(cred, print_user, NULL) ? 1 : 0;
		goto out;
	}
	snprintf(user, sizeof user, "%s", argv[optind]);
	char *at = strchr(user, '@');
	const char *r = ua.realm;
	if (at) {
		*at = '\0';
		if (!r)
			r = at + 1;
	}
	if (!r || !r[0])
		r = conf_str(c, "auth", "realm");
	if (!r[0]) {
		fprintf(stderr, "pinhole user: which realm? Give USER@DOMAIN (the domain phones "
				"register to) or --realm, or set [auth] realm\n");
		rc = 2;
		goto out;
	}
	if (!user_ok(user) || !realm_ok(r)) {
		fprintf(stderr,
			"pinhole user: bad user name or realm (no : \" \\ @ < > %% or "
			"spaces; at most %d and %d bytes)\n",
			STORE_CRED_USER_MAX - 1, STORE_CRED_REALM_MAX - 1);
		rc = 2;
		goto out;
	}
	/* spelled as the server will challenge (HA1 hashes it): a configured
	 * [auth] realm as written, a domain lowercased (auth_realm) */
	const char *fixed = conf_str(c, "auth", "realm");
	size_t rl = strlen(r);
	bool as_is = fixed[0] && strcasecmp(fixed, r) == 0;
	for (size_t i = 0; i <= rl; i++)
		realm[i] = as_is			  ? fixed[i]
			   : (r[i] >= 'A' && r[i] <= 'Z') ? (char)(r[i] | 0x20)
							  : r[i];
	struct store_cred_entry e;
	if (del) {
		int err = store_cred_del(cred, slice_cstr(user), slice_cstr(realm));
		if (err)
			fprintf(stderr, "pinhole user: %s@%s: %s\n", user, realm,
				err == ENOENT ? "no such user" : strerror(err));
		rc = err ? 1 : 0;
		goto out;
	}
	if (passwd && store_cred_lookup(cred, slice_cstr(user), slice_cstr(realm), &e)) {
		fprintf(stderr, "pinhole user: %s@%s: no such user (add it)\n", user, realm);
		goto out;
	}
	if (add && store_cred_lookup(cred, slice_cstr(user), slice_cstr(realm), &e) == 0) {
		fprintf(stderr, "pinhole user: %s@%s exists (use passwd)\n", user, realm);
		goto out;
	}
	if (get_password(ua.pw_stdin, pw, sizeof pw))
		goto out;
	int err = auth_ha1_all(slice_cstr(user), slice_cstr(realm), slice_cstr(pw), &e);
	err = err ? err : store_cred_set(cred, slice_cstr(user), slice_cstr(realm), &e);
	OPENSSL_cleanse(&e, sizeof e);
	if (err) {
		fprintf(stderr, "pinhole user: %s@%s: %s\n", user, realm, strerror(err));
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(pw, sizeof pw);
	store_cred_free(cred);
	conf_free(c);
	return rc;
}
