/* ua: the state file that keeps one +sip.instance per installation (RFC 5626 4.1). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ua/ua.h"

#define STATE_MAX 4096 /* a state file is a few lines; more is not ours */

bool ua_instance_valid(const char *s)
{
	if (strncasecmp(s, "urn:uuid:", 9) != 0)
		return false;
	s += 9;
	for (int i = 0; i < UA_UUID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return s[UA_UUID_LEN] == '\0';
}

int ua_state_default_path(char *out, size_t cap)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	int n;
	if (xdg && xdg[0] == '/')
		n = snprintf(out, cap, "%s/pinhole/ua.state", xdg);
	else if (home && home[0])
		n = snprintf(out, cap, "%s/.local/state/pinhole/ua.state", home);
	else
		return ENOENT;
	return n < 0 || (size_t)n >= cap ? ENAMETOOLONG : 0;
}

/* "instance = urn:uuid:..." among comment lines and blank ones. */
static int parse(const char *text, char out[UA_INSTANCE_MAX])
{
	const char *p = text;
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		struct slice line = slice_trim((struct slice){p, len});
		p += len + (eol ? 1 : 0);
		if (!line.l || line.p[0] == '#' || line.p[0] == ';')
			continue;
		size_t eq = slice_find(line, '=');
		if (eq == line.l)
			return EBADMSG;
		struct slice k = slice_trim((struct slice){line.p, eq});
		struct slice v = slice_trim((struct slice){line.p + eq + 1, line.l - eq - 1});
		if (!slice_eq_cstr_nocase(k, "instance"))
			continue; /* keys of later versions */
		if (v.l >= UA_INSTANCE_MAX)
			return EBADMSG;
		slice_to_cstr(v, out, UA_INSTANCE_MAX);
		return ua_instance_valid(out) ? 0 : EBADMSG;
	}
	return EBADMSG;
}

/* mkdir -p for the folders of path, 0700 (the state is this user's). */
static int make_parents(const char *path)
{
	char d[4096];
	if (strlen(path) >= sizeof d)
		return ENAMETOOLONG;
	strcpy(d, path);
	for (char *s = d + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(d, 0700) < 0 && errno != EEXIST)
			return errno;
		*s = '/';
	}
	return 0;
}

static void uuid4(char out[UA_INSTANCE_MAX])
{
	uint8_t u[16];
	rand_bytes(u, sizeof u);
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* RFC 4122 4.4: version 4 */
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* variant 10 */
	snprintf(out, UA_INSTANCE_MAX,
		 "urn:uuid:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

/* Writes a new file by a temporary one and rename, so that a crash leaves
 * either no file or a whole one. EEXIST when another process made it first. */
static int create(const char *path, const char *inst)
{
	int err = make_parents(path);
	if (err)
		return err;
	char tmp[4096 + 16];
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	char text[256];
	int n = snprintf(text, sizeof text,
			 "# pinhole ua: this installation's SIP Outbound instance (RFC 5626 4.1).\n"
			 "# Keep it: a new one strands the registrations made with this one.\n"
			 "instance = %s\n",
			 inst);
	if (write(fd, text, (size_t)n) != n || fsync(fd) < 0) {
		err = errno ? errno : EIO;
		close(fd);
		unlink(tmp);
		return err;
	}
	close(fd);
	/* link() does not replace: two first runs at once agree on one file */
	if (link(tmp, path) < 0) {
		err = errno;
		unlink(tmp);
		return err;
	}
	unlink(tmp);
	return 0;
}

static int load(const char *path, char out[UA_INSTANCE_MAX])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	char text[STATE_MAX + 1];
	ssize_t n = read(fd, text, STATE_MAX + 1);
	int err = n < 0 ? errno : 0;
	close(fd);
	if (err)
		return err;
	if (n > STATE_MAX)
		return EBADMSG;
	text[n] = '\0';
	return parse(text, out);
}

int ua_state_instance(const char *path, char out[UA_INSTANCE_MAX])
{
	int err = load(path, out);
	if (err != ENOENT)
		return err;
	char inst[UA_INSTANCE_MAX];
	uuid4(inst);
	err = create(path, inst);
	if (err == EEXIST)
		return load(path, out); /* someone else's first run won */
	if (err)
		return err;
	memcpy(out, inst, UA_INSTANCE_MAX);
	return 0;
}
