/* [process] user: pinhole serve gives up root once every role has started.
 *
 * Everything that needs root is done by then: ports bound (5060, 443 for
 * wss:), eBPF programs loaded and attached, certificates, keys and stores
 * opened. What runs afterwards (the parsers, the relays) then runs as an
 * ordinary user, so a flaw in them does not hand a stranger root. The switch
 * is for good: real, effective and saved ids all change (glibc applies it to
 * every thread), and no capability is kept; it is checked on every thread
 * before the process goes on. An already open file stays usable; a store's
 * files that SQLite opens again later must be the user's (docs/security.md).
 */
#include <errno.h>
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

const struct conf_key cli_process_conf_keys[] = {
    {"process", "user", CONF_STR, "", 0, 0, NULL,
     "once every role has started (ports bound, eBPF programs attached, certificates and "
     "stores opened), run as this user for good, without capabilities; empty = stay as "
     "started"},
    {"process", "group", CONF_STR, "", 0, 0, NULL,
     "with user: the group to run as; empty = the user's primary group"},
    {NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

int cli_privs_resolve(const struct conf *c, struct cli_privs *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	const char *user = conf_str(c, "process", "user");
	const char *group = conf_str(c, "process", "group");
	if (!user[0]) {
		if (group[0]) {
			snprintf(err, errlen, "[process] group = %s wants [process] user", group);
			return EINVAL;
		}
		return 0;
	}
	char buf[4096];
	struct passwd pw, *pp = NULL;
	if (getpwnam_r(user, &pw, buf, sizeof buf, &pp) || !pp) {
		snprintf(err, errlen, "[process] user = %s: no such user", user);
		return EINVAL;
	}
	out->on = true;
	out->uid = pw.pw_uid;
	out->gid = pw.pw_gid;
	snprintf(out->user, sizeof out->user, "%s", pw.pw_name);
	if (group[0]) {
		struct group gr, *gp = NULL;
		if (getgrnam_r(group, &gr, buf, sizeof buf, &gp) || !gp) {
			snprintf(err, errlen, "[process] group = %s: no such group", group);
			return EINVAL;
		}
		out->gid = gr.gr_gid;
	}
	if (out->uid == 0) {
		snprintf(err, errlen, "[process] user = %s: that is root", user);
		return EINVAL;
	}
	uid_t me = geteuid();
	if (me != 0 && me != out->uid) {
		snprintf(err, errlen,
			 "[process] user = %s: switching users needs root (running as uid %u)",
			 user, (unsigned)me);
		return EPERM;
	}
	return 0;
}

/* Whether every thread of this process runs as uid/gid with no capability
 * left (/proc/self/task/N/status: all four uids and gids, CapEff, CapPrm). */
static bool every_thread_dropped(uid_t uid, gid_t gid)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return false;
	bool ok = true;
	unsigned seen = 0;
	char want_uid[64], want_gid[64], path[64], line[256];
	snprintf(want_uid, sizeof want_uid, "Uid:\t%u\t%u\t%u\t%u\n", (unsigned)uid, (unsigned)uid,
		 (unsigned)uid, (unsigned)uid);
	snprintf(want_gid, sizeof want_gid, "Gid:\t%u\t%u\t%u\t%u\n", (unsigned)gid, (unsigned)gid,
		 (unsigned)gid, (unsigned)gid);
	for (struct dirent *e; ok && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/self/task/%.16s/status", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue; /* a thread that ended meanwhile */
		unsigned checks = 0;
		while (fgets(line, sizeof line, f)) {
			if (!strncmp(line, "Uid:", 4)) {
				ok &= !strcmp(line, want_uid);
				checks++;
			} else if (!strncmp(line, "Gid:", 4)) {
				ok &= !strcmp(line, want_gid);
				checks++;
			} else if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "CapPrm:", 7)) {
				ok &= strtoull(line + 7, NULL, 16) == 0;
				checks++;
			}
		}
		fclose(f);
		ok &= checks == 4;
		seen++;
	}
	closedir(d);
	return ok && seen > 0;
}

int cli_privs_drop(const struct cli_privs *p, char *err, size_t errlen)
{
	if (!p->on || (geteuid() == p->uid && getegid() == p->gid))
		return 0;
	/* glibc applies each of these to every thread of the process */
	if (initgroups(p->user, p->gid) || setresgid(p->gid, p->gid, p->gid) ||
	    setresuid(p->uid, p->uid, p->uid)) {
		snprintf(err, errlen, "cannot switch to user %s: %s", p->user, strerror(errno));
		return errno;
	}
	/* for good: root cannot be taken back, by any thread */
	if (setuid(0) == 0 || seteuid(0) == 0 || !every_thread_dropped(p->uid, p->gid)) {
		snprintf(err, errlen, "switched to user %s, but root is still within reach",
			 p->user);
		return EPERM;
	}
	return 0;
}
